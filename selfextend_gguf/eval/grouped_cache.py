"""llama.cpp's approximate "self-extend" (--grp-attn-n / --grp-attn-w), reimplemented
over our engine as its completion tool does it: between decode calls, the positions
of cached chunks are shifted and divided in place (llama_memory_seq_add/seq_div).

Unlike exact Self-Extend, queries are never rotated separately, and the exact
neighbors are "tokens since the last compression boundary" rather than a sliding
window of W."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ..llama import Llama


class GroupedCache:
    def __init__(self, llm: Llama, ga_n: int, ga_w: int):
        if ga_n < 1 or ga_w < ga_n or ga_w % ga_n != 0:
            raise ValueError(f"grouped-cache needs ga_w a multiple of ga_n (got ga_n={ga_n}, ga_w={ga_w})")
        self.llm = llm
        self.ga_n = ga_n
        self.ga_w = ga_w
        self.n_past = 0
        self.ga_i = 0

    def _compress(self) -> None:
        ga_n, ga_w = self.ga_n, self.ga_w
        while self.n_past >= self.ga_i + ga_w:
            ib = (ga_n * self.ga_i) // ga_w
            bd = (ga_w // ga_n) * (ga_n - 1)
            dd = (ga_w // ga_n) - ib * bd - ga_w
            self.llm.kv_seq_add(self.ga_i, self.n_past, ib * bd)
            self.llm.kv_seq_div(self.ga_i + ib * bd, self.ga_i + ib * bd + ga_w, ga_n)
            self.llm.kv_seq_add(self.ga_i + ib * bd + ga_w, self.n_past + ib * bd, dd)
            self.n_past -= bd
            self.ga_i += ga_w // ga_n

    def feed(self, tokens: Sequence[int]) -> np.ndarray:
        """Evaluate tokens in n_batch chunks, compressing before each; last logits."""
        logits = None
        n_batch = self.llm.n_batch()
        for start in range(0, len(tokens), n_batch):
            chunk: List[int] = list(tokens[start:start + n_batch])
            self._compress()
            logits = self.llm.eval_at(chunk, self.n_past)
            self.n_past += len(chunk)
        return logits

    def score(self, context: Sequence[int], inputs: Sequence[int]) -> np.ndarray:
        """Logits after each of `inputs`, fed one by one after the context and compressing
        between decode calls as llama.cpp's loop does (for perplexity)."""
        self.llm.reset()
        self.n_past = self.ga_i = 0
        self.feed(context)
        return np.stack([self.feed([t]) for t in inputs])

    def greedy(self, prompt_tokens: Sequence[int], max_tokens: int) -> List[int]:
        self.llm.reset()
        self.n_past = self.ga_i = 0
        logits = self.feed(prompt_tokens)
        out: List[int] = []
        for _ in range(max_tokens):
            token = int(np.argmax(logits))
            if self.llm.is_eog(token):
                break
            out.append(token)
            logits = self.feed([token])
        return out
