"""What every route of one server shares: the Llama, its batch scheduler (each request
runs on one of its slots), the admission limits and the worker threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

from fastapi import Request

from ..engine.scheduler import BatchScheduler
from ..llama import Llama
from .metrics import Metrics
from .slots import Admission


@dataclass
class ServerContext:
    llm: Llama
    scheduler: BatchScheduler
    admission: Admission
    # a worker thread per running or waiting request (they wait on the scheduler)
    executor: ThreadPoolExecutor
    model_name: str
    max_queue: int
    api_key: Optional[str] = None
    slot_save_path: Optional[str] = None
    # llama-server's /metrics (--metrics); None when off
    metrics: Optional[Metrics] = None

    @property
    def n_slots(self) -> int:
        return len(self.scheduler.slots)


def server_of(request: Request) -> ServerContext:
    """The route's server (a FastAPI dependency)."""
    return request.app.state.server
