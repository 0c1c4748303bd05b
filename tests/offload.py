"""Where the tests' models run. SELFEXTEND_TEST_N_GPU_LAYERS=-1 offloads every layer: the
device suite (scripts/device_suite.sh: a Vulkan build, Mesa's lavapipe where there is no
GPU) and the CUDA check (scripts/check_gpu.sh). Unset or 0: the CPU.

Tests of the device suite pass N_GPU_LAYERS to every model they load (or use core_model),
so that the same test checks the CPU build in the CPU suite and the device in the device
suite."""

import os

N_GPU_LAYERS = int(os.environ.get("SELFEXTEND_TEST_N_GPU_LAYERS", "0"))


def core_model(path, n_gpu_layers=None):
    """A _core.Model of the file at path with N_GPU_LAYERS offloaded (or n_gpu_layers)."""
    from selfextend_gguf import _core

    options = _core.ModelOptions()
    options.n_gpu_layers = N_GPU_LAYERS if n_gpu_layers is None else n_gpu_layers
    return _core.Model(str(path), options)


def accelerators():
    """The devices other than the CPU that this build and machine offer (names)."""
    from selfextend_gguf import system_info

    return [d["name"] for d in system_info()["devices"] if d.get("type") != "cpu"]


def on_device():
    """Whether this run offloads to a device: the device suite on a build that offers one."""
    return N_GPU_LAYERS != 0 and bool(accelerators())
