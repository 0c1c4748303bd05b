"""Sampling settings with llama_cpp.Llama's names and defaults, checked here and handed
to llama.cpp's own sampler chain (common/sampling.cpp, bound as `_core.Sampler`): logit
bias, repeat/presence/frequency penalties, top-k, typical-p, top-p, min-p, temperature
(<= 0: greedy) or mirostat, then a seeded draw; optionally a grammar."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import _core

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # as llama_cpp: a random seed


@dataclass
class GrammarSpec:
    """A GBNF grammar for the sampler and what it came from: "user" (grammar=),
    "output_format" (a JSON schema) or "tool_calls" (the chat template's)."""
    text: str
    type: str = "user"
    lazy: bool = False
    triggers: List[Tuple[int, str, int]] = field(default_factory=list)  # (type, value, token)
    preserved_tokens: List[str] = field(default_factory=list)
    generation_prompt: str = ""


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    mirostat_mode: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: Optional[int] = None          # None or LLAMA_DEFAULT_SEED: a random seed
    logit_bias: Optional[Dict[int, float]] = None

    def validate(self) -> None:
        def finite(name: str) -> float:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            return float(value)

        if finite("temperature") < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        for name in ("top_p", "min_p", "typical_p"):
            if not 0.0 <= finite(name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if finite("repeat_penalty") <= 0:
            raise ValueError(f"repeat_penalty must be > 0 (1.0 is off), got {self.repeat_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= finite(name) <= 2.0:
                raise ValueError(f"{name} must be in [-2, 2] (OpenAI's range; 0 is off), got {getattr(self, name)}")
        for name in ("top_k", "penalty_last_n", "mirostat_mode"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.penalty_last_n < -1:
            raise ValueError(f"penalty_last_n must be >= -1 (-1: the whole context), got {self.penalty_last_n}")
        if self.mirostat_mode not in (0, 1, 2):
            raise ValueError(f"mirostat_mode must be 0 (off), 1 or 2, got {self.mirostat_mode}")
        if finite("mirostat_tau") <= 0 or finite("mirostat_eta") <= 0:
            raise ValueError("mirostat_tau and mirostat_eta must be > 0")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")


def logit_bias_of(value: Optional[Mapping[Any, Any]]) -> Optional[Dict[int, float]]:
    """{token id: bias}; OpenAI sends the ids as strings. A bias of -inf (or OpenAI's
    -100) makes a token impossible."""
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("logit_bias must map token ids to numbers")
    out = {}
    for token, bias in value.items():
        try:
            token_id = int(token)
            number = float(bias)
        except (TypeError, ValueError) as err:
            raise ValueError(f"logit_bias must map token ids to numbers, got {token!r}: {bias!r}") from err
        out[token_id] = number
    return out


def new_sampler(model: "_core.Model", params: SamplingParams, n_ctx: int,
                grammar: Optional[GrammarSpec] = None) -> "_core.Sampler":
    """llama.cpp's sampler chain for these settings (ValueError for bad ones, a bad grammar
    included, with llama.cpp's reason)."""
    params.validate()
    p = _core.SamplerParams()
    p.temperature = float(params.temperature)
    p.top_k = int(params.top_k) if params.top_k > 0 else 0   # <= 0: the whole vocabulary
    p.top_p = float(params.top_p)
    p.min_p = float(params.min_p)
    p.typical_p = float(params.typical_p)
    p.repeat_penalty = float(params.repeat_penalty)
    p.presence_penalty = float(params.presence_penalty)
    p.frequency_penalty = float(params.frequency_penalty)
    p.penalty_last_n = n_ctx if params.penalty_last_n == -1 else int(params.penalty_last_n)
    p.mirostat_mode = int(params.mirostat_mode)
    p.mirostat_tau = float(params.mirostat_tau)
    p.mirostat_eta = float(params.mirostat_eta)
    seed = LLAMA_DEFAULT_SEED if params.seed is None else int(params.seed)
    p.seed = seed & 0xFFFFFFFF
    p.logit_bias = sorted((params.logit_bias or {}).items())
    if grammar is not None and grammar.text:
        p.grammar = grammar.text
        p.grammar_type = grammar.type
        p.grammar_lazy = grammar.lazy
        p.grammar_triggers = list(grammar.triggers)
        p.preserved_tokens = list(grammar.preserved_tokens)
        p.generation_prompt = grammar.generation_prompt
    return _core.Sampler(model, p)


def prime(sampler: "_core.Sampler", tokens: Sequence[int], last_n: int) -> None:
    """The penalties count the last last_n tokens already in the sequence (-1: all of them),
    as llama.cpp's tools do."""
    window = len(tokens) if last_n < 0 else min(last_n, len(tokens))
    for token in tokens[len(tokens) - window:]:
        sampler.accept(int(token), False)
