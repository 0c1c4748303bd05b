"""Prompt caches with llama_cpp's names: `Llama.set_cache(LlamaRAMCache(...))` or
`LlamaDiskCache(...)`. A completion looks up the cached state whose tokens share the
longest prefix with its prompt, loads it and evaluates only the rest; afterwards it
stores its own state. The least recently used entries go first when the capacity is
reached.

Entries are only ever loaded into a Llama of the same model file and settings (the
identity in state_file.py): other entries are misses. On disk, a damaged or truncated
file is a miss with a warning and is removed; a folder that cannot be written makes the
cache read-only (one warning)."""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import state_file
from .prefix import common_prefix_length
from .state import LlamaState

logger = logging.getLogger("selfextend_gguf")

SUFFIX = ".sgpc"


# a cached state is loaded only if it saves evaluating at least this many tokens more than
# the cells at hand hold (loading a whole state to skip a few tokens costs more than it saves)
MIN_GAIN = 32


@dataclass
class CacheHit:
    state: LlamaState
    n_matching: int     # tokens of the prompt that the state already holds


class BaseLlamaCache:
    """What a Llama needs from a prompt cache: lookup and store."""

    def __init__(self, capacity_bytes: int = 2 << 30, min_tokens: int = 0):
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be > 0")
        self.capacity_bytes = int(capacity_bytes)
        self.min_tokens = int(min_tokens)   # shorter sequences are not stored
        self._lock = threading.RLock()

    @property
    def cache_size(self) -> int:
        raise NotImplementedError

    def lookup(self, tokens: Sequence[int], identity: Optional[Dict[str, Any]],
               min_prefix: int = 1) -> Optional[CacheHit]:
        """The entry (of this identity) sharing the longest prefix with tokens, if that
        prefix has at least min_prefix tokens."""
        raise NotImplementedError

    def store(self, state: LlamaState) -> None:
        raise NotImplementedError

    # llama_cpp's mapping interface: key = tokens, value = LlamaState
    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        hit = self.lookup(list(key), None)
        if hit is None:
            raise KeyError("no cached state shares a prefix with these tokens")
        return hit.state

    def __contains__(self, key: Sequence[int]) -> bool:
        return self.lookup(list(key), None) is not None

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        if [int(t) for t in key] != [int(t) for t in value.input_ids]:
            raise ValueError("the key must be the state's own tokens (its input_ids)")
        self.store(value)


class LlamaRAMCache(BaseLlamaCache):
    """States kept in memory, at most capacity_bytes of them."""

    def __init__(self, capacity_bytes: int = 2 << 30, min_tokens: int = 0):
        super().__init__(capacity_bytes, min_tokens)
        self._entries: "collections.OrderedDict[Tuple[int, ...], LlamaState]" = collections.OrderedDict()

    @property
    def cache_size(self) -> int:
        return sum(s.llama_state_size for s in self._entries.values())

    def lookup(self, tokens, identity, min_prefix=1):
        with self._lock:
            best, best_n = None, min_prefix - 1
            for key, state in self._entries.items():
                if identity is not None and state.identity != identity:
                    continue
                n = common_prefix_length(key, tokens)
                if n > best_n:
                    best, best_n = key, n
            if best is None:
                return None
            self._entries.move_to_end(best)
            return CacheHit(self._entries[best], best_n)

    def store(self, state):
        if state.n_tokens < max(1, self.min_tokens):
            return
        key = tuple(int(t) for t in state.input_ids)
        with self._lock:
            self._entries[key] = state
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self.cache_size > self.capacity_bytes:
                self._entries.popitem(last=False)


class LlamaDiskCache(BaseLlamaCache):
    """States in files under cache_dir (state_file.py's format), at most capacity_bytes
    of them; several processes may share the folder."""

    def __init__(self, cache_dir: str = ".cache/llama_cache", capacity_bytes: int = 2 << 30,
                 min_tokens: int = 0):
        super().__init__(capacity_bytes, min_tokens)
        self.cache_dir = Path(cache_dir).expanduser()
        self.read_only = False
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            self._go_read_only(err)
        # path -> (mtime_ns, size, tokens, identity), refreshed from the folder
        self._index: Dict[str, Tuple[int, int, List[int], Dict[str, Any]]] = {}

    def _go_read_only(self, err: OSError) -> None:
        if not self.read_only:
            logger.warning("prompt cache %s cannot be written (%s): it is used read-only", self.cache_dir, err)
            self.read_only = True

    def _files(self) -> List[Path]:
        try:
            return [p for p in self.cache_dir.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")]
        except OSError:
            return []

    def _refresh(self) -> None:
        seen = set()
        for path in self._files():
            key = str(path)
            seen.add(key)
            try:
                st = path.stat()
            except OSError:
                continue
            known = self._index.get(key)
            if known and known[0] == st.st_mtime_ns and known[1] == st.st_size:
                continue
            try:
                header, tokens = state_file.read_header(path)
            except state_file.StateFileError as err:
                self._drop_damaged(path, err)
                continue
            self._index[key] = (st.st_mtime_ns, st.st_size, tokens, header.identity)
        for key in list(self._index):
            if key not in seen:
                del self._index[key]

    def _drop_damaged(self, path: Path, err: Exception) -> None:
        logger.warning("prompt cache: %s is not used: %s", path, err)
        if not self.read_only:
            try:
                path.unlink()
            except OSError:
                pass
        self._index.pop(str(path), None)

    @property
    def cache_size(self) -> int:
        with self._lock:
            self._refresh()
            return sum(size for _, size, _, _ in self._index.values())

    def lookup(self, tokens, identity, min_prefix=1):
        with self._lock:
            self._refresh()
            ranked = []
            for key, (_, _, cached, ident) in self._index.items():
                if identity is not None and ident != identity:
                    continue
                n = common_prefix_length(cached, tokens)
                if n >= min_prefix:
                    ranked.append((n, key))
            for n, key in sorted(ranked, reverse=True):
                path = Path(key)
                ident = self._index[key][3]
                try:
                    cached, raw = state_file.read(path, ident)
                except state_file.StateFileError as err:
                    if not path.exists():
                        self._index.pop(key, None)   # evicted by another process meanwhile
                        continue
                    self._drop_damaged(path, err)
                    continue
                self._touch(path)
                state = LlamaState(np.asarray(cached, dtype=np.int32), raw, None, ident)
                return CacheHit(state, n)
            return None

    def _touch(self, path: Path) -> None:
        if not self.read_only:
            try:
                os.utime(path)   # least recently used goes first
                st = path.stat()
                entry = self._index.get(str(path))
                if entry:
                    self._index[str(path)] = (st.st_mtime_ns, st.st_size, entry[2], entry[3])
            except OSError:
                pass

    def file_name(self, state: LlamaState) -> str:
        digest = hashlib.sha256(json.dumps(state.identity, sort_keys=True).encode())
        digest.update(np.asarray(state.input_ids, dtype="<i4").tobytes())
        return digest.hexdigest()[:40] + SUFFIX

    def store(self, state):
        if self.read_only or state.n_tokens < max(1, self.min_tokens):
            return
        if state.identity is None:
            raise ValueError("only states saved by Llama.save_state can be stored on disk")
        path = self.cache_dir / self.file_name(state)
        with self._lock:
            try:
                state_file.write(path, state.identity, [int(t) for t in state.input_ids], state.llama_state)
            except OSError as err:
                self._go_read_only(err)
                return
            self._evict()

    def _evict(self) -> None:
        self._refresh()
        entries = sorted(((mtime, size, key) for key, (mtime, size, _, _) in self._index.items()))
        total = sum(size for _, size, _ in entries)
        for mtime, size, key in entries[:-1]:   # the newest entry stays, even if alone too large
            if total <= self.capacity_bytes:
                break
            try:
                Path(key).unlink()
            except OSError:
                pass
            self._index.pop(key, None)
            total -= size

    def clear(self) -> None:
        """Remove every cached state of this folder."""
        with self._lock:
            for path in self._files():
                try:
                    path.unlink()
                except OSError:
                    pass
            self._index.clear()
