"""Self-Extend settings chosen by `selfextend-gguf tune`, remembered per model file.

One JSON file, `tuned-settings.json` in the user cache directory (`$SELFEXTEND_GGUF_CACHE`,
else `~/.cache/selfextend-gguf`) or the file named by `$SELFEXTEND_GGUF_TUNED`, maps a model file, identified by its real path, size and
modification time (so a replaced file is not mistaken for the tuned one), to the
setting tuned for each target length. `Llama` asks `lookup` before falling back to
eq. 5; `forget` clears a model's entries.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, NamedTuple, Optional

from ..models.model_path import cache_dir

logger = logging.getLogger("selfextend_gguf")
FILE_NAME = "tuned-settings.json"


class TunedSetting(NamedTuple):
    group_size: int
    neighbor_window: int
    length: int          # the target length it was tuned for
    tuned_at: str        # when, as an ISO date


def settings_file() -> Path:
    explicit = os.environ.get("SELFEXTEND_GGUF_TUNED")
    return Path(explicit) if explicit else cache_dir() / FILE_NAME


def model_key(model_path: str) -> str:
    """Real path, size and mtime: cheap (no hash of a multi-GB file) and changes when
    the file is replaced."""
    path = os.path.realpath(model_path)
    st = os.stat(path)
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def _load() -> Dict[str, Dict[str, dict]]:
    path = settings_file()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        # a damaged file must not stop the model from loading: eq. 5 still works
        logger.warning("ignoring the tuned settings in %s (%s); `selfextend-gguf tune` rewrites it", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def _save(data: Dict[str, Dict[str, dict]]) -> None:
    path = settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    # write then rename, so a reader never sees half a file
    fd, tmp = tempfile.mkstemp(prefix=".tuned-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def remember(model_path: str, length: int, group_size: int, neighbor_window: int) -> TunedSetting:
    setting = TunedSetting(int(group_size), int(neighbor_window), int(length), time.strftime("%Y-%m-%d"))
    data = _load()
    data.setdefault(model_key(model_path), {})[str(setting.length)] = setting._asdict()
    _save(data)
    return setting


def lookup(model_path: str, n_ctx: int) -> Optional[TunedSetting]:
    """The setting tuned for the shortest target length >= n_ctx, if any."""
    try:
        entries = _load().get(model_key(model_path), {})
    except OSError:
        return None
    fitting = []
    for value in entries.values():
        try:
            setting = TunedSetting(**value)
        except TypeError:
            continue
        if setting.length >= n_ctx:
            fitting.append(setting)
    return min(fitting, key=lambda s: s.length) if fitting else None


def forget(model_path: str) -> int:
    """Drop every remembered setting of this model file; returns how many there were."""
    data = _load()
    path = os.path.realpath(model_path)
    # every key of this path, also those of an earlier version of the file
    keys = [key for key in data if key.rsplit("|", 2)[0] == path]
    removed = sum(len(data.pop(key)) for key in keys)
    if keys:
        _save(data)
    return removed
