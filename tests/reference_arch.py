"""NumPy forward passes of the tiny phi2 and gemma2 models (tests/tiny_arch_models.py),
with Self-Extend as in the paper's Algorithm 1, for comparison with the engine's logits.

Written from llama.cpp's graphs (src/models/phi2.cpp, src/models/gemma2.cpp, build_attn
in src/llama-graph.cpp), not from the engine's code. RoPE and RMS norm come from
tests/reference.py. The weights and the scalar hyperparameters (norm epsilon, logit
soft-capping) are read back from the GGUF file with gguf.GGUFReader; the layer layout
(heads, rotated dims, which layers slide) comes from the ArchModel record.

Self-Extend, for query position i and key position j of a layer that takes it:
i - j < W: RoPE at i and j; otherwise RoPE at i // G + W - W // G and j // G; one
softmax over all visible keys. Which layers take it: phi2 all of them; gemma2 only the
global (non sliding-window) ones. Sliding-window layers keep plain RoPE and llama.cpp's
LLAMA_SWA_TYPE_STANDARD mask: key j is visible to query i iff 0 <= i - j < window.

phi2, per layer (parallel block, one layer norm feeds attention and MLP):
    h = LN(x) * w + b
    q, k, v = h W + b;  q, k roped (NEOX) on their first n_rot dims only;  q *= 1/sqrt(D)
    x = x + (softmax(q k^T) v) Wo + bo + (gelu(h Wup + bup)) Wdown + bdown
    logits = (LN(x) * w + b) Wout + bout
gemma2, per layer:
    x = token_embd[t] * sqrt(n_embd)
    h = rms(x) * w;  q, k, v = h W;  q, k roped (NEOX);  q *= 1/sqrt(head_dim)
    kq = cap * tanh(q k^T / cap)  (attention soft-capping, before the mask and softmax)
    x = x + rms(softmax(kq) v Wo) * w_post_attn
    x = x + rms((gelu(h2 Wgate) * (h2 Wup)) Wdown) * w_post_ffw,   h2 = rms(x) * w_ffn
    logits = 30 tanh((rms(x) * w) token_embd^T / 30)   (tied output, final soft-capping)

GELU: llama.cpp's CPU backend (GGML_GELU_FP16 in ggml-cpu/vec.h) computes the tanh GELU
through a table indexed by the input rounded to fp16, holding the result rounded to fp16
(inputs <= -10 give 0, >= 10 give x). gelu="ggml-cpu" reproduces that table lookup;
gelu="exact" is the tanh formula in f64 (what a GPU backend computes, up to f32)."""

from __future__ import annotations

from functools import lru_cache
import os
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from reference import attend, rms_norm, rope
from tiny_arch_models import ArchModel

SUPPORTED = ("phi2", "gemma2")


# --- reading the file back --------------------------------------------------------------

@lru_cache(maxsize=8)
def _read_gguf(path: str, stamp: Tuple[int, int]) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    weights = {}
    for t in reader.tensors:
        # GGUF dims are (in, out); numpy's shape from the reader is already (out, in)
        a = np.asarray(t.data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])
        weights[t.name] = a.astype(np.float64)
    meta = {}
    for name, f in reader.fields.items():
        if len(f.data) == 1 and not name.startswith("tokenizer."):
            value = f.parts[f.data[0]]
            if value.dtype.kind in "fiub" and value.size == 1:
                meta[name] = value.item()
    return weights, meta


def read_model(m: ArchModel) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    """(weights in f64, keyed by GGUF tensor name; scalar metadata) of m's file."""
    st = os.stat(m.path)
    return _read_gguf(str(m.path), (st.st_mtime_ns, st.st_size))   # a rewritten file is read again


# --- building blocks --------------------------------------------------------------------

def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """ggml_norm (mean 0, variance 1 with eps) then * w + b: llama.cpp's LLM_NORM."""
    c = x - x.mean(axis=-1, keepdims=True)
    return c / np.sqrt(np.mean(c * c, axis=-1, keepdims=True) + eps) * w + b


def gelu(x: np.ndarray, mode: str = "ggml-cpu") -> np.ndarray:
    """The tanh-approximation GELU (ggml_gelu_f32); see the module docstring for mode."""
    def formula(v):
        return 0.5 * v * (1.0 + np.tanh(0.79788456080286535587989211986876 * v * (1.0 + 0.044715 * v * v)))

    if mode == "exact":
        return formula(x)
    if mode != "ggml-cpu":
        raise ValueError(f"gelu mode {mode!r}")
    x32 = x.astype(np.float32)
    table = formula(x32.astype(np.float16).astype(np.float64)).astype(np.float16).astype(np.float64)
    return np.where(x32 <= -10.0, 0.0, np.where(x32 >= 10.0, x32.astype(np.float64), table))


def rope_partial(x: np.ndarray, positions: np.ndarray, n_rot: int, base: float, style: str) -> np.ndarray:
    """ggml_rope_ext on x (T, heads, D): the first n_rot dims of each head rotate (NEOX
    pairs (m, m + n_rot/2), frequencies base^(-2m/n_rot)); the rest pass through."""
    out = x.copy()
    out[..., :n_rot] = rope(x[..., :n_rot], positions, base, style)
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, n_rot: int, base: float, style: str,
              q_scale: float, group_size: Optional[int] = None, neighbor_window: Optional[int] = None,
              swa_window: int = 0, softcap: float = 0.0) -> np.ndarray:
    """Causal attention of one sequence at positions 0..T-1. q (T, H, D), k and v
    (T, Hkv, D), not yet roped. group_size None: plain RoPE attention; else Self-Extend
    (Algorithm 1). swa_window > 0 masks keys at distance >= swa_window. softcap > 0:
    cap * tanh(logit / cap) on the scaled logits. Returns (T, H * D)."""
    pos = np.arange(q.shape[0])
    dist = pos[:, None] - pos[None, :]
    visible = dist >= 0
    if swa_window > 0:
        visible &= dist < swa_window
    q_n = rope_partial(q, pos, n_rot, base, style) * q_scale
    k_n = rope_partial(k, pos, n_rot, base, style)
    q_g = k_g = near = None
    if group_size is not None:
        G, W = group_size, neighbor_window
        q_g = rope_partial(q, pos // G + W - W // G, n_rot, base, style) * q_scale
        k_g = rope_partial(k, pos // G, n_rot, base, style)
        near = dist < W
    return attend(q_n, k_n, v, visible, q_g, k_g, near, softcap)


def _qkv(w: Dict[str, np.ndarray], p: str, h: np.ndarray, m: ArchModel):
    T = h.shape[0]
    q = h @ w[p + "attn_q.weight"].T + w.get(p + "attn_q.bias", 0.0)
    k = h @ w[p + "attn_k.weight"].T + w.get(p + "attn_k.bias", 0.0)
    v = h @ w[p + "attn_v.weight"].T + w.get(p + "attn_v.bias", 0.0)
    return (q.reshape(T, m.n_head, m.head_dim), k.reshape(T, m.n_head_kv, m.head_dim),
            v.reshape(T, m.n_head_kv, m.head_dim))


# --- the two architectures ----------------------------------------------------------------

def _phi2(m: ArchModel, tokens: np.ndarray, se_layers: Iterable[int], G, W, swa_window, n_rot, gelu_mode):
    w, meta = read_model(m)
    eps = float(meta["phi2.attention.layer_norm_epsilon"])
    x = w["token_embd.weight"][tokens]
    for il in range(m.n_layer):
        p = f"blk.{il}."
        h = layer_norm(x, w[p + "attn_norm.weight"], w[p + "attn_norm.bias"], eps)
        q, k, v = _qkv(w, p, h, m)
        se = il in se_layers
        att = attention(q, k, v, n_rot, m.rope_base, m.rope_type, 1.0 / np.sqrt(m.head_dim),
                        G if se else None, W if se else None, swa_window if il in m.swa_layers else 0)
        att = att @ w[p + "attn_output.weight"].T + w[p + "attn_output.bias"]
        ffn = gelu(h @ w[p + "ffn_up.weight"].T + w[p + "ffn_up.bias"], gelu_mode)
        ffn = ffn @ w[p + "ffn_down.weight"].T + w[p + "ffn_down.bias"]
        x = x + att + ffn
    x = layer_norm(x, w["output_norm.weight"], w["output_norm.bias"], eps)
    return x @ w["output.weight"].T + w["output.bias"]


def _gemma2(m: ArchModel, tokens: np.ndarray, se_layers: Iterable[int], G, W, swa_window, n_rot, gelu_mode):
    w, meta = read_model(m)
    eps = float(meta["gemma2.attention.layer_norm_rms_epsilon"])
    attn_cap = float(meta["gemma2.attn_logit_softcapping"])
    final_cap = float(meta["gemma2.final_logit_softcapping"])
    # f_attention_scale: 1/sqrt(head_dim) unless the model is gemma2-27B (46 layers)
    assert m.n_layer != 46
    q_scale = 1.0 / np.sqrt(m.head_dim)
    x = w["token_embd.weight"][tokens] * np.sqrt(m.n_embd)
    for il in range(m.n_layer):
        p = f"blk.{il}."
        h = rms_norm(x, w[p + "attn_norm.weight"], eps)
        q, k, v = _qkv(w, p, h, m)
        se = il in se_layers
        att = attention(q, k, v, n_rot, m.rope_base, m.rope_type, q_scale,
                        G if se else None, W if se else None,
                        swa_window if il in m.swa_layers else 0, attn_cap)
        att = att @ w[p + "attn_output.weight"].T
        x = x + rms_norm(att, w[p + "post_attention_norm.weight"], eps)
        h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
        ffn = gelu(h @ w[p + "ffn_gate.weight"].T, gelu_mode) * (h @ w[p + "ffn_up.weight"].T)
        ffn = ffn @ w[p + "ffn_down.weight"].T
        x = x + rms_norm(ffn, w[p + "post_ffw_norm.weight"], eps)
    x = rms_norm(x, w["output_norm.weight"], eps)
    logits = x @ w["token_embd.weight"].T      # tied output
    return final_cap * np.tanh(logits / final_cap)


def self_extend_layers(m: ArchModel) -> Tuple[int, ...]:
    """The layers where llama.cpp's graph has global RoPE attention."""
    return tuple(il for il in range(m.n_layer) if il not in m.swa_layers and il not in m.unroped_layers)


def forward(m: ArchModel, tokens: Sequence[int], group_size: Optional[int] = None,
            neighbor_window: Optional[int] = None, *, se_layers: Optional[Iterable[int]] = None,
            swa_window: Optional[int] = None, n_rot: Optional[int] = None,
            gelu_mode: str = "ggml-cpu") -> np.ndarray:
    """Logits (T, n_vocab) of m for tokens at positions 0..T-1. group_size None: vanilla.
    se_layers (default: the global roped layers), swa_window and n_rot (default: the
    model's) can be changed to build deliberately wrong references."""
    if m.arch not in SUPPORTED:
        raise ValueError(f"no full-model reference for {m.arch!r}; supported: {SUPPORTED}")
    if (group_size is None) != (neighbor_window is None):
        raise ValueError("give both group_size and neighbor_window, or neither")
    layers = set(self_extend_layers(m) if se_layers is None else se_layers)
    window = m.swa_window if swa_window is None else swa_window
    rot = m.n_rot if n_rot is None else n_rot
    build = _phi2 if m.arch == "phi2" else _gemma2
    return build(m, np.asarray(tokens), layers, group_size, neighbor_window, window, rot, gelu_mode)
