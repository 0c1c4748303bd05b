"""One sequence of a context: the tokens its cells hold, the logits rows kept for it,
and everything that changes them: evaluate (in n_batch chunks, rolled back on failure),
prefill reusing the longest cached prefix (the context's own cells, or a prompt cache
entry), rewind, position edits, save and load with the one state check, and drawing the
next token with a llama.cpp sampler.

`Llama` runs one Sequence over its whole context. Each slot of the batch scheduler is a
Sequence too (one seq_id of the shared context): the scheduler decodes several of them
in one batch and records what each batch put in their cells, and their states are
saved and loaded per sequence."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence as Items

import numpy as np

from .errors import ContextWindowExceeded, RpcServerLost
from .prefix import common_prefix_length
from .prompt_cache import MIN_GAIN
from .scores import Scores
from .state import LlamaState
from .state_file import check_loadable

ProgressCallback = Callable[[int, int], None]


class Sequence:
    """whole_context: the sequence is the context's only one (`Llama`): states hold the
    whole context and a reset clears it; else it is one seq_id beside others (a
    scheduler slot) and states hold its cells alone. identity() says what a state of it
    depends on (state_file.py)."""

    def __init__(self, ctx: Any, n_ctx: int, n_vocab: int, n_ctx_train: int,
                 identity: Callable[[], Dict[str, Any]], *, seq_id: int = 0, whole_context: bool = True,
                 logits_all: bool = False, lock: Optional[threading.RLock] = None, watch_rpc: bool = False,
                 log: Callable[[str], None] = lambda message: None):
        self.ctx = ctx
        self.n_ctx = n_ctx              # the limit asked for (llama.cpp may round its cache up)
        self.n_vocab = n_vocab
        self.n_ctx_train = n_ctx_train
        self.identity = identity
        self.seq_id = seq_id
        self.whole_context = whole_context
        self.logits_all = logits_all
        self.lock = lock or threading.RLock()
        self.watch_rpc = watch_rpc
        self.log = log
        self.cache: Optional[Any] = None   # a prompt cache (LlamaRAMCache / LlamaDiskCache)
        self.lost: Optional[str] = None    # the error of an RPC server whose buffers are gone
        self.tokens: List[int] = []
        self.positions_edited = False
        # whether the context's own logits row (what the sampler reads) is the last one in
        # `scores`: not after load_state, which restores ours from the state object
        self._ctx_logits_current = False
        # rows of logits: one per position with logits_all (grown as the sequence grows),
        # else only the last; never n_ctx x n_vocab up front (64k x 262k would be 64 GiB)
        self.scores = Scores(n_ctx, n_vocab, logits_all, ctx.n_batch())

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    # ------------------------------------------------------------------ cells

    def reset(self) -> None:
        """Forget the sequence (its cells are removed)."""
        with self.lock:
            self.tokens = []
            self.scores.truncate(0)
            self.positions_edited = False
            self._ctx_logits_current = False
            if self.whole_context:
                self.ctx.memory_clear()
            else:
                self.ctx.seq_rm(self.seq_id, 0, -1)

    def keep(self, n_tokens: int) -> None:
        """Keep the first n_tokens (the cache drops the cells after them)."""
        with self.lock:
            if n_tokens < len(self.tokens):
                self.ctx.seq_rm(self.seq_id, n_tokens, -1)
                del self.tokens[n_tokens:]
                self.scores.truncate(n_tokens)
                self._ctx_logits_current = False

    def copy_from(self, other: "Sequence", n_tokens: int) -> None:
        """Take the first n_tokens cells of another sequence of the same context
        (llama_memory_seq_cp: shared cells, not evaluated again)."""
        self.reset()
        self.ctx.seq_cp(other.seq_id, self.seq_id, 0, n_tokens)
        self.tokens = list(other.tokens[:n_tokens])

    def record(self, tokens: Items[int]) -> None:
        """Tokens that a batch of several sequences decoded into this one's cells."""
        self.tokens += tokens

    def check_room(self, used: int, tokens: Items[int]) -> None:
        if used + len(tokens) > self.n_ctx:
            raise ContextWindowExceeded(
                f"Requested tokens ({used + len(tokens)}) exceed context window of {self.n_ctx}; "
                f"create the Llama with a larger n_ctx (Self-Extend lets it exceed the model's "
                f"trained context of {self.n_ctx_train})")
        bad = [t for t in tokens if not 0 <= t < self.n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self.n_vocab})")

    def check_prompt(self, tokens: List[int]) -> List[int]:
        """A prompt must leave room for at least one generated token."""
        if not tokens:
            raise ValueError("empty prompt: give at least one token of text")
        if len(tokens) >= self.n_ctx:
            raise ContextWindowExceeded(
                f"Requested tokens ({len(tokens)}) exceed context window of {self.n_ctx}; "
                f"the prompt needs room for at least one generated token. Create the Llama with a "
                f"larger n_ctx (Self-Extend lets it exceed the model's trained context of "
                f"{self.n_ctx_train})")
        return tokens

    # ------------------------------------------------------------------ evaluation

    def append(self, tokens: List[int], logits_all: bool, on_chunk: Callable[[int, int, np.ndarray], None],
               progress_callback: Optional[ProgressCallback] = None) -> None:
        """Decode tokens after the sequence in n_batch chunks, handing each chunk's logits
        to on_chunk(position, offset in tokens, logits). If a chunk fails (or Ctrl-C
        interrupts), the tokens of this call are dropped again, so the object stays usable."""
        with self.lock:
            start = len(self.tokens)
            self.check_room(start, tokens)
            n_batch = self.ctx.n_batch()
            try:
                for offset in range(0, len(tokens), n_batch):
                    chunk = tokens[offset:offset + n_batch]
                    pos = len(self.tokens)
                    on_chunk(pos, offset, self.ctx.decode(chunk, pos, self.seq_id, logits_all))
                    self._ctx_logits_current = True
                    self.tokens.extend(chunk)
                    if progress_callback is not None:
                        progress_callback(offset + len(chunk), len(tokens))
            except BaseException as err:
                if self.watch_rpc and "RPC server" in str(err):
                    self.lost = str(err)   # its buffers on the lost server are gone
                    raise RpcServerLost(str(err)) from err
                self.ctx.seq_rm(self.seq_id, start, -1)
                del self.tokens[start:]
                self.scores.truncate(start)
                raise

    def eval(self, tokens: Items[int], progress_callback: Optional[ProgressCallback] = None) -> None:
        """Append tokens, keeping their logits in `scores` (every row with logits_all)."""
        tokens = [int(t) for t in tokens]
        n_batch = self.ctx.n_batch()

        def keep(pos: int, offset: int, logits: np.ndarray) -> None:
            if self.logits_all:
                self.scores.put(pos, logits)
            else:  # decode returned the chunk's last row only
                chunk_len = min(n_batch, len(tokens) - offset)
                self.scores.put(pos + chunk_len - 1, logits[-1:])

        self.append(tokens, self.logits_all, keep, progress_callback)

    def eval_logits(self, tokens: Items[int]) -> np.ndarray:
        """Append tokens and return the logits of every one of them, not kept in `scores`."""
        tokens = [int(t) for t in tokens]
        out = np.empty((len(tokens), self.n_vocab), dtype=np.float32)

        def keep(pos: int, offset: int, logits: np.ndarray) -> None:
            out[offset:offset + len(logits)] = logits

        self.append(tokens, True, keep)
        return out

    def evaluate_rows(self, tokens: Items[int], on_chunk: Callable[[int, int, np.ndarray], None]) -> None:
        """Append tokens, handing every chunk's rows of logits to on_chunk without keeping them."""
        self.append([int(t) for t in tokens], True, on_chunk)

    def eval_next(self, token: int) -> np.ndarray:
        self.eval([token])
        return self.last_logits()

    def last_logits(self) -> np.ndarray:
        if not self.tokens:
            raise ValueError("no tokens evaluated yet")
        return self.scores.last(len(self.tokens) - 1)

    def prefill(self, tokens: Items[int], progress_callback: Optional[ProgressCallback] = None) -> np.ndarray:
        """Make the sequence equal to tokens, reusing the longest cached prefix, and return
        the logits after the last token."""
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("empty prompt: give at least one token of text")
        with self.lock:
            if self.positions_edited:
                self.reset()
            if self.cache is not None:
                self._load_cached_prefix(tokens)
            # always evaluate at least one token, for its logits
            self.keep(min(common_prefix_length(self.tokens, tokens), len(tokens) - 1))
            self.eval(tokens[len(self.tokens):], progress_callback)
            return self.last_logits()

    def rewind(self, n_tokens: int) -> None:
        with self.lock:
            if not 0 <= n_tokens <= len(self.tokens):
                raise ValueError(f"cannot rewind to {n_tokens} tokens: the sequence has {len(self.tokens)}")
            if self.positions_edited:
                raise ValueError("positions were edited (kv_seq_add/kv_seq_div): reset() instead")
            self.keep(n_tokens)

    # Position editing, for methods that move cached positions (llama.cpp's grouped-cache
    # "self-extend" and context shifting). Afterwards positions no longer equal token
    # indices, so the next prefill starts from an empty cache.

    def eval_at(self, tokens: Items[int], pos: int) -> np.ndarray:
        tokens = [int(t) for t in tokens]
        with self.lock:
            self.check_room(max(pos, len(self.tokens)), tokens)
            logits = self.ctx.decode(tokens, pos, self.seq_id, False)
            self._ctx_logits_current = True
            self.tokens.extend(tokens)
            self.positions_edited = True
            return logits[-1]

    def seq_add(self, p0: int, p1: int, delta: int) -> None:
        with self.lock:
            self.ctx.seq_add(self.seq_id, p0, p1, delta)
            self.positions_edited = True

    def seq_div(self, p0: int, p1: int, d: int) -> None:
        with self.lock:
            self.ctx.seq_div(self.seq_id, p0, p1, d)
            self.positions_edited = True

    # ------------------------------------------------------------------ sampling

    def set_last_logits(self, logits: np.ndarray) -> None:
        """Replace the logits that the next draw reads (a logits processor's output)."""
        with self.lock:
            self.ctx.set_logits(-1, np.asarray(logits, dtype=np.float32))
            self._ctx_logits_current = True

    def sample_next(self, sampler: Any) -> int:
        """Draw the next token with llama.cpp's sampler from the logits after the last token."""
        with self.lock:
            if not self._ctx_logits_current:
                self._restore_ctx_logits()
            return sampler.sample(self.ctx, -1)

    def _restore_ctx_logits(self) -> None:
        # after load_state: the context may hold no output row; evaluate the last token again
        try:
            self.ctx.set_logits(-1, self.last_logits())
        except ValueError:
            last = self.tokens[-1]
            self.keep(len(self.tokens) - 1)
            self.eval([last])
        self._ctx_logits_current = True

    def embed(self, tokens: Items[int]) -> np.ndarray:
        """Embedding rows of one input, computed from an empty sequence."""
        with self.lock:
            self.reset()
            return self.ctx.embed([int(t) for t in tokens])

    # ------------------------------------------------------------------ states

    def save_state(self) -> LlamaState:
        with self.lock:
            if self.positions_edited:
                raise ValueError("positions were edited (kv_seq_add/kv_seq_div): reset() before saving a state")
            if self.whole_context:
                last = self.last_logits().copy() if self.tokens else None
                raw = self.ctx.state_get()
            else:
                last, raw = None, self.ctx.state_seq_get(self.seq_id)
            return LlamaState(np.asarray(self.tokens, dtype=np.int32), raw, last, self.identity())

    def load_state(self, state: LlamaState) -> None:
        """Go back to a saved state; one of another model or other settings is refused."""
        with self.lock:
            check_loadable(self.identity(), state)
            tokens = [int(t) for t in state.input_ids]
            self.check_room(0, tokens)
            try:
                if self.whole_context:
                    self.ctx.state_set(state.llama_state)
                else:
                    self.ctx.seq_rm(self.seq_id, 0, -1)
                    self.ctx.state_seq_set(state.llama_state, self.seq_id)
            except Exception:
                self.reset()   # the cache may hold part of the state: start from empty
                raise
            self.tokens = tokens
            self.scores.truncate(0)
            if state.last_logits is not None:
                self.scores.put(len(tokens) - 1, state.last_logits[None, :])
            self.positions_edited = False
            self._ctx_logits_current = False

    def _load_cached_prefix(self, tokens: List[int]) -> None:
        """Load the cached state sharing a longer prefix with tokens than the sequence holds
        now, if that saves evaluating at least MIN_GAIN tokens."""
        have = common_prefix_length(self.tokens, tokens)
        hit = self.cache.lookup(tokens, self.identity(), min_prefix=have + MIN_GAIN)
        if hit is None:
            return
        start = time.perf_counter()
        self.load_state(hit.state)
        self.log(f"prompt cache: loaded {hit.n_matching} of {len(tokens)} prompt tokens in "
                 f"{time.perf_counter() - start:.2f} s")

    def store_in_cache(self) -> None:
        """With a prompt cache: store the current state (after a completion)."""
        if self.cache is not None and self.tokens and not self.positions_edited:
            with self.lock:
                self.cache.store(self.save_state())
