"""The default build runs on any x86-64 CPU it was built on: ggml's AMX kernels are
compiled in only on request (some CPUs advertise AMX and fault on its first tile
instruction), and `selfextend-gguf info` says what the build contains."""

import json
import subprocess
import sys

import pytest

from selfextend_gguf import system_info


def test_default_build_has_no_amx_path():
    info = system_info()
    if "SELFEXTEND_AMX=ON" in info["build"]:
        pytest.skip("this build asked for AMX (-DSELFEXTEND_AMX=ON)")
    assert "SELFEXTEND_AMX=OFF" in info["build"]
    # llama.cpp's own report lists AMX_INT8 = 1 when the AMX kernels are compiled in
    assert "AMX" not in info["compiled_features"]
    for backend in info["backends"]:
        assert not [name for name in backend["features"] if "AMX" in name], backend
    # and the CPU device would offer the AMX weight buffer type (what the default
    # model's Q4_1 weights took on the machine that crashed)
    for device in info["devices"]:
        assert "AMX" not in device["extra_buffer_types"], device


def test_system_info_names_version_pin_and_backends():
    import selfextend_gguf

    info = system_info()
    assert info["version"] == selfextend_gguf.__version__
    assert "0c1e57098" in info["llama_cpp"]
    assert any(b["name"] == "CPU" for b in info["backends"])
    assert any(d["name"] == "CPU" for d in info["devices"])
    assert "GGML_NATIVE=" in info["build"]


def test_info_command_prints_the_build():
    text = subprocess.run([sys.executable, "-m", "selfextend_gguf", "info"], check=True,
                          capture_output=True, text=True).stdout
    assert "llama.cpp:" in text and "0c1e57098" in text
    assert "backend:    CPU" in text and "SELFEXTEND_AMX=" in text
    data = json.loads(subprocess.run([sys.executable, "-m", "selfextend_gguf", "info", "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    assert data["llama_cpp"] == system_info()["llama_cpp"]
