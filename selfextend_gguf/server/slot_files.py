"""llama-server's slot actions: save a slot's state to a file under --slot-save-path,
restore it into a slot, or erase what a slot holds. File names are plain names inside
that folder (no paths, no "..")."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from ..engine import state_file
from ..engine.state import LlamaState
from .errors import SlotBusy

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def path_of(folder: str, filename: Any) -> Path:
    """The file of a slot action: a plain name in folder (a ValueError otherwise)."""
    if not isinstance(filename, str) or not _NAME.match(filename) or ".." in filename:
        raise ValueError("filename must be a plain file name (letters, digits, '.', '_', '-'; no path, no '..')")
    path = Path(folder) / filename
    if Path(os.path.realpath(path)).parent != Path(os.path.realpath(folder)):
        raise ValueError("filename must name a file inside the slot save folder")
    return path


def run_action(action: str, scheduler, id_slot: int, path: Optional[Path]) -> Dict[str, Any]:
    """Run on the scheduler's thread (BatchScheduler.call): the slot's cells are its
    sequence's cells in the one context."""
    slot = scheduler.slots[id_slot]
    if slot.job is not None:
        raise SlotBusy(f"slot {id_slot} is processing a request; retry when it is idle")
    start = time.perf_counter()
    if action == "erase":
        n = len(slot.tokens)
        scheduler.clear(slot)
        return {"id_slot": id_slot, "n_erased": n}
    if action == "save":
        state = scheduler.save_sequence(slot)
        size = state_file.write(path, state.identity, [int(t) for t in state.input_ids], state.llama_state)
        return {"id_slot": id_slot, "filename": path.name, "n_saved": state.n_tokens, "n_written": size,
                "timings": {"save_ms": 1000 * (time.perf_counter() - start)}}
    # restore: a missing, damaged or foreign file is a ValueError (a 400)
    if not path.exists():
        raise ValueError(f"no saved slot file {path.name!r}")
    identity = scheduler.sequence_identity()
    tokens, raw = state_file.read(path, identity)
    scheduler.load_sequence(slot, LlamaState(np.asarray(tokens, dtype=np.int32), raw, None, identity))
    return {"id_slot": id_slot, "filename": path.name, "n_restored": len(tokens),
            "n_read": path.stat().st_size, "timings": {"restore_ms": 1000 * (time.perf_counter() - start)}}
