"""The methods compared, all on our engine with the same model. Each builds a runner
for a target length that answers a prompt greedily.

- vanilla:       n_ctx beyond the trained window, nothing changed
- self-extend:   exact Self-Extend, G and W chosen as Llama chooses them (a setting
                 measured on the model and shipped, else eq. 5), or given
- grouped-cache: llama.cpp's approximate method (seq_add/seq_div), same G and W
- yarn, linear:  llama.cpp RoPE scaling, original context from the model
- truncate:      keep only the last n_ctx_train tokens (what a user does today)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..settings import measured as measured_settings
from ..settings import self_extend as se
from ..llama import Llama
from ..models.package_models import resolve_model_path
from ..engine.text_stream import TextStream
from .grouped_cache import GroupedCache

METHODS = ("vanilla", "self-extend", "grouped-cache", "yarn", "linear", "truncate")

# room for the generated answer on top of the prompt
ANSWER_ROOM = 128


@dataclass
class Runner:
    method: str
    llm: Llama
    answer: Callable[[List[int], int], str]   # (prompt tokens, max_tokens) -> generated text
    settings: Dict[str, object]
    prepare: Callable[[List[int]], List[int]] = lambda tokens: tokens
    # (context, inputs) -> the logits after each input token, for perplexity
    score: Optional[Callable[[List[int], List[int]], np.ndarray]] = None

    def __post_init__(self):
        if self.score is None:
            self.score = functools.partial(_score, self.llm)   # no cycle: the context frees on del


def _greedy_text(llm: Llama, tokens: List[int], max_tokens: int) -> str:
    out = llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0)
    return out["choices"][0]["text"]


def _score(llm: Llama, context: List[int], inputs: List[int]) -> np.ndarray:
    llm.reset()
    llm.eval(context)
    return llm.eval_logits(inputs)


def _decode(llm: Llama, tokens: Sequence[int]) -> str:
    stream = TextStream()
    return "".join(stream.push(llm.token_bytes(t)) for t in tokens) + stream.finish()


def n_ctx_train_of(model_path: Optional[str]) -> int:
    return Llama(model_path, n_ctx=64).n_ctx_train()


def context_length(length: int) -> int:
    """The n_ctx a runner for prompts of `length` tokens gets: room for the answer."""
    return max(length + ANSWER_ROOM, 256)


def _grouped_cache_setting(n_ctx: int, n_ctx_train: int, group_size: Optional[int],
                           neighbor_window: Optional[int]) -> tuple:
    if group_size is None:
        auto = se.choose(max(n_ctx, n_ctx_train + 1), n_ctx_train)
        group_size = auto.group_size
        neighbor_window = neighbor_window or auto.neighbor_window
    window = neighbor_window or se.default_neighbor_window(n_ctx_train)
    return group_size, window - window % group_size     # llama.cpp needs ga_w % ga_n == 0


def planned_settings(method: str, length: int, n_ctx_train: int, group_size: Optional[int] = None,
                     neighbor_window: Optional[int] = None, model_file: Optional[str] = None) -> Dict[str, object]:
    """The settings a runner of `method` will have, known before any model loads.
    Results are keyed by them, so a cell run with one setting is never taken for
    another's (an explicit G, or a changed automatic rule, reruns it). model_file: the
    model's GGUF path, for the settings measured on it (None: eq. 5 alone)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    n_ctx, L = context_length(length), n_ctx_train
    if method == "self-extend":
        measured = measured_settings.instead_of_eq5(model_file, n_ctx, L, group_size, neighbor_window)
        if measured is not None:
            group_size, neighbor_window = measured.group_size, measured.neighbor_window
        s = se.resolve(n_ctx, L, group_size, neighbor_window)
        return {"group_size": s.group_size, "neighbor_window": s.neighbor_window} if s else {}
    if method == "grouped-cache":
        ga_n, ga_w = _grouped_cache_setting(n_ctx, L, group_size, neighbor_window)
        return {"ga_n": ga_n, "ga_w": ga_w}
    if method in ("yarn", "linear"):
        return {"rope_freq_scale": round(min(1.0, L / n_ctx), 6), "orig_ctx": L}
    if method == "truncate":
        return {"kept_tokens": L - ANSWER_ROOM}
    return {}


def automatic_choice(model: Optional[str]) -> Callable[[str, int], Dict[str, object]]:
    """method, length -> the settings `method` chooses by itself for this model (no G or
    W given): what a report's row named after the bare method stands for."""
    model_file = resolve_model_path(model)
    n_ctx_train = n_ctx_train_of(model_file)
    return lambda method, length: planned_settings(method, length, n_ctx_train, model_file=model_file)


def variant_of(method: str, group_size: Optional[int], neighbor_window: Optional[int]) -> Optional[str]:
    """How a run asked for its setting when it did not leave it to the automatic rule
    ("G=7, W=1024"), for the methods that take G and W; None otherwise. Reports show
    each variant in a row of its own."""
    if method not in ("self-extend", "grouped-cache") or (group_size is None and neighbor_window is None):
        return None
    parts = ([f"G={group_size}"] if group_size is not None else []) + \
            ([f"W={neighbor_window}"] if neighbor_window is not None else [])
    return ", ".join(parts)


def build_runner(method: str, model_path: Optional[str], length: int, n_ctx_train: int,
                 group_size: Optional[int] = None, neighbor_window: Optional[int] = None,
                 threads: Optional[int] = None, n_ubatch: int = 512, flash_attn: bool = False,
                 n_gpu_layers: int = 0) -> Runner:
    n_ctx = context_length(length)
    planned = planned_settings(method, length, n_ctx_train, group_size, neighbor_window,
                               resolve_model_path(model_path))
    common = dict(n_threads=threads, n_ubatch=n_ubatch, n_batch=max(512, n_ubatch), flash_attn=flash_attn,
                  n_gpu_layers=n_gpu_layers)
    L = n_ctx_train

    if method == "self-extend":
        # "self-extend" is the shipped automatic choice unless G/W are given, even after
        # `tune` remembered a setting on this machine
        llm = Llama(model_path, n_ctx=n_ctx, group_size=group_size, neighbor_window=neighbor_window,
                    use_tuned_setting=False, **common)
        s = llm.self_extend
        settings = {"group_size": s.group_size, "neighbor_window": s.neighbor_window} if s else {}
        if settings != planned:   # results are keyed by the plan: it must be what ran
            raise RuntimeError(f"self-extend ran with {settings}, not the planned {planned}")
        return Runner(method, llm, lambda t, m: _greedy_text(llm, t, m), settings)

    if method == "grouped-cache":
        llm = Llama(model_path, n_ctx=n_ctx, group_size=1, **common)
        cache = GroupedCache(llm, planned["ga_n"], planned["ga_w"])
        return Runner(method, llm, lambda t, m: _decode(llm, cache.greedy(t, m)), planned, score=cache.score)

    if method in ("yarn", "linear"):
        scale = min(1.0, L / n_ctx)
        llm = Llama(model_path, n_ctx=n_ctx, group_size=1, rope_scaling_type=method, rope_freq_scale=scale,
                    yarn_orig_ctx=L, **common)
        return Runner(method, llm, lambda t, m: _greedy_text(llm, t, m), planned)

    if method == "truncate":
        llm = Llama(model_path, n_ctx=L, group_size=1, **common)
        keep = planned["kept_tokens"]
        return Runner(method, llm, lambda t, m: _greedy_text(llm, t, m), planned,
                      prepare=lambda tokens: tokens[-keep:] if len(tokens) > keep else tokens)

    llm = Llama(model_path, n_ctx=n_ctx, group_size=1, **common)   # vanilla
    return Runner(method, llm, lambda t, m: _greedy_text(llm, t, m), {})
