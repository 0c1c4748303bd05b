"""Results as JSON lines, appended one record at a time so that an interrupted run
loses nothing and resumes where it stopped; markdown tables from them."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..engine.prefix import common_prefix_length


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
        return tuple(_hashable(record.get(k)) for k in self.key_fields)

    def has(self, **fields) -> bool:
        return self.key(fields) in self._done

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self._done.add(self.key(record))


def _hashable(value):
    """A key field as a set member: settings (a dict) as their canonical JSON."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


# the methods whose setting (G and W) is either given or chosen automatically
SETTING_METHODS = ("self-extend", "grouped-cache")

# method, length -> the settings the method chooses by itself now (methods.automatic_choice)
Automatic = Callable[[str, int], Dict[str, object]]


def settings_label(settings: Dict[str, object]) -> str:
    """G and W of a self-extend or grouped-cache setting: "G=6, W=1024"."""
    g = settings.get("group_size", settings.get("ga_n"))
    w = settings.get("neighbor_window", settings.get("ga_w"))
    return f"G={g}, W={w}"


def method_label(record: dict, automatic: Optional[Automatic] = None) -> str:
    """The method's name, with the variant a run asked for ("self-extend (G=7, W=1024)").
    With `automatic`, a method that takes G and W is named by what it ran instead: the
    bare name for the setting it chooses by itself now, else "(G=.., W=..)", so a row
    named after the method stays the automatic choice after that choice changes."""
    if automatic is not None and record["method"] in SETTING_METHODS and record.get("settings"):
        length = record.get("target_length", record.get("length"))
        if record["settings"] == automatic(record["method"], length):
            return record["method"]
        return f"{record['method']} ({settings_label(record['settings'])})"
    variant = record.get("variant")
    return f"{record['method']} ({variant})" if variant else record["method"]


def settings_by_length(records: Iterable[dict]) -> str:
    """The settings a method ran with at each length ("32768: group_size=11,
    neighbor_window=1024"): a method asked for without settings chooses them per length."""
    by_length: Dict[int, List[str]] = {}
    for r in records:
        text = ", ".join(f"{k}={v}" for k, v in (r.get("settings") or {}).items())
        if text and text not in by_length.setdefault(r["target_length"], []):
            by_length[r["target_length"]].append(text)
    return "; ".join(f"{n}: {' or '.join(texts)}" for n, texts in sorted(by_length.items()))


def file_slug(label: str) -> str:
    """A label as part of a file name: "self-extend (G=7, W=1024)" -> "self-extend-G7-W1024"."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", label.replace("=", "")).strip("-")


def with_variants(records: Iterable[dict], automatic: Optional[Automatic] = None) -> List[dict]:
    """Copies of the records whose method names their variant, so that tables and
    heatmaps show each variant of a method in a row of its own."""
    return [dict(r, method=method_label(r, automatic)) for r in records]


def _grid(records: Iterable[dict], row: str, col: str) -> Tuple[list, list, Dict[Tuple, List[dict]]]:
    """The records grouped by (row value, col value), with the row and column values
    in table order."""
    groups: Dict[Tuple, List[dict]] = defaultdict(list)
    rows, cols = [], []
    for r in records:
        groups[(r[row], r[col])].append(r)
        if r[row] not in rows:
            rows.append(r[row])
        if r[col] not in cols:
            cols.append(r[col])
    cols.sort()
    if all(isinstance(v, (int, float)) for v in rows):
        rows.sort()   # depths, key lengths: in order, whatever order the cells ran in
    return rows, cols, groups


def accuracy_table(records: Iterable[dict], row: str, col: str, title: str) -> str:
    """found/total per (row, col), as a markdown table."""
    rows, cols, groups = _grid(records, row, col)
    lines = [f"| {title} | " + " | ".join(str(c) for c in cols) + " | all |",
             "|---|" + "---|" * (len(cols) + 1)]
    for rv in rows:
        cells = [groups.get((rv, c), []) for c in cols]
        parts = [f"{sum(bool(r['found']) for r in cell)}/{len(cell)}" if cell else "-" for cell in cells]
        in_row = [r for cell in cells for r in cell]
        lines.append(f"| {rv} | " + " | ".join(parts) + f" | {sum(bool(r['found']) for r in in_row)}/{len(in_row)} |")
    return "\n".join(lines)


def leading_digits_table(records: Iterable[dict], title: str) -> str:
    """Per method and key length, the key's leading digits the answer got right
    (mean over trials), so a near miss shows apart from a wrong number."""
    rows, cols, groups = _grid(records, "method", "n_digits")
    lines = [f"| {title} | " + " | ".join(str(c) for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for rv in rows:
        parts = []
        for c in cols:
            cell = groups.get((rv, c), [])
            right = [common_prefix_length(r["expected"], r["got"]) for r in cell]
            parts.append(f"{sum(right) / len(right):g}" if right else "-")
        lines.append(f"| {rv} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def command_line(command: str) -> str:
    """The report line naming its command: resumable runs keep cells from earlier
    commands, so the last one alone may not have produced every row."""
    return f"Last written by `{command}` (cells already in the JSONL from earlier runs are kept, not rerun)."
