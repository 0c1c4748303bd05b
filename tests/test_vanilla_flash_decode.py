"""ggml's own flash attention when decoding (one query): vanilla layers and Self-Extend
off take it. It adds the values up with f16 multiply-adds and scales, which patch 0012
vectorizes for heads shorter than an AVX512-FP16 step (the tiny model's head is 64, as
the default model's). Token by token it must give the one-shot logits up to f16
rounding, on both of its paths: the whole cache per head (fewer than 512 cells) and the
cache split between threads (512 cells or more)."""

import numpy as np
import pytest

from engine_logits import engine_logits


@pytest.mark.parametrize("n_tokens", [80, 600])
def test_decoding_with_flash_attention_gives_the_one_shot_logits(tiny_llama, random_tokens, n_tokens):
    tokens = random_tokens(n_tokens, seed=12)
    exact = engine_logits(tiny_llama.path, tokens, group_size=1, n_ctx=n_tokens, type_k="f32", type_v="f32")
    decoded = engine_logits(tiny_llama.path, tokens, chunks=[1] * n_tokens, group_size=1, n_ctx=n_tokens,
                            type_k="f16", type_v="f16", flash_attn=True)
    # measured 0.013 (80) and 0.017 (600) on logits of std 1.2: the f16 cache and f16 sums;
    # a value lost or added twice moves logits by about their size
    assert np.abs(decoded - exact).max() <= 0.05
    assert np.abs(exact).std() > 0.5
