"""Run one function over several items at once, a thread each (for calls that wait on a
batch scheduler, whose slots decode them together)."""

from __future__ import annotations

import threading
from typing import Callable, List, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_in_threads(fn: Callable[[T], R], items: Sequence[T], name: str = "worker") -> List[R]:
    """[fn(item) for item in items], each call in its own thread, all started at once; the
    first error (in the order of the items) is raised here, after every thread ended."""
    results: List[object] = [None] * len(items)

    def one(i: int) -> None:
        try:
            results[i] = fn(items[i])
        except BaseException as err:  # noqa: BLE001 - raised below, in the caller's thread
            results[i] = err

    threads = [threading.Thread(target=one, args=(i,), name=f"{name}-{i}") for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]
