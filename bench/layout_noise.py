"""How much a quantized model's next-token log-probabilities move when only the layout of
the computation changes: the same tokens at the same positions, evaluated in other chunk
sizes, after another sequence's cells, or as a copied prefix decoded beside another
sequence (what continuous batching does). Vanilla llama.cpp and Self-Extend, flash
attention off and on, one run.

The number is the largest |difference| over the reference's ten best log-probabilities.
It is what tests that compare batched with solo greedy runs of this model must tolerate
(tests/greedy_match.py).

    .venv/bin/python bench/layout_noise.py [--model default] [--type-k f16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from selfextend_gguf import Llama
from selfextend_gguf.eval import passkey
from selfextend_gguf.engine.logprobs import log_softmax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from layouts import logits_in_layouts  # noqa: E402

DOC_TOKENS = 1500


def top10_difference(got, ref) -> float:
    top = np.argsort(-ref)[:10]
    return float(np.max(np.abs(got[top] - ref[top])))


def measure(llm: Llama) -> dict:
    """{layout: largest |difference| of the ten best log-probabilities} on llm's context."""
    doc = passkey.build(DOC_TOKENS, 0.5, lambda t: len(llm.tokenize(t)), key="71830").text
    doc = llm.tokenize(doc[:-len(passkey.QUESTION)].encode())
    ask = tuple(llm.tokenize(f" Question {i}: what is the pass key? The pass key is".encode(), add_bos=False)
                for i in range(2))
    ref, got = logits_in_layouts(llm._context(), doc, ask, chunk=64)
    ref = log_softmax(ref)
    return {layout: top10_difference(log_softmax(row), ref) for layout, row in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--type-k", default="f16", help="K and V cache type")
    args = ap.parse_args()
    rows = []
    for flash in (False, True):
        llm = Llama(args.model, n_ctx=4096, n_seq_max=2, flash_attn=flash, type_k=args.type_k,
                    type_v=args.type_k, group_size=4, neighbor_window=256)
        for method in ("vanilla", "self-extend G=4 W=256"):
            if method == "vanilla":
                llm._context().set_self_extend(0, 0)
            else:
                llm._context().set_self_extend(4, 256)
            rows.append((method, flash, measure(llm)))
        del llm
    names = list(rows[0][2])
    print(f"model {args.model or 'default'}, cache {args.type_k}, a {DOC_TOKENS}-token document; "
          "largest |difference| of the ten best next-token log-probabilities against one 512-token-chunk run\n")
    print("| method | flash | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for method, flash, out in rows:
        print(f"| {method} | {'on' if flash else 'off'} | " + " | ".join(f"{out[n]:.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
