"""A NumPy forward pass of the tiny models with Self-Extend as in the paper's Algorithm 1.

Written from the formula, independently of the C++ code: for query position i and key
position j, neighbor logits (i - j < W) use RoPE at i and j; grouped logits use RoPE at
i // G + W - W // G and j // G; both merge before one softmax. group_size=None gives
plain (vanilla) attention."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from tiny_models import TinyModel


def rope(x: np.ndarray, positions: np.ndarray, base: float, style: str,
         freq_factors: Optional[np.ndarray] = None) -> np.ndarray:
    """x: (T, heads, D) rotated by positions (T,). style 'norm' rotates adjacent pairs
    (2m, 2m+1) as llama.cpp's llama arch; 'neox' rotates (m, m + D/2)."""
    T, H, D = x.shape
    half = D // 2
    theta = base ** (-2.0 * np.arange(half) / D)
    if freq_factors is not None:
        theta = theta / freq_factors
    ang = positions[:, None].astype(np.float64) * theta[None, :]   # (T, half)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = x.copy()
    if style == "norm":
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
    else:
        a, b = x[..., :half], x[..., half:]
        out[..., :half] = a * cos - b * sin
        out[..., half:] = a * sin + b * cos
    return out


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, visible: np.ndarray,
           q_g: Optional[np.ndarray] = None, k_g: Optional[np.ndarray] = None, near: Optional[np.ndarray] = None,
           softcap: float = 0.0, sinks: Optional[np.ndarray] = None) -> np.ndarray:
    """One softmax per query over its visible keys, for queries q (T, H, D) that carry the
    logit scale, keys k (N, Hkv, D) and values v (N, Hkv, Dv); head h reads kv head
    h // (H / Hkv). With q_g and k_g, the logit of a key that is not `near` (T, N) its
    query is <q_g, k_g> instead (Algorithm 1's merge). softcap > 0: cap * tanh(logit / cap);
    sinks (H,): one more logit per head that takes probability but gives no value.
    Returns (T, H * Dv)."""
    T, H, _ = q.shape
    Hkv = k.shape[1]
    out = np.zeros((T, H, v.shape[2]))
    for h in range(H):
        kv = h // (H // Hkv)
        logits = q[:, h] @ k[:, kv].T
        if q_g is not None:
            logits = np.where(near, logits, q_g[:, h] @ k_g[:, kv].T)
        if softcap:
            logits = softcap * np.tanh(logits / softcap)
        logits = np.where(visible, logits, -np.inf)
        top = logits.max(axis=1, keepdims=True)
        if sinks is not None:
            top = np.maximum(top, sinks[h])
        p = np.exp(logits - top)
        denom = p.sum(axis=1, keepdims=True)
        if sinks is not None:
            denom = denom + np.exp(sinks[h] - top)
        out[:, h] = (p / denom) @ v[:, kv]
    return out.reshape(T, -1)


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def forward(model: TinyModel, tokens: Sequence[int], group_size: Optional[int] = None,
            neighbor_window: Optional[int] = None) -> np.ndarray:
    """Logits (T, n_vocab) for tokens at positions 0..T-1."""
    cfg, w = model.config, {k: v.astype(np.float64) for k, v in model.weights.items()}
    T = len(tokens)
    H, Hkv, D = cfg.n_head, cfg.n_head_kv, cfg.head_dim
    pos = np.arange(T)
    ff = w.get("rope_freqs.weight")

    G, W = group_size, neighbor_window
    grouped = G is not None
    near = None
    if grouped:
        pos_q_g = pos // G + W - W // G
        pos_k_g = pos // G
        near = (pos[:, None] - pos[None, :]) < W       # (i, j)
    causal = pos[None, :] <= pos[:, None]

    x = w["token_embd.weight"][np.asarray(tokens)]
    scale = 1.0 / np.sqrt(D)
    for il in range(cfg.n_layer):
        p = f"blk.{il}."
        h = rms_norm(x, w[p + "attn_norm.weight"], cfg.rms_eps)
        q = h @ w[p + "attn_q.weight"].T + w.get(p + "attn_q.bias", 0.0)
        k = h @ w[p + "attn_k.weight"].T + w.get(p + "attn_k.bias", 0.0)
        v = h @ w[p + "attn_v.weight"].T + w.get(p + "attn_v.bias", 0.0)
        q, k, v = q.reshape(T, H, D), k.reshape(T, Hkv, D), v.reshape(T, Hkv, D)

        q_n = rope(q, pos, cfg.rope_base, cfg.rope_type, ff) * scale
        k_n = rope(k, pos, cfg.rope_base, cfg.rope_type, ff)
        q_g = k_g = None
        if grouped:
            q_g = rope(q, pos_q_g, cfg.rope_base, cfg.rope_type, ff) * scale
            k_g = rope(k, pos_k_g, cfg.rope_base, cfg.rope_type, ff)
        out = attend(q_n, k_n, v, causal, q_g, k_g, near)
        x = x + out @ w[p + "attn_output.weight"].T

        h = rms_norm(x, w[p + "ffn_norm.weight"], cfg.rms_eps)
        gate = h @ w[p + "ffn_gate.weight"].T
        up = h @ w[p + "ffn_up.weight"].T
        x = x + ((gate / (1.0 + np.exp(-gate))) * up) @ w[p + "ffn_down.weight"].T

    return rms_norm(x, w["output_norm.weight"], cfg.rms_eps) @ w["output.weight"].T
