"""Comparing a greedy generation with another run of the same prompt.

Batched and solo runs compute the same formula, but not in the same order of floating
point operations (other matrix shapes, another attention form, other cells in the cache).
With the tiny f32 models of these tests their logits differ by rounding (below 1e-3,
test_batching.py checks it), and greedy decoding turns that into different tokens only
where the two best tokens are nearly tied. A quantized model amplifies the same rounding
(llama.cpp quantizes each matrix product's input to 8 bits, and a value that rounds the
other way moves the rest): with the default model, vanilla llama.cpp's next-token
log-probabilities move by up to 0.44 with the layout alone (bench/layout_noise.py,
bench/results/layout-noise.md), so a margin between the two best tokens can move by up to
twice that: QUANTIZED_TIE.

So: the token lists must be equal, or first differ at a step where the reference's two
best log-probabilities were within `tie` of each other; after such a step the texts go
their own ways."""

from __future__ import annotations

from typing import Dict, List, Optional

# the tie for the default (quantized) model; see above
QUANTIZED_TIE = 1.0


def first_difference(a: List[str], b: List[str]) -> Optional[int]:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def assert_same_greedy(reference: Dict, other: Dict, tie: float = 0.02) -> None:
    """reference and other: llama_cpp completion logprobs (tokens, top_logprobs with >= 2)."""
    i = first_difference(reference["tokens"], other["tokens"])
    if i is None:
        return
    assert i < len(reference["tokens"]), (
        f"the reference stopped at token {i} and the other run went on: {reference['tokens']} against "
        f"{other['tokens']}")
    top = sorted(reference["top_logprobs"][i].values(), reverse=True)
    assert len(top) >= 2 and top[0] - top[1] < tie, (
        f"the runs differ at token {i} ({reference['tokens'][i]!r} against {other['tokens'][i]!r}) "
        f"where the best token led by {top[0] - top[1]:.4f}: not a near tie")
