"""A build compiled for another CPU is refused at import with a message, before the
extension (whose code would die with an illegal instruction) is loaded
(selfextend_gguf/engine/cpu_check.py, cmake/cpu_requirements.cmake)."""

import os
import subprocess
import sys
import textwrap

import pytest

from selfextend_gguf import system_info
from selfextend_gguf.engine import cpu_check

X86_CPUINFO = """processor\t: 0
model name\t: Test CPU {n}
flags\t\t: fpu sse sse2 pni ssse3 sse4_1 sse4_2 popcnt avx f16c fma avx2 {extra}

"""


def x86_cpuinfo(*extras):
    return "".join(X86_CPUINFO.format(n=i, extra=extra) for i, extra in enumerate(extras))


def test_required_flags_follow_the_compiler_macros():
    macros = ["__x86_64__", "__SSE2__", "__SSE3__", "__AVX__", "__AVX2__", "__FMA__", "__AVX512F__",
              "__AVX512FP16__", "__SOMETHING_NEW__"]
    # SSE2 is x86-64 itself, unknown macros are not checked; oldest first
    assert cpu_check.required_flags(macros) == ["pni", "avx", "avx2", "fma", "avx512f", "avx512_fp16"]
    arm = ["__aarch64__", "__ARM_NEON", "__ARM_FEATURE_DOTPROD", "__ARM_FEATURE_SVE", "__ARM_FEATURE_FMA"]
    assert cpu_check.required_flags(arm) == ["asimd", "asimddp", "sve"]
    # a build for neither (or a list without its architecture) needs nothing we can check
    assert cpu_check.required_flags(["__AVX2__"]) == []


def test_a_flag_counts_only_when_every_core_has_it():
    # hybrid CPUs: a thread may run on any core
    flags = cpu_check.cpu_flags(x86_cpuinfo("avx512f avx_vnni", "avx_vnni"))
    assert "avx_vnni" in flags and "avx2" in flags
    assert "avx512f" not in flags
    assert cpu_check.cpu_flags("processor : 0\n") == set()


def test_check_names_what_is_missing_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(cpu_check.SKIP_VARIABLE, raising=False)
    monkeypatch.setattr(cpu_check.platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(x86_cpuinfo("avx512f", "avx512f"))
    macros = ("__x86_64__", "__AVX2__", "__AVX512F__", "__AVX512BW__", "__AVX512FP16__")
    with pytest.raises(cpu_check.UnsupportedCPUError) as err:
        cpu_check.check(macros, "-march=native", cpuinfo=str(cpuinfo))
    message = str(err.value)
    assert "avx512bw, avx512_fp16" in message and "avx2" not in message.split("(")[0]
    assert "-march=native" in message and "Test CPU 0" in message
    assert "-DGGML_NATIVE=OFF" in message and cpu_check.SKIP_VARIABLE in message
    assert isinstance(err.value, ImportError)
    # the CPU has all of it: nothing raised
    cpuinfo.write_text(x86_cpuinfo("avx512f avx512bw avx512_fp16"))
    cpu_check.check(macros, "-march=native", cpuinfo=str(cpuinfo))
    # the user's override
    cpuinfo.write_text(x86_cpuinfo(""))
    monkeypatch.setenv(cpu_check.SKIP_VARIABLE, "1")
    cpu_check.check(macros, "-march=native", cpuinfo=str(cpuinfo))


def test_a_name_the_build_machines_kernel_did_not_know_is_not_checked(tmp_path, monkeypatch):
    """A native build on a CPU with AVX512-FP16 under a kernel older than 5.11: the
    compiler enables it, the kernel prints no avx512_fp16, and neither would a kernel
    as old on the machine that imports it, so the name is left out, not refused."""
    monkeypatch.delenv(cpu_check.SKIP_VARIABLE, raising=False)
    monkeypatch.setattr(cpu_check.platform, "machine", lambda: "x86_64")
    macros = ("__x86_64__", "__AVX2__", "__AVX512F__", "__AVX512FP16__")
    build_machine = "fpu sse sse2 avx avx2 avx512f"
    assert cpu_check.required_flags(macros, build_machine) == ["avx2", "avx512f"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(x86_cpuinfo("avx512f"))
    cpu_check.check(macros, "-march=native", cpuinfo=str(cpuinfo), build_cpu_flags=build_machine)
    # what the build machine did name is still checked
    cpuinfo.write_text(x86_cpuinfo(""))
    with pytest.raises(cpu_check.UnsupportedCPUError, match="avx512f"):
        cpu_check.check(macros, "-march=native", cpuinfo=str(cpuinfo), build_cpu_flags=build_machine)


def test_nothing_is_checked_where_nothing_is_known(tmp_path, monkeypatch):
    monkeypatch.delenv(cpu_check.SKIP_VARIABLE, raising=False)
    macros = ("__x86_64__", "__AVX512F__")
    # no /proc/cpuinfo (macOS, Windows), or one that cannot be read
    cpu_check.check(macros, cpuinfo=str(tmp_path / "absent"))
    cpu_check.check(macros, cpuinfo=str(tmp_path))
    # bytes that are not UTF-8 do not stop an import
    odd = tmp_path / "odd"
    odd.write_bytes(b"model name : CPU \xff\xfe\nflags : pni avx512f\n")
    monkeypatch.setattr(cpu_check.platform, "machine", lambda: "x86_64")
    cpu_check.check(macros, cpuinfo=str(odd))
    assert cpu_check.read_cpu_flags(str(odd)) == {"pni", "avx512f"}
    # a list written for another machine kind than the one running
    monkeypatch.setattr(cpu_check.platform, "machine", lambda: "aarch64")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nFeatures : fp asimd\n")
    cpu_check.check(macros, cpuinfo=str(cpuinfo))
    # aarch64 is checked against its Features line
    with pytest.raises(cpu_check.UnsupportedCPUError, match="asimddp"):
        cpu_check.check(("__aarch64__", "__ARM_NEON", "__ARM_FEATURE_DOTPROD"), cpuinfo=str(cpuinfo))


# ggml's own report of the CPU backend's compiled features, and the macro each is made of
GGML_FEATURE_MACROS = {"SSE3": "__SSE3__", "SSSE3": "__SSSE3__", "AVX": "__AVX__", "AVX2": "__AVX2__",
                       "F16C": "__F16C__", "FMA": "__FMA__", "BMI2": "__BMI2__", "AVX_VNNI": "__AVXVNNI__",
                       "AVX512": "__AVX512F__", "AVX512_VBMI": "__AVX512VBMI__",
                       "AVX512_VNNI": "__AVX512VNNI__", "AVX512_BF16": "__AVX512BF16__",
                       "AMX_INT8": "__AMX_INT8__"}


def test_the_recorded_list_is_what_ggml_was_compiled_with():
    macros, flags, build_cpu_flags = cpu_check.build_requirements()
    if sys.platform != "linux":
        pytest.skip("the list is checked against ggml's report on Linux builds")
    assert macros, "the build wrote no instruction-set list (cmake/cpu_requirements.cmake)"
    assert ("__x86_64__" in macros) == (os.uname().machine == "x86_64")
    cpu = next(b for b in system_info()["backends"] if b["name"] == "CPU")
    if "__x86_64__" in macros:
        for feature, macro in GGML_FEATURE_MACROS.items():
            assert (feature in cpu["features"]) == (macro in macros), (feature, macros, flags)
    # the build machine runs its own build: every flag it needs, it advertises (and a
    # native build recorded the machine's flags; a portable one did not)
    assert not cpu_check.missing_flags(macros, cpu_check.read_cpu_flags() or set(), build_cpu_flags)
    assert not cpu_check.missing_flags(macros, cpu_check.read_cpu_flags() or set())
    assert (build_cpu_flags is not None) == ("-march=native" in flags or "-mcpu=native" in flags)
    assert system_info()["cpu"]["required"] == cpu_check.required_flags(macros, build_cpu_flags)


def run_import(cpuinfo_text, env_extra=None):
    """Import the package in a new interpreter whose /proc/cpuinfo reads as cpuinfo_text."""
    code = textwrap.dedent(f"""
        import builtins, io, sys
        real_open = builtins.open
        def fake_open(path, *args, **kwargs):
            if path == "/proc/cpuinfo":
                return io.StringIO({cpuinfo_text!r})
            return real_open(path, *args, **kwargs)
        builtins.open = fake_open
        try:
            import selfextend_gguf
            print("imported")
        except ImportError as err:
            print(type(err).__name__, err)
        print("core loaded:", "selfextend_gguf._core" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != cpu_check.SKIP_VARIABLE}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout


def test_import_on_a_cpu_without_the_build_flags_stops_before_the_extension():
    macros, _, build_cpu_flags = cpu_check.build_requirements()
    needed = cpu_check.required_flags(macros or (), build_cpu_flags)
    if not needed:
        pytest.skip("this build needs no CPU flag beyond the architecture's baseline")
    lacking = "processor : 0\nmodel name : Old CPU\nflags : fpu sse sse2 " + " ".join(needed[:-1]) + "\n"
    out = run_import(lacking)
    assert f"UnsupportedCPUError selfextend-gguf was compiled for a CPU with {needed[-1]}" in out, out
    assert "Old CPU" in out
    assert "core loaded: False" in out, out
    # with the override the import goes on (on this CPU the code does run)
    out = run_import(lacking, {cpu_check.SKIP_VARIABLE: "1"})
    assert "imported" in out and "core loaded: True" in out, out
