"""Prefill and decode speed at several context depths, Self-Extend against vanilla,
with memory: the KV state size and the process's peak RSS. Methods alternate within
one run and the report gives ratios, because the machine is shared and noisy."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..passkey import FILLER
from ..progress import ProgressBar
from .methods import build_runner, n_ctx_train_of
from .results import ResultLog


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(model: Optional[str], methods: Sequence[str], depths: Sequence[int], out_dir: Path, n_decode: int = 16,
        threads: Optional[int] = None, reps: int = 1) -> ResultLog:
    log = ResultLog(Path(out_dir) / "speed.jsonl", ("method", "depth", "rep"))
    n_ctx_train = n_ctx_train_of(model)
    for depth in depths:
        for rep in range(reps):
            for method in methods:
                if log.has(method=method, depth=depth, rep=rep):
                    continue
                runner = build_runner(method, model, depth + n_decode, n_ctx_train, threads=threads)
                llm = runner.llm
                tokens = llm.tokenize(FILLER * (depth // 20 + 2), add_bos=False)[:depth]
                t0 = time.perf_counter()
                llm.eval(tokens, progress_callback=ProgressBar(f"speed {method} {depth}"))
                t1 = time.perf_counter()
                for t in tokens[:n_decode]:
                    llm.eval_next(t)
                t2 = time.perf_counter()
                record = {"method": method, "depth": depth, "rep": rep, "settings": runner.settings,
                          "prefill_tok_s": round(depth / (t1 - t0), 2), "decode_tok_s": round(n_decode / (t2 - t1), 2),
                          "kv_state_mib": round(llm.state_size() / 2**20, 1), "peak_rss_mib": round(_rss_mib(), 1)}
                log.append(record)
                print(f"speed {method} depth {depth}: prefill {record['prefill_tok_s']} tok/s, "
                      f"decode {record['decode_tok_s']} tok/s", file=sys.stderr, flush=True)
                del runner, llm
    return log


def write_report(log: ResultLog, out_dir: Path, command: str) -> Path:
    best = {}
    for r in log.records:
        k = (r["method"], r["depth"])
        p, d = best.get(k, (0.0, 0.0))
        best[k] = (max(p, r["prefill_tok_s"]), max(d, r["decode_tok_s"]))
    mem = {(r["method"], r["depth"]): (r["kv_state_mib"], r["peak_rss_mib"]) for r in log.records}
    depths = sorted({r["depth"] for r in log.records})
    methods = list(dict.fromkeys(r["method"] for r in log.records))
    lines = ["# speed (best of the repetitions; 2 threads unless stated)", "", f"Command: `{command}`", "",
             "| method | depth | prefill tok/s | decode tok/s | KV state MiB | peak RSS MiB (process so far) |",
             "|---|---|---|---|---|---|"]
    for n in depths:
        for m in methods:
            if (m, n) in best:
                p, d = best[(m, n)]
                kv, rss = mem[(m, n)]
                lines.append(f"| {m} | {n} | {p:.1f} | {d:.1f} | {kv} | {rss} |")
    if "vanilla" in methods and "self-extend" in methods:
        lines += ["", "| depth | self-extend / vanilla prefill | decode |", "|---|---|---|"]
        for n in depths:
            if ("vanilla", n) in best and ("self-extend", n) in best:
                v, s = best[("vanilla", n)], best[("self-extend", n)]
                lines.append(f"| {n} | {s[0] / v[0]:.2f}x | {s[1] / v[1]:.2f}x |")
    path = Path(out_dir) / "speed.md"
    path.write_text("\n".join(lines) + "\n")
    return path
