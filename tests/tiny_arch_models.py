"""Tiny random-weight GGUF models for more llama.cpp architectures than tiny_models.py
writes, so that tests can load them with our engine.

Each architecture's recipe writes exactly the tensors and keys that the pinned llama.cpp
loader creates or reads for it (src/models/<arch>.cpp, load_arch_hparams and
load_arch_tensors): the loader refuses a file that holds a tensor it does not create, so
an optional tensor is either written on purpose or left out. ArchModel also records what
llama.cpp's graph does with positions (rotated dimensions, sliding-window layers, layers
left without RoPE, attention soft-capping, sinks), as read from that source, so that tests
know where Self-Extend has something to do.

Vocabulary: the byte tokenizer of tiny_models.py. Weights are f32 in GGUF orientation
(numpy shape (out, in); expert tensors (n_expert, out, in)). Models with tied embeddings
(the gemma family) have no output.weight: their output matrix is token_embd.weight."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Set, Tuple

import numpy as np

from tiny_models import N_VOCAB, _add_byte_tokenizer

QK_SCALE = 3.0  # large q/k weights give peaked attention, so position errors show in the logits

# sizes every recipe starts from; a recipe's own defaults and the caller's overrides win
_COMMON = dict(
    n_embd=128, n_head=4, n_head_kv=2, head_dim=None, head_dim_v=None, n_ff=256, n_rot=None,
    rope_base=10000.0, norm_eps=1e-5, swa_window=0, swa_pattern=None, attn_softcap=0.0,
    n_expert=0, n_expert_used=0, rope_finetuned=True, mla=False,
)


@dataclass
class ArchModel:
    arch: str
    path: Path
    n_ctx_train: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int                     # dimensions of each head that RoPE rotates
    rope_offset: int               # the first of them: 0, or head_dim - n_rot (trailing dims)
    head_dim_v: int                # value head size (head_dim except in the low-rank kv archs)
    rope_type: str                 # "norm" (consecutive pairs) or "neox" (pairs n_rot/2 apart)
    rope_base: float               # also the base of sliding-window layers (rope.freq_base_swa)
    swa_layers: Set[int]           # layers whose attention llama.cpp limits to swa_window
    swa_window: int                # a key at distance >= swa_window is masked; 0: no SWA
    unroped_layers: Set[int]       # layers whose q/k llama.cpp's graph leaves without RoPE
    attn_softcap: float            # softcap * tanh(kq / softcap) on attention logits; 0.0: none
    has_sinks: bool                # per-head attention sink logits (blk.N.attn_sinks.weight)
    weights: Dict[str, np.ndarray] = field(default_factory=dict)
    n_embd: int = 0
    n_ff: int = 0
    keys: Dict[str, float] = field(default_factory=dict)  # arch-specific keys, without "{arch}."


class _Builder:
    """One model's tensors and arch-specific keys, in the order they are written."""

    def __init__(self, arch: str, opts: dict, n_layer: int, seed: int):
        self.arch = arch
        self.o = opts
        self.n_layer = n_layer
        self.rng = np.random.default_rng(seed)
        self.weights: Dict[str, np.ndarray] = {}
        self.keys: Dict[str, Tuple[str, float]] = {}  # suffix -> ("u32" | "f32" | "bool" | "arr", value)

    # sizes
    @property
    def n_embd(self) -> int:
        return self.o["n_embd"]

    @property
    def hd(self) -> int:
        return self.o["head_dim"]

    @property
    def q_dim(self) -> int:
        return self.o["n_head"] * self.hd

    @property
    def kv_dim(self) -> int:
        return self.o["n_head_kv"] * self.hd

    # tensors
    def put(self, name: str, array: np.ndarray) -> None:
        self.weights[name] = np.ascontiguousarray(array, dtype=np.float32)

    def mat(self, name: str, *shape: int, scale: float = 1.0) -> None:
        self.put(name, self.rng.standard_normal(shape) * scale / np.sqrt(shape[-1]))

    def norm(self, name: str, n: int) -> None:
        self.put(name, 1.0 + 0.1 * self.rng.standard_normal(n))

    def bias(self, name: str, *shape: int, scale: float = 0.5) -> None:
        self.put(name, scale * self.rng.standard_normal(shape))

    # keys
    def u32(self, suffix: str, value: int) -> None:
        self.keys[suffix] = ("u32", int(value))

    def f32(self, suffix: str, value: float) -> None:
        self.keys[suffix] = ("f32", float(value))

    def flag(self, suffix: str, value: bool) -> None:
        self.keys[suffix] = ("bool", bool(value))

    def arr(self, suffix: str, values) -> None:
        self.keys[suffix] = ("arr", [int(v) for v in values])


# --- building blocks shared by the recipes -------------------------------------------

def _embeddings(b: _Builder, tied: bool = False, layer_norm: bool = False, output_bias: bool = False,
                output_norm: bool = True) -> None:
    # tied models (gemma family) scale the input by sqrt(n_embd): small embeddings keep the
    # residual stream at unit size, so attention still shows, and logits at std ~2
    scale = 2.0 / np.sqrt(b.n_embd) if tied else 1.0
    b.put("token_embd.weight", scale * b.rng.standard_normal((N_VOCAB, b.n_embd)))
    if output_norm:
        b.norm("output_norm.weight", b.n_embd)
        if layer_norm:
            b.bias("output_norm.bias", b.n_embd, scale=0.1)
    if not tied:
        b.mat("output.weight", N_VOCAB, b.n_embd, scale=2.0)
        if output_bias:
            b.bias("output.bias", N_VOCAB, scale=0.1)


def _attention(b: _Builder, i: int, norm: Optional[str] = "rms", qkv_bias: bool = False,
               out_bias: bool = False, fused: bool = False, n_head_kv: Optional[int] = None) -> None:
    """fused: one attn_qkv matrix (q rows, then k, then v) that the graph splits by views.
    n_head_kv: this layer's own count, where the arch reads one per layer (deci)."""
    p = f"blk.{i}."
    kv_dim = b.kv_dim if n_head_kv is None else n_head_kv * b.hd
    if norm:
        b.norm(p + "attn_norm.weight", b.n_embd)
        if norm == "layer":
            b.bias(p + "attn_norm.bias", b.n_embd, scale=0.1)
    if fused:
        parts = [b.rng.standard_normal((rows, b.n_embd)) * scale / np.sqrt(b.n_embd)
                 for rows, scale in ((b.q_dim, QK_SCALE), (kv_dim, QK_SCALE), (kv_dim, 1.0))]
        b.put(p + "attn_qkv.weight", np.concatenate(parts))
        if qkv_bias:
            b.bias(p + "attn_qkv.bias", b.q_dim + 2 * kv_dim)
    else:
        b.mat(p + "attn_q.weight", b.q_dim, b.n_embd, scale=QK_SCALE)
        b.mat(p + "attn_k.weight", kv_dim, b.n_embd, scale=QK_SCALE)
        b.mat(p + "attn_v.weight", kv_dim, b.n_embd)
        if qkv_bias:
            b.bias(p + "attn_q.bias", b.q_dim)
            b.bias(p + "attn_k.bias", kv_dim)
            b.bias(p + "attn_v.bias", kv_dim)
    b.mat(p + "attn_output.weight", b.n_embd, b.q_dim)
    if out_bias:
        b.bias(p + "attn_output.bias", b.n_embd, scale=0.1)


def _gated_ffn(b: _Builder, i: int, norm: bool = True, n_ff: Optional[int] = None, suffix: str = "") -> None:
    """suffix "_shexp": a MoE layer's shared expert."""
    p, ff = f"blk.{i}.", n_ff or b.o["n_ff"]
    if norm:
        b.norm(p + "ffn_norm.weight", b.n_embd)
    b.mat(p + f"ffn_gate{suffix}.weight", ff, b.n_embd)
    b.mat(p + f"ffn_up{suffix}.weight", ff, b.n_embd)
    b.mat(p + f"ffn_down{suffix}.weight", b.n_embd, ff)


def _plain_ffn(b: _Builder, i: int, norm: bool = True) -> None:
    """Layer-norm (with bias) then up/down with biases: the GPT-style MLP."""
    p, ff = f"blk.{i}.", b.o["n_ff"]
    if norm:
        b.norm(p + "ffn_norm.weight", b.n_embd)
        b.bias(p + "ffn_norm.bias", b.n_embd, scale=0.1)
    b.mat(p + "ffn_up.weight", ff, b.n_embd)
    b.bias(p + "ffn_up.bias", ff, scale=0.1)
    b.mat(p + "ffn_down.weight", b.n_embd, ff)
    b.bias(p + "ffn_down.bias", b.n_embd, scale=0.1)


def _qk_norms(b: _Builder, i: int, q_size: int, k_size: int) -> None:
    b.norm(f"blk.{i}.attn_q_norm.weight", q_size)
    b.norm(f"blk.{i}.attn_k_norm.weight", k_size)


def _experts(b: _Builder, i: int, n_ff: Optional[int] = None, bias: bool = False) -> None:
    """The router and the stacked experts (SwiGLU), each (n_expert, out, in)."""
    p, n_exp, ff = f"blk.{i}.", b.o["n_expert"], n_ff or b.o["n_ff"]
    b.mat(p + "ffn_gate_inp.weight", n_exp, b.n_embd)
    if bias:
        b.bias(p + "ffn_gate_inp.bias", n_exp, scale=0.1)
    for name, rows, cols in (("gate", ff, b.n_embd), ("up", ff, b.n_embd), ("down", b.n_embd, ff)):
        b.mat(p + f"ffn_{name}_exps.weight", n_exp, rows, cols)
        if bias:
            b.bias(p + f"ffn_{name}_exps.bias", n_exp, rows, scale=0.1)


def _expert_keys(b: _Builder, n_ff_exp: Optional[int] = None) -> None:
    b.u32("expert_count", b.o["n_expert"])
    b.u32("expert_used_count", b.o["n_expert_used"])
    if n_ff_exp:
        b.u32("expert_feed_forward_length", n_ff_exp)


def _rope_freqs(b: _Builder) -> None:
    # llama3-style frequency factors (rope_freqs.weight, one for all layers): 1 for the
    # fastest pairs up to 8 for the slowest, so each pair turns at its own rate
    b.put("rope_freqs.weight", np.geomspace(1.0, 8.0, b.o["n_rot"] // 2))


# --- one function per architecture: its tensors and its own keys ----------------------

def _qwen3(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i)
        _qk_norms(b, i, b.hd, b.hd)  # per head, shared by all heads
        _gated_ffn(b, i)


def _phi3(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i)
        p = f"blk.{i}."
        b.norm(p + "ffn_norm.weight", b.n_embd)
        # gate and up fused in one matrix (gate rows first), split by LLM_FFN_SWIGLU
        b.mat(p + "ffn_up.weight", 2 * b.o["n_ff"], b.n_embd)
        b.mat(p + "ffn_down.weight", b.n_embd, b.o["n_ff"])


def _llama_like(b: _Builder, tied: bool = False) -> None:
    _embeddings(b, tied=tied)
    for i in range(b.n_layer):
        _attention(b, i)
        _gated_ffn(b, i)


def _gemma(b: _Builder) -> None:
    _llama_like(b, tied=True)  # loader creates output as a duplicate of token_embd


def _smollm3(b: _Builder) -> None:
    _llama_like(b)


def _granite(b: _Builder) -> None:
    _llama_like(b)
    b.f32("logit_scale", 0.5)        # required: logits are divided by it
    b.f32("residual_scale", 0.5)     # branch outputs scaled before each residual add
    b.f32("embedding_scale", 0.5)    # input embeddings scaled (to the branches' size)
    b.f32("attention.scale", 0.25)   # replaces 1/sqrt(head_dim) as the kq scale
    if not b.o["rope_finetuned"]:
        b.flag("rope.scaling.finetuned", False)  # granite's switch: no layer is roped


def _olmo2(b: _Builder) -> None:
    _embeddings(b)  # output.weight is required
    for i in range(b.n_layer):
        _attention(b, i, norm=None)  # no pre-norms: post-norms after attention and FFN
        _qk_norms(b, i, b.q_dim, b.kv_dim)  # over all heads together
        b.norm(f"blk.{i}.post_attention_norm.weight", b.n_embd)
        _gated_ffn(b, i, norm=False)
        b.norm(f"blk.{i}.post_ffw_norm.weight", b.n_embd)


def _starcoder2(b: _Builder) -> None:
    _embeddings(b, layer_norm=True)
    for i in range(b.n_layer):
        _attention(b, i, norm="layer", qkv_bias=True, out_bias=True)
        _plain_ffn(b, i)


def _stablelm(b: _Builder) -> None:
    _embeddings(b, layer_norm=True)
    for i in range(b.n_layer):
        _attention(b, i, norm="layer", qkv_bias=True)
        p = f"blk.{i}."
        b.norm(p + "ffn_norm.weight", b.n_embd)  # present: sequential, not parallel, residual
        b.bias(p + "ffn_norm.bias", b.n_embd, scale=0.1)
        _gated_ffn(b, i, norm=False)


def _phi2(b: _Builder) -> None:
    _embeddings(b, layer_norm=True, output_bias=True)
    for i in range(b.n_layer):
        # attention and MLP both read the one attn_norm output (parallel block)
        _attention(b, i, norm="layer", qkv_bias=True, out_bias=True)
        _plain_ffn(b, i, norm=False)


def _gemma2(b: _Builder) -> None:
    _embeddings(b, tied=True)
    for i in range(b.n_layer):
        _attention(b, i)
        b.norm(f"blk.{i}.post_attention_norm.weight", b.n_embd)
        _gated_ffn(b, i)
        b.norm(f"blk.{i}.post_ffw_norm.weight", b.n_embd)
    b.f32("attn_logit_softcapping", b.o["attn_softcap"])
    b.f32("final_logit_softcapping", 30.0)


def _gemma3(b: _Builder) -> None:
    _embeddings(b, tied=True)  # output.weight is optional; left out, as in real gemma3 files
    for i in range(b.n_layer):
        _attention(b, i)
        b.norm(f"blk.{i}.post_attention_norm.weight", b.n_embd)
        _qk_norms(b, i, b.hd, b.hd)
        _gated_ffn(b, i)
        b.norm(f"blk.{i}.post_ffw_norm.weight", b.n_embd)


def _gpt_oss(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        p = f"blk.{i}."
        _attention(b, i, qkv_bias=True, out_bias=True)
        b.put(p + "attn_sinks.weight", b.rng.normal(1.0, 1.0, b.o["n_head"]))
        b.norm(p + "post_attention_norm.weight", b.n_embd)  # the pre-MoE norm
        _experts(b, i, bias=True)
    _expert_keys(b, b.o["n_ff"])


def _qwen2moe(b: _Builder) -> None:
    _embeddings(b)  # output.weight is required
    for i in range(b.n_layer):
        _attention(b, i, qkv_bias=True)
        b.norm(f"blk.{i}.ffn_norm.weight", b.n_embd)
        _experts(b, i)
        b.mat(f"blk.{i}.ffn_gate_inp_shexp.weight", b.n_embd)  # one row: the shared expert's sigmoid gate
        _gated_ffn(b, i, norm=False, suffix="_shexp")
    _expert_keys(b, b.o["n_ff"])
    b.u32("expert_shared_feed_forward_length", b.o["n_ff"])


def _qwen3moe(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i)
        _qk_norms(b, i, b.hd, b.hd)
        b.norm(f"blk.{i}.ffn_norm.weight", b.n_embd)
        _experts(b, i)
    _expert_keys(b, b.o["n_ff"])


def _olmo(b: _Builder) -> None:
    _embeddings(b, output_norm=False)  # every norm is a layer norm without weight or bias
    for i in range(b.n_layer):
        _attention(b, i, norm=None)
        _gated_ffn(b, i, norm=False)
    b.f32("attention.clamp_kqv", 8.0)  # q, k and v clamped before RoPE, as in OLMo-7B-0424


def _olmoe(b: _Builder) -> None:
    _embeddings(b)  # output.weight is required
    for i in range(b.n_layer):
        _attention(b, i)
        _qk_norms(b, i, b.q_dim, b.kv_dim)  # over all heads; the loader sizes both by n_embd
        b.norm(f"blk.{i}.ffn_norm.weight", b.n_embd)
        _experts(b, i)  # experts sized by feed_forward_length
    _expert_keys(b)


def _falcon(b: _Builder) -> None:
    _embeddings(b, layer_norm=True)
    for i in range(b.n_layer):
        # parallel block: the MLP reads attn_norm's output too; no biases on the matrices
        _attention(b, i, norm="layer", fused=True)
        b.mat(f"blk.{i}.ffn_up.weight", b.o["n_ff"], b.n_embd)
        b.mat(f"blk.{i}.ffn_down.weight", b.n_embd, b.o["n_ff"])


def _gptneox(b: _Builder) -> None:
    _embeddings(b, layer_norm=True)
    for i in range(b.n_layer):
        _attention(b, i, norm="layer", qkv_bias=True, out_bias=True, fused=True)
        _plain_ffn(b, i)
    b.flag("use_parallel_residual", True)  # required; true as in Pythia: x + attn(ln1 x) + mlp(ln2 x)


def _internlm2(b: _Builder) -> None:
    _llama_like(b)  # the loader also takes a fused attn_qkv; convert_hf_to_gguf splits it


def _minicpm(b: _Builder) -> None:
    _llama_like(b)  # the granite graph
    b.f32("embedding_scale", 0.5)  # left out, llama.cpp would use MiniCPM's own 12, 1.4/sqrt(n_layer), 256/n_embd
    b.f32("residual_scale", 0.5)
    b.f32("logit_scale", 0.5)


def _command_r(b: _Builder) -> None:
    _embeddings(b, tied=True)  # output is always token_embd; no input scaling, so the stream starts small
    for i in range(b.n_layer):
        _attention(b, i)  # a layer norm without bias: the same one weight as an RMS norm
        _gated_ffn(b, i, norm=False)  # parallel block: the FFN reads attn_norm's output


def _exaone(b: _Builder) -> None:
    _llama_like(b)
    _rope_freqs(b)  # optional; EXAONE 3.5 files carry them


def _granitemoe(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i)
        b.norm(f"blk.{i}.ffn_norm.weight", b.n_embd)
        _experts(b, i)  # experts sized by feed_forward_length
    _expert_keys(b)
    b.f32("logit_scale", 0.5)
    b.f32("residual_scale", 0.5)
    b.f32("embedding_scale", 0.5)
    b.f32("attention.scale", 0.25)


def _ernie4_5(b: _Builder) -> None:
    _llama_like(b)


def _seed_oss(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i, qkv_bias=True)
        b.norm(f"blk.{i}.post_attention_norm.weight", b.n_embd)  # the pre-FFN norm
        _gated_ffn(b, i, norm=False)


def _mistral3(b: _Builder) -> None:
    _llama_like(b)
    # per-token temperature, q *= 1 + beta * log(1 + floor(pos / n_ctx_train)), applied to
    # q after RoPE; beta as Ministral 3's llama_4_scaling_beta
    b.f32("attention.temperature_scale", 0.1)


def _deci_kv(b: _Builder, il: int) -> int:
    # per-layer KV head counts as in Nemotron-51B: GQA of varying width, and "linear
    # attention" layers (no KV heads: only attn_output over the normed input, no q, k or RoPE)
    return (b.o["n_head_kv"], 1, 0)[il % 3]


def _deci(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        if _deci_kv(b, i):
            _attention(b, i, n_head_kv=_deci_kv(b, i))
        else:
            b.norm(f"blk.{i}.attn_norm.weight", b.n_embd)
            b.mat(f"blk.{i}.attn_output.weight", b.n_embd, b.n_embd)
        _gated_ffn(b, i)
    b.arr("attention.head_count_kv", [_deci_kv(b, i) for i in range(b.n_layer)])


def _qwen(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i, qkv_bias=True, fused=True)
        _gated_ffn(b, i, n_ff=b.o["n_ff"] // 2)  # the loader halves feed_forward_length


def _llama4(b: _Builder) -> None:
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i)
        if (i + 1) % 2 == 0:  # interleave_moe_layer_step: every 2nd layer is MoE
            b.norm(f"blk.{i}.ffn_norm.weight", b.n_embd)
            _experts(b, i)
            _gated_ffn(b, i, norm=False, suffix="_shexp")  # shared expert, as wide as one expert
        else:
            _gated_ffn(b, i)
    _rope_freqs(b)
    _expert_keys(b, b.o["n_ff"])
    b.u32("interleave_moe_layer_step", 2)


def _graniteswitch(b: _Builder) -> None:
    # one adapter, turned on by token 100 (in each test prompt): from there on every token
    # adds its LoRA delta (slot 1; slot 0, the base, is zero) to q, k, v, o and the FFN. The
    # adapter's slot comes from a router attention layer (index n_layer, outside rope_pattern
    # and n_layer()) that the loader adds itself, with no tensors
    rank, n_slots, ff = 4, 2, b.o["n_ff"]
    _embeddings(b)
    for i in range(b.n_layer):
        _attention(b, i, fused=True)
        _gated_ffn(b, i)
        for name, n_in, n_out in (("attn_q", b.n_embd, b.q_dim), ("attn_k", b.n_embd, b.kv_dim),
                                  ("attn_v", b.n_embd, b.kv_dim), ("attn_output", b.q_dim, b.n_embd),
                                  ("ffn_gate", b.n_embd, ff), ("ffn_up", b.n_embd, ff), ("ffn_down", ff, b.n_embd)):
            b.mat(f"blk.{i}.{name}.lora_a", n_slots, rank, n_in)
            b.mat(f"blk.{i}.{name}.lora_b", n_slots, n_out, rank, scale=0.5)
            b.weights[f"blk.{i}.{name}.lora_b"][0] = 0.0
    b.u32("adapters.count", 1)
    b.u32("adapters.lora_rank", rank)
    b.arr("adapters.token_ids_activate", [100])
    b.arr("adapters.token_ids_substitute", [35])  # the activating token is embedded as this one
    b.f32("logit_scale", 0.5)  # required, as in granite


def _low_rank_kv(b: _Builder, i: int, kv_lora: int) -> None:
    """MiniCPM3/PLM attention: k and v from a shared low-rank latent (kv_a_mqa, whose last
    n_rot rows are one roped key part shared by all heads, then kv_b), RoPE on the trailing
    n_rot dims of each q/k head, values of their own size."""
    p, hd, hd_v, n_head, n_rot = f"blk.{i}.", b.hd, b.o["head_dim_v"], b.o["n_head"], b.o["n_rot"]
    b.mat(p + "attn_kv_a_mqa.weight", kv_lora + n_rot, b.n_embd, scale=QK_SCALE)
    b.norm(p + "attn_kv_a_norm.weight", kv_lora)
    b.mat(p + "attn_kv_b.weight", n_head * (hd - n_rot + hd_v), kv_lora, scale=QK_SCALE)
    b.mat(p + "attn_output.weight", b.n_embd, n_head * hd_v)


def _minicpm3(b: _Builder) -> None:
    _embeddings(b)
    q_lora, kv_lora = 64, 48
    for i in range(b.n_layer):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", b.n_embd)
        b.mat(p + "attn_q_a.weight", q_lora, b.n_embd)          # q from a low-rank latent too
        b.norm(p + "attn_q_a_norm.weight", q_lora)
        b.mat(p + "attn_q_b.weight", b.q_dim, q_lora, scale=QK_SCALE)
        _low_rank_kv(b, i, kv_lora)
        _gated_ffn(b, i)
    b.u32("attention.q_lora_rank", q_lora)
    b.u32("attention.kv_lora_rank", kv_lora)
    # LongRoPE factors (one pair for all layers); the long ones apply when n_ctx exceeds
    # the trained context, as in every Self-Extend run
    half = b.o["n_rot"] // 2
    b.put("rope_factors_long.weight", np.geomspace(1.0, 6.0, half))
    b.put("rope_factors_short.weight", np.geomspace(1.0, 1.5, half))


def _plm(b: _Builder) -> None:
    _embeddings(b, tied=True)   # the loader duplicates token_embd as the output
    kv_lora = 48
    for i in range(b.n_layer):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", b.n_embd)
        b.mat(p + "attn_q.weight", b.q_dim, b.n_embd, scale=QK_SCALE)
        _low_rank_kv(b, i, kv_lora)
        b.norm(p + "ffn_norm.weight", b.n_embd)                  # squared-ReLU MLP, no gate
        b.mat(p + "ffn_up.weight", b.o["n_ff"], b.n_embd)
        b.mat(p + "ffn_down.weight", b.n_embd, b.o["n_ff"])
    b.u32("attention.kv_lora_rank", kv_lora)


def _deepseek2(b: _Builder) -> None:
    """DeepSeek-V2: low-rank q, the low-rank kv of MiniCPM3, a dense first layer, then
    routed experts with a shared one. mla=True writes the MLA layout instead (kv_b split
    into k_b and v_b, and the cache holding the latent), which Self-Extend refuses."""
    _embeddings(b)
    q_lora, kv_lora = 64, 48
    hd, hd_v, n_head, n_rot = b.hd, b.o["head_dim_v"], b.o["n_head"], b.o["n_rot"]
    for i in range(b.n_layer):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", b.n_embd)
        b.mat(p + "attn_q_a.weight", q_lora, b.n_embd)
        b.norm(p + "attn_q_a_norm.weight", q_lora)
        b.mat(p + "attn_q_b.weight", b.q_dim, q_lora, scale=QK_SCALE)
        if b.o["mla"]:
            b.mat(p + "attn_kv_a_mqa.weight", kv_lora + n_rot, b.n_embd, scale=QK_SCALE)
            b.norm(p + "attn_kv_a_norm.weight", kv_lora)
            b.mat(p + "attn_k_b.weight", n_head, kv_lora, hd - n_rot, scale=QK_SCALE)
            b.mat(p + "attn_v_b.weight", n_head, hd_v, kv_lora)
            b.mat(p + "attn_output.weight", b.n_embd, n_head * hd_v)
        else:
            _low_rank_kv(b, i, kv_lora)
        b.norm(p + "ffn_norm.weight", b.n_embd)
        if i == 0:
            _gated_ffn(b, i, norm=False)
        else:
            _experts(b, i)
            _gated_ffn(b, i, norm=False, suffix="_shexp")   # one shared expert of n_ff
    b.u32("leading_dense_block_count", 1)
    b.u32("attention.q_lora_rank", q_lora)
    b.u32("attention.kv_lora_rank", kv_lora)
    _expert_keys(b, b.o["n_ff"])
    b.u32("expert_shared_count", 1)
    b.f32("expert_weights_scale", 1.0)
    if b.o["mla"]:
        # MLA GGUFs give the latent's sizes as the head sizes and the per-head ones apart,
        # and cache one latent "head" per token
        b.u32("attention.head_count_kv", 1)
        b.u32("attention.key_length", kv_lora + n_rot)
        b.u32("attention.value_length", kv_lora)
        b.u32("attention.key_length_mla", hd)
        b.u32("attention.value_length_mla", hd_v)


@dataclass(frozen=True)
class _Recipe:
    build: Callable[[_Builder], None]
    rope_type: str                    # llama_model_rope_type, src/llama-model.cpp
    norm: str = "rms"                 # which epsilon key the loader requires: "rms" or "layer"
    n_layer: int = 2
    defaults: Dict[str, object] = field(default_factory=dict)
    q_is_n_embd: bool = False         # loader sizes q and attn_output by n_embd: head_dim fixed
    mha: bool = False                 # loader sizes k (or its norm) by n_embd: n_head_kv == n_head
    partial_rope: bool = False        # graph allows n_rot < head_dim
    rope_trailing: bool = False       # graph ropes the last n_rot dims of each head (ggml_rope_set_offset)
    swa: str = "none"                 # "none", "optional" (only with a window), "always"
    swa_pattern: int = 0              # llama.cpp's default: layer il is SWA iff il % p < p - 1
    reads_swa_base: bool = False      # loader reads rope.freq_base_swa
    unroped: Callable[[int], Set[int]] = lambda n_layer: set()


_RECIPES: Dict[str, _Recipe] = {
    "qwen3": _Recipe(_qwen3, "neox", defaults=dict(head_dim=64)),
    "phi3": _Recipe(_phi3, "neox", q_is_n_embd=True),
    "gemma": _Recipe(_gemma, "neox", defaults=dict(n_head_kv=1, head_dim=64)),
    "granite": _Recipe(_granite, "norm"),
    "olmo2": _Recipe(_olmo2, "neox", q_is_n_embd=True, swa="optional", swa_pattern=4,
                     reads_swa_base=True),
    "starcoder2": _Recipe(_starcoder2, "neox", norm="layer", q_is_n_embd=True),
    "stablelm": _Recipe(_stablelm, "neox", norm="layer", q_is_n_embd=True, partial_rope=True,
                        defaults=dict(n_rot=16)),
    "phi2": _Recipe(_phi2, "neox", norm="layer", q_is_n_embd=True, partial_rope=True,
                    defaults=dict(n_rot=12)),  # like phi-2's 32 of 80: not a power of two
    "smollm3": _Recipe(_smollm3, "norm", n_layer=4,
                       unroped=lambda n_layer: {il for il in range(n_layer) if (il + 1) % 4 == 0}),
    "gemma2": _Recipe(_gemma2, "neox", swa="always", swa_pattern=2, reads_swa_base=True,
                      defaults=dict(swa_window=16, attn_softcap=10.0)),
    "gemma3": _Recipe(_gemma3, "neox", n_layer=6, swa="optional", swa_pattern=6,
                      reads_swa_base=True, defaults=dict(swa_window=16)),
    "gpt-oss": _Recipe(_gpt_oss, "neox", swa="always", swa_pattern=2, reads_swa_base=True,
                       defaults=dict(swa_window=16, n_expert=4, n_expert_used=2, n_ff=64)),
    "qwen2moe": _Recipe(_qwen2moe, "neox", q_is_n_embd=True, defaults=dict(n_expert=4, n_expert_used=2, n_ff=64)),
    "qwen3moe": _Recipe(_qwen3moe, "neox", defaults=dict(head_dim=64, n_expert=4, n_expert_used=2, n_ff=64)),
    "olmo": _Recipe(_olmo, "norm", norm="layer", q_is_n_embd=True),
    "olmoe": _Recipe(_olmoe, "neox", q_is_n_embd=True, mha=True,
                     defaults=dict(n_head_kv=4, n_expert=4, n_expert_used=2, n_ff=64)),
    "falcon": _Recipe(_falcon, "neox", norm="layer", q_is_n_embd=True, defaults=dict(n_head_kv=1)),  # MQA as Falcon-7B
    "gptneox": _Recipe(_gptneox, "neox", norm="layer", q_is_n_embd=True, partial_rope=True,
                       defaults=dict(n_rot=8)),  # Pythia's rotary_pct 0.25
    "internlm2": _Recipe(_internlm2, "norm", q_is_n_embd=True),
    "minicpm": _Recipe(_minicpm, "norm"),
    "command-r": _Recipe(_command_r, "norm", norm="layer", q_is_n_embd=True),
    "exaone": _Recipe(_exaone, "neox"),
    "granitemoe": _Recipe(_granitemoe, "norm", defaults=dict(n_expert=4, n_expert_used=2, n_ff=64)),
    "ernie4_5": _Recipe(_ernie4_5, "norm"),
    "seed_oss": _Recipe(_seed_oss, "neox", defaults=dict(head_dim=64)),
    "mistral3": _Recipe(_mistral3, "norm"),
    "deci": _Recipe(_deci, "norm", n_layer=3, unroped=lambda n_layer: {il for il in range(n_layer) if il % 3 == 2}),
    "qwen": _Recipe(_qwen, "neox", q_is_n_embd=True, mha=True, defaults=dict(n_head_kv=4)),
    # a sliding_window key other than 0 turns on chunked attention (llama.cpp forces chunks
    # of 8192) on the layers il % p < p - 1, and leaves every 4th layer without RoPE; with
    # Llama 4's p = 4 no layer would be both global and roped, so p = 2 here (layer 1 is)
    "llama4": _Recipe(_llama4, "norm", n_layer=4, swa="always", swa_pattern=4, reads_swa_base=True,
                      defaults=dict(swa_window=8192, swa_pattern=2, n_expert=4, n_expert_used=1, n_ff=64),
                      unroped=lambda n_layer: {il for il in range(n_layer) if (il + 1) % 4 == 0}),
    "graniteswitch": _Recipe(_graniteswitch, "norm"),
    # RoPE on the trailing dims; k is per head (n_head_kv == n_head), v heads smaller
    "minicpm3": _Recipe(_minicpm3, "neox", mha=True, partial_rope=True, rope_trailing=True,
                        defaults=dict(n_head_kv=4, head_dim=48, head_dim_v=32, n_rot=16)),
    "plm": _Recipe(_plm, "norm", mha=True, partial_rope=True, rope_trailing=True,
                   defaults=dict(n_head_kv=4, head_dim=40, head_dim_v=24, n_rot=16)),
    "deepseek2": _Recipe(_deepseek2, "norm", mha=True, partial_rope=True, rope_trailing=True,
                         defaults=dict(n_head_kv=4, head_dim=48, head_dim_v=32, n_rot=16,
                                       n_expert=4, n_expert_used=2, n_ff=64)),
}

ARCHS: Tuple[str, ...] = tuple(_RECIPES)


def _resolve(arch: str, recipe: _Recipe, overrides: dict) -> dict:
    unknown = set(overrides) - set(_COMMON)
    if unknown:
        raise TypeError(f"unknown option(s) for write_arch_model: {sorted(unknown)}")
    o = {**_COMMON, **recipe.defaults, **overrides}
    if o["head_dim"] is None:
        o["head_dim"] = o["n_embd"] // o["n_head"]
    if o["n_rot"] is None:
        o["n_rot"] = o["head_dim"]
    if o["head_dim_v"] is None:
        o["head_dim_v"] = o["head_dim"]
    elif o["head_dim_v"] != o["head_dim"] and not recipe.rope_trailing:
        raise ValueError(f"{arch}: llama.cpp's graph gives k and v heads one size here")
    if recipe.q_is_n_embd and o["head_dim"] * o["n_head"] != o["n_embd"]:
        raise ValueError(f"{arch}: llama.cpp sizes q by n_embd, so head_dim must be n_embd / n_head")
    if o["n_rot"] != o["head_dim"] and not recipe.partial_rope:
        raise ValueError(f"{arch}: llama.cpp's graph rotates whole heads (n_rot == head_dim)")
    if o["n_rot"] % 2 or not 0 < o["n_rot"] <= o["head_dim"]:
        raise ValueError(f"{arch}: n_rot must be even and in (0, head_dim]")
    if o["n_head"] % o["n_head_kv"]:
        raise ValueError("n_head must be a multiple of n_head_kv")
    if recipe.mha and o["n_head_kv"] != o["n_head"]:
        raise ValueError(f"{arch}: llama.cpp's loader needs n_head_kv == n_head here")
    if recipe.swa == "always" and o["swa_window"] <= 0:
        raise ValueError(f"{arch}: llama.cpp always uses a sliding window here; give swa_window > 0")
    if recipe.swa == "none" and (o["swa_window"] or o["swa_pattern"]):
        raise ValueError(f"{arch}: no sliding window in llama.cpp's graph for this architecture")
    if not o["rope_finetuned"] and arch != "granite":
        raise ValueError(f"{arch}: only granite reads rope.scaling.finetuned as a RoPE switch")
    if o["attn_softcap"] and arch != "gemma2":
        raise ValueError(f"{arch}: only gemma2 reads attn_logit_softcapping here")
    if o["mla"] and arch != "deepseek2":
        raise ValueError(f"{arch}: only deepseek2 is written in the MLA layout here")
    if arch == "gemma2" and o["attn_softcap"] <= 0:
        raise ValueError("gemma2: llama.cpp always soft-caps (it divides by the cap); give attn_softcap > 0")
    return o


def _swa_layers(recipe: _Recipe, o: dict, n_layer: int) -> Set[int]:
    # llama_hparams::set_swa_pattern with dense_first = false (src/llama-hparams.cpp)
    if recipe.swa == "none" or o["swa_window"] <= 0:
        return set()
    p = o["swa_pattern"] or recipe.swa_pattern
    return {il for il in range(n_layer) if il % p < p - 1}


def write_arch_model(directory: Path, arch: str, seed: int = 0, n_layer: Optional[int] = None,
                     n_ctx_train: int = 64, **overrides) -> ArchModel:
    """Write a tiny random `arch` model to directory/tiny-<arch>.gguf. n_layer defaults
    to the smallest count that shows the arch's layer pattern (smollm3 and llama4 4, deci 3,
    gemma3 6, else 2). Overrides: n_embd, n_head, n_head_kv, head_dim, head_dim_v (minicpm3,
    plm), n_ff, n_rot, rope_base,
    norm_eps, swa_window, swa_pattern, attn_softcap (gemma2), n_expert, n_expert_used (MoE archs),
    mla (deepseek2)."""
    import gguf

    if arch not in _RECIPES:
        raise ValueError(f"unsupported arch {arch!r}; supported: {', '.join(ARCHS)}")
    recipe = _RECIPES[arch]
    n_layer = recipe.n_layer if n_layer is None else n_layer
    o = _resolve(arch, recipe, overrides)

    b = _Builder(arch, o, n_layer, seed)
    recipe.build(b)
    swa_layers = _swa_layers(recipe, o, n_layer)
    if swa_layers or recipe.swa == "always":
        b.u32("attention.sliding_window", o["swa_window"])
        if o["swa_pattern"]:
            b.u32("attention.sliding_window_pattern", o["swa_pattern"])
        if recipe.reads_swa_base:
            b.f32("rope.freq_base_swa", o["rope_base"])  # one base for all layers

    path = Path(directory) / f"tiny-{arch}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    # a name without the arch: llama-vocab.cpp gives models named "phi3"/"phi-3" phi-3's
    # special-token attributes, which need tokens (<|endoftext|>) this vocabulary lacks
    writer.add_name("tiny random-weight model")
    writer.add_context_length(n_ctx_train)
    writer.add_embedding_length(o["n_embd"])
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(o["n_ff"])
    writer.add_head_count(o["n_head"])
    if "attention.head_count_kv" not in b.keys:  # deci writes one count per layer
        writer.add_head_count_kv(o["n_head_kv"])
    if "attention.key_length" not in b.keys:  # deepseek2's MLA layout writes its own
        writer.add_key_length(o["head_dim"])
        writer.add_value_length(o["head_dim_v"])
    writer.add_rope_dimension_count(o["n_rot"])
    writer.add_rope_freq_base(o["rope_base"])
    if recipe.norm == "rms":
        writer.add_layer_norm_rms_eps(o["norm_eps"])
    else:
        writer.add_layer_norm_eps(o["norm_eps"])
    for suffix, (kind, value) in b.keys.items():
        add = {"u32": writer.add_uint32, "f32": writer.add_float32, "bool": writer.add_bool,
               "arr": writer.add_array}[kind]
        add(f"{arch}.{suffix}", value)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_byte_tokenizer(writer)

    for name, array in b.weights.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    return ArchModel(
        arch=arch, path=path, n_ctx_train=n_ctx_train, n_layer=n_layer,
        n_head=o["n_head"], n_head_kv=o["n_head_kv"], head_dim=o["head_dim"], n_rot=o["n_rot"],
        rope_offset=o["head_dim"] - o["n_rot"] if recipe.rope_trailing else 0, head_dim_v=o["head_dim_v"],
        rope_type=recipe.rope_type, rope_base=o["rope_base"],
        swa_layers=swa_layers, swa_window=o["swa_window"] if swa_layers else 0,
        unroped_layers=recipe.unroped(n_layer) if o["rope_finetuned"] else set(range(n_layer)),
        attn_softcap=o["attn_softcap"] if arch == "gemma2" else 0.0,
        has_sinks=arch == "gpt-oss", weights=b.weights, n_embd=o["n_embd"], n_ff=o["n_ff"],
        keys={k: v for k, (_, v) in b.keys.items()})
