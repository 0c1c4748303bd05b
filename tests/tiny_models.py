"""Tiny random-weight GGUF models, written with the `gguf` package, and their weights
kept in NumPy for the reference forward pass (tests/reference.py).

Vocabulary: a llama (SentencePiece) tokenizer of byte tokens <0x00>..<0xFF> plus
<unk>, <s>, </s>, so any text tokenizes. Weights are f32 in GGUF orientation (numpy
shape (out, in))."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

N_SPECIAL = 3  # <unk>, <s>, </s>
N_VOCAB = N_SPECIAL + 256


@dataclass
class TinyConfig:
    arch: str = "llama"          # "llama" (NORM rope) or "qwen2" (NEOX rope, q/k/v biases)
    n_ctx_train: int = 64
    n_embd: int = 256
    n_head: int = 4
    n_head_kv: int = 2           # GQA: 2 query heads per KV head
    n_layer: int = 2
    n_ff: int = 384
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    rope_freq_factors: bool = False  # llama3-style per-dimension factors (rope_freqs.weight)
    seed: int = 0
    n_byte_tokens: int = 256     # fewer: a broken vocabulary, bytes from 0x00 on are missing
    n_extra_tokens: int = 0      # unused tokens appended, for a large vocabulary
    # control tokens appended after the bytes (chat and tool-call markers, FIM tokens);
    # "<fim_prefix>", "<fim_suffix>" and "<fim_middle>" become the vocabulary's FIM tokens
    special_tokens: Tuple[str, ...] = ()

    @property
    def n_vocab(self) -> int:
        return N_SPECIAL + self.n_byte_tokens + len(self.special_tokens) + self.n_extra_tokens

    def special_token_id(self, text: str) -> int:
        return N_SPECIAL + self.n_byte_tokens + self.special_tokens.index(text)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def rope_type(self) -> str:
        return "neox" if self.arch == "qwen2" else "norm"


@dataclass
class TinyModel:
    config: TinyConfig
    path: Path
    weights: Dict[str, np.ndarray] = field(default_factory=dict)


def _random_weights(cfg: TinyConfig) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    d, dkv, ff = cfg.n_embd, cfg.head_dim * cfg.n_head_kv, cfg.n_ff

    def mat(rows, cols, scale=1.0):
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    w: Dict[str, np.ndarray] = {
        "token_embd.weight": rng.standard_normal((cfg.n_vocab, d)).astype(np.float32),
        "output_norm.weight": (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32),
        "output.weight": mat(cfg.n_vocab, d, 2.0),
    }
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        # large q/k scales give peaked attention, so position errors show in the logits
        w[p + "attn_norm.weight"] = (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[p + "attn_q.weight"] = mat(d, d, 3.0)
        w[p + "attn_k.weight"] = mat(dkv, d, 3.0)
        w[p + "attn_v.weight"] = mat(dkv, d)
        w[p + "attn_output.weight"] = mat(d, d)
        w[p + "ffn_norm.weight"] = (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[p + "ffn_gate.weight"] = mat(ff, d)
        w[p + "ffn_up.weight"] = mat(ff, d)
        w[p + "ffn_down.weight"] = mat(d, ff)
        if cfg.arch == "qwen2":
            w[p + "attn_q.bias"] = (0.5 * rng.standard_normal(d)).astype(np.float32)
            w[p + "attn_k.bias"] = (0.5 * rng.standard_normal(dkv)).astype(np.float32)
            w[p + "attn_v.bias"] = (0.5 * rng.standard_normal(dkv)).astype(np.float32)
    if cfg.rope_freq_factors:
        w["rope_freqs.weight"] = rng.uniform(1.0, 8.0, cfg.head_dim // 2).astype(np.float32)
    return w


def write_tiny_model(directory: Path, cfg: Optional[TinyConfig] = None, name: Optional[str] = None) -> TinyModel:
    import gguf

    cfg = cfg or TinyConfig()
    path = Path(directory) / (name or f"tiny-{cfg.arch}.gguf")
    weights = _random_weights(cfg)

    writer = gguf.GGUFWriter(str(path), cfg.arch)
    writer.add_name(f"tiny-{cfg.arch}")
    writer.add_context_length(cfg.n_ctx_train)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.n_ff)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_head_kv)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_base)
    writer.add_layer_norm_rms_eps(cfg.rms_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    _add_byte_tokenizer(writer, cfg.n_byte_tokens, cfg.n_extra_tokens, cfg.special_tokens)

    for tensor_name, array in weights.items():
        writer.add_tensor(tensor_name, array)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return TinyModel(cfg, path, weights)


def _add_byte_tokenizer(writer, n_byte_tokens: int = 256, n_extra_tokens: int = 0,
                        special_tokens: Tuple[str, ...] = ()) -> None:
    import gguf

    # the byte tokens kept are the last n_byte_tokens (so 'A' = 0x41 is missing from a
    # vocabulary of 90 byte tokens)
    first_byte = 256 - n_byte_tokens
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(first_byte, 256)] + \
             [t.encode() for t in special_tokens] + [f"<extra_{i}>".encode() for i in range(n_extra_tokens)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + \
            [gguf.TokenType.BYTE] * n_byte_tokens + [gguf.TokenType.CONTROL] * len(special_tokens) + \
            [gguf.TokenType.UNUSED] * n_extra_tokens
    first_special = N_SPECIAL + n_byte_tokens
    for text, key in (("<fim_prefix>", "tokenizer.ggml.fim_pre_token_id"),
                      ("<fim_suffix>", "tokenizer.ggml.fim_suf_token_id"),
                      ("<fim_middle>", "tokenizer.ggml.fim_mid_token_id")):
        if text in special_tokens:
            writer.add_uint32(key, first_special + special_tokens.index(text))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)  # so that text maps to its bytes one to one
    writer.add_chat_template("chatml")


def write_tiny_gpt2(directory: Path, n_ctx_train: int = 64, n_embd: int = 64, n_layer: int = 1) -> Path:
    """A GPT-2 model: learned absolute positions, no RoPE, so no Self-Extend."""
    import gguf

    rng = np.random.default_rng(0)
    path = Path(directory) / "tiny-gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_name("tiny-gpt2")
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(4 * n_embd)
    writer.add_head_count(4)
    writer.add_layer_norm_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_byte_tokenizer(writer)

    def t(*shape):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    writer.add_tensor("token_embd.weight", t(N_VOCAB, n_embd))
    writer.add_tensor("position_embd.weight", t(n_ctx_train, n_embd))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("output_norm.bias", t(n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(p + "attn_norm.bias", t(n_embd))
        writer.add_tensor(p + "attn_qkv.weight", t(3 * n_embd, n_embd))
        writer.add_tensor(p + "attn_qkv.bias", t(3 * n_embd))
        writer.add_tensor(p + "attn_output.weight", t(n_embd, n_embd))
        writer.add_tensor(p + "attn_output.bias", t(n_embd))
        writer.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(p + "ffn_norm.bias", t(n_embd))
        writer.add_tensor(p + "ffn_up.weight", t(4 * n_embd, n_embd))
        writer.add_tensor(p + "ffn_up.bias", t(4 * n_embd))
        writer.add_tensor(p + "ffn_down.weight", t(n_embd, 4 * n_embd))
        writer.add_tensor(p + "ffn_down.bias", t(n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def byte_tokens(text: bytes) -> list:
    """The tiny vocabulary's ids for raw bytes (no BOS)."""
    return [N_SPECIAL + b for b in text]
