"""Installing as a Python user does: `pip install .` into a fresh virtual environment
with an empty cache and pip's default build isolation, and an sdist that carries the
pinned, patched llama.cpp so that it builds with no download.

The install test compiles everything (a few minutes on 2 cores); `make test-fast`
leaves these out."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
SDIST_MAX_BYTES = 20 * 1024 * 1024


def _run(cmd, **kwargs):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", out, ROOT])
    (path,) = out.glob("selfextend_gguf-*.tar.gz")
    return path


def test_sdist_carries_the_patched_llama_cpp_and_nothing_built(sdist):
    assert sdist.stat().st_size < SDIST_MAX_BYTES, f"sdist is {sdist.stat().st_size} bytes"
    with tarfile.open(sdist) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name]
        top = sdist.name[:-len(".tar.gz")]
        graph = tar.extractfile(f"{top}/vendor/llama.cpp/src/llama-graph.cpp").read().decode()
        stamp = tar.extractfile(f"{top}/vendor/llama.cpp/.selfextend-vendored").read().decode()
    patches = [f"patches/{p.name}" for p in sorted((ROOT / "patches").glob("*.patch"))]
    assert len(patches) >= 5
    for needed in ("pyproject.toml", "CMakeLists.txt", "cmake/llama_source.py", "csrc/se-graph.cpp",
                   *patches, "selfextend_gguf/llama.py", "vendor/llama.cpp/CMakeLists.txt",
                   "vendor/llama.cpp/ggml/src/ggml-cpu/ggml-cpu.c", "vendor/llama.cpp/src/llama.cpp",
                   "vendor/llama.cpp/ggml/src/ggml-cuda/ggml-cuda.cu", "vendor/llama.cpp/LICENSE",
                   # llama.cpp's common library: sampler chain, grammars, chat templates
                   "vendor/llama.cpp/common/sampling.cpp", "vendor/llama.cpp/common/chat.cpp",
                   "vendor/llama.cpp/vendor/nlohmann/json.hpp"):
        assert needed in names, needed
    assert "llama_se_build_attn" in graph       # the vendored tree is patched
    assert "0c1e57098" in stamp
    for name in names:
        parts = name.split("/")
        assert parts[0] not in ("build", ".venv", "dist", ".git"), name
        assert not name.endswith((".o", ".so", ".gguf")), name
    # llama.cpp's test models and docs stay out
    assert not [n for n in names if n.startswith(("vendor/llama.cpp/models/", "vendor/llama.cpp/docs/"))]


def test_pip_install_in_a_fresh_venv_with_an_empty_cache(tmp_path, tiny_llama):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    env = dict(os.environ, SELFEXTEND_GGUF_CACHE=str(cache), CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    # the checkout as a fresh clone has it: no build/, .venv or vendored tree (the sdist
    # test writes one), so the pinned source must come through pip's isolated build
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "vendor", "dist",
                                                                "__pycache__", ".pytest_cache"))
    _run([python, "-m", "pip", "install", "--disable-pip-version-check", source], env=env, cwd=tmp_path)
    assert (cache / "downloads").is_dir()     # it did fetch the pinned source, with pip
    check = (
        "import selfextend_gguf, sys\n"
        "assert 'site-packages' in selfextend_gguf.__file__, selfextend_gguf.__file__\n"
        "llm = selfextend_gguf.Llama(sys.argv[1], n_ctx=128, group_size=4, neighbor_window=16)\n"
        "out = llm.create_completion('Hello', max_tokens=3, temperature=0)\n"
        "assert out['usage']['completion_tokens'] == 3\n"
        "out = llm.create_completion('Hello', max_tokens=8, grammar='root ::= \"yes\" | \"no\"')\n"
        "assert out['choices'][0]['text'] in ('yes', 'no'), out\n"
        "print(selfextend_gguf.system_info()['llama_cpp'])\n")
    printed = _run([python, "-c", check, tiny_llama.path], env=env, cwd=tmp_path).stdout
    assert "0c1e57098" in printed
