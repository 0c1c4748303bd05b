"""The generation loop: prefill a prompt, then sample and evaluate one token at a time."""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Protocol, Sequence

import numpy as np

from .sampling import Sampler
from .text_stream import TextStream


class Engine(Protocol):
    """What the loop needs from a model + context (Llama provides it)."""

    def n_ctx(self) -> int: ...

    @property
    def n_tokens(self) -> int: ...

    def prefill(self, tokens: Sequence[int],
                progress_callback: Optional[Callable[[int, int], None]] = None) -> np.ndarray: ...

    def eval_next(self, token: int) -> np.ndarray: ...

    def is_eog(self, token: int) -> bool: ...

    def token_bytes(self, token: int) -> bytes: ...


class Generation:
    """Iterate to get text pieces; afterwards finish_reason ("stop" or "length") and the
    token counts are set."""

    def __init__(self, engine: Engine, prompt_tokens: List[int], sampler: Sampler,
                 max_tokens: Optional[int], stop: Sequence[str],
                 progress_callback: Optional[Callable[[int, int], None]] = None,
                 stopping_criteria: Sequence[Callable[[np.ndarray, np.ndarray], bool]] = ()):
        self.engine = engine
        self.prompt_tokens = prompt_tokens
        self.sampler = sampler
        self.max_tokens = max_tokens
        self.stream = TextStream(stop)
        self.progress_callback = progress_callback
        self.stopping_criteria = list(stopping_criteria or ())
        self.completion_tokens: List[int] = []
        self.finish_reason: Optional[str] = None

    def __iter__(self) -> Iterator[str]:
        engine = self.engine
        logits = engine.prefill(self.prompt_tokens, self.progress_callback)
        history = list(self.prompt_tokens)
        self.finish_reason = "length"
        while self.max_tokens is None or len(self.completion_tokens) < self.max_tokens:
            token = self.sampler(logits, history)
            if engine.is_eog(token):
                self.finish_reason = "stop"
                break
            self.completion_tokens.append(token)
            history.append(token)
            text = self.stream.push(engine.token_bytes(token))
            if text:
                yield text
            if self.stream.stopped:
                self.finish_reason = "stop"
                break
            if self.stopping_criteria:
                ids = np.asarray(history, dtype=np.int32)
                if any(criterion(ids, logits) for criterion in self.stopping_criteria):
                    self.finish_reason = "stop"
                    break
            if len(self.completion_tokens) == self.max_tokens or engine.n_tokens >= engine.n_ctx():
                break  # done, or the context is full: "length" as llama.cpp reports it
            logits = engine.eval_next(token)
        tail = self.stream.finish()
        if tail:
            yield tail
