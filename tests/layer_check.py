"""The per-layer Self-Extend check, independent of the architecture.

The engine hands each Self-Extend layer's inputs and output to an eval callback
(`_core.ContextOptions.capture_layers`): the roped queries (times the layer's kq_scale),
the cache's keys and values (keys roped at their true positions) and the attention
output. This module computes Algorithm 1 of the paper in NumPy from those inputs and
compares: neighbor logits from the captured q and k as they are, grouped logits after a
further rotation of q by dq(i) = i//G + W - W//G - i and of k by dk(j) = j//G - j, one
softmax. Only the layer's RoPE (style, rotated dims, base, scale, factors) must be given."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from offload import N_GPU_LAYERS
from reference import attend, rope
from selfextend_gguf import _core


# the check's standard run on the tiny models (trained context 64): 4x that context, G and
# W within eq. 4, and the three ways of feeding a prompt that must all give Algorithm 1
N_TOKENS = 256
G, W = 6, 16
TOL = 1e-3
CHUNKS = {"one-shot": [N_TOKENS], "uneven-chunks": [1, 37, 100, 5, 64, 49],
          "token-by-token": [40] + [1] * (N_TOKENS - 40)}


@dataclass
class RopeSpec:
    style: str                      # "norm": pairs (2m, 2m+1); "neox": pairs (m, m + n_rot/2)
    n_rot: int                      # rotated dims of each head
    base: float = 10000.0
    freq_scale: float = 1.0
    freq_factors: Optional[np.ndarray] = None
    offset: int = 0                 # the first rotated dim (MiniCPM3, PLM: the trailing n_rot)


def rotate(x: np.ndarray, delta: np.ndarray, spec: RopeSpec) -> np.ndarray:
    """x: (T, heads, D) rotated by delta positions (T,) on dims [offset, offset + n_rot)."""
    dims = slice(spec.offset, spec.offset + spec.n_rot)
    factors = None if spec.freq_factors is None else spec.freq_factors[:spec.n_rot // 2]
    out = x.astype(np.float64)   # a copy
    # freq_scale multiplies every angle, as a scaled position does
    out[..., dims] = rope(out[..., dims], delta * spec.freq_scale, spec.base, spec.style, factors)
    return out


def algorithm1(q: np.ndarray, k: np.ndarray, v: np.ndarray, q_pos: np.ndarray, k_pos: np.ndarray,
               G: int, W: int, spec: RopeSpec, softcap: float = 0.0,
               sinks: Optional[np.ndarray] = None) -> np.ndarray:
    """Self-Extend attention of queries q (T, H, D) at q_pos over keys k (N, Hkv, D) and
    values v (N, Hkv, Dv) at k_pos, all roped at their true positions; q carries the
    layer's logit scale. Returns (T, H*Dv)."""
    q_g = rotate(q, q_pos // G + W - W // G - q_pos, spec)
    k_g = rotate(k, k_pos // G - k_pos, spec)
    dist = q_pos[:, None] - k_pos[None, :]
    return attend(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), dist >= 0,
                  q_g, k_g, dist < W, softcap, sinks)


@dataclass
class LayerGraph:
    """One layer of one computed graph: what it captured, and its queries' positions."""
    layer: int
    q_pos: np.ndarray
    q: np.ndarray        # (T, H, D)
    k: np.ndarray        # (n_kv, Hkv, D), cell j at position j
    v: np.ndarray        # (n_kv, Hkv, Dv)
    out: np.ndarray      # (T, H*Dv)


def run_captured(model_path: str, tokens: Sequence[int], chunks: Sequence[int], G: int, W: int,
                 n_ctx: int, n_ubatch: int, flash_attn: bool = False,
                 model_options: Optional["_core.ModelOptions"] = None) -> List[LayerGraph]:
    """Decode tokens (one sequence from position 0) in the given chunks with Self-Extend
    on and an f32 cache, and collect every Self-Extend layer of every graph (model_options:
    where the layers go, e.g. RPC devices)."""
    options = _core.ContextOptions()
    options.n_ctx, options.n_batch, options.n_ubatch = n_ctx, max(chunks), n_ubatch
    options.type_k = options.type_v = 0  # f32: the check is exact up to float rounding
    options.flash_attn_type = int(bool(flash_attn))
    options.capture_layers = True
    if model_options is None:
        model_options = _core.ModelOptions()
        model_options.n_gpu_layers = N_GPU_LAYERS
    model = _core.Model(model_path, model_options)
    ctx = _core.Context(model, options)
    ctx.set_self_extend(G, W)
    graphs: List[LayerGraph] = []
    start = 0
    for size in chunks:
        ctx.decode(list(tokens[start:start + size]), start, 0, False)
        graphs += _layer_graphs(ctx.take_captured(), start, size)
        start += size
    return graphs


def _layer_graphs(captured: Dict[str, list], start: int, size: int) -> List[LayerGraph]:
    # the graphs of one decode call are consecutive ubatches (llama.cpp picks their
    # sizes); those where Self-Extend equals plain attention (every key near) come first
    # and captured nothing, so the captured ones cover the last tokens of the call
    out = []
    layers = sorted({int(m.group(1)) for name in captured for m in [re.match(r"se_cap_q-(\d+)$", name)] if m})
    for il in layers:
        qs, ks, vs, outs = (captured[f"se_cap_{n}-{il}"] for n in ("q", "k", "v", "out"))
        first = start + size - sum(q.shape[1] for q in qs)
        assert first >= start, "more captured tokens than decoded"
        for q, k, v, o in zip(qs, ks, vs, outs):
            n = q.shape[1]
            out.append(LayerGraph(il, np.arange(first, first + n), q[0], k[0], v[0], o[0, 0]))
            first += n
    return out


def max_errors(graphs: Sequence[LayerGraph], G: int, W: int, spec_of_layer, softcap: float = 0.0,
               sinks_of_layer=None) -> Dict[int, float]:
    """Max abs difference per layer between each captured output and Algorithm 1."""
    errors: Dict[int, float] = {}
    for lg in graphs:
        k_pos = np.arange(lg.k.shape[0])
        sinks = sinks_of_layer(lg.layer) if sinks_of_layer else None
        want = algorithm1(lg.q, lg.k, lg.v, lg.q_pos, k_pos, G, W, spec_of_layer(lg.layer), softcap, sinks)
        err = float(np.abs(want - lg.out).max())
        errors[lg.layer] = max(errors.get(lg.layer, 0.0), err)
    return errors


def device_tolerance_for(model_path: str, tokens: Sequence[int], chunks: Sequence[int], W: int, spec_of_layer,
                         softcap: float = 0.0, sinks=None, flash_attn: bool = False, **options) -> float:
    """TOL, or on a GPU the device's own error on the same capture with G = 1 (plain
    attention through the same ops; device_tolerance.py)."""
    from device_tolerance import tolerance

    def g1_error():
        graphs = run_captured(model_path, tokens, chunks, 1, W, flash_attn=flash_attn, **options)
        return max(max_errors(graphs, 1, W, spec_of_layer, softcap, sinks).values())
    return tolerance(TOL, g1_error)
