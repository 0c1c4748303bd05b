"""The common beginning of two token lists: what a sequence's cells, a prompt cache
entry or another slot already hold of a prompt."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def common_prefix_length(a: Sequence, b: Sequence) -> int:
    """How many leading items (tokens, or the characters of two strings) two sequences share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    if isinstance(a, str) or isinstance(b, str):
        a, b = list(a), list(b)
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n
