"""Results as JSON lines, appended one record at a time so that an interrupted run
loses nothing and resumes where it stopped; markdown tables from them."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from ..passkey import leading_digits_right


class ResultLog:
    def __init__(self, path: Path, key_fields: Sequence[str]):
        self.path = Path(path)
        self.key_fields = tuple(key_fields)
        self.records: List[dict] = []
        if self.path.exists():
            with open(self.path, "r", encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        try:
                            self.records.append(json.loads(line))
                        except json.JSONDecodeError:
                            pass   # a line cut off by an interruption
        self._done = {self.key(r) for r in self.records}

    def key(self, record: dict) -> Tuple:
        return tuple(record.get(k) for k in self.key_fields)

    def has(self, **fields) -> bool:
        return tuple(fields.get(k) for k in self.key_fields) in self._done

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self._done.add(self.key(record))


def accuracy_table(records: Iterable[dict], row: str, col: str, title: str) -> str:
    """found/total per (row, col), as a markdown table."""
    cells: Dict[Tuple, List[int]] = defaultdict(lambda: [0, 0])
    rows, cols = [], []
    for r in records:
        key = (r[row], r[col])
        cells[key][0] += int(bool(r["found"]))
        cells[key][1] += 1
        if r[row] not in rows:
            rows.append(r[row])
        if r[col] not in cols:
            cols.append(r[col])
    cols.sort()
    if all(isinstance(v, (int, float)) for v in rows):
        rows.sort()   # depths, key lengths: in order, whatever order the cells ran in
    lines = [f"| {title} | " + " | ".join(str(c) for c in cols) + " | all |",
             "|---|" + "---|" * (len(cols) + 1)]
    for rv in rows:
        found = sum(cells[(rv, c)][0] for c in cols)
        total = sum(cells[(rv, c)][1] for c in cols)
        parts = []
        for c in cols:
            f, t = cells.get((rv, c), (0, 0))
            parts.append(f"{f}/{t}" if t else "-")
        lines.append(f"| {rv} | " + " | ".join(parts) + f" | {found}/{total} |")
    return "\n".join(lines)


def leading_digits_table(records: Iterable[dict], title: str) -> str:
    """Per method and key length, the key's leading digits the answer got right
    (mean over trials), so a near miss shows apart from a wrong number."""
    sums: Dict[Tuple, List[int]] = defaultdict(lambda: [0, 0])
    methods, lengths = [], []
    for r in records:
        key = (r["method"], r["n_digits"])
        sums[key][0] += leading_digits_right(r["expected"], r["got"])
        sums[key][1] += 1
        if r["method"] not in methods:
            methods.append(r["method"])
        if r["n_digits"] not in lengths:
            lengths.append(r["n_digits"])
    lengths.sort()
    lines = [f"| {title} | " + " | ".join(str(n) for n in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for m in methods:
        parts = []
        for n in lengths:
            total, count = sums.get((m, n), (0, 0))
            parts.append(f"{total / count:g}" if count else "-")
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def command_line(command: str) -> str:
    """The report line naming its command: resumable runs keep cells from earlier
    commands, so the last one alone may not have produced every row."""
    return f"Last written by `{command}` (cells already in the JSONL from earlier runs are kept, not rerun)."
