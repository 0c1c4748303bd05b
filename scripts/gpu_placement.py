"""Where the ops of a Self-Extend graph run (part of scripts/check_gpu.sh).

Evaluates a prompt longer than the window with every layer offloaded (n_gpu_layers=-1)
while ggml's scheduler prints its node assignments (GGML_SCHED_DEBUG=2), once with
vanilla attention and once with Self-Extend, each in a child process, and counts the
nodes per backend and the graph splits. With all layers offloaded no Self-Extend op may
fall back to the CPU: the check fails (exit status 1) when a node named se_* runs on the
CPU or Self-Extend's graph has more splits than vanilla's, and lists those nodes. On a
machine without a GPU backend it says so and checks nothing.

Usage: python scripts/gpu_placement.py [MODEL] [--flash-attn] (default: the default model)
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys

# ggml-backend.cpp, ggml_backend_sched_print_assignments:
#   node #  3 (      ROPE):        se_q_grouped-0 ( 36K) [CUDA0   ...] use=1,c=1: ...
NODE = re.compile(r"^node #\s*\d+ \(\s*([^)]*?)\):\s*(.{0,20}?) \(\s*[^)]*\) \[\s*(\S+)")
SPLIT = re.compile(r"^## SPLIT #\d+: (\S+)")

CHILD = """
import sys
from selfextend_gguf import Llama
model, method, flash = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
kw = dict(group_size=1) if method == "vanilla" else dict(group_size=4, neighbor_window=256)
llm = Llama(model, n_ctx=2048, n_gpu_layers=-1, flash_attn=flash, n_batch=512, n_ubatch=512, **kw)
tokens = llm.tokenize(("The grass is green. The sky is blue. " * 200).encode())[:1500]
llm.eval(tokens)
"""


def assignments(model: str, method: str, flash: bool) -> tuple[collections.Counter, int, list]:
    env = dict(os.environ, GGML_SCHED_DEBUG="2", SELFEXTEND_GGUF_DEBUG_LOG="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, model, method, "1" if flash else "0"],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{method}: the run failed:\n{proc.stderr[-3000:]}")
    # the last graph printed is the last ubatch's: the one that reads cells beyond the window
    graphs, current = [], None
    for line in proc.stderr.splitlines():
        split = SPLIT.match(line)
        if split and line.startswith("## SPLIT #0:"):
            current = {"nodes": collections.Counter(), "splits": 0, "se_cpu": []}
            graphs.append(current)
        if current is None:
            continue
        if split:
            current["splits"] += 1
        node = NODE.match(line)
        if node:
            op, name, backend = node.group(1), node.group(2).strip(), node.group(3)
            current["nodes"][backend] += 1
            if name.startswith("se_") and backend.upper().startswith("CPU"):
                current["se_cpu"].append(f"{name} ({op})")
    if not graphs:
        sys.exit(f"{method}: no scheduler assignments were printed (GGML_SCHED_DEBUG=2 with the debug log on)")
    last = graphs[-1]
    return last["nodes"], last["splits"], last["se_cpu"]


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flash = "--flash-attn" in sys.argv
    from selfextend_gguf import package_models
    model = package_models.resolve_model_path(args[0] if args else None)
    vanilla, vanilla_splits, _ = assignments(model, "vanilla", flash)
    se, se_splits, se_cpu = assignments(model, "self-extend", flash)
    print(f"flash attention {'on' if flash else 'off'}")
    print(f"vanilla:     {vanilla_splits} splits, nodes per backend {dict(vanilla)}")
    print(f"self-extend: {se_splits} splits, nodes per backend {dict(se)}")
    gpu = [b for b in vanilla if not b.upper().startswith("CPU")]
    if not gpu:
        print("no GPU backend in vanilla's graph (a CPU-only build or machine): nothing to check")
        return 0
    names = collections.Counter(re.sub(r"-\d+ ", " ", n) for n in se_cpu)   # per op, over the layers
    if names:
        print("Self-Extend nodes on the CPU: " + ", ".join(f"{n} x{c}" for n, c in sorted(names.items())))
    failed = bool(se_cpu) or se_splits > vanilla_splits
    print("FAIL: Self-Extend ops fall back to the CPU" if failed else f"ok: every Self-Extend op runs on {', '.join(gpu)}")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
