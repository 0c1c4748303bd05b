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

import numpy as np

from selfextend_gguf import Llama, passkey

DOC_TOKENS = 1500


def log_softmax(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def top10_difference(got, ref) -> float:
    top = np.argsort(-ref)[:10]
    return float(np.max(np.abs(got[top] - ref[top])))


class Layouts:
    """The layouts, on sequences 0 and 1 of one context."""

    def __init__(self, llm: Llama):
        self.ctx = llm._context()
        doc = passkey.build(DOC_TOKENS, 0.5, lambda t: len(llm.tokenize(t)), key="71830").text
        doc = doc[:-len(passkey.QUESTION)]
        self.doc = llm.tokenize(doc.encode())
        self.ask = [llm.tokenize(f" Question {i}: what is the pass key? The pass key is".encode(), add_bos=False)
                    for i in range(2)]

    def prefill(self, seq: int, tokens, pos0: int, chunk: int = 512) -> np.ndarray:
        row = None
        for s in range(0, len(tokens), chunk):
            part = tokens[s:s + chunk]
            rows = self.ctx.decode_batch(part, list(range(pos0 + s, pos0 + s + len(part))), [seq] * len(part),
                                         [False] * (len(part) - 1) + [True])
            row = rows[-1]
        return log_softmax(row)

    def measure(self) -> dict:
        ctx, doc, ask = self.ctx, self.doc, self.ask
        ctx.memory_clear()
        ref = self.prefill(0, doc + ask[1], 0)
        out = {}
        ctx.memory_clear()
        out["chunks of 64"] = top10_difference(self.prefill(0, doc + ask[1], 0, chunk=64), ref)
        ctx.memory_clear()
        self.prefill(0, doc + ask[0], 0)
        out["after another sequence"] = top10_difference(self.prefill(1, doc + ask[1], 0), ref)
        ctx.memory_clear()
        self.prefill(0, doc + ask[0], 0)
        ctx.seq_cp(0, 1, 0, len(doc))
        n0 = len(doc) + len(ask[0])
        tokens = [int(np.argmax(ref))] + ask[1]
        pos = [n0] + list(range(len(doc), len(doc) + len(ask[1])))
        seq = [0] + [1] * len(ask[1])
        rows = ctx.decode_batch(tokens, pos, seq, [False] * len(ask[1]) + [True])
        out["copied, beside a decode"] = top10_difference(log_softmax(rows[-1]), ref)
        ctx.memory_clear()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--type-k", default="f16", help="K and V cache type")
    args = ap.parse_args()
    rows = []
    for flash in (False, True):
        llm = Llama(args.model, n_ctx=4096, n_seq_max=2, flash_attn=flash, type_k=args.type_k,
                    type_v=args.type_k, group_size=4, neighbor_window=256)
        layouts = Layouts(llm)
        for method in ("vanilla", "self-extend G=4 W=256"):
            if method == "vanilla":
                layouts.ctx.set_self_extend(0, 0)
            else:
                layouts.ctx.set_self_extend(4, 256)
            rows.append((method, flash, layouts.measure()))
        del layouts, llm
    names = list(rows[0][2])
    print(f"model {args.model or 'default'}, cache {args.type_k}, a {DOC_TOKENS}-token document; "
          "largest |difference| of the ten best next-token log-probabilities against one 512-token-chunk run\n")
    print("| method | flash | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for method, flash, out in rows:
        print(f"| {method} | {'on' if flash else 'off'} | " + " | ".join(f"{out[n]:.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
