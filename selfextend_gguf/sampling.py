"""Token sampling from logits, with llama.cpp's parameter names and order:
repeat penalty, then top-k, top-p, min-p, temperature. temperature <= 0 is greedy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    logit_bias: Optional[Dict[int, float]] = None   # added to the logits of these tokens first

    def validate(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repeat_penalty <= 0:
            raise ValueError(f"repeat_penalty must be > 0, got {self.repeat_penalty}")


class Sampler:
    def __init__(self, params: SamplingParams, seed: Optional[int] = None):
        params.validate()
        self.params = params
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        p = self.params
        logits = np.asarray(logits, dtype=np.float64)
        if p.logit_bias:
            logits = logits.copy()
            for token, bias in p.logit_bias.items():
                if 0 <= token < logits.size:
                    logits[token] += bias
        if p.repeat_penalty != 1.0 and p.repeat_last_n != 0 and len(history):
            recent = np.unique(np.asarray(history[-p.repeat_last_n:] if p.repeat_last_n > 0 else history))
            logits = logits.copy()
            vals = logits[recent]
            logits[recent] = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
        if p.temperature <= 0:
            return int(np.argmax(logits))

        candidates = np.arange(logits.size)
        if 0 < p.top_k < logits.size:
            candidates = np.argpartition(-logits, p.top_k - 1)[:p.top_k]
        candidates = candidates[np.argsort(-logits[candidates], kind="stable")]
        values = logits[candidates]

        probs = np.exp(values - values[0])
        probs /= probs.sum()
        keep = probs.size
        if p.top_p < 1.0:
            keep = min(keep, int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1)
        if p.min_p > 0.0:
            keep = min(keep, max(1, int(np.count_nonzero(probs >= p.min_p * probs[0]))))
        candidates, values = candidates[:keep], values[:keep]

        scaled = (values - values[0]) / p.temperature
        weights = np.exp(scaled)
        weights /= weights.sum()
        return int(candidates[self.rng.choice(keep, p=weights)])
