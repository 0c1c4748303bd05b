"""`selfextend-gguf serve`: slots, the app, and uvicorn."""

from __future__ import annotations

import os
import sys
from typing import Callable

from ..engine.scheduler import BatchScheduler
from ..llama import Llama
from .app import create_app


def serve(make_llama: Callable[..., Llama], host: str, port: int, parallel: int, queue_size: int,
          api_key: str = None, log_level: str = "info", prompt_cache=None, slot_save_path: str = None,
          metrics: bool = False) -> None:
    """One model and one context for every request: make_llama(n_seq_max=...) is called
    once, and --parallel slots are sequences of its context (plus one for embeddings),
    decoded together by a batch scheduler. prompt_cache (a LlamaRAMCache or
    LlamaDiskCache of sequence states) is consulted when a request takes a slot."""
    import uvicorn

    if parallel < 1 or queue_size < 0:
        raise ValueError("--parallel must be >= 1 and --queue-size >= 0")
    if slot_save_path is not None:
        os.makedirs(slot_save_path, exist_ok=True)
    llm = make_llama(n_seq_max=parallel + 1)   # the last sequence computes embeddings
    scheduler = BatchScheduler(llm, parallel, prompt_cache=prompt_cache)
    se = llm.self_extend
    print(f"selfextend-gguf: serving {os.path.basename(llm.model_path)} on http://{host}:{port} with "
          f"{parallel} slot(s) sharing n_ctx={llm.n_ctx()} cells (trained {llm.n_ctx_train()}), "
          + (f"Self-Extend G={se.group_size} W={se.neighbor_window}" if se else "vanilla attention"),
          file=sys.stderr, flush=True)
    app = create_app(llm, scheduler, queue_size, os.path.basename(llm.model_path), api_key,
                     slot_save_path=slot_save_path, metrics=metrics)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
