"""Refuse to load the extension on a CPU that lacks an instruction set it was built for.

A default build is compiled for the build machine's CPU (llama.cpp's GGML_NATIVE,
-march=native). Moved to another CPU, a wheel, a docker image or a virtual environment on
a cluster's shared disk would stop Python with "Illegal instruction" somewhere inside
ggml, with no message. The build records the compiler's instruction-set macros
(cmake/cpu_requirements.cmake writes them to _build_cpu.py); the package's __init__
compares them with the flags the running CPU advertises in /proc/cpuinfo, before the
extension is loaded, and raises an ImportError that names what is missing and how to
build for this CPU. This module imports nothing of the extension.

Linux on x86-64 and aarch64 only (elsewhere nothing is checked). A kernel older than its
CPU may not name a newer flag (avx512_fp16 appeared in Linux 5.11): a native build leaves
out the names its build machine's kernel did not know, and where the running machine's
kernel is the older one, SELFEXTEND_GGUF_SKIP_CPU_CHECK=1 loads the build anyway.
"""

from __future__ import annotations

import os
import platform
from typing import Iterable, List, Optional, Set, Tuple

SKIP_VARIABLE = "SELFEXTEND_GGUF_SKIP_CPU_CHECK"
CPUINFO = "/proc/cpuinfo"

# compiler macro -> the flag Linux prints for it in /proc/cpuinfo (SSE and SSE2 are part
# of x86-64 itself; macros not listed here are not checked)
X86_FLAGS = {
    "__SSE3__": "pni", "__SSSE3__": "ssse3", "__SSE4_1__": "sse4_1", "__SSE4_2__": "sse4_2",
    "__POPCNT__": "popcnt", "__MOVBE__": "movbe", "__LZCNT__": "abm", "__BMI__": "bmi1", "__BMI2__": "bmi2",
    "__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma", "__F16C__": "f16c", "__AVXVNNI__": "avx_vnni",
    "__AVX512F__": "avx512f", "__AVX512CD__": "avx512cd", "__AVX512DQ__": "avx512dq",
    "__AVX512BW__": "avx512bw", "__AVX512VL__": "avx512vl", "__AVX512IFMA__": "avx512ifma",
    "__AVX512VBMI__": "avx512vbmi", "__AVX512VBMI2__": "avx512_vbmi2", "__AVX512VNNI__": "avx512_vnni",
    "__AVX512BITALG__": "avx512_bitalg", "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq",
    "__AVX512BF16__": "avx512_bf16", "__AVX512FP16__": "avx512_fp16",
    "__AMX_TILE__": "amx_tile", "__AMX_INT8__": "amx_int8", "__AMX_BF16__": "amx_bf16",
}
AARCH64_FLAGS = {
    "__ARM_NEON": "asimd", "__ARM_FEATURE_DOTPROD": "asimddp", "__ARM_FEATURE_MATMUL_INT8": "i8mm",
    "__ARM_FEATURE_FP16_VECTOR_ARITHMETIC": "asimdhp", "__ARM_FEATURE_BF16_VECTOR_ARITHMETIC": "bf16",
    "__ARM_FEATURE_SVE": "sve", "__ARM_FEATURE_SVE2": "sve2", "__ARM_FEATURE_SME": "sme",
}

# the macro that names a build's architecture -> its table, and what platform.machine()
# says on such a machine
ARCHITECTURES = {
    "__x86_64__": (X86_FLAGS, ("x86_64", "amd64")),
    "__aarch64__": (AARCH64_FLAGS, ("aarch64", "arm64")),
}


class UnsupportedCPUError(ImportError):
    """This build uses instructions the running CPU does not have."""


def cpu_flags(cpuinfo_text: str) -> Set[str]:
    """The flags every processor in /proc/cpuinfo text advertises ("flags" on x86,
    "Features" on ARM; cores of a hybrid CPU may differ, and a thread may run on any)."""
    common: Optional[Set[str]] = None
    for line in cpuinfo_text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            common = flags if common is None else common & flags
    return common or set()


def read_cpu_flags(path: str = CPUINFO) -> Optional[Set[str]]:
    """The running CPU's flags; None where there is no /proc/cpuinfo or it names none."""
    try:
        # every import reads it: nothing in it may stop the import (odd bytes included)
        with open(path, encoding="utf-8", errors="replace") as f:
            flags = cpu_flags(f.read())
    except (OSError, ValueError):
        return None
    return flags or None


def required_flags(macros: Iterable[str], build_cpu_flags: Optional[str] = None) -> List[str]:
    """The /proc/cpuinfo flags that a build with these compiler macros needs, in the
    order of the tables (oldest instruction sets first). For a native build,
    build_cpu_flags (the build machine's /proc/cpuinfo flags) leaves out the names its
    kernel did not know: its CPU had them (the compiler found them), so a missing name
    there means a kernel older than the CPU, and no machine can be checked for it."""
    macros = set(macros)
    table = next((table for arch, (table, _) in ARCHITECTURES.items() if arch in macros), {})
    named = set(build_cpu_flags.split()) if build_cpu_flags is not None else None
    return [flag for macro, flag in table.items() if macro in macros and (named is None or flag in named)]


def missing_flags(macros: Iterable[str], advertised: Set[str], build_cpu_flags: Optional[str] = None) -> List[str]:
    return [flag for flag in required_flags(macros, build_cpu_flags) if flag not in advertised]


def build_requirements() -> Tuple[Optional[Tuple[str, ...]], str, Optional[str]]:
    """What this build recorded (_build_cpu.py): the instruction-set macros, the compiler
    flags, and for a native build the build machine's CPU flags; (None, "", None) for a
    build that wrote none (nothing to check)."""
    try:
        from .. import _build_cpu
    except ImportError:
        return None, "", None
    return _build_cpu.MACROS, _build_cpu.COMPILER_FLAGS, _build_cpu.BUILD_CPU_FLAGS


def _machine_matches(macros: Iterable[str]) -> bool:
    machine = platform.machine().lower()
    macros = set(macros)
    return any(arch in macros and machine in machines for arch, (_, machines) in ARCHITECTURES.items())


def check(macros: Optional[Iterable[str]] = None, compiler_flags: str = "", cpuinfo: str = CPUINFO,
          build_cpu_flags: Optional[str] = None) -> None:
    """Raise UnsupportedCPUError when the running CPU lacks an instruction set of this
    build (by default what was written at build time, against /proc/cpuinfo)."""
    if os.environ.get(SKIP_VARIABLE, "") not in ("", "0"):
        return
    if macros is None:
        macros, compiler_flags, build_cpu_flags = build_requirements()
    if not macros or not _machine_matches(macros):
        return
    advertised = read_cpu_flags(cpuinfo)
    if advertised is None:
        return
    missing = missing_flags(macros, advertised, build_cpu_flags)
    if missing:
        raise UnsupportedCPUError(_message(missing, compiler_flags, cpu_model(cpuinfo)))


def _message(missing: List[str], compiler_flags: str, model: str) -> str:
    them = "it" if len(missing) == 1 else "them"
    flags = f" ({compiler_flags})" if compiler_flags else ""
    return (f"selfextend-gguf was compiled for a CPU with {', '.join(missing)}{flags}, and this CPU "
            f"({model}) does not advertise {them}: its native code would stop Python with an illegal "
            f"instruction. Build it on this machine (pip install --force-reinstall --no-cache-dir <source>), "
            f"or build once for several machines with CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" (README \"A build for "
            f"other machines\"). If this CPU does have {them} (a kernel older than the CPU may not name newer "
            f"flags), set {SKIP_VARIABLE}=1 to load it anyway.")


def cpu_model(path: str = CPUINFO) -> str:
    """The running CPU's name (Linux), else what the platform module knows."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except (OSError, ValueError):
        pass
    return platform.processor() or platform.machine()
