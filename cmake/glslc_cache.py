"""A result cache in front of glslc, the shader compiler of a Vulkan build.

ggml-vulkan compiles a few thousand shader variants with glslc at build time (most of
a Vulkan build: about half an hour on 2 cores), and ccache does not know glslc. This
script stands in for glslc (cmake/vulkan_shader_cache.cmake points ggml-vulkan at it):
a compile whose inputs it has seen before is copied from the cache instead of run.

The key is everything the output depends on: the compiler (its path, size and mtime),
the arguments but the output and dependency-file paths, the input file's name, and the
contents of every file in the input's folder (the shaders' includes live beside them,
so a changed include changes every key). Only compiles that succeeded without a message
are stored; any other call (glslc --version, -o -, a feature test) runs glslc as is.

Usage: python glslc_cache.py CACHE_DIR REAL_GLSLC [glslc arguments...]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE_SUFFIXES = (".comp", ".glsl", ".h")


def _run_real(glslc: str, args: list[str]) -> int:
    return subprocess.call([glslc, *args])


def _folder_digest(folder: Path) -> bytes:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.digest()


def _key(glslc: str, args: list[str], source: Path, out_index: int, dep_index: int) -> str:
    digest = hashlib.sha256()
    real = Path(shutil.which(glslc) or glslc).resolve()
    stat = real.stat()
    digest.update(f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for i, arg in enumerate(args):
        if i in (out_index, dep_index):
            continue
        digest.update((source.name if arg == str(source) else arg).encode() + b"\0")
    digest.update(_folder_digest(source.parent))
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cache_dir, glslc, args = Path(argv[0]), argv[1], argv[2:]
    # a compile: one existing source, -o FILE, optionally -MD -MF DEPFILE
    try:
        out_index = args.index("-o") + 1
        out = Path(args[out_index])
        dep_index = args.index("-MF") + 1 if "-MF" in args else -1
        sources = [Path(a) for a in args if not a.startswith("-") and Path(a).suffix == ".comp" and Path(a).is_file()]
    except (ValueError, IndexError):
        return _run_real(glslc, args)
    if str(out) == "-" or len(sources) != 1:
        return _run_real(glslc, args)
    source = sources[0]
    dep = Path(args[dep_index]) if dep_index > 0 else None

    try:
        entry = cache_dir / _key(glslc, args, source, out_index, dep_index)
    except OSError:
        return _run_real(glslc, args)
    spv, dep_template = entry.with_suffix(".spv"), entry.with_suffix(".d")
    if spv.is_file() and (dep is None or dep_template.is_file()):
        shutil.copyfile(spv, out)
        if dep is not None:
            # the dependency file names this build's output and source folder
            text = dep_template.read_text()
            dep.write_text(text.replace("@OUT@", str(out)).replace("@DIR@", str(source.parent)))
        return 0

    result = subprocess.run([glslc, *args], capture_output=True)
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    if result.returncode == 0 and not result.stderr and out.is_file():
        try:
            if dep is not None:
                text = dep.read_text().replace(str(out), "@OUT@").replace(str(source.parent), "@DIR@")
                _write_atomically(dep_template, text.encode())
            _write_atomically(spv, out.read_bytes())
        except OSError:
            pass    # a cache that cannot be written is no cache, not a failed build
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
