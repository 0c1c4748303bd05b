"""Slots: one Llama (context) each, so up to N requests run at once without mixing.
Requests beyond that wait in a bounded queue; when it is full, QueueFull (503).
A free slot whose cached tokens share the longest prefix with the prompt is chosen,
so a follow-up request reuses that slot's KV cache."""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Deque, List, Optional, Sequence

from ..llama import Llama, common_prefix_length
from .errors import QueueFull


class Slot:
    def __init__(self, index: int, llm: Llama):
        self.index = index
        self.llm = llm
        self.cancel = threading.Event()
        self.last_prompt_tokens = 0   # prompt length of the last request
        self.last_evaluated = 0       # of those, tokens evaluated (the rest came from the cache)

    def stats(self) -> dict:
        return {"id": self.index, "n_cached": self.llm.n_tokens, "last_prompt_tokens": self.last_prompt_tokens,
                "last_evaluated": self.last_evaluated}

    def shared_prefix(self, tokens: Sequence[int]) -> int:
        return common_prefix_length(self.llm.input_ids, tokens)


class SlotPool:
    def __init__(self, slots: List[Slot], max_queue: int):
        self.slots = slots
        self.max_queue = max_queue
        self._free: List[Slot] = list(slots)
        self._waiters: Deque[asyncio.Future] = collections.deque()

    @property
    def n_idle(self) -> int:
        return len(self._free)

    @property
    def n_waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    def _take(self, tokens: Sequence[int]) -> Slot:
        best = max(self._free, key=lambda s: s.shared_prefix(tokens))
        self._free.remove(best)
        best.cancel.clear()
        return best

    async def acquire(self, tokens: Sequence[int]) -> Slot:
        if self._free and not self.n_waiting:
            return self._take(tokens)
        if self.n_waiting >= self.max_queue:
            raise QueueFull()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            slot = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())   # handed over just as the client left
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        slot.cancel.clear()
        return slot

    def try_take(self, index: int) -> Optional[Slot]:
        """Slot `index` for a slot action, if it is idle (None if busy)."""
        for slot in self._free:
            if slot.index == index:
                self._free.remove(slot)
                return slot
        return None

    def release(self, slot: Slot) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)
