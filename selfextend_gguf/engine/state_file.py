"""Context states on disk: a header that says exactly what wrote them, then the tokens
and llama.cpp's state.

A state is only valid for the model file and the settings that made it: the K/V
layout depends on flash attention and the cache types, the cached keys on the RoPE
settings and LoRA, the cells on n_ctx, and what they mean on the Self-Extend setting.
The header records all of it (the model by its size and a hash of its GGUF header and
tensor table, never of gigabytes of weights); a file whose identity differs from the
reader's is refused, never loaded. A checksum covers tokens and state, so a truncated
or damaged file is refused too. Files are written to a temporary name and renamed.

    magic "SEGGUFPC" | u32 format | u32 header length | header (JSON) | tokens (i32) | state
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .. import _core
from ..models.model_path import file_version

MAGIC = b"SEGGUFPC"
FORMAT = 1
_PREFIX = struct.Struct("<8sII")
_MAX_HEADER = 1 << 20
_CHUNK = 1 << 24

_fingerprints: Dict[Tuple[str, int, int, int, int], Dict[str, Any]] = {}


class StateFileError(ValueError):
    """A state file that cannot be used: damaged, foreign, or for other settings."""


def llama_cpp_pin() -> str:
    """The llama.cpp this extension was built from (its state format is that one's)."""
    global _pin
    if _pin is None:
        _pin = _core.build_info()["llama_cpp"]
    return _pin


_pin: Optional[str] = None


def model_fingerprint(path: str) -> Dict[str, Any]:
    """The model file's identity: its size, the sha256 of everything before the tensor
    data (GGUF header, metadata, tensor table), and the sha256 of 16 blocks of 64 KiB
    spread over the tensor data (two fine-tunes converted alike have equal headers).
    A few MiB read, never the gigabytes of weights; remembered per version of the file
    (model_path.file_version)."""
    key = file_version(path)
    if key not in _fingerprints:
        size = key[2]
        n = _core.gguf_header_size(path)
        header, sample = hashlib.sha256(), hashlib.sha256()
        with open(path, "rb") as f:
            remaining = n
            while remaining > 0:
                block = f.read(min(_CHUNK, remaining))
                if not block:
                    break
                header.update(block)
                remaining -= len(block)
            n_data, n_blocks, block_size = size - n, 16, 1 << 16
            for i in range(n_blocks):
                f.seek(n + (max(0, n_data - block_size) * i) // (n_blocks - 1))
                sample.update(f.read(block_size))
        _fingerprints[key] = {"size": size, "header_sha256": header.hexdigest(),
                              "weights_sample_sha256": sample.hexdigest()}
    return dict(_fingerprints[key])


@dataclass
class StateHeader:
    identity: Dict[str, Any]
    n_tokens: int
    state_bytes: int
    checksum: int
    offset: int          # where the tokens start
    file_size: int


def _crc(data: bytes, crc: int = 0) -> int:
    view = memoryview(data)
    for i in range(0, len(view), _CHUNK):
        crc = zlib.crc32(view[i:i + _CHUNK], crc)
    return crc


def write(path: Path, identity: Dict[str, Any], tokens: List[int], state: bytes) -> int:
    """Write atomically (a temporary file in the same folder, then a rename); returns the
    file's size. Raises OSError when the folder is not writable."""
    path = Path(path)
    token_bytes = struct.pack(f"<{len(tokens)}i", *tokens)
    header = json.dumps({"identity": identity, "n_tokens": len(tokens), "state_bytes": len(state),
                         "checksum": _crc(state, _crc(token_bytes))}, sort_keys=True).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, FORMAT, len(header)))
            f.write(header)
            f.write(token_bytes)
            f.write(state)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return _PREFIX.size + len(header) + len(token_bytes) + len(state)


def read_header(path: Path) -> Tuple[StateHeader, List[int]]:
    """The header and the tokens, without reading the state (StateFileError if foreign
    or short)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise StateFileError(f"{path}: too short to be a state file")
            magic, fmt, n_header = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise StateFileError(f"{path}: not a selfextend-gguf state file")
            if fmt != FORMAT:
                raise StateFileError(f"{path}: state file format {fmt}, this version reads {FORMAT}")
            if n_header > _MAX_HEADER:
                raise StateFileError(f"{path}: damaged header")
            try:
                meta = json.loads(f.read(n_header).decode())
                n_tokens, state_bytes = int(meta["n_tokens"]), int(meta["state_bytes"])
                identity, checksum = meta["identity"], int(meta["checksum"])
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
                raise StateFileError(f"{path}: damaged header ({err})") from err
            raw = f.read(4 * n_tokens)
            if len(raw) != 4 * n_tokens:
                raise StateFileError(f"{path}: truncated")
            tokens = list(struct.unpack(f"<{n_tokens}i", raw))
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        raise StateFileError(f"{path}: cannot be read ({err})") from err
    offset = _PREFIX.size + n_header
    if size != offset + 4 * n_tokens + state_bytes:
        raise StateFileError(f"{path}: truncated or padded ({size} bytes, the header says "
                             f"{offset + 4 * n_tokens + state_bytes})")
    return StateHeader(identity, n_tokens, state_bytes, checksum, offset, size), tokens


def mismatch(expected: Dict[str, Any], found: Dict[str, Any]) -> Optional[str]:
    """What differs between two identities (None: they are the same)."""
    keys = sorted(set(expected) | set(found))
    diffs = [f"{k}: file {found.get(k)!r}, here {expected.get(k)!r}" for k in keys if expected.get(k) != found.get(k)]
    return "; ".join(diffs) if diffs else None


def context_identity(model_path: str, settings: Dict[str, Any]) -> Dict[str, Any]:
    """What a saved state of a context depends on: the model file (its size and a hash of
    its GGUF header), the package and llama.cpp versions, and the context's settings;
    states are only loaded where it is equal."""
    from .. import __version__

    return {"format": FORMAT, "package": __version__, "llama_cpp": llama_cpp_pin(),
            "model": model_fingerprint(model_path), **settings}


def check_loadable(expected: Dict[str, Any], state: Any) -> None:
    """The one check before a state (LlamaState) goes into a context: a state of another
    model or other settings is refused (ValueError). A state without an identity (made by
    hand) is taken as it is."""
    if state.identity is None:
        return
    why = mismatch(expected, state.identity)
    if why:
        raise ValueError(f"this state was saved with another model or other settings ({why}); "
                         f"load it into a Llama made like the one that saved it")


def sequence_identity(context_identity: Dict[str, Any]) -> Dict[str, Any]:
    """What a state of one sequence depends on: its context's identity, less the number of
    sequences (a slot's state loads into any slot of a context made the same way)."""
    identity = dict(context_identity, kind="sequence")
    identity.pop("n_seq_max", None)
    return identity


def read(path: Path, expected_identity: Dict[str, Any]) -> Tuple[List[int], bytes]:
    """Tokens and state of a file written with expected_identity; StateFileError for a
    file of another model or other settings, or a damaged one."""
    header, tokens = read_header(path)
    why = mismatch(expected_identity, header.identity)
    if why:
        raise StateFileError(f"{path} was written with another model or other settings ({why})")
    try:
        with open(path, "rb") as f:
            f.seek(header.offset + 4 * header.n_tokens)
            state = f.read(header.state_bytes)
    except OSError as err:
        raise StateFileError(f"{path}: cannot be read ({err})") from err
    token_bytes = struct.pack(f"<{len(tokens)}i", *tokens)
    if len(state) != header.state_bytes or _crc(state, _crc(token_bytes)) != header.checksum:
        raise StateFileError(f"{path}: damaged (checksum mismatch)")
    return tokens, state
