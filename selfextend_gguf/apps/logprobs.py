"""Log-probabilities in the app protocols' shapes: llama_cpp's completion logprobs and
OpenAI's chat logprobs (engine/logprobs.py computes them)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ..engine.logprobs import TokenLogprob

# OpenAI allows top_logprobs up to 20
MAX_TOP_LOGPROBS = 20


def check_count(n: Optional[int], name: str) -> Optional[int]:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TOP_LOGPROBS:
        raise ValueError(f"{name} must be an integer in [0, {MAX_TOP_LOGPROBS}], got {n!r}")
    return n


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
