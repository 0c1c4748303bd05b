"""Prefill and decode speed, Self-Extend against vanilla attention, measured in one run.

The machine is shared and noisy, so the two methods alternate per repetition and the
report gives ratios. Usage:

    .venv/bin/python bench/speed.py [--length 8192] [--decode 16] [--reps 1] [--model PATH]
"""

from __future__ import annotations

import argparse
import platform
import time

from selfextend_gguf import Llama
from selfextend_gguf.passkey import FILLER


def measure(llm: Llama, tokens, n_decode: int):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    for t in tokens[:n_decode]:
        llm.eval_next(t)
    t2 = time.perf_counter()
    return len(tokens) / (t1 - t0), n_decode / (t2 - t1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    n_ctx = args.length + args.decode + 64
    methods = {"vanilla": Llama(args.model, n_ctx=n_ctx, group_size=1, n_threads=args.threads),
               "self-extend": Llama(args.model, n_ctx=n_ctx, n_threads=args.threads)}
    tokens = methods["vanilla"].tokenize(FILLER * (args.length // 20 + 2), add_bos=False)[:args.length]
    results = {name: [] for name in methods}
    for _ in range(args.reps):
        for name, llm in methods.items():
            results[name].append(measure(llm, tokens, args.decode))

    se = methods["self-extend"].self_extend
    print(f"# speed: {args.length}-token prefill, then {args.decode} decoded tokens; {platform.machine()}, "
          f"threads={args.threads or 'all'}, reps={args.reps}; self-extend G={se.group_size} W={se.neighbor_window}\n")
    print("| method | prefill tok/s | decode tok/s |")
    print("|---|---|---|")
    best = {}
    for name, rows in results.items():
        best[name] = (max(r[0] for r in rows), max(r[1] for r in rows))
        print(f"| {name} | {best[name][0]:.1f} | {best[name][1]:.1f} |")
    print(f"\nself-extend / vanilla: prefill {best['self-extend'][0] / best['vanilla'][0]:.2f}x, "
          f"decode {best['self-extend'][1] / best['vanilla'][1]:.2f}x")


if __name__ == "__main__":
    main()
