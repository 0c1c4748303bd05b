"""Depth x length heatmaps of passkey accuracy, one PNG per method (like the paper's
Figure 4)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, List


def draw(records: Iterable[dict], method: str, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    records = [r for r in records if r["method"] == method]
    lengths: List[int] = sorted({r["target_length"] for r in records})
    depths: List[float] = sorted({r["depth"] for r in records})
    found, total = defaultdict(int), defaultdict(int)
    for r in records:
        found[(r["depth"], r["target_length"])] += int(bool(r["found"]))
        total[(r["depth"], r["target_length"])] += 1
    grid = np.full((len(depths), len(lengths)), np.nan)
    for i, d in enumerate(depths):
        for j, n in enumerate(lengths):
            if total[(d, n)]:
                grid[i, j] = found[(d, n)] / total[(d, n)]

    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(lengths), 1.2 + 0.45 * len(depths)))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [f"{n // 1024}k" if n % 1024 == 0 else str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set_xlabel("prompt length (tokens)")
    ax.set_ylabel("key depth")
    ax.set_title(f"passkey accuracy: {method}")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            if total[(depths[i], lengths[j])]:
                ax.text(j, i, f"{found[(depths[i], lengths[j])]}/{total[(depths[i], lengths[j])]}",
                        ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
