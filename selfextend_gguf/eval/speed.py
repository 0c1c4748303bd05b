"""Prefill and decode speed at several context depths, Self-Extend against vanilla,
with flash attention off and on, and memory: llama.cpp's KV cache and compute buffers, and the peak RSS of each measurement. Methods alternate
within one run and the report gives ratios, because the machine is shared and noisy:
Self-Extend's best configuration against vanilla's best (flash on or off, whichever is
faster here), memory at the same flash setting."""

from __future__ import annotations

import gc
import resource
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .passkey import FILLER
from .progress import ProgressBar
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


def _flash_name(flash: bool) -> str:
    return "on" if flash else "off"


def run(model: Optional[str], methods: Sequence[str], depths: Sequence[int], out_dir: Path, n_decode: int = 16,
        threads: Optional[int] = None, reps: int = 1, flash: Sequence[bool] = (False,),
        n_gpu_layers: int = 0, decode_reps: int = 1) -> ResultLog:
    """decode_reps: how many times the decode is timed after one prefill (rewound to the
    prefill between), the best kept: a prefill at 32k takes minutes on a CPU, the decode
    after it seconds, and one short decode on a shared machine swings."""
    if decode_reps < 1:
        raise ValueError(f"decode_reps must be at least 1, got {decode_reps}")
    log = ResultLog(Path(out_dir) / "speed.jsonl", ("method", "depth", "flash", "rep"))
    n_ctx_train = n_ctx_train_of(model)
    for depth in depths:
        for rep in range(reps):
            for fa in flash:
                for method in methods:
                    if log.has(method=method, depth=depth, flash=_flash_name(fa), rep=rep):
                        continue
                    log.append(_measure(model, method, depth, fa, rep, n_decode, n_ctx_train, threads, n_gpu_layers,
                                        decode_reps))
    return log


def _measure(model, method, depth, flash, rep, n_decode, n_ctx_train, threads, n_gpu_layers, decode_reps) -> dict:
    per_run_peak = _reset_peak_rss()
    runner = build_runner(method, model, depth + n_decode, n_ctx_train, threads=threads, flash_attn=flash,
                          n_gpu_layers=n_gpu_layers)
    llm = runner.llm
    tokens = llm.tokenize(FILLER * (depth // 20 + 2), add_bos=False)[:depth]
    t0 = time.perf_counter()
    llm.eval(tokens, progress_callback=ProgressBar(f"speed {method} {depth} flash {_flash_name(flash)}"))
    t1 = time.perf_counter()
    decode_runs = []
    for i in range(decode_reps):
        if i:
            llm.rewind(depth)
        start = time.perf_counter()
        for t in tokens[:n_decode]:
            llm.eval_next(t)
        decode_runs.append(round(n_decode / (time.perf_counter() - start), 2))
    record = {"method": method, "depth": depth, "flash": _flash_name(flash), "rep": rep,
              "settings": runner.settings, "prefill_tok_s": round(depth / (t1 - t0), 2),
              "decode_tok_s": max(decode_runs), "decode_runs_tok_s": decode_runs,
              "kv_state_mib": round(llm.state_size() / MIB, 1),
              **_buffers_mib(llm), "peak_rss_mib": round(_peak_rss_mib(), 1), "peak_rss_per_run": per_run_peak}
    print(f"speed {method} depth {depth} flash {record['flash']}: prefill {record['prefill_tok_s']} tok/s, "
          f"decode {record['decode_tok_s']} tok/s, compute {record['compute']} MiB", file=sys.stderr, flush=True)
    del runner, llm
    gc.collect()   # free this context before the next measurement starts
    return record


def _ubatch_log(out_dir: Path) -> ResultLog:
    return ResultLog(Path(out_dir) / "speed-ubatch.jsonl", ("method", "depth", "flash", "n_ubatch"))


def earlier_ubatch_log(out_dir: Path) -> Optional[ResultLog]:
    """The memory-against-n_ubatch rows an earlier `--ubatch-depth` run left in out_dir, so
    that a report rewritten by a run without it keeps its memory table."""
    log = _ubatch_log(out_dir)
    return log if log.records else None


def compute_buffers_vs_ubatch(model: Optional[str], methods: Sequence[str], depth: int, n_ubatches: Sequence[int],
                              out_dir: Path, flash: Sequence[bool] = (False, True), n_gpu_layers: int = 0) -> ResultLog:
    """Compute buffers as llama.cpp reserves them for n_ctx = depth (no evaluation)."""
    log = _ubatch_log(out_dir)
    n_ctx_train = n_ctx_train_of(model)
    for n_ubatch in n_ubatches:
        for fa in flash:
            for method in methods:
                if log.has(method=method, depth=depth, flash=_flash_name(fa), n_ubatch=n_ubatch):
                    continue
                runner = build_runner(method, model, depth, n_ctx_train, n_ubatch=n_ubatch, flash_attn=fa,
                                      n_gpu_layers=n_gpu_layers)
                log.append({"method": method, "depth": depth, "flash": _flash_name(fa), "n_ubatch": n_ubatch,
                            **_buffers_mib(runner.llm)})
                del runner
                gc.collect()
    return log


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def write_report(log: ResultLog, out_dir: Path, command: str, ubatch_log: Optional[ResultLog] = None,
                 ubatch_from_earlier_run: bool = False) -> Path:
    best = {}   # (method, depth, flash) -> best prefill, best decode of the repetitions
    for r in log.records:
        k = (r["method"], r["depth"], r.get("flash", "off"))
        p, d = best.get(k, (0.0, 0.0))
        best[k] = (max(p, r["prefill_tok_s"]), max(d, r["decode_tok_s"]))
    mem = {(r["method"], r["depth"], r.get("flash", "off")): r for r in log.records}
    depths = sorted({r["depth"] for r in log.records})
    methods = list(dict.fromkeys(r["method"] for r in log.records))
    flashes = [f for f in ("off", "on") if any(r.get("flash", "off") == f for r in log.records)]
    lines = ["# speed (best of the repetitions; 2 threads unless stated)", "", f"Command: `{command}`", "",
             "KV cache and compute buffers as llama.cpp "
             "allocated them (all buffer types); KV in use is the state size at the end of the run; peak RSS "
             "is the whole process during that one measurement (model load included). Memory is from the "
             "last repetition."]
    timings = {len(r.get("decode_runs_tok_s", [])) or 1 for r in log.records}
    if max(timings, default=1) > 1:
        rows = "each prefill" if len(timings) == 1 else "the prefill in rows timed more than once (the others: one)"
        lines[-1] += (f" Decode: the best of {max(timings)} timings after {rows}, rewound to the prefill between "
                      "them (every timing is in speed.jsonl's decode_runs_tok_s).")
    lines += ["",
              "| method | depth | flash | prefill tok/s | decode tok/s | KV cache MiB (in use) | compute buffers MiB "
              "| peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|"]
    for n in depths:
        for f in flashes:
            for m in methods:
                if (m, n, f) in best:
                    p, d = best[(m, n, f)]
                    r = mem[(m, n, f)]
                    rss = f"{r['peak_rss_mib']}" + ("" if r.get("peak_rss_per_run") else " (process so far)")
                    lines.append(f"| {m} | {n} | {f} | {p:.1f} | {d:.1f} | {r['context']} ({r['kv_state_mib']}) "
                                 f"| {r['compute']} | {rss} |")
    if "vanilla" in methods and "self-extend" in methods:
        lines += ["", "Self-Extend over vanilla. Speed: each method's best configuration (flash off or on, "
                  "named in brackets). Memory: at the same flash setting.", "",
                  "| depth | prefill | decode | compute buffers, flash off | flash on | KV memory |",
                  "|---|---|---|---|---|---|"]
        for n in depths:
            def best_of(m, i):
                options = [(best[(m, n, f)][i], f) for f in flashes if (m, n, f) in best]
                return max(options) if options else (0.0, "-")
            if best_of("vanilla", 0)[0] and best_of("self-extend", 0)[0]:
                (sp, sfp), (vp, vfp) = best_of("self-extend", 0), best_of("vanilla", 0)
                (sd, sfd), (vd, vfd) = best_of("self-extend", 1), best_of("vanilla", 1)
                buffers = []
                for f in ("off", "on"):
                    s_r, v_r = mem.get(("self-extend", n, f)), mem.get(("vanilla", n, f))
                    buffers.append(_ratio(s_r["compute"], v_r["compute"]) if s_r and v_r else "-")
                f0 = flashes[0]
                kv = _ratio(mem[("self-extend", n, f0)]["context"], mem[("vanilla", n, f0)]["context"])
                lines.append(f"| {n} | {sp / vp:.2f}x ({sfp} / {vfp}) | {sd / vd:.2f}x ({sfd} / {vfd}) "
                             f"| {buffers[0]} | {buffers[1]} | {kv} |")
    if ubatch_log is not None and ubatch_log.records:
        earlier = " (rows of an earlier `--ubatch-depth` run, in speed-ubatch.jsonl)" if ubatch_from_earlier_run else ""
        lines += ["", f"Memory (MiB) as reserved for n_ctx = {ubatch_log.records[0]['depth']}, against n_ubatch: "
                  f"compute buffers, KV cache, and both (no evaluation){earlier}:", "",
                  "| n_ubatch | flash | " + " | ".join(f"{m} compute" for m in methods) + " | "
                  + " | ".join(f"{m} KV" for m in methods) + " | "
                  + " | ".join(f"{m} KV + compute" for m in methods)
                  + (" | Self-Extend over vanilla, KV + compute |" if "vanilla" in methods and "self-extend" in methods
                     else " |"),
                  "|---|---|" + "---|" * (3 * len(methods) + ("vanilla" in methods and "self-extend" in methods))]
        rows = {}
        for r in ubatch_log.records:
            rows.setdefault((r["n_ubatch"], r["flash"]), {})[r["method"]] = r
        for (nu, f), by_method in sorted(rows.items()):
            def cell(m, key):
                r = by_method.get(m)
                return "-" if r is None else f"{r['compute'] + r['context'] if key == 'both' else r[key]:.1f}"
            cells = [cell(m, "compute") for m in methods] + [cell(m, "context") for m in methods] \
                + [cell(m, "both") for m in methods]
            if "vanilla" in methods and "self-extend" in methods:
                s_r, v_r = by_method.get("self-extend"), by_method.get("vanilla")
                cells.append(_ratio(s_r["compute"] + s_r["context"], v_r["compute"] + v_r["context"])
                             if s_r and v_r else "-")
            lines.append(f"| {nu} | {f} | " + " | ".join(cells) + " |")
    path = Path(out_dir) / "speed.md"
    path.write_text("\n".join(lines) + "\n")
    return path
