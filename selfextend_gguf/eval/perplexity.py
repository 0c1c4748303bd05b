"""Sliding-window perplexity at several context lengths (paper App. D.1, stride 256):
each window of N tokens is evaluated and only its last `stride` tokens are scored, so
every scored token sees about N tokens of context."""

from __future__ import annotations

import glob
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .methods import build_runner, n_ctx_train_of
from .results import ResultLog

DEFAULT_TEXTS = ("/usr/share/bible-kjv/*", "/usr/share/common-licenses/*")


def default_text() -> str:
    """A public-domain or license text present on Debian: bible-kjv-text if installed,
    else the license texts (each file once)."""
    for pattern in DEFAULT_TEXTS:
        files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f) and not os.path.islink(f))
        if files:
            return "\n\n".join(open(f, encoding="utf-8", errors="replace").read() for f in files)
    raise FileNotFoundError("no default text found; pass --text FILE")


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return log_z - logits[np.arange(len(targets)), targets]


def run(model: Optional[str], methods: Sequence[str], lengths: Sequence[int], out_dir: Path,
        text: Optional[str] = None, windows: int = 2, stride: int = 256, threads: Optional[int] = None,
        text_name: str = "default") -> ResultLog:
    log = ResultLog(Path(out_dir) / "perplexity.jsonl", ("method", "length", "window", "text"))
    text = text if text is not None else default_text()
    n_ctx_train = n_ctx_train_of(model)
    for length in lengths:
        for method in methods:
            if method == "grouped-cache":
                continue   # its positions change between chunks; not comparable token by token
            runner = None
            for w in range(windows):
                if log.has(method=method, length=length, window=w, text=text_name):
                    continue
                runner = runner or build_runner(method, model, length, n_ctx_train, threads=threads)
                llm = runner.llm
                tokens = llm.tokenize(text, add_bos=False)
                need = length + stride * windows + 1
                if len(tokens) < need:
                    raise ValueError(f"the text has {len(tokens)} tokens; {need} are needed")
                start = w * stride
                window = tokens[start:start + length + 1]
                window = runner.prepare(window[:-1]) + [window[-1]]
                context, scored = window[:-stride - 1], window[-stride - 1:]
                began = time.monotonic()
                llm.reset()
                llm.eval(context)
                logits = llm.eval_logits(scored[:-1])
                values = nll(logits, np.asarray(scored[1:]))
                record = {"method": method, "length": length, "window": w, "text": text_name,
                          "context_tokens": len(window) - 1, "scored": stride, "mean_nll": float(values.mean()),
                          "ppl": float(np.exp(values.mean())), "settings": runner.settings,
                          "seconds": round(time.monotonic() - began, 1)}
                log.append(record)
                print(f"perplexity {method} {length} window {w}: {record['ppl']:.2f} ({record['seconds']} s)",
                      file=sys.stderr, flush=True)
            del runner
    return log


def write_report(log: ResultLog, out_dir: Path, command: str) -> Path:
    by = {}
    for r in log.records:
        by.setdefault((r["method"], r["length"]), []).append(r["mean_nll"])
    methods = list(dict.fromkeys(r["method"] for r in log.records))
    lengths = sorted({r["length"] for r in log.records})
    lines = ["# perplexity (sliding window, last 256 tokens of each window scored)", "",
             f"Command: `{command}`", "",
             "| method | " + " | ".join(str(n) for n in lengths) + " |", "|---|" + "---|" * len(lengths)]
    for m in methods:
        cells = [f"{np.exp(np.mean(by[(m, n)])):.2f}" if (m, n) in by else "-" for n in lengths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    path = Path(out_dir) / "perplexity.md"
    path.write_text("\n".join(lines) + "\n")
    return path
