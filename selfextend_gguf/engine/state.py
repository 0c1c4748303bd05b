"""A saved context state (llama_cpp's `LlamaState`, `Llama.save_state` / `load_state`):
the KV cache and the evaluated tokens, to go back to later, in the same Llama or in
another one with the same model and settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np


@dataclass(frozen=True)
class LlamaState:
    input_ids: np.ndarray                 # the evaluated tokens
    llama_state: bytes                    # llama.cpp's state (KV cache and outputs)
    last_logits: Optional[np.ndarray]     # logits after the last token, if any
    # what wrote it: the model file and the settings (state_file.py); None: unknown
    identity: Optional[Dict[str, Any]] = None

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def llama_state_size(self) -> int:
        return len(self.llama_state)
