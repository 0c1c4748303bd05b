"""The same tokens at the same positions, evaluated in other layouts of one context with
two sequences (what continuous batching and chunked prefills do): the last token's logits
of each, beside those of one plain run. test_batching.py asserts that they agree for an
f32 model; bench/layout_noise.py measures how far a quantized model moves them."""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np


def prefill(ctx, seq: int, tokens: List[int], pos0: int, chunk: int = 512) -> np.ndarray:
    """Evaluate tokens at positions pos0.. of sequence seq, chunk tokens per decode call:
    the last token's logits."""
    for s in range(0, len(tokens), chunk):
        rows = ctx.decode(tokens[s:s + chunk], pos0 + s, seq)
    return np.asarray(rows[-1])


def logits_in_layouts(ctx, doc: List[int], ask: Tuple[List[int], List[int]],
                      chunk: int) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """The logits after doc + ask[1] in one plain run (sequence 0, chunks of 512), and
    {layout: logits} for: chunks of `chunk`; after another sequence's cells (doc + ask[0]);
    the document copied from that sequence (seq_cp) and ask[1] evaluated in one batch with
    the other sequence's next token. The cache is cleared before each and after."""
    ctx.memory_clear()
    ref = prefill(ctx, 0, doc + ask[1], 0)
    got = {}
    ctx.memory_clear()
    got[f"chunks of {chunk}"] = prefill(ctx, 0, doc + ask[1], 0, chunk)
    ctx.memory_clear()
    prefill(ctx, 0, doc + ask[0], 0)
    got["after another sequence"] = prefill(ctx, 1, doc + ask[1], 0)
    ctx.memory_clear()
    prefill(ctx, 0, doc + ask[0], 0)
    ctx.seq_cp(0, 1, 0, len(doc))
    n0, n1 = len(doc) + len(ask[0]), len(ask[1])
    rows = ctx.decode_batch([int(np.argmax(ref))] + ask[1], [n0] + list(range(len(doc), len(doc) + n1)),
                            [0] + [1] * n1, [False] * n1 + [True])
    got["copied, beside a decode"] = np.asarray(rows[-1])
    ctx.memory_clear()
    return ref, got
