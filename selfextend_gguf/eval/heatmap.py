"""Depth x length heatmaps of passkey accuracy (like the paper's Figure 4): one PNG per
method, and one with every method side by side."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, List, Sequence


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _panel(ax, records: List[dict], method: str, lengths: List[int], depths: List[float]):
    """Draw one method's accuracy grid on ax; returns the image (for a colorbar)."""
    import numpy as np

    found, total = defaultdict(int), defaultdict(int)
    for r in records:
        if r["method"] == method:
            found[(r["depth"], r["target_length"])] += int(bool(r["found"]))
            total[(r["depth"], r["target_length"])] += 1
    grid = np.full((len(depths), len(lengths)), np.nan)
    for i, d in enumerate(depths):
        for j, n in enumerate(lengths):
            if total[(d, n)]:
                grid[i, j] = found[(d, n)] / total[(d, n)]
                ax.text(j, i, f"{found[(d, n)]}/{total[(d, n)]}", ha="center", va="center", fontsize=8)
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [f"{n // 1024}k" if n % 1024 == 0 else str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set_xlabel("prompt tokens")
    ax.set_title(method.replace(" (", "\n(", 1))   # a variant's settings on a line of their own: narrow panels
    return image


def _axes_values(records: List[dict]):
    return sorted({r["target_length"] for r in records}), sorted({r["depth"] for r in records})


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def draw(records: Iterable[dict], method: str, path: Path) -> Path:
    plt = _pyplot()
    records = [r for r in records if r["method"] == method]
    lengths, depths = _axes_values(records)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(lengths), 1.2 + 0.45 * len(depths)))
    image = _panel(ax, records, method, lengths, depths)
    ax.set_title(f"passkey accuracy: {method}")
    ax.set_ylabel("key depth")
    fig.colorbar(image, ax=ax, fraction=0.04)
    path = _save(fig, path)
    plt.close(fig)
    return path


def draw_all(records: Iterable[dict], methods: Sequence[str], path: Path, columns: int = 3) -> Path:
    """Every method on the same lengths and depths, `columns` panels per row."""
    plt = _pyplot()
    records = list(records)
    lengths, depths = _axes_values(records)
    columns = min(columns, len(methods))
    rows = -(-len(methods) // columns)
    fig, axes = plt.subplots(rows, columns, sharey=True, squeeze=False,
                             figsize=(0.6 + (0.6 + 0.8 * len(lengths)) * columns, (1.0 + 0.4 * len(depths)) * rows + 0.4))
    for k, ax in enumerate(axes.flat):
        if k < len(methods):
            _panel(ax, records, methods[k], lengths, depths)
        else:
            ax.axis("off")
    for row in axes:
        row[0].set_ylabel("key depth")
    fig.suptitle("passkey accuracy (found / trials)", fontsize=10)
    path = _save(fig, path)
    plt.close(fig)
    return path
