"""Where the ops of a Self-Extend graph run: `selfextend-gguf eval placement`.

Evaluates a prompt longer than the neighbor window with every layer offloaded, once with
vanilla attention and once with Self-Extend, each in a child process whose ggml
scheduler prints its node assignments (GGML_SCHED_DEBUG=2, read when the scheduler is
made, so a child per run), and counts the last graph's nodes per backend and its splits.
With every layer on a GPU no Self-Extend op (nodes named se_*) and no attention op may
run on the CPU, and Self-Extend may not add splits: each would copy the cache between
devices on every graph. On a machine without a GPU backend there is nothing to check.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Counter, Dict, List, Optional

# ggml-backend.cpp, ggml_backend_sched_print_assignments (names cut to 20 characters,
# backends to 5: "Vulkan0" prints as "Vulka"):
#   node #  3 (      ROPE):        se_q_grouped-0 ( 36K) [CUDA0   ...] use=1,c=1: ...
_NODE = re.compile(r"^node #\s*\d+ \(\s*([^)]*?)\):\s*(.{0,20}?) \(\s*[^)]*\) \[\s*(\S+)")
_SPLIT = re.compile(r"^## SPLIT #(\d+): (\S+)")

# what a vanilla attention is made of (llama-graph.cpp, build_attn_mha), beside se_* nodes
_ATTENTION_OPS = {"FLASH_ATTN_EXT", "SOFT_MAX"}
_ATTENTION_NAMES = re.compile(r"^(kq|kqv|kq_soft_max|kq_scaled|kq_tanh)(_\d+)?-\d+$")

_CHILD = """
import json, sys
from selfextend_gguf import Llama
model, self_extend, flash, n_gpu_layers, n_ctx, n_tokens = sys.argv[1:7]
kw = json.loads(self_extend)
llm = Llama(model, n_ctx=int(n_ctx), n_gpu_layers=int(n_gpu_layers), flash_attn=flash == "1",
            n_batch=512, n_ubatch=512, **kw)
text = " ".join(f"Line {i}: the grass is green and the sky is blue." for i in range(int(n_tokens)))
llm.eval(llm.tokenize(text.encode())[:int(n_tokens)])
"""


@dataclass
class Placement:
    """The last graph of one run: nodes per backend, its splits, and the Self-Extend and
    attention nodes that ran on the CPU (name and op)."""
    nodes: Counter = field(default_factory=collections.Counter)
    splits: int = 0
    se_on_cpu: List[str] = field(default_factory=list)
    attention_on_cpu: List[str] = field(default_factory=list)

    @property
    def backends(self) -> List[str]:
        return sorted(self.nodes)

    @property
    def accelerators(self) -> List[str]:
        return [b for b in self.backends if not b.upper().startswith("CPU")]


def _is_attention(op: str, name: str) -> bool:
    return op in _ATTENTION_OPS or name.startswith("se_") or bool(_ATTENTION_NAMES.match(name))


def parse_assignments(log: str) -> Optional[Placement]:
    """The last graph's placement in a GGML_SCHED_DEBUG=2 log, or None if none was printed."""
    last: Optional[Placement] = None
    for line in log.splitlines():
        split = _SPLIT.match(line)
        if split:
            if split.group(1) == "0":
                last = Placement()
            if last is not None:
                last.splits += 1
            continue
        node = _NODE.match(line)
        if node is None or last is None:
            continue
        op, name, backend = node.group(1), node.group(2).strip(), node.group(3)
        last.nodes[backend] += 1
        if backend.upper().startswith("CPU"):
            if name.startswith("se_"):
                last.se_on_cpu.append(f"{name} ({op})")
            if _is_attention(op, name):
                last.attention_on_cpu.append(f"{name} ({op})")
    return last


def run_placement(model: str, self_extend: bool, flash_attn: bool, n_gpu_layers: int = -1,
                  n_ctx: int = 2048, n_tokens: int = 1500) -> Placement:
    """Evaluate n_tokens of a prompt in a child process and read where the last graph's
    nodes ran. Self-Extend: W = min(256, L/4) and the smallest G that reaches n_ctx
    (eq. 4), so that the prompt has far cells whatever the model's trained context L."""
    from ..settings.self_extend import smallest_reaching_group_size
    from .methods import n_ctx_train_of

    if self_extend:
        n_ctx_train = n_ctx_train_of(model)
        window = max(1, min(256, n_ctx_train // 4))
        settings = dict(group_size=smallest_reaching_group_size(n_ctx, n_ctx_train, window), neighbor_window=window)
    else:
        settings = dict(group_size=1)
    env = dict(os.environ, GGML_SCHED_DEBUG="2", SELFEXTEND_GGUF_DEBUG_LOG="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, model, json.dumps(settings), "1" if flash_attn else "0",
                           str(n_gpu_layers), str(n_ctx), str(n_tokens)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the placement run failed ({'Self-Extend' if self_extend else 'vanilla'}):\n"
                           f"{proc.stderr[-3000:]}")
    placement = parse_assignments(proc.stderr)
    if placement is None:
        raise RuntimeError("the scheduler printed no node assignments (GGML_SCHED_DEBUG=2)")
    return placement


def check(model: str, flash_attn: bool, n_gpu_layers: int = -1) -> Dict[str, object]:
    """Vanilla and Self-Extend placements and the verdict: ok when a GPU backend took part
    and no Self-Extend or attention node ran on the CPU and Self-Extend added no split."""
    vanilla = run_placement(model, False, flash_attn, n_gpu_layers)
    se = run_placement(model, True, flash_attn, n_gpu_layers)
    gpu = vanilla.accelerators
    ok = bool(gpu) and not se.se_on_cpu and not se.attention_on_cpu and se.splits <= vanilla.splits
    return {"flash_attn": flash_attn, "vanilla": vanilla, "self_extend": se, "gpu": gpu, "ok": ok}


def format_check(result: Dict[str, object]) -> str:
    vanilla, se = result["vanilla"], result["self_extend"]
    lines = [f"flash attention {'on' if result['flash_attn'] else 'off'}",
             f"  vanilla:     {vanilla.splits} splits, nodes per backend {dict(vanilla.nodes)}",
             f"  self-extend: {se.splits} splits, nodes per backend {dict(se.nodes)}"]
    if not result["gpu"]:
        lines.append("  no GPU backend took part (a CPU-only build or machine, or no layer offloaded): nothing to check")
        return "\n".join(lines)
    per_op = collections.Counter(re.sub(r"-\d+ ", " ", n) for n in se.se_on_cpu + se.attention_on_cpu)
    if per_op:
        lines.append("  on the CPU: " + ", ".join(f"{n} x{c}" for n, c in sorted(per_op.items())))
    if result["ok"]:
        lines.append(f"  ok: every Self-Extend and attention op runs on {', '.join(result['gpu'])}")
    else:
        lines.append("  FAIL: " + ("Self-Extend adds splits" if not per_op else "ops fall back to the CPU"))
    return "\n".join(lines)
