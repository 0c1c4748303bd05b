"""Log-probabilities of tokens, from the distribution the model gave (the log-softmax of
its logits, before any sampler truncated it, as llama-server reports them). Their
shapes in the app protocols: apps/logprobs.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x)
    return x - (m + np.log(np.sum(np.exp(x - m))))


@dataclass
class TokenLogprob:
    token: int
    logprob: float
    top: List[Tuple[int, float]]  # the n most likely tokens, most likely first


def token_logprob(logits: np.ndarray, token: int, n_top: int) -> TokenLogprob:
    lp = log_softmax(logits)
    top: List[Tuple[int, float]] = []
    if n_top > 0:
        idx = np.argpartition(-lp, min(n_top, lp.size) - 1)[:n_top]
        idx = idx[np.argsort(-lp[idx], kind="stable")]
        top = [(int(i), float(lp[i])) for i in idx]
    return TokenLogprob(int(token), float(lp[token]), top)
