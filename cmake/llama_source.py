"""Provide the pinned llama.cpp source tree for the build.

The pin lives here and nowhere else: llama.cpp commit 0c1e57098, exactly the copy
vendored in the sdist of llama-cpp-python 0.3.36 on the package index. The sdist is
downloaded with pip (no deps, no binary), its sha256 verified, and its
vendor/llama.cpp extracted once into a cache directory that later builds reuse.

Our own sdist carries the patched tree in vendor/llama.cpp (written by --vendor, pruned
to what the build needs, stamped with the pin and the patch set), so that building it
needs no download. --patched returns that tree when its stamp matches.

Usage: python llama_source.py                     -> path of the pristine tree
       python llama_source.py --patched PATCH_DIR -> path of a patched tree: the vendored
                                                     one if current, else a cached copy
                                                     (per patch set, patches re-checked)
       python llama_source.py --vendor DEST PATCH_DIR -> write the patched tree to DEST
       python llama_source.py --describe          -> the pin
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LLAMA_CPP_COMMIT = "0c1e57098"
SDIST_PACKAGE = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VENDOR_PREFIX = f"llama_cpp_python-{SDIST_VERSION}/vendor/llama.cpp/"

# What the build of llama and ggml reads (top-level entries of the tree): the rest
# (models 75 MB, docs 38 MB, tools, tests, examples, ...) stays out of our sdist.
VENDORED_ENTRIES = ("CMakeLists.txt", "cmake", "common", "ggml", "src", "include", "vendor", "licenses",
                    "LICENSE", "AUTHORS", "README.md")
VENDOR_STAMP = ".selfextend-vendored"


def cache_root() -> Path:
    """Where downloaded sources live: $SELFEXTEND_GGUF_CACHE, else the XDG cache."""
    explicit = os.environ.get("SELFEXTEND_GGUF_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(xdg) / "selfextend-gguf"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fail(message: str) -> "NoReturn":  # noqa: F821
    print(f"llama_source.py: error: {message}", file=sys.stderr)
    sys.exit(1)


def download_sdist(dest_dir: Path) -> Path:
    """Fetch the sdist with pip into dest_dir and return its path, verified."""
    sdist = dest_dir / f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
    if sdist.exists() and sha256_of(sdist) == SDIST_SHA256:
        return sdist
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{SDIST_PACKAGE}=={SDIST_VERSION}"
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "-d", str(dest_dir), spec]
    print(f"-- selfextend-gguf: downloading {spec} sdist (llama.cpp {LLAMA_CPP_COMMIT})",
          file=sys.stderr, flush=True)
    # pip prepares the sdist's metadata after downloading it; doing that without an
    # isolated build environment is much faster and works when scikit-build-core is
    # importable here (it is, inside our own build). Fall back to isolation otherwise.
    # Our own build backend runs with pyproject-hooks' variables set (backend-path);
    # the nested pip must not see them, or it rejects llama-cpp-python's backend.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYPROJECT_HOOKS", "PEP517"))}
    if subprocess.run(base + ["--no-build-isolation"], stdout=sys.stderr, env=env).returncode != 0:
        if subprocess.run(base, stdout=sys.stderr, env=env).returncode != 0:
            fail(f"pip could not download {spec}; check access to the package index")
    if not sdist.exists():
        fail(f"pip did not produce {sdist.name}")
    actual = sha256_of(sdist)
    if actual != SDIST_SHA256:
        sdist.unlink()
        fail(f"sha256 mismatch for {sdist.name}: got {actual}, expected {SDIST_SHA256}")
    return sdist


def extract_vendor_tree(sdist: Path, target: Path) -> None:
    """Extract vendor/llama.cpp of the sdist into target (atomically, via a temp dir)."""
    tmp = Path(tempfile.mkdtemp(prefix="llama.cpp-", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = []
            for member in tar.getmembers():
                if not member.name.startswith(VENDOR_PREFIX):
                    continue
                member.name = member.name[len(VENDOR_PREFIX):]
                # the vendored .git is a submodule pointer to a directory the sdist lacks
                if member.name == ".git" or not member.name:
                    continue
                members.append(member)
            tar.extractall(tmp, members=members, filter="data")
        if not (tmp / "src" / "llama-graph.cpp").exists():
            fail(f"{sdist.name} does not contain vendor/llama.cpp as expected")
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def pristine_tree() -> Path:
    root = cache_root()
    target = root / f"llama.cpp-{LLAMA_CPP_COMMIT}"
    if (target / "src" / "llama-graph.cpp").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    sdist = download_sdist(root / "downloads")
    extract_vendor_tree(sdist, target)
    return target


def patch_set_digest(patch_dir: Path) -> str:
    from apply_patches import patch_files

    digest = hashlib.sha256()
    for patch in patch_files(patch_dir):
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes())
    return digest.hexdigest()[:12]


def vendor_stamp(patch_dir: Path) -> str:
    return f"llama.cpp {LLAMA_CPP_COMMIT} patches {patch_set_digest(patch_dir)}\n"


def vendored_tree(patch_dir: Path) -> "Path | None":
    """vendor/llama.cpp beside this script's project, if it holds this pin with these patches."""
    tree = Path(__file__).resolve().parent.parent / "vendor" / "llama.cpp"
    stamp = tree / VENDOR_STAMP
    if stamp.is_file() and stamp.read_text() == vendor_stamp(patch_dir):
        return tree
    return None


def write_vendored_tree(dest: Path, patch_dir: Path) -> Path:
    """The patched tree, pruned to VENDORED_ENTRIES, at dest (replaced if stale)."""
    if dest.exists() and (dest / VENDOR_STAMP).is_file() and \
            (dest / VENDOR_STAMP).read_text() == vendor_stamp(patch_dir):
        return dest
    source = patched_tree(patch_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vendoring-", dir=dest.parent))
    try:
        tree = tmp / "llama.cpp"
        tree.mkdir()
        for name in VENDORED_ENTRIES:
            entry = source / name
            if entry.is_dir():
                shutil.copytree(entry, tree / name, symlinks=True)
            elif entry.exists():
                shutil.copy2(entry, tree / name)
        # llama.cpp's own ignore files would make the sdist builder drop parts of the tree
        for ignore in tree.rglob(".gitignore"):
            ignore.unlink()
        (tree / VENDOR_STAMP).write_text(vendor_stamp(patch_dir))
        if dest.exists():
            shutil.rmtree(dest)
        tree.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def patched_tree(patch_dir: Path) -> Path:
    """A copy of the pristine tree with our patches, one copy per patch set."""
    from apply_patches import apply_all

    pristine = pristine_tree()
    target = pristine.parent / f"{pristine.name}-se-{patch_set_digest(patch_dir)}"
    if not target.exists():
        tmp = Path(tempfile.mkdtemp(prefix="patching-", dir=target.parent))
        try:
            shutil.copytree(pristine, tmp / "tree", symlinks=True)
            apply_all(tmp / "tree", patch_dir)
            (tmp / "tree").rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        apply_all(target, patch_dir)  # idempotent: reports "already applied"
    return target


def main(argv: list[str]) -> int:
    if "--describe" in argv:
        print(f"llama.cpp {LLAMA_CPP_COMMIT} from {SDIST_PACKAGE}=={SDIST_VERSION} "
              f"(sha256 {SDIST_SHA256})")
        return 0
    if len(argv) == 2 and argv[0] == "--patched":
        patch_dir = Path(argv[1]).resolve()
        print(vendored_tree(patch_dir) or patched_tree(patch_dir))
        return 0
    if len(argv) == 3 and argv[0] == "--vendor":
        print(write_vendored_tree(Path(argv[1]).resolve(), Path(argv[2]).resolve()))
        return 0
    print(pristine_tree())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
