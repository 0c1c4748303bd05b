"""How close the engine must come to a reference on the device the tests run on.

On the CPU, a fixed tolerance. On a GPU (SELFEXTEND_TEST_N_GPU_LAYERS, scripts/check_gpu.sh)
llama.cpp's own products of f32 matrices round more: ggml's CUDA backend multiplies f32
matrices of 4 or more columns in TF32 (cuBLAS handles in CUBLAS_TF32_TENSOR_OP_MATH, its
mmf kernels with tf32 mma), vanilla attention and the weights included. Measured on an
H100: Self-Extend's logits 0.007-0.063 from the float64 reference when prompts went in
batches, within 1e-3 one token at a time (matrix-vector products stay f32). There a
comparison takes as its scale the device's error on the same work with nothing of
Self-Extend in it: vanilla attention against its own float64 reference, or, in the
per-layer check, the same capture with G = 1 (Algorithm 1 is then plain attention).
A wrong rotation or position stays far outside (the tests also assert that Self-Extend is
more than 0.1 away from vanilla attention, and that the per-layer check fails on a wrong
rotation)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from engine_logits import engine_logits
from offload import N_GPU_LAYERS
from reference import forward

# how many times the device's own error a comparison may be off by: Self-Extend beyond
# the window has two logit products (near and far keys) where vanilla attention has one
DEVICE_ERROR_FACTOR = 3.0


def tolerance(tol: float, device_error: Callable[[], float]) -> float:
    """tol on the CPU; offloaded, the larger of tol and DEVICE_ERROR_FACTOR times
    device_error() (called only then: it runs the engine again)."""
    if not N_GPU_LAYERS:
        return tol
    return max(tol, DEVICE_ERROR_FACTOR * device_error())


def vanilla_error(model, tokens, chunks=None, **options) -> Callable[[], float]:
    """The device's error on vanilla attention: its logits for tokens (fed in the same
    chunks, with the same options) against the float64 reference."""
    def measure() -> float:
        got = engine_logits(model.path, tokens, chunks, **dict(options, group_size=1))
        return float(np.abs(got - forward(model, tokens)).max())
    return measure
