"""Prefill and decode speed at several context depths, Self-Extend against vanilla,
with memory: llama.cpp's KV cache and compute buffers, and the peak RSS of each
measurement. Methods alternate within one run and the report gives ratios, because
the machine is shared and noisy."""

from __future__ import annotations

import gc
import resource
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..passkey import FILLER
from ..progress import ProgressBar
from .methods import build_runner, n_ctx_train_of
from .results import ResultLog


MIB = 2 ** 20


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # process lifetime


def _buffers_mib(llm) -> dict:
    total = {"model": 0, "context": 0, "compute": 0}
    for parts in llm.memory_breakdown().values():
        for k in total:
            total[k] += parts[k]
    return {k: round(v / MIB, 1) for k, v in total.items()}


def run(model: Optional[str], methods: Sequence[str], depths: Sequence[int], out_dir: Path, n_decode: int = 16,
        threads: Optional[int] = None, reps: int = 1) -> ResultLog:
    log = ResultLog(Path(out_dir) / "speed.jsonl", ("method", "depth", "rep"))
    n_ctx_train = n_ctx_train_of(model)
    for depth in depths:
        for rep in range(reps):
            for method in methods:
                if log.has(method=method, depth=depth, rep=rep):
                    continue
                per_run_peak = _reset_peak_rss()
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
                          "kv_state_mib": round(llm.state_size() / MIB, 1), **_buffers_mib(llm),
                          "peak_rss_mib": round(_peak_rss_mib(), 1), "peak_rss_per_run": per_run_peak}
                log.append(record)
                print(f"speed {method} depth {depth}: prefill {record['prefill_tok_s']} tok/s, "
                      f"decode {record['decode_tok_s']} tok/s", file=sys.stderr, flush=True)
                del runner, llm
                gc.collect()   # free this context before the next measurement starts
    return log


def write_report(log: ResultLog, out_dir: Path, command: str) -> Path:
    best = {}
    for r in log.records:
        k = (r["method"], r["depth"])
        p, d = best.get(k, (0.0, 0.0))
        best[k] = (max(p, r["prefill_tok_s"]), max(d, r["decode_tok_s"]))
    mem = {(r["method"], r["depth"]): r for r in log.records}
    depths = sorted({r["depth"] for r in log.records})
    methods = list(dict.fromkeys(r["method"] for r in log.records))
    lines = ["# speed (best of the repetitions; 2 threads unless stated)", "", f"Command: `{command}`", "",
             "KV cache and compute buffers as llama.cpp allocated them (all buffer types); KV in use is "
             "the state size at the end of the run; peak RSS is the whole process during that one "
             "measurement (model load included). Memory is from the last repetition.", "",
             "| method | depth | prefill tok/s | decode tok/s | KV cache MiB (in use) | compute buffers MiB "
             "| peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for n in depths:
        for m in methods:
            if (m, n) in best:
                p, d = best[(m, n)]
                r = mem[(m, n)]
                kv = f"{r['context']} ({r['kv_state_mib']})" if "context" in r else f"({r['kv_state_mib']})"
                rss = f"{r['peak_rss_mib']}" + ("" if r.get("peak_rss_per_run") else " (process so far)")
                lines.append(f"| {m} | {n} | {p:.1f} | {d:.1f} | {kv} | {r.get('compute', '-')} | {rss} |")
    if "vanilla" in methods and "self-extend" in methods:
        lines += ["", "| depth | self-extend / vanilla prefill | decode |", "|---|---|---|"]
        for n in depths:
            if ("vanilla", n) in best and ("self-extend", n) in best:
                v, s = best[("vanilla", n)], best[("self-extend", n)]
                lines.append(f"| {n} | {s[0] / v[0]:.2f}x | {s[1] / v[1]:.2f}x |")
    path = Path(out_dir) / "speed.md"
    path.write_text("\n".join(lines) + "\n")
    return path
