"""`selfextend-gguf serve`: slots, the app, and uvicorn."""

from __future__ import annotations

import os
import sys
from typing import Callable

from ..llama import Llama
from .app import create_app
from .slots import Slot, SlotPool


def serve(make_llama: Callable[[], Llama], host: str, port: int, parallel: int, queue_size: int,
          api_key: str = None, log_level: str = "info", prompt_cache=None, slot_save_path: str = None) -> None:
    """prompt_cache (a LlamaRAMCache or LlamaDiskCache) is shared by the slots: a request
    starts from the cached state, of any slot or an earlier run, that shares the longest
    prefix with its prompt."""
    import uvicorn

    if parallel < 1 or queue_size < 0:
        raise ValueError("--parallel must be >= 1 and --queue-size >= 0")
    if slot_save_path is not None:
        os.makedirs(slot_save_path, exist_ok=True)
    slots = [Slot(i, make_llama()) for i in range(parallel)]
    for slot in slots:
        slot.llm.set_cache(prompt_cache)
    llm = slots[0].llm
    se = llm.self_extend
    print(f"selfextend-gguf: serving {os.path.basename(llm.model_path)} on http://{host}:{port} with "
          f"{parallel} slot(s) of n_ctx={llm.n_ctx()} (trained {llm.n_ctx_train()}), "
          + (f"Self-Extend G={se.group_size} W={se.neighbor_window}" if se else "vanilla attention"),
          file=sys.stderr, flush=True)
    app = create_app(SlotPool(slots, queue_size), os.path.basename(llm.model_path), api_key,
                     slot_save_path=slot_save_path)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
