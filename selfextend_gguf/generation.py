"""The generation loop: prefill a prompt, then draw a token with llama.cpp's sampler from
the context's logits and evaluate it, one at a time."""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Protocol, Sequence

import numpy as np

from .logprobs import TokenLogprob, token_logprob
from .text_stream import TextStream

# llama_cpp: (input_ids, scores) -> scores
LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Engine(Protocol):
    """What the loop needs from a model + context (Llama provides it)."""

    def n_ctx(self) -> int: ...

    @property
    def n_tokens(self) -> int: ...

    def prefill(self, tokens: Sequence[int],
                progress_callback: Optional[Callable[[int, int], None]] = None) -> np.ndarray: ...

    def eval_next(self, token: int) -> np.ndarray: ...

    def set_last_logits(self, logits: np.ndarray) -> None: ...

    def sample_next(self, sampler) -> int: ...

    def is_eog(self, token: int) -> bool: ...

    def token_bytes(self, token: int, special: bool = False) -> bytes: ...


class Generation:
    """Iterate to get text pieces; afterwards finish_reason ("stop" or "length"), the
    token counts and (with n_logprobs) the log-probabilities are set."""

    def __init__(self, engine: Engine, prompt_tokens: List[int], sampler, max_tokens: Optional[int],
                 stop: Sequence[str], progress_callback: Optional[Callable[[int, int], None]] = None,
                 stopping_criteria: Sequence[Callable[[np.ndarray, np.ndarray], bool]] = (),
                 logits_processors: Sequence[LogitsProcessor] = (), n_logprobs: Optional[int] = None,
                 special_tokens: Sequence[int] = (), penalty_last_n: int = 64):
        self.engine = engine
        self.prompt_tokens = prompt_tokens
        self.sampler = sampler
        self.max_tokens = max_tokens
        self.stream = TextStream(stop)
        self.progress_callback = progress_callback
        self.stopping_criteria = list(stopping_criteria or ())
        self.logits_processors = list(logits_processors or ())
        self.n_logprobs = n_logprobs
        # tokens shown as their text although special (a template's tool-call markers)
        self.special_tokens = frozenset(special_tokens)
        self.penalty_last_n = penalty_last_n
        self.completion_tokens: List[int] = []
        self.logprobs: List[TokenLogprob] = []
        self._logprobs_taken = 0
        self.finish_reason: Optional[str] = None

    def take_logprobs(self) -> List[TokenLogprob]:
        """The log-probabilities recorded since the last call (for streaming)."""
        out = self.logprobs[self._logprobs_taken:]
        self._logprobs_taken = len(self.logprobs)
        return out

    def _draw(self, logits: np.ndarray, history: List[int]) -> int:
        if self.logits_processors:
            ids = np.asarray(history, dtype=np.intc)
            processed = logits
            for processor in self.logits_processors:
                processed = processor(ids, processed)
            self.engine.set_last_logits(np.asarray(processed, dtype=np.float32))
        return self.engine.sample_next(self.sampler)

    def __iter__(self) -> Iterator[str]:
        engine = self.engine
        logits = engine.prefill(self.prompt_tokens, self.progress_callback)
        # penalties count the prompt's last tokens too, as llama.cpp's tools do
        window = len(self.prompt_tokens) if self.penalty_last_n < 0 else self.penalty_last_n
        for token in self.prompt_tokens[len(self.prompt_tokens) - min(window, len(self.prompt_tokens)):]:
            self.sampler.accept(token, False)
        history = list(self.prompt_tokens)
        self.finish_reason = "length"
        while self.max_tokens is None or len(self.completion_tokens) < self.max_tokens:
            token = self._draw(logits, history)
            if engine.is_eog(token):
                self.finish_reason = "stop"
                break
            if self.n_logprobs is not None:   # of the model's own logits, as llama-server reports
                self.logprobs.append(token_logprob(logits, token, self.n_logprobs))
            self.sampler.accept(token, True)
            self.completion_tokens.append(token)
            history.append(token)
            text = self.stream.push(engine.token_bytes(token, token in self.special_tokens))
            if text:
                yield text
            if self.stream.stopped:
                self.finish_reason = "stop"
                break
            if self.stopping_criteria:
                ids = np.asarray(history, dtype=np.intc)
                if any(criterion(ids, logits) for criterion in self.stopping_criteria):
                    self.finish_reason = "stop"
                    break
            if len(self.completion_tokens) == self.max_tokens or engine.n_tokens >= engine.n_ctx():
                break  # done, or the context is full: "length" as llama.cpp reports it
            logits = engine.eval_next(token)
        tail = self.stream.finish()
        if tail:
            yield tail
