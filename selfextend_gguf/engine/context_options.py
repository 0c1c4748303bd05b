"""Validated llama.cpp context settings, built from llama_cpp.Llama-style arguments."""

from __future__ import annotations

import os
from typing import Optional, Union

from .. import _core

# ggml type ids, as llama_cpp's GGML_TYPE_* constants
GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}
FLOAT_TYPES = {0, 1, 30}

# llama_rope_scaling_type
ROPE_SCALING = {"unspecified": -1, "none": 0, "linear": 1, "yarn": 2}

# SELFEXTEND_GGUF_FLASH_KERNEL: a flash-attention form asked for by name (csrc/se-plan.h
# names them and reads the variable when it plans a graph; unset: the form chosen for the
# device)
FLASH_KERNEL_FORMS = tuple(_core.FLASH_KERNEL_FORMS)


def named_id(value: Union[int, str], table: dict, name: str) -> int:
    """A llama.cpp enum given by name (a key of table) or by its id."""
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"{name} must be one of {', '.join(table)}, got {value!r}")
        return table[value]
    if isinstance(value, bool) or value not in table.values():
        raise ValueError(f"{name} must be one of {', '.join(table)} or its id, got {value!r}")
    return int(value)


def cache_type(value: Union[str, int, None], name: str, default: str = "f16") -> int:
    if value is None:
        value = default
    if isinstance(value, str):
        key = value.lower()
        if key not in GGML_TYPES:
            raise ValueError(f"{name} must be one of {', '.join(GGML_TYPES)} (or a ggml type id), got {value!r}")
        return GGML_TYPES[key]
    if isinstance(value, int) and not isinstance(value, bool) and value in GGML_TYPES.values():
        return value
    raise ValueError(f"{name} must be one of {', '.join(GGML_TYPES)} (or a ggml type id), got {value!r}")


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def check_flash_kernel_variable() -> None:
    """A misspelt form would otherwise silently measure the default form."""
    value = os.environ.get("SELFEXTEND_GGUF_FLASH_KERNEL")
    if value and value not in FLASH_KERNEL_FORMS:
        raise ValueError(f"SELFEXTEND_GGUF_FLASH_KERNEL must be one of {', '.join(FLASH_KERNEL_FORMS)} "
                         f"(or unset, for the form chosen for the device), got {value!r}")


# llama.cpp's -fa values and their llama_flash_attn_type
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}


def flash_attn_type(value: Union[bool, str, None]) -> int:
    """flash_attn as llama.cpp takes it: True/"on", False/"off", or None/"auto" (the
    default, as llama.cpp's -fa auto: on where the devices of the layers run it; on the
    CPU, Self-Extend's own flash kernel)."""
    if value is None:
        return FLASH_ATTN["auto"]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in FLASH_ATTN.values():
        return value
    if isinstance(value, str) and value in FLASH_ATTN:
        return FLASH_ATTN[value]
    raise ValueError(f"flash_attn must be True, False, 'on', 'off' or 'auto' (or None for auto), got {value!r}")


def positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def build(n_ctx: int, n_batch: int, n_ubatch: int, n_threads: Optional[int], n_threads_batch: Optional[int],
          type_k, type_v, flash_attn: Union[bool, str, None], n_seq_max: int = 1,
          rope_scaling_type: Union[int, str, None] = None, rope_freq_base: float = 0.0,
          rope_freq_scale: float = 0.0, yarn_ext_factor: float = -1.0,
          yarn_orig_ctx: int = 0, yarn_attn_factor: Optional[float] = None,
          yarn_beta_fast: Optional[float] = None, yarn_beta_slow: Optional[float] = None,
          embedding: bool = False, pooling_type: int = -1, offload_kqv: bool = True,
          op_offload: Optional[bool] = None, swa_full: Optional[bool] = None) -> "_core.ContextOptions":
    check_flash_kernel_variable()
    o = _core.ContextOptions()
    o.n_ctx = positive_int(n_ctx, "n_ctx", 1)
    o.n_batch = min(positive_int(n_batch, "n_batch"), o.n_ctx)
    o.n_ubatch = min(positive_int(n_ubatch, "n_ubatch"), o.n_batch)
    o.n_seq_max = positive_int(n_seq_max, "n_seq_max")
    o.n_threads = positive_int(n_threads if n_threads is not None else default_threads(), "n_threads")
    o.n_threads_batch = positive_int(n_threads_batch if n_threads_batch is not None else o.n_threads,
                                     "n_threads_batch")
    o.type_k = cache_type(type_k, "type_k")
    o.type_v = cache_type(type_v, "type_v")
    o.flash_attn_type = flash_attn_type(flash_attn)
    if o.type_v not in FLOAT_TYPES and o.flash_attn_type == FLASH_ATTN["off"]:
        raise ValueError("a quantized V cache (type_v) needs flash attention in llama.cpp; "
                         "use type_v='f16' or 'f32', or leave flash_attn on or 'auto'")
    if isinstance(rope_scaling_type, str):
        if rope_scaling_type not in ROPE_SCALING:
            raise ValueError(f"rope_scaling_type must be one of {', '.join(ROPE_SCALING)}")
        rope_scaling_type = ROPE_SCALING[rope_scaling_type]
    o.rope_scaling_type = -1 if rope_scaling_type is None else int(rope_scaling_type)
    o.rope_freq_base = float(rope_freq_base)
    o.rope_freq_scale = float(rope_freq_scale)
    o.yarn_ext_factor = float(yarn_ext_factor)
    o.yarn_orig_ctx = int(yarn_orig_ctx)
    # None: llama.cpp's value (from the model for YaRN)
    o.yarn_attn_factor = -1.0 if yarn_attn_factor is None else float(yarn_attn_factor)
    o.yarn_beta_fast = -1.0 if yarn_beta_fast is None else float(yarn_beta_fast)
    o.yarn_beta_slow = -1.0 if yarn_beta_slow is None else float(yarn_beta_slow)
    o.embeddings = bool(embedding)
    o.pooling_type = int(pooling_type)
    o.offload_kqv = bool(offload_kqv)
    if op_offload is not None:
        o.op_offload = bool(op_offload)
    if swa_full is not None:
        o.swa_full = bool(swa_full)
    return o
