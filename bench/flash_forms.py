"""Self-Extend's attention forms on one flash-attention context: the CPU kernel against the
logit form (SELFEXTEND_GGUF_FLASH_KERNEL=logits, the form a device that refuses the
stock-op flash attention takes) for short ubatches after a long prefix, alternating on
one context, best of rounds.

    .venv/bin/python bench/flash_forms.py [--depth 16384] [--sizes 1,8,25] [--threads 2] [--repeat 3]

The form is chosen when a graph is built, so the environment variable can change between
ubatches of one context.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from layouts import prefill  # noqa: E402
from short_ubatches import context_for, measure, parse_arguments, random_tokens  # noqa: E402

FORMS = {"kernel": None, "logits": "logits"}


def main() -> None:
    args = parse_arguments(__doc__, 16384)
    sizes = args.sizes
    llm = context_for(args, flash_attn=True)
    ctx = llm._context()
    tokens = random_tokens(llm, args)
    start = time.perf_counter()
    prefill(ctx, 0, tokens[:args.depth], 0)
    print(f"{llm.self_extend}, prefill of {args.depth} tokens: {time.perf_counter() - start:.0f} s", flush=True)
    best = {}
    for round_ in range(args.repeat):
        for form, value in FORMS.items():
            if value is None:
                os.environ.pop("SELFEXTEND_GGUF_FLASH_KERNEL", None)
            else:
                os.environ["SELFEXTEND_GGUF_FLASH_KERNEL"] = value
            for size in sizes:
                rate = measure(ctx, tokens, args.depth, size)
                best[form, size] = max(best.get((form, size), 0.0), rate)
                print(f"round {round_} {form} ubatch {size}: {rate:.1f} tokens/s", flush=True)
    os.environ.pop("SELFEXTEND_GGUF_FLASH_KERNEL", None)
    print("\n| ubatch | kernel tokens/s | logit form tokens/s | logit form / kernel |\n|---|---|---|---|")
    for size in sizes:
        kernel, logits = best["kernel", size], best["logits", size]
        print(f"| {size} | {kernel:.1f} | {logits:.1f} | {logits / kernel:.2f}x |")


if __name__ == "__main__":
    main()
