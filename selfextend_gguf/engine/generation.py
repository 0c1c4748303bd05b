"""One generation: a prompt, then tokens drawn with llama.cpp's sampler from the logits
after the last token, rendered to text with stop strings, until a stop or a limit.

The loop is a step function (step: logits in, the token to evaluate next out), so that
it runs alone (the iterator below: prefill, then one decode per token) or inside the
batch scheduler (scheduler.py), which decodes the tokens of several generations at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Sequence, Union

import numpy as np

from .logprobs import TokenLogprob, token_logprob
from .sampling import prime
from .text_stream import TextStream

if TYPE_CHECKING:
    from .sequence import Sequence as EngineSequence

# llama_cpp: (input_ids, scores) -> scores
LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def logits_processors(value: Union[None, LogitsProcessor, Sequence[LogitsProcessor]]) -> List[LogitsProcessor]:
    """llama_cpp's logits_processor argument as a list: None, one callable (its
    LogitsProcessorList is a callable list) or a list of them."""
    if value is None:
        return []
    if callable(value):
        return [value]
    processors = list(value)
    if not all(callable(p) for p in processors):
        raise ValueError("logits_processor must be a callable (input_ids, scores) -> scores, or a list of them")
    return processors


class Generation:
    """Iterate to get text pieces; afterwards finish_reason ("stop" or "length"), the
    token counts and (with n_logprobs) the log-probabilities are set. With a driver
    (the batch scheduler's), iterating hands the generation to it instead."""

    def __init__(self, sequence: "EngineSequence", vocab: Any, prompt_tokens: List[int], sampler, max_tokens: Optional[int],
                 stop: Sequence[str], progress_callback: Optional[Callable[[int, int], None]] = None,
                 stopping_criteria: Sequence[Callable[[np.ndarray, np.ndarray], bool]] = (),
                 logits_processors: Sequence[LogitsProcessor] = (), n_logprobs: Optional[int] = None,
                 special_tokens: Sequence[int] = (), penalty_last_n: int = 64,
                 driver: Optional[Callable[["Generation"], Iterator[str]]] = None):
        self.sequence = sequence    # where it runs alone (a scheduler's slot otherwise)
        self.vocab = vocab          # the model: end-of-generation tokens and token pieces
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
        self.driver = driver
        # echo with logprobs: the log-probability of each prompt token after the ones
        # before it (the prompt is then evaluated from scratch)
        self.prompt_logprobs_wanted: Optional[int] = None
        self.prompt_logprob_items: List[TokenLogprob] = []
        self.completion_tokens: List[int] = []
        self.logprobs: List[TokenLogprob] = []
        self._logprobs_taken = 0
        self._history: List[int] = []
        self._text: List[str] = []
        self.finish_reason: Optional[str] = None

    def take_logprobs(self) -> List[TokenLogprob]:
        """The log-probabilities recorded since the last call (for streaming)."""
        out = self.logprobs[self._logprobs_taken:]
        self._logprobs_taken = len(self.logprobs)
        return out

    # ------------------------------------------------------------------ steps

    def begin(self) -> None:
        """The prompt is in the context: penalties count its last tokens too, as llama.cpp's
        tools do."""
        prime(self.sampler, self.prompt_tokens, self.penalty_last_n)
        self._history = list(self.prompt_tokens)
        self.finish_reason = "length"

    def step(self, logits: np.ndarray, draw: Callable[[], int], set_logits: Callable[[np.ndarray], None],
             n_cached: int, n_ctx: int) -> Optional[int]:
        """Given the logits after the last token (n_cached tokens in the sequence's cache),
        draw the next token (draw() samples from the context's logits, after set_logits
        put a logits processor's output there). Returns the token to evaluate next, or
        None when the generation is over."""
        if self.logits_processors:
            ids = np.asarray(self._history, dtype=np.intc)
            processed = logits
            for processor in self.logits_processors:
                processed = processor(ids, processed)
            set_logits(np.asarray(processed, dtype=np.float32))
        token = draw()
        if self.vocab.is_eog(int(token)):
            self.finish_reason = "stop"
            return None
        if self.n_logprobs is not None:   # of the model's own logits, as llama-server reports
            self.logprobs.append(token_logprob(logits, token, self.n_logprobs))
        self.sampler.accept(token, True)
        self.completion_tokens.append(token)
        self._history.append(token)
        text = self.stream.push(self.vocab.token_to_piece(int(token), token in self.special_tokens))
        if text:
            self._text.append(text)
        if self.stream.stopped:
            self.finish_reason = "stop"
            return None
        if self.stopping_criteria:
            ids = np.asarray(self._history, dtype=np.intc)
            if any(criterion(ids, logits) for criterion in self.stopping_criteria):
                self.finish_reason = "stop"
                return None
        if len(self.completion_tokens) == self.max_tokens or n_cached >= n_ctx:
            return None   # done, or the context is full: "length" as llama.cpp reports it
        return token

    def end(self) -> None:
        tail = self.stream.finish()
        if tail:
            self._text.append(tail)

    def take_text(self) -> List[str]:
        out, self._text = self._text, []
        return out

    # ------------------------------------------------------------------ running

    def __iter__(self) -> Iterator[str]:
        return self.driver(self) if self.driver is not None else self._run_alone()

    def _run_alone(self) -> Iterator[str]:
        sequence = self.sequence
        if self.prompt_logprobs_wanted is not None:
            self._score_prompt()
        logits = sequence.prefill(self.prompt_tokens, self.progress_callback)
        self.begin()
        while True:
            token = self.step(logits, lambda: sequence.sample_next(self.sampler), sequence.set_last_logits,
                              sequence.n_tokens, sequence.n_ctx)
            yield from self.take_text()
            if token is None:
                break
            logits = sequence.eval_next(token)
        self.end()
        yield from self.take_text()

    def _score_prompt(self) -> None:
        """Evaluate the prompt from an empty cache, chunk by chunk, keeping only the top
        entries of each row (never the whole prompt's logits)."""
        tokens, n_top = self.prompt_tokens, self.prompt_logprobs_wanted
        self.sequence.reset()

        def keep(pos: int, offset: int, logits: np.ndarray) -> None:
            for row, i in enumerate(range(offset, offset + len(logits))):
                if i + 1 < len(tokens):
                    self.prompt_logprob_items.append(token_logprob(logits[row], tokens[i + 1], n_top))

        self.sequence.evaluate_rows(tokens, keep)
