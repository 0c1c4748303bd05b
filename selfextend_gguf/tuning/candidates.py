"""The (G, W) pairs that `tune` scores for a target length N on a model trained on L.

Every candidate satisfies eq. 4, (L - W) * G + W >= N, so it can reach N at all:
- the eq. 5 choice, and a setting measured on this model and shipped for N if there is
  one (what `Llama` picks without a tuned setting: settings/measured.py);
- a smaller and a larger G at the same W (half and twice, the smaller one no lower than
  eq. 4 allows);
- W from about L/32 (the paper authors advise a small W, about 100, for Llama-3's 8k)
  to L/4 in doublings, each with the smallest G that eq. 5 accepts for it.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

from ..settings import measured as measured_settings
from ..settings import self_extend as se


class Candidate(NamedTuple):
    group_size: int
    neighbor_window: int
    why: str


def candidates(n_ctx_train: int, length: int, model_file: Optional[str] = None) -> List[Candidate]:
    if length <= n_ctx_train:
        raise ValueError(f"tune chooses Self-Extend settings for lengths beyond the model's trained context "
                         f"({n_ctx_train} tokens); got length {length}")
    L = n_ctx_train
    chosen = se.choose(length, L)
    found: List[Candidate] = [Candidate(chosen.group_size, chosen.neighbor_window, "eq. 5")]
    measured = measured_settings.lookup(model_file, length)
    if measured is not None and (measured.group_size, measured.neighbor_window) != tuple(chosen):
        found.insert(0, Candidate(measured.group_size, measured.neighbor_window, "measured, shipped"))

    def add(group_size: int, window: int, why: str) -> None:
        if any(c.group_size == group_size and c.neighbor_window == window for c in found):
            return
        if se.max_context(L, group_size, window) >= length:
            found.append(Candidate(group_size, window, why))

    W = chosen.neighbor_window
    smaller = max(se.smallest_reaching_group_size(length, L, W), chosen.group_size // 2)
    if smaller < chosen.group_size:
        add(smaller, W, "smaller G")
    add(chosen.group_size * 2, W, "larger G")
    window = max(1, L // 32)
    while window <= L // 4:
        if window != W:
            add(max(2, se.smallest_group_size(length, L, window)), window, f"W = L/{L // window}")
        window *= 2
    return found
