"""Gemma-3-270M (Q4_K_M, from the package index): 18 layers, 5 sliding-window layers
per global one, trained context 32k. Self-Extend serves its 3 global layers only."""

import numpy as np
import pytest

from layer_check import RopeSpec, max_errors, run_captured
from selfextend_gguf import Llama
from selfextend_gguf.models.package_models import package_model_path

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def gemma3_path():
    return package_model_path("gemma3-270m")


def test_prompt_shorter_than_the_window_gives_vanilla_logits(gemma3_path):
    """Below the window Self-Extend is vanilla attention. Its layers cache grouped keys and
    derive the normal ones back (one more rotation), so the logits are vanilla's up to
    rounding; on this quantized model rounding alone moves logits by units (vanilla with an
    f32 instead of an f16 cache: 3.6 at most; Self-Extend against vanilla: 3.4, measured),
    and every greedy token agrees."""
    text = "The quick brown fox jumps over the lazy dog. " * 30
    runs = {}
    for name, options in (("vanilla", dict(n_ctx=4096)), ("vanilla-f32", dict(n_ctx=4096, type_k="f32", type_v="f32")),
                          ("self-extend", dict(n_ctx=40000, group_size=4, neighbor_window=1024))):
        # flash attention off: with it llama.cpp rounds the cache to f16 either way, and
        # the f32 cache no longer shows what rounding alone moves
        llm = Llama(gemma3_path, logits_all=True, n_threads=2, flash_attn=False, **options)
        assert (llm.self_extend is not None) == (name == "self-extend")
        tokens = llm.tokenize(text.encode())
        assert 200 < len(tokens) < 1024
        llm.eval(tokens)
        runs[name] = llm.scores[:len(tokens)].copy()
    rounding = np.abs(runs["vanilla"] - runs["vanilla-f32"]).max()
    assert np.abs(runs["vanilla"] - runs["self-extend"]).max() <= 1.5 * rounding
    assert (runs["vanilla"].argmax(axis=1) == runs["self-extend"].argmax(axis=1)).mean() >= 0.98


def test_global_layers_match_algorithm1(gemma3_path):
    # a small window, so that a 600-token prompt reaches the grouped keys
    llm = Llama(gemma3_path, n_ctx=512)
    tokens = llm.tokenize(("Self-Extend groups distant positions. " * 100).encode())[:600]
    assert len(tokens) == 600
    G, W = 4, 128
    graphs = run_captured(gemma3_path, tokens, [256, 100, 244], G, W, n_ctx=2048, n_ubatch=128)
    spec = RopeSpec("neox", 256, 1_000_000.0)
    errors = max_errors(graphs, G, W, lambda il: spec)
    assert sorted(errors) == [5, 11, 17], "the global layers, and only they"
    assert max(errors.values()) <= 1e-3, errors
