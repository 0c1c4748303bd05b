"""The engine's own errors, by kind, so that callers (the server above all) choose what
to do by type, never by reading a message."""

from __future__ import annotations

from .. import _core


class ContextWindowExceeded(ValueError):
    """A prompt or a sequence is longer than the context's n_ctx (the caller's input)."""


class ContextFull(RuntimeError):
    """The KV cache has no room for this generation now (scheduler slots share it)."""


class RpcServerLost(_core.LlamaCppError):
    """An RPC server holding part of the model stopped answering: its buffers are gone and
    the Llama must be created again."""
