"""Logits kept on the Python side (`Llama.scores`), sized by what is used.

A row is n_vocab float32s: 1 MiB for a 262k vocabulary. One row per position of a
64k context would be 64 GiB, so rows are kept only when asked for:

- logits_all=False: one row, the logits after the last evaluated token;
- logits_all=True: one row per evaluated position (llama_cpp's layout), in a buffer
  that grows with the sequence (doubling, at most n_ctx rows), never n_ctx rows up front.
"""

from __future__ import annotations

import numpy as np


class Scores:
    def __init__(self, n_ctx: int, n_vocab: int, logits_all: bool, n_rows_first: int):
        self.n_ctx = n_ctx
        self.n_vocab = n_vocab
        self.logits_all = logits_all
        rows = max(1, min(n_rows_first, n_ctx)) if logits_all else 1
        self._rows = np.zeros((rows, n_vocab), dtype=np.float32)
        self._last_pos = -1

    @property
    def array(self) -> np.ndarray:
        """With logits_all, row p holds the logits after position p; else the one row
        holds the logits after the last evaluated token."""
        return self._rows

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes

    def put(self, pos: int, logits: np.ndarray) -> None:
        """Keep what decode returned for the tokens at positions pos, pos+1, ...: every
        row (logits_all), or just the row of the last of them (one row of logits)."""
        end = pos + len(logits)
        if self.logits_all:
            self._reserve(end)
            self._rows[pos:end] = logits
        else:
            self._rows[0] = logits[-1]
        self._last_pos = end - 1

    def last(self, pos: int) -> np.ndarray:
        """The logits after position pos, which must be the last one evaluated."""
        if pos < 0 or pos != self._last_pos:
            raise ValueError("no logits for the last token: evaluate at least one token first")
        return self._rows[pos] if self.logits_all else self._rows[0]

    def _reserve(self, n_rows: int) -> None:
        if n_rows <= len(self._rows):
            return
        new_rows = min(self.n_ctx, max(n_rows, 2 * len(self._rows)))
        grown = np.zeros((new_rows, self.n_vocab), dtype=np.float32)
        grown[:len(self._rows)] = self._rows
        self._rows = grown

    def truncate(self, n_tokens: int) -> None:
        """The sequence was cut back to n_tokens: rows past it no longer hold logits."""
        if self._last_pos < n_tokens:
            return
        if self.logits_all:
            # rows before n_tokens still hold their positions' logits
            self._rows[n_tokens:self._last_pos + 1] = 0.0
            self._last_pos = n_tokens - 1
        else:
            self._last_pos = -1  # the one row belonged to a position that is gone
