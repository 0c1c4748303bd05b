"""Sliding-window perplexity at several context lengths (paper App. D.1, stride 256):
each window of N tokens is evaluated and only its last `stride` tokens are scored, so
every scored token sees about N tokens of context."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..models.package_models import resolve_model_path
from .texts import default_text
from .methods import build_runner, n_ctx_train_of, planned_settings, variant_of
from .results import Automatic, ResultLog, command_line, method_label, with_variants


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return log_z - logits[np.arange(len(targets)), targets]


def run(model: Optional[str], methods: Sequence[str], lengths: Sequence[int], out_dir: Path,
        text: Optional[str] = None, windows: int = 2, stride: int = 256, threads: Optional[int] = None,
        text_name: Optional[str] = None, group_size: Optional[int] = None,
        neighbor_window: Optional[int] = None, flash_attn: bool = False, n_gpu_layers: int = 0) -> ResultLog:
    """Window w scores the same `stride` tokens at every length: they start at token
    max(lengths) + w * stride of the text, and a window of N tokens ends with them, so
    only the amount of context differs between lengths."""
    if not lengths or min(lengths) <= stride:
        raise ValueError(f"perplexity needs lengths longer than the stride ({stride}), got {list(lengths)}")
    if windows < 1:
        raise ValueError(f"windows must be >= 1, got {windows}")
    log = ResultLog(Path(out_dir) / "perplexity.jsonl", ("method", "settings", "length", "window", "text", "scored_from"))
    if text is None:
        text_name, text = default_text()
    text_name = text_name or "text"
    model_file = resolve_model_path(model)   # once: the default model's path is verified by sha256
    n_ctx_train = n_ctx_train_of(model_file)
    anchor = max(lengths)
    tokens = None
    for length in lengths:
        for method in methods:
            runner = None
            settings = planned_settings(method, length, n_ctx_train, group_size, neighbor_window, model_file)
            variant = variant_of(method, group_size, neighbor_window)
            for w in range(windows):
                scored_from = anchor + w * stride
                cell = dict(method=method, settings=settings, length=length, window=w, text=text_name,
                            scored_from=scored_from)
                if log.has(**cell):
                    continue
                runner = runner or build_runner(method, model_file, length, n_ctx_train, group_size, neighbor_window,
                                                threads=threads, flash_attn=flash_attn,
                                                n_gpu_layers=n_gpu_layers)
                if tokens is None:
                    tokens = runner.llm.tokenize(text, add_bos=False)
                    if len(tokens) < anchor + stride * windows:
                        raise ValueError(f"the text has {len(tokens)} tokens; {anchor + stride * windows} are needed")
                # a window of `length` input tokens (truncate keeps fewer); the last `stride`
                # predictions are scored
                end = scored_from + stride
                window = runner.prepare(tokens[end - 1 - length:end - 1])
                if len(window) <= stride:
                    raise ValueError(f"{method} keeps {len(window)} tokens, not more than the stride {stride}")
                began = time.monotonic()
                logits = runner.score(window[:-stride], window[-stride:])
                values = nll(logits, np.asarray(tokens[scored_from:end]))
                record = {**cell, **({"variant": variant} if variant else {}), "context_tokens": len(window),
                          "scored": stride, "mean_nll": float(values.mean()), "ppl": float(np.exp(values.mean())),
                          "flash_attn": flash_attn, "seconds": round(time.monotonic() - began, 1)}
                log.append(record)
                print(f"perplexity {method_label(record)} {length} window {w}: {record['ppl']:.2f} ({record['seconds']} s)",
                      file=sys.stderr, flush=True)
            del runner
    return log


def write_report(log: ResultLog, out_dir: Path, command: str, automatic: Optional[Automatic] = None) -> Path:
    lines = ["# perplexity (sliding window: only the last tokens of each window are scored)", "",
             command_line(command), "",
             "Every length scores the same tokens; only the context before them differs.", ""]
    groups = {}
    for r in with_variants(log.records, automatic):
        if "scored_from" not in r:
            continue   # written before every length scored the same tokens
        anchor = r["scored_from"] - r["window"] * r["scored"]
        groups.setdefault((r["text"], anchor), []).append(r)
    for (text, anchor), records in groups.items():
        by = {}
        for r in records:
            by.setdefault((r["method"], r["length"]), []).append(r["mean_nll"])
        methods = list(dict.fromkeys(r["method"] for r in records))
        lengths = sorted({r["length"] for r in records})
        n_windows = len({r["window"] for r in records})
        lines += [f"Text `{text}`, {n_windows} window(s) of {records[0]['scored']} scored tokens from token "
                  f"{anchor}:", "",
                  "| method | " + " | ".join(str(n) for n in lengths) + " |", "|---|" + "---|" * len(lengths)]
        for m in methods:
            cells = [f"{np.exp(np.mean(by[(m, n)])):.3f}" if (m, n) in by else "-" for n in lengths]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    path = Path(out_dir) / "perplexity.md"
    path.write_text("\n".join(lines))
    return path
