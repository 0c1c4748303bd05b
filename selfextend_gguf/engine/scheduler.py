"""Continuous batching: several generations in one context, one sequence (slot) each,
as llama-server runs its slots. One scheduler thread owns the context; each step it
decodes, in one llama_decode, the next token of every generating slot and then prompt
chunks of the slots that are still reading their prompt (up to n_batch tokens in all),
and draws each generating slot's next token with that slot's own sampler.

Self-Extend is exact per sequence (the engine's general form takes several sequences in
one ubatch), so a generation's tokens do not depend on what else is in the batch.

A new generation goes to a free slot; the slot keeps its cells afterwards, so that a
later prompt with the same beginning reuses them. If another slot holds a longer
beginning, its cells are copied (llama_memory_seq_cp) instead of evaluated again. A
cancelled generation's cells are removed at once.

The slots share the cache's cells. A generation is admitted when its prompt fits beside
what the busy slots hold (idle slots' cells are dropped for it, least recently used
first); otherwise it waits. If a batch still finds no room (the generations grew), a
generation that is still reading its prompt goes back to the queue, and only if none is
left does the newest generating one fail with ContextFull; the others go on."""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Deque, Iterator, List, Optional

import numpy as np

from .. import _core
from . import state_file
from .errors import ContextFull
from .generation import Generation
from .logprobs import token_logprob
from .prefix import common_prefix_length
from .prompt_cache import MIN_GAIN
from .sequence import Sequence


# cells kept free for a busy slot's generated tokens when others are admitted beside it
GENERATION_RESERVE = 256
# a generation whose prompt shares at least this many tokens with what a busy slot is
# still reading waits for it, then copies those cells
SHARE_MIN_TOKENS = 256


@dataclass
class Job:
    gen: Generation
    prompt: List[int]
    results: "queue.Queue" = field(default_factory=queue.Queue)
    slot: Optional["Slot"] = None
    n_done: int = 0                    # prompt tokens in the slot's cells
    n_evaluated: int = 0               # of those, evaluated by this job (the rest was reused)
    next_token: Optional[int] = None   # the token to decode next (generating)
    cancelled: bool = False
    finished: bool = False
    # echo with logprobs: the prompt's own log-probabilities, evaluated from scratch
    prompt_logprobs: Optional[int] = None


@dataclass
class Slot:
    seq: Sequence       # one sequence of the shared context: what its cells hold
    job: Optional[Job] = None
    last_used: float = 0.0
    last_prompt_tokens: int = 0
    last_evaluated: int = 0
    shared: int = 0     # leading cells copied from another slot (counted there)

    @property
    def seq_id(self) -> int:
        return self.seq.seq_id

    @property
    def tokens(self) -> List[int]:
        return self.seq.tokens

    def stats(self) -> dict:
        return {"id": self.seq_id, "n_cached": len(self.tokens), "busy": self.job is not None,
                "last_prompt_tokens": self.last_prompt_tokens, "last_evaluated": self.last_evaluated}


class BatchScheduler:
    """Runs Generations on the sequences of one Llama's context (made with n_seq_max >=
    n_slots). While it runs, the Llama's own single-sequence calls must not be used."""

    def __init__(self, llm, n_slots: Optional[int] = None, prompt_cache=None):
        """llm: a Llama (its one Sequence gives the context; that sequence is reset and
        unused while the scheduler runs). prompt_cache: a LlamaRAMCache or LlamaDiskCache
        of sequence states, consulted when a generation is admitted and given each
        finished generation's cells."""
        self.llm = llm
        self.prompt_cache = prompt_cache
        whole = llm.sequence
        self.ctx = whole.ctx
        n = n_slots or self.ctx.n_seq_max()
        if n > self.ctx.n_seq_max():
            raise ValueError(f"{n} slots need a Llama with n_seq_max >= {n}")
        whole.reset()
        self.n_ctx = whole.n_ctx
        context_identity = whole.identity

        def identity() -> dict:
            return state_file.sequence_identity(context_identity())

        self.slots = [Slot(Sequence(self.ctx, whole.n_ctx, whole.n_vocab, whole.n_ctx_train, identity,
                                    seq_id=i, whole_context=False)) for i in range(n)]
        self.n_batch = self.ctx.n_batch()
        self._cv = threading.Condition()
        # called after every decode with the number of busy slots (the server's metrics)
        self.on_decode: Optional[Callable[[int], None]] = None
        self._waiting: Deque[Job] = collections.deque()
        self._calls: Deque = collections.deque()    # functions to run between steps
        self._admitted: List[Job] = []     # in order of admission
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="selfextend-batch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers' side

    def run(self, gen: Generation) -> Iterator[str]:
        """The text pieces of gen, generated in a slot (a Generation driver)."""
        job = Job(gen, list(gen.prompt_tokens), prompt_logprobs=getattr(gen, "prompt_logprobs_wanted", None))
        with self._cv:
            if self._stopping:
                raise RuntimeError("the batch scheduler is stopped")
            self._waiting.append(job)
            self._cv.notify()
        try:
            while True:
                kind, value = job.results.get()
                if kind == "text":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            if not job.finished:
                self.cancel(job)

    def call(self, fn: Callable[[], object]):
        """Run fn on the scheduler thread between two steps (the only thread that touches
        the context while the scheduler runs) and return its result."""
        done: "queue.Queue" = queue.Queue()
        with self._cv:
            if self._stopping:
                raise RuntimeError("the batch scheduler is stopped")
            self._calls.append((fn, done))
            self._cv.notify()
        ok, value = done.get()
        if not ok:
            raise value
        return value

    def embed(self, tokens: List[int]) -> np.ndarray:
        """Embedding rows of one input, computed on the sequence after the slots (the Llama
        needs n_seq_max > n_slots and embedding=True), between two steps."""
        spare = len(self.slots)
        if spare >= self.ctx.n_seq_max():
            raise ValueError("embeddings beside the slots need a Llama with n_seq_max > the number of slots")
        return self.call(lambda: self.ctx.embed([int(t) for t in tokens], spare, False))

    def cancel(self, job: Job) -> None:
        with self._cv:
            job.cancelled = True
            self._cv.notify()

    @property
    def n_waiting(self) -> int:
        with self._cv:
            return len(self._waiting)

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        self._thread.join()

    # ------------------------------------------------------------------ scheduler thread

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._admitted and not self._calls:
                    self._cv.wait()
                if self._stopping:
                    for job in list(self._waiting) + self._admitted:
                        self._fail(job, RuntimeError("the batch scheduler stopped"))
                    for _, done in self._calls:
                        done.put((False, RuntimeError("the batch scheduler stopped")))
                    return
                while self._calls:
                    fn, done = self._calls.popleft()
                    try:
                        done.put((True, fn()))
                    except BaseException as err:  # noqa: BLE001 - raised in the caller's thread
                        done.put((False, err))
                self._drop_cancelled()
                self._admit()
            try:
                self._step()
            except Exception as err:  # noqa: BLE001 - never leave callers waiting
                for job in list(self._admitted):
                    self._fail(job, err)

    def clear(self, slot: Slot) -> None:
        """Remove every cell of the slot's sequence."""
        slot.seq.reset()
        slot.shared = 0

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancelled]:
            self._waiting.remove(job)
            job.finished = True
        for job in [j for j in self._admitted if j.cancelled]:
            self.clear(job.slot)       # its cells are freed at once
            self._release(job)
            job.results.put(("done", None))

    def _cells_used(self) -> int:
        """Cells the slots hold or will soon: a busy slot counts its whole prompt and some
        room to generate (GENERATION_RESERVE tokens, or its max_tokens if fewer); cells a
        slot got by copying another's (shared, not new) are not counted again."""
        used = 0
        for s in self.slots:
            held = len(s.tokens) if s.job is None else max(len(s.tokens), self._reserve(s.job))
            used += held - s.shared
        return used

    @staticmethod
    def _reserve(job: Job) -> int:
        room = job.gen.max_tokens if job.gen.max_tokens is not None else GENERATION_RESERVE
        return len(job.prompt) + min(room, GENERATION_RESERVE)

    def _reading_same_beginning(self, prompt: List[int]) -> bool:
        """A busy slot is still reading a long beginning that prompt shares: better to wait
        and copy its cells than to read the same document twice."""
        for s in self.slots:
            if s.job is not None and s.job.prompt_logprobs is None:
                shared = common_prefix_length(s.job.prompt, prompt)
                if shared >= SHARE_MIN_TOKENS and len(s.tokens) < shared:
                    return True
        return False

    def _admit(self) -> None:
        capacity = self.ctx.n_ctx()
        for job in list(self._waiting):
            free = [s for s in self.slots if s.job is None]
            if not free:
                return
            prompt = job.prompt
            if job.prompt_logprobs is None and self._reading_same_beginning(prompt):
                continue
            held = {s.seq_id: common_prefix_length(s.tokens, prompt) for s in self.slots}   # beginning of prompt held
            # the free slot holding the longest beginning of the prompt (then the least recently used)
            slot = max(free, key=lambda s: (held[s.seq_id], -s.last_used))
            donor = max((s for s in self.slots if s is not slot), key=lambda s: held[s.seq_id], default=None)
            keep, source, cached = held[slot.seq_id], "own", None
            if job.prompt_logprobs is not None:
                keep = 0      # every prompt token is evaluated, for its log-probability
            else:
                if donor is not None and held[donor.seq_id] > keep:
                    keep, source = held[donor.seq_id], "copy"
                if self.prompt_cache is not None:
                    cached = self.prompt_cache.lookup(prompt, self.sequence_identity(), min_prefix=keep + MIN_GAIN)
                    if cached is not None:
                        keep, source = cached.n_matching, "cache"
            keep = min(keep, len(prompt) - 1)         # the last prompt token is evaluated, for its logits
            # room: the slot will count its reservation, less the leading cells it shares
            # with another slot (copied now, or before and kept)
            shared_after = {"copy": keep, "cache": 0}.get(source, min(slot.shared, keep))
            change = (self._reserve(job) - shared_after) - (len(slot.tokens) - slot.shared)

            def fits() -> bool:
                return self._cells_used() + change <= capacity

            if not fits():
                self._evict_idle(spare={slot.seq_id, donor.seq_id if donor else -1})
                if not fits() and self._admitted:
                    return   # wait until a busy slot is done
            self._waiting.remove(job)
            if source == "cache":
                self.load_sequence(slot, cached.state)
            elif source == "copy":
                slot.seq.copy_from(donor.seq, keep)
                slot.shared = keep
            slot.seq.keep(keep)
            slot.shared = min(slot.shared, keep)
            job.slot, job.n_done, job.n_evaluated, job.next_token = slot, keep, 0, None
            slot.job = job
            slot.last_prompt_tokens, slot.last_evaluated = len(prompt), 0
            self._admitted.append(job)

    def _requeue(self, job: Job) -> None:
        """Take a generation that has not produced anything back to the queue's front."""
        self.clear(job.slot)
        job.slot.job = None
        self._admitted.remove(job)
        job.slot = None
        job.gen.prompt_logprob_items.clear()
        self._waiting.appendleft(job)

    def sequence_identity(self) -> dict:
        """What a sequence state depends on: the Llama's state identity, for one sequence."""
        return self.slots[0].seq.identity()

    def save_sequence(self, slot: Slot):
        """The slot's cells as a LlamaState of one sequence (run on the scheduler thread)."""
        return slot.seq.save_state()

    def load_sequence(self, slot: Slot, state) -> None:
        """Put a sequence state into an idle slot (run on the scheduler thread)."""
        slot.shared = 0
        slot.seq.load_state(state)

    def _release(self, job: Job) -> None:
        job.finished = True
        job.slot.job = None
        job.slot.last_used = time.monotonic()
        if job in self._admitted:
            self._admitted.remove(job)

    def _fail(self, job: Job, err: BaseException) -> None:
        if job.slot is not None and job.slot.job is job:
            self.clear(job.slot)
            self._release(job)
        job.finished = True
        job.results.put(("error", err))

    def _plan(self):
        """The next batch: decode tokens first, then prompt chunks (llama-server's order)."""
        items = []   # (job, tokens, first position, outputs)
        budget = self.n_batch
        for job in self._admitted:
            if job.next_token is not None and budget > 0:
                items.append((job, [job.next_token], len(job.slot.tokens), [True]))
                budget -= 1
        for job in self._admitted:
            if job.next_token is None and job.n_done < len(job.prompt) and budget > 0:
                n = min(budget, len(job.prompt) - job.n_done)
                chunk = job.prompt[job.n_done:job.n_done + n]
                last = job.n_done + n == len(job.prompt)
                outputs = [job.prompt_logprobs is not None or (last and i == n - 1) for i in range(n)]
                items.append((job, chunk, job.n_done, outputs))
                budget -= n
        return items

    def _decode(self, items):
        tokens, pos, seq, out = [], [], [], []
        for job, chunk, first, outputs in items:
            tokens += chunk
            pos += range(first, first + len(chunk))
            seq += [job.slot.seq_id] * len(chunk)
            out += outputs
        rows = self.ctx.decode_batch(tokens, pos, seq, out)
        if self.on_decode is not None:
            self.on_decode(sum(slot.job is not None for slot in self.slots))
        return rows

    def _evict_idle(self, spare=()) -> bool:
        """Free the cells of idle slots (not those in spare), least recently used first;
        False if there were none."""
        with self._cv:
            idle = sorted((s for s in self.slots if s.job is None and s.tokens and s.seq_id not in spare),
                          key=lambda s: s.last_used)
            for slot in idle:
                self.clear(slot)
            return bool(idle)

    def _make_room(self, items) -> bool:
        """After a batch found no room: free something; False if nothing could be freed."""
        if self._evict_idle():
            return True
        with self._cv:
            reading = [job for job, _, _, _ in items if job.next_token is None]
            if len(reading) > 0 and len(self._admitted) > 1:
                self._requeue(reading[-1])
                return True
            generating = [job for job in self._admitted if job.next_token is not None]
            if generating:
                self._fail(generating[-1], ContextFull(
                    "the KV cache ran out of room for this request beside the others (the slots share "
                    "--n-ctx cells); retry later, or give the server a larger --n-ctx"))
                return True
        return False

    def _step(self) -> None:
        while True:
            items = self._plan()
            if not items:
                return
            try:
                rows = self._decode(items)
                break
            except _core.KvCacheFull as err:
                if self._make_room(items):
                    continue
                failure: BaseException = err
            except Exception as err:  # noqa: BLE001
                failure = err
            with self._cv:   # only this batch's generations fail
                for job, _, _, _ in items:
                    if not job.finished:
                        self._fail(job, failure)
            return
        row = 0          # the next kept logits row
        batch_end = 0    # llama.cpp's batch index after this item's tokens
        for job, chunk, first, outputs in items:
            slot, gen = job.slot, job.gen
            slot.seq.record(chunk)
            batch_end += len(chunk)
            if job.next_token is None:                     # a prompt chunk
                job.n_done += len(chunk)
                job.n_evaluated += len(chunk)
                slot.last_evaluated = job.n_evaluated
                if job.prompt_logprobs is not None:
                    for i in range(len(chunk)):
                        if first + i + 1 < len(job.prompt):
                            gen.prompt_logprob_items.append(
                                token_logprob(rows[row + i], job.prompt[first + i + 1], job.prompt_logprobs))
                if gen.progress_callback is not None:
                    try:
                        gen.progress_callback(job.n_evaluated, len(job.prompt) - (job.n_done - job.n_evaluated))
                    except Exception as err:  # noqa: BLE001 - a cancelled request
                        row += sum(outputs)
                        with self._cv:
                            self._fail(job, err)
                        continue
                if job.n_done < len(job.prompt):
                    row += sum(outputs)
                    continue
                gen.begin()
            logits = rows[row + sum(outputs) - 1]
            idx = batch_end - 1                            # llama.cpp's batch index of the last token
            row += sum(outputs)
            self._advance(job, logits, idx)

    def _advance(self, job: Job, logits: np.ndarray, idx: int) -> None:
        gen, slot = job.gen, job.slot
        try:
            token = gen.step(logits, lambda: gen.sampler.sample(self.ctx, idx),
                             lambda processed: self.ctx.set_logits(idx, processed), len(slot.tokens),
                             self.n_ctx)
        except Exception as err:  # noqa: BLE001 - a processor or criterion of this request failed
            with self._cv:
                self._fail(job, err)
            return
        for text in gen.take_text():
            job.results.put(("text", text))
        if token is None:
            gen.end()
            for text in gen.take_text():
                job.results.put(("text", text))
            with self._cv:
                self._release(job)
            job.results.put(("done", None))
            if self.prompt_cache is not None and len(slot.tokens) >= max(1, self.prompt_cache.min_tokens):
                # written beside the scheduler, which goes on decoding
                threading.Thread(target=self.prompt_cache.store, args=(self.save_sequence(slot),),
                                 name="selfextend-cache-write", daemon=True).start()
        else:
            job.next_token = token
