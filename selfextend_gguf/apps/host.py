"""What the app protocols (completions, chat, embeddings) take from a loaded model and
its context. `Llama` is the one implementation; the apps see this face of it and the
engine's Sequence it runs, never the class itself (imports flow downward)."""

from __future__ import annotations

import threading
from typing import Any, List, Protocol, Sequence, Union

from ..engine.sequence import Sequence as EngineSequence


class ModelHost(Protocol):
    model_path: str
    spm_infill: bool
    embedding_enabled: bool
    lock: threading.RLock

    @property
    def model(self) -> Any: ...          # _core.Model

    @property
    def sequence(self) -> EngineSequence: ...

    @property
    def chat_formatter(self) -> Any: ...  # apps.chat_format.ChatFormatter

    def n_ctx(self) -> int: ...

    def pooling_type(self) -> int: ...

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True, special: bool = False) -> List[int]: ...

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes: ...

    def token_bytes(self, token: int, special: bool = False) -> bytes: ...

    def token_bos(self) -> int: ...

    def prompt_tokens(self, prompt: Union[str, bytes, Sequence[int]]) -> List[int]: ...
