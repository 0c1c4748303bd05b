"""Admission: at most --parallel requests run (each on a slot, a sequence of the one
context) and --queue-size more wait; beyond that a request gets QueueFull (503). Which
slot a request takes is the batch scheduler's choice (engine/scheduler.py)."""

from __future__ import annotations

from .errors import QueueFull


class Admission:
    def __init__(self, n_slots: int, max_queue: int):
        self.n_slots = n_slots
        self.max_queue = max_queue
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self.n_slots + self.max_queue:
            raise QueueFull()
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
