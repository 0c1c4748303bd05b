"""Tiny models for the app-facing tests: a vocabulary with chat, tool-call and FIM
markers as single special tokens (as real vocabularies have them), and a LoRA adapter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiny_models import N_SPECIAL, TinyConfig, TinyModel, write_tiny_model

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "[TOOL_CALLS]",
                  "<fim_prefix>", "<fim_suffix>", "<fim_middle>")


def write_app_model(directory: Path) -> TinyModel:
    """A tiny llama with a 512-token trained context and SPECIAL_TOKENS."""
    return write_tiny_model(directory, TinyConfig(arch="llama", n_ctx_train=512, seed=5,
                                                  special_tokens=SPECIAL_TOKENS), name="tiny-app.gguf")


def non_ascii_ban(model: TinyModel) -> dict:
    """A logit_bias that keeps byte tokens >= 0x80 from being drawn. Random weights over a
    byte vocabulary emit byte sequences that are not UTF-8, which llama.cpp's grammar
    (it works on code points and reads a stray byte as one) lets through; real
    vocabularies do not have that problem, so the grammar tests keep to ASCII."""
    first_byte = 256 - model.config.n_byte_tokens
    return {N_SPECIAL + b - first_byte: float("-inf") for b in range(max(0x80, first_byte), 256)}


def ascii_only(model: TinyModel) -> dict:
    """A logit_bias for plain ASCII text without spaces: no bytes >= 0x80, no control or
    special tokens (end of text included), and no space (this SentencePiece vocabulary
    writes a space as U+2581, three bytes), so that generated text tokenizes back to the
    same ids."""
    bias = non_ascii_ban(model)
    bias[N_SPECIAL + 0x20 - (256 - model.config.n_byte_tokens)] = float("-inf")
    bias.update({t: float("-inf") for t in range(N_SPECIAL)})
    first_special = N_SPECIAL + model.config.n_byte_tokens
    bias.update({first_special + i: float("-inf") for i in range(len(model.config.special_tokens))})
    return bias


def write_lora(directory: Path, base: TinyModel, scale_b: float, name: str) -> Path:
    """A rank-4 LoRA adapter GGUF on every layer's attn_q (lora_b = 0 when scale_b = 0)."""
    import gguf

    cfg = base.config
    rng = np.random.default_rng(11)
    path = Path(directory) / name
    writer = gguf.GGUFWriter(str(path), cfg.arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 4.0)
    rank = 4
    for i in range(cfg.n_layer):
        a = (rng.standard_normal((rank, cfg.n_embd)) / np.sqrt(cfg.n_embd)).astype(np.float32)
        b = (scale_b * rng.standard_normal((cfg.n_embd, rank))).astype(np.float32)
        writer.add_tensor(f"blk.{i}.attn_q.weight.lora_a", a)
        writer.add_tensor(f"blk.{i}.attn_q.weight.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
