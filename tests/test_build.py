"""The build: the patch set applies idempotently, and the extension keeps llama.cpp's
symbols to itself so that another llama.cpp (llama_cpp) can share the process."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "cmake"))

import apply_patches  # noqa: E402
import llama_source  # noqa: E402

import selfextend_gguf._core as core  # noqa: E402


def touched_files(patch_dir):
    files = set()
    for patch in apply_patches.patch_files(patch_dir):
        for line in patch.read_text().splitlines():
            if line.startswith("+++ b/"):
                files.add(line[len("+++ b/"):])
    return sorted(files)


@pytest.fixture(scope="module")
def pristine_subset(tmp_path_factory):
    """The files the patches touch, copied from the pinned pristine tree."""
    pristine = llama_source.pristine_tree()
    dest = tmp_path_factory.mktemp("pristine")
    for rel in touched_files(ROOT / "patches"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pristine / rel, dest / rel)
    return dest


def test_patches_apply_once_then_are_skipped(pristine_subset, tmp_path, capfd):
    tree = tmp_path / "tree"
    shutil.copytree(pristine_subset, tree)
    apply_patches.apply_all(tree, ROOT / "patches")
    first = capfd.readouterr().err
    assert first.count("applied 0") == len(apply_patches.patch_files(ROOT / "patches")) >= 4
    assert "llama_se_build_attn" in (tree / "src/llama-graph.cpp").read_text()
    apply_patches.apply_all(tree, ROOT / "patches")
    second = capfd.readouterr().err
    assert second.count("already applied") == len(apply_patches.patch_files(ROOT / "patches"))


def test_stale_patch_stops_with_a_clear_message(pristine_subset, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(pristine_subset, tree)
    graph = tree / "src/llama-graph.cpp"
    graph.write_text(graph.read_text().replace("build_attn_mha(q, k, v, kq_b, kq_mask, sinks, v_mla, 0, kq_scale, il);",
                                               "build_attn_mha_changed_upstream();"))
    with pytest.raises(SystemExit, match="regenerate it against the pin"):
        apply_patches.apply_all(tree, ROOT / "patches")


def test_a_patch_with_repeated_context_is_not_applied_twice(tmp_path):
    """A hunk whose context occurs twice still applies after it was applied once (to the
    other place); the second build must stop instead of patching that place too."""
    tree, patches = tmp_path / "tree", tmp_path / "patches"
    tree.mkdir()
    patches.mkdir()
    block = "void f() {\n    a();\n    b();\n    c();\n}\n"
    (tree / "x.c").write_text("// one\n" + block + "\n" + block + "// two\n")
    # (a hunk at the first or last line is anchored there; this one floats)
    (patches / "0001-once.patch").write_text(
        "--- a/x.c\n+++ b/x.c\n@@ -2,5 +2,6 @@\n void f() {\n     a();\n     b();\n+    fixed();\n     c();\n }\n")
    apply_patches.apply_all(tree, patches)
    assert (tree / "x.c").read_text().count("fixed();") == 1
    with pytest.raises(SystemExit, match="context occurs more than once"):
        apply_patches.apply_all(tree, patches)
    assert (tree / "x.c").read_text().count("fixed();") == 1


def test_pin_is_in_one_place():
    assert llama_source.LLAMA_CPP_COMMIT == "0c1e57098"
    hits = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in {".py", ".txt", ".cmake", ".toml"}
            and "build" not in p.parts and ".venv" not in p.parts
            and llama_source.SDIST_SHA256 in p.read_text(errors="ignore")]
    assert [p.relative_to(ROOT).as_posix() for p in hits] == ["cmake/llama_source.py"]


def test_extension_exports_only_its_init():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not installed")
    out = subprocess.run([nm, "-D", "--defined-only", core.__file__], capture_output=True, text=True, check=True)
    exported = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert "PyInit__core" in exported
    leaked = [s for s in exported if s.startswith(("llama_", "ggml_", "gguf_"))]
    assert leaked == []


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama_cpp is not installed")
def test_llama_cpp_in_the_same_process(tiny_llama):
    code = f"""
import llama_cpp
import selfextend_gguf
a = selfextend_gguf.Llama({str(tiny_llama.path)!r}, n_ctx=64)
b = llama_cpp.Llama({str(tiny_llama.path)!r}, n_ctx=64, verbose=False)
ta = a.tokenize(b"hello")
tb = b.tokenize(b"hello")
assert ta == tb, (ta, tb)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize("option", ["GGML_BACKEND_DL", "GGML_CPU_ALL_VARIANTS"])
def test_loadable_backends_are_refused_with_the_alternative(tmp_path, option):
    """ggml's per-CPU loadable backends need shared libraries, which this build does not
    make: configuring with them stops at once and says what to do instead (llama.cpp's
    own message, "GGML_BACKEND_DL requires BUILD_SHARED_LIBS", did not)."""
    cmake = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")
    assert cmake, "cmake is installed with the build tools (Makefile)"
    out = subprocess.run([cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-D{option}=ON"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    message = " ".join((out.stdout + out.stderr).split())
    assert "GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS are not supported" in message, message
    assert "-DGGML_NATIVE=OFF" in message and "A build for other machines" in message
