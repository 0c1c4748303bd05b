"""Choosing and validating Self-Extend's group size G and neighbor window W.

With a model trained on context L (paper, Jin et al. 2024):
- eq. 4, the hard bound: the longest usable context is (L - W) * G + W;
- eq. 5, the rule of thumb for a target length N: W + (N - W) / G < L / 2, since only
  about half of the trained relative positions are well trained.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional


class SelfExtend(NamedTuple):
    group_size: int
    neighbor_window: int


def max_context(n_ctx_train: int, group_size: int, neighbor_window: int) -> int:
    """eq. 4: the longest context Self-Extend can position-map into the trained range."""
    return (n_ctx_train - neighbor_window) * group_size + neighbor_window


def smallest_reaching_group_size(n_ctx: int, n_ctx_train: int, neighbor_window: int) -> int:
    """The smallest G for which eq. 4 reaches n_ctx (at least 2: G = 1 is vanilla)."""
    return max(2, math.ceil((n_ctx - neighbor_window) / (n_ctx_train - neighbor_window)))


def default_neighbor_window(n_ctx_train: int) -> int:
    """The paper's W = 1024 for 4k-8k models (Phi-2, 2k: 512), capped at L/4."""
    return max(1, min(1024, n_ctx_train // 4))


def smallest_group_size(n_ctx: int, n_ctx_train: int, neighbor_window: int) -> int:
    """The smallest G with W + (n_ctx - W) / G < L / 2 (eq. 5)."""
    half = n_ctx_train / 2
    if neighbor_window >= half:
        raise ValueError(
            f"neighbor_window={neighbor_window} leaves no room for grouped positions under eq. 5 "
            f"(W + (N - W) / G < L / 2 = {half:g}); use a neighbor window below {int(half)}")
    return (n_ctx - neighbor_window) // int(half - neighbor_window) + 1


def choose(n_ctx: int, n_ctx_train: int) -> SelfExtend:
    """Automatic (G, W) for a context longer than the trained one (eq. 5, bounded by eq. 4)."""
    window = default_neighbor_window(n_ctx_train)
    return SelfExtend(max(2, smallest_group_size(n_ctx, n_ctx_train, window)), window)


def resolve(n_ctx: int, n_ctx_train: int, group_size: Optional[int],
            neighbor_window: Optional[int]) -> Optional[SelfExtend]:
    """The (G, W) to use, or None for vanilla attention. Raises ValueError naming the rule
    that explicit values break."""
    for name, value in (("group_size", group_size), ("neighbor_window", neighbor_window)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer, got {value!r}")

    if group_size is None and neighbor_window is None:
        return choose(n_ctx, n_ctx_train) if n_ctx > n_ctx_train else None
    if group_size is not None and group_size < 1:
        raise ValueError(f"group_size must be >= 1 (1 means vanilla attention), got {group_size}")
    if group_size == 1:
        return None

    if neighbor_window is None:
        neighbor_window = default_neighbor_window(n_ctx_train)
    if not 0 < neighbor_window < n_ctx_train:
        raise ValueError(
            f"neighbor_window must satisfy 0 < W < the model's trained context ({n_ctx_train}), "
            f"got {neighbor_window}")
    if group_size is None:
        group_size = max(2, smallest_group_size(max(n_ctx, n_ctx_train), n_ctx_train, neighbor_window))

    limit = max_context(n_ctx_train, group_size, neighbor_window)
    if n_ctx > limit:
        raise ValueError(
            f"n_ctx={n_ctx} exceeds what Self-Extend can reach with group_size={group_size}, "
            f"neighbor_window={neighbor_window} on a model trained on {n_ctx_train} tokens: "
            f"eq. 4 requires n_ctx <= (L - W) * G + W = {limit}; raise group_size or lower n_ctx")
    return SelfExtend(group_size, neighbor_window)
