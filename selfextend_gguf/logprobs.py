"""Log-probabilities of generated tokens, from the distribution the model gave (the
log-softmax of its logits, before any sampler truncated it, as llama-server reports
them), in llama_cpp's completion shape and in OpenAI's chat shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

# OpenAI allows top_logprobs up to 20
MAX_TOP_LOGPROBS = 20


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x)
    return x - (m + np.log(np.sum(np.exp(x - m))))


def check_count(n: Optional[int], name: str) -> Optional[int]:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TOP_LOGPROBS:
        raise ValueError(f"{name} must be an integer in [0, {MAX_TOP_LOGPROBS}], got {n!r}")
    return n


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


def completion_logprobs(items: List[Optional[TokenLogprob]], piece: Callable[[int], bytes],
                        offset0: int = 0) -> Dict[str, Any]:
    """llama_cpp's completion logprobs: tokens, text_offset, token_logprobs, top_logprobs
    (a dict text -> logprob that includes the chosen token). None items (the first
    prompt token, which has no logits before it) get None."""
    tokens, offsets, token_lps, tops = [], [], [], []
    offset = offset0
    for item, text in ((it, _text(piece(it.token)) if it else "") for it in items):
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        if item is None:
            token_lps.append(None)
            tops.append(None)
            continue
        token_lps.append(item.logprob)
        top: Dict[str, float] = {}
        for t, value in item.top:
            top.setdefault(_text(piece(t)), value)   # tokens of the same text: the likelier one
        top.setdefault(text, item.logprob)
        tops.append(top)
    return {"tokens": tokens, "text_offset": offsets, "token_logprobs": token_lps, "top_logprobs": tops}


def chat_logprobs(items: List[TokenLogprob], piece: Callable[[int], bytes]) -> Dict[str, Any]:
    """OpenAI's chat logprobs: {"content": [{token, logprob, bytes, top_logprobs}], "refusal": None}."""
    def entry(token: int, lp: float) -> Dict[str, Any]:
        raw = piece(token)
        return {"token": _text(raw), "logprob": lp, "bytes": list(raw)}

    content = []
    for item in items:
        e = entry(item.token, item.logprob)
        e["top_logprobs"] = [entry(t, lp) for t, lp in item.top]
        content.append(e)
    return {"content": content, "refusal": None}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
