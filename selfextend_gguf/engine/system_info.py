"""`selfextend_gguf.system_info()` and `selfextend-gguf info`: what users paste into a
bug report. The package version, the llama.cpp pin, how the extension was built (its
compiler, GGML_NATIVE, AMX), the CPU features and backends compiled in, and what the
CPU running it advertises."""

from __future__ import annotations

import platform
import sys
from typing import Any, Dict, List, Optional

from .. import _core
from . import cpu_check

# CPU flags worth seeing next to the compiled features (the AMX crash of issue 11
# was a CPU that advertised amx_* without being able to run it)
_NOTABLE_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                      "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")


def _cpu_flags() -> List[str]:
    """Notable flags the running CPU advertises (Linux; empty elsewhere)."""
    flags = cpu_check.read_cpu_flags() or set()
    return [flag for flag in _NOTABLE_CPU_FLAGS if flag in flags]


def _required_flags() -> Optional[List[str]]:
    """The CPU flags this build needs (cpu_check); None where the build recorded none."""
    macros, _, build_cpu_flags = cpu_check.build_requirements()
    return None if macros is None else cpu_check.required_flags(macros, build_cpu_flags)


def system_info() -> Dict[str, Any]:
    """A dict: version, python, platform, llama_cpp (the pin), build (compiler, flags),
    compiled_features (llama.cpp's system-info string), backends (each with its compiled
    features), devices (each with its type, memory in bytes and extra buffer types), cpu (model, notable flags, and
    the flags this build needs: cpu_check)."""
    from .. import __version__

    build = _core.build_info()
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "llama_cpp": build["llama_cpp"],
        "build": build["build_flags"],
        "compiled_features": build["system_info"].strip(),
        "backends": build["backends"],
        "devices": build["devices"],
        "cpu": {"model": cpu_check.cpu_model(), "advertised": _cpu_flags(), "required": _required_flags()},
    }


def _no_device_hint(info: Dict[str, Any]) -> Optional[str]:
    """What to do when the build has a GPU backend that found no device."""
    names = [d["name"] for d in info["devices"]]
    if any(b["name"] == "Vulkan" for b in info["backends"]) and not any(n.startswith("Vulkan") for n in names):
        return ("no Vulkan device: ggml-vulkan found no GPU with a Vulkan driver. A Vulkan device that runs "
                "on the CPU (Mesa's lavapipe, for testing) is used only where GGML_VK_VISIBLE_DEVICES names it "
                "(GGML_VK_VISIBLE_DEVICES=0)")
    return None


def format_system_info(info: Dict[str, Any]) -> str:
    lines = [
        f"selfextend-gguf {info['version']} (Python {info['python']}, {info['platform']})",
        f"llama.cpp:  {info['llama_cpp']}",
        f"build:      {info['build']}",
        f"compiled:   {info['compiled_features']}",
    ]
    for backend in info["backends"]:
        features = ", ".join(f"{k}={v}" for k, v in backend["features"].items()) or "-"
        lines.append(f"backend:    {backend['name']}: {features}")
    for device in info["devices"]:
        extra = ", ".join(device["extra_buffer_types"]) or "none"
        memory = f"{device['memory_total'] / 2**30:.1f} GiB, " if device.get("memory_total") else ""
        error = f"; not answering: {device['error']}" if device.get("error") else ""
        lines.append(f"device:     {device['name']} ({device['description']}); {memory}"
                     f"extra buffer types: {extra}{error}")
    hint = _no_device_hint(info)
    if hint:
        lines.append(f"device:     {hint}")
    cpu = info["cpu"]
    lines.append(f"cpu:        {cpu['model']}; advertises: {' '.join(cpu['advertised']) or '-'}")
    required = cpu["required"]
    needs = "not recorded" if required is None else " ".join(required) or "nothing beyond the architecture's baseline"
    lines.append(f"needs:      {needs}")
    return "\n".join(lines)
