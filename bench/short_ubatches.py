"""Short ubatches after a long prefix (decoding, a chat turn, a server request that extends
a cached document): tokens/s of vanilla and Self-Extend, flash attention off and on, in
one run on one context, and Self-Extend's best over vanilla's best.

    .venv/bin/python bench/short_ubatches.py [--depth 8192] [--sizes 1,8,25] [--threads 2] [--repeat 3]

The methods alternate on one context (the cache regrouped between them) and each rate is
the best of --repeat rounds: this machine's run-to-run noise (10-20%) would otherwise
decide the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from selfextend_gguf import Llama

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from layouts import prefill  # noqa: E402

TOKENS_PER_SIZE = 50   # at least this many tokens evaluated per ubatch size


def measure(ctx, tokens, depth: int, size: int) -> float:
    """tokens/s of ubatches of `size` tokens after the first `depth` cells, then rewound."""
    start, pos, done = time.perf_counter(), depth, 0
    while done < max(TOKENS_PER_SIZE, 2 * size):
        part = tokens[pos:pos + size]
        ctx.decode_batch(part, list(range(pos, pos + size)), [0] * size, [False] * (size - 1) + [True])
        pos, done = pos + size, done + size
    rate = done / (time.perf_counter() - start)
    ctx.seq_rm(0, depth, -1)
    return rate


def parse_arguments(doc: str, depth: int) -> argparse.Namespace:
    """The options of the short-ubatch benchmarks (this one and flash_forms.py); `sizes`
    comes back as a list of ints."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--depth", type=int, default=depth)
    ap.add_argument("--sizes", default="1,8,25")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def context_for(args: argparse.Namespace, flash_attn: bool) -> Llama:
    """A model with room for the prefix and every size's ubatches after it."""
    return Llama(args.model, n_ctx=args.depth + 2 * max(args.sizes) + TOKENS_PER_SIZE + 64, flash_attn=flash_attn,
                 n_threads=args.threads)


def random_tokens(llm: Llama, args: argparse.Namespace) -> list:
    """The prefix and the ubatches after it: the same tokens in every run."""
    return [int(t) for t in np.random.default_rng(0).integers(100, min(20000, llm.n_vocab()),
                                                                  args.depth + 2 * max(args.sizes) + 64)]


def main() -> None:
    args = parse_arguments(__doc__, 8192)
    sizes = args.sizes
    rates = {}
    setting = None
    for flash in (False, True):
        llm = context_for(args, flash)
        setting = llm.self_extend
        ctx = llm._context()
        tokens = random_tokens(llm, args)
        prefill(ctx, 0, tokens[:args.depth], 0)   # with Self-Extend on (its grouped keys stored)
        for _ in range(args.repeat):
            for method in ("self-extend", "vanilla"):
                if method == "vanilla":
                    ctx.set_self_extend(0, 0)
                else:
                    ctx.set_self_extend(setting.group_size, setting.neighbor_window)
                for size in sizes:
                    key = (method, flash, size)
                    rates[key] = max(rates.get(key, 0.0), measure(ctx, tokens, args.depth, size))
        del ctx, llm
    print(f"model {args.model or 'default'}, prefix {args.depth} tokens, Self-Extend {setting}, "
          f"{args.threads} threads; tokens/s, best of {args.repeat} rounds\n")
    print("| ubatch | vanilla off | vanilla on | self-extend off | self-extend on | best over best |")
    print("|---|---|---|---|---|---|")
    for size in sizes:
        v = [rates[("vanilla", f, size)] for f in (False, True)]
        s = [rates[("self-extend", f, size)] for f in (False, True)]
        print(f"| {size} | {v[0]:.1f} | {v[1]:.1f} | {s[0]:.1f} | {s[1]:.1f} | {max(s) / max(v):.2f}x |")


if __name__ == "__main__":
    main()
