"""Prefill and decode speed over llama.cpp's RPC backend: Self-Extend with every layer on
two local `selfextend-gguf rpc-server` processes, against the same run all local, and
vanilla attention over the same servers (the overhead Self-Extend adds on RPC should be
what it adds locally).

    python bench/rpc_speed.py [--length 9000] [--decode 64] [--reps 2] [--out bench/results/rpc-speed.md]

Run it alone. The four runs alternate, --reps rounds of them, and each rate is the best
of its rounds (one run on this machine swings by 15% or more, and the first run in a
process pays for reading the model). On one machine the two servers split its cores
(one thread each) and compute their layers one after the other, so RPC is slower than
local here by construction; the ratios that matter are Self-Extend's against vanilla's
on each side."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rpc_process import RpcServer  # noqa: E402

from selfextend_gguf import Llama  # noqa: E402
from selfextend_gguf.eval import texts


def measure(length: int, n_decode: int, **kwargs):
    llm = Llama(n_ctx=length + n_decode + 64, n_threads=2, flash_attn=True, **kwargs)
    _, text = texts.default_text()
    tokens = llm.tokenize(text, add_bos=True)[:length]
    start = time.perf_counter()
    llm.eval(tokens)
    prefill = time.perf_counter() - start
    token = int(llm.last_logits().argmax())
    start = time.perf_counter()
    for _ in range(n_decode):
        token = int(llm.eval_next(token).argmax())
    decode = time.perf_counter() - start
    setting = f"G={llm.self_extend.group_size} W={llm.self_extend.neighbor_window}" if llm.self_extend else "vanilla"
    return {"setting": setting, "prefill_tok_s": length / prefill, "decode_tok_s": n_decode / decode}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--length", type=int, default=9000)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", default="bench/results/rpc-speed.md")
    args = p.parse_args()

    servers = [RpcServer(threads=1), RpcServer(threads=1)]
    endpoints = ",".join(s.endpoint for s in servers)
    try:
        rows = {}
        for _ in range(args.reps):
            for name, kwargs in (("self-extend, local", {}), ("vanilla, local", {"group_size": 1}),
                                 ("self-extend, 2 RPC servers", {"rpc_servers": endpoints, "n_gpu_layers": -1}),
                                 ("vanilla, 2 RPC servers", {"rpc_servers": endpoints, "n_gpu_layers": -1,
                                                             "group_size": 1})):
                r = measure(args.length, args.decode, **kwargs)
                print(name, r, flush=True)
                best = rows.setdefault(name, r)
                for key in ("prefill_tok_s", "decode_tok_s"):
                    best[key] = max(best[key], r[key])
    finally:
        for s in servers:
            s.stop()

    def ratio(a, b, key):
        return rows[a][key] / rows[b][key]

    lines = [f"# Self-Extend over llama.cpp's RPC backend ({args.length}-token prompt)", "",
             f"Default model, flash attention, {args.decode} decoded tokens; local: 2 threads; RPC: every layer on",
             "two `selfextend-gguf rpc-server` processes on this machine (127.0.0.1, 1 thread each).",
             f"`python bench/rpc_speed.py --length {args.length} --decode {args.decode} --reps {args.reps}` "
             f"({time.strftime('%Y-%m-%d')}): each rate the best of {args.reps} rounds, the runs alternating.", "",
             "| run | setting | prefill tok/s | decode tok/s |", "|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['setting']} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} |")
    lines += ["", "| ratio | prefill | decode |", "|---|---|---|"]
    for label, a, b in (("Self-Extend / vanilla, local", "self-extend, local", "vanilla, local"),
                        ("Self-Extend / vanilla, on RPC", "self-extend, 2 RPC servers", "vanilla, 2 RPC servers"),
                        ("Self-Extend on RPC / local", "self-extend, 2 RPC servers", "self-extend, local")):
        lines.append(f"| {label} | {ratio(a, b, 'prefill_tok_s'):.2f} | {ratio(a, b, 'decode_tok_s'):.2f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
