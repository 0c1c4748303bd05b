"""Validated model-loading settings (llama_model_params), built from llama_cpp.Llama's
constructor arguments."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

from .. import _core
from .context_options import named_id

# llama_split_mode
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2}


def build(n_gpu_layers: int = 0, split_mode: Union[int, str] = 1, main_gpu: int = 0,
          tensor_split: Optional[Sequence[float]] = None, vocab_only: bool = False, use_mmap: bool = True,
          use_mlock: bool = False, kv_overrides: Optional[Dict[str, Union[bool, int, float, str]]] = None,
          check_tensors: bool = False, devices: Optional[Sequence[str]] = None) -> "_core.ModelOptions":
    """devices: the names of the devices layers may go to (None: every registered one)."""
    o = _core.ModelOptions()
    if isinstance(n_gpu_layers, bool) or not isinstance(n_gpu_layers, int):
        raise ValueError(f"n_gpu_layers must be an integer (-1: all), got {n_gpu_layers!r}")
    o.n_gpu_layers = n_gpu_layers
    o.split_mode = named_id(split_mode, SPLIT_MODES, "split_mode")
    if isinstance(main_gpu, bool) or not isinstance(main_gpu, int) or main_gpu < 0:
        raise ValueError(f"main_gpu must be a device index >= 0, got {main_gpu!r}")
    o.main_gpu = main_gpu
    if tensor_split is not None:
        split = [float(x) for x in tensor_split]
        if any(x < 0 for x in split) or not any(x > 0 for x in split):
            raise ValueError("tensor_split must be non-negative proportions, at least one of them > 0")
        o.tensor_split = split
    o.vocab_only = bool(vocab_only)
    o.use_mmap = bool(use_mmap)
    o.use_mlock = bool(use_mlock)
    o.check_tensors = bool(check_tensors)
    if kv_overrides:
        if not isinstance(kv_overrides, dict):
            raise ValueError("kv_overrides must be a dict of GGUF metadata key -> bool, int, float or str")
        o.kv_overrides = list(kv_overrides.items())
    if devices is not None:
        o.use_devices = True
        o.devices = list(devices)
    return o
