"""The per-layer check (tests/layer_check.py) on the tiny llama and qwen2 models: each
Self-Extend layer's output equals Algorithm 1 computed from the q, k and v the engine
captured, in one-shot prefill, uneven chunks and token by token, on every attention
path; and the check fails when the rotation it assumes is wrong."""

import pytest

from layer_check import (CHUNKS, G, N_TOKENS as N, TOL, W, RopeSpec, device_tolerance_for, max_errors,
                         run_captured)


def spec_of(model):
    cfg = model.config
    return RopeSpec(cfg.rope_type, cfg.head_dim, cfg.rope_base,
                    freq_factors=model.weights.get("rope_freqs.weight"))


def tol_for(model, tokens, chunks, flash_attn=False):
    return device_tolerance_for(str(model.path), tokens, chunks, W, lambda il: spec_of(model), n_ctx=N, n_ubatch=64,
                                flash_attn=flash_attn)


@pytest.fixture(scope="module")
def models(tiny_llama, tiny_qwen2, tiny_llama_freq_factors):
    return {"llama": tiny_llama, "qwen2": tiny_qwen2, "freq_factors": tiny_llama_freq_factors}


@pytest.mark.parametrize("path", ["logits", "flash"])
@pytest.mark.parametrize("mode", sorted(CHUNKS))
@pytest.mark.parametrize("arch", ["llama", "qwen2", "freq_factors"])
def test_every_layer_matches_algorithm1(models, random_tokens, arch, mode, path):
    model = models[arch]
    tokens = random_tokens(N, seed=21)
    graphs = run_captured(str(model.path), tokens, CHUNKS[mode], G, W, n_ctx=N, n_ubatch=64,
                          flash_attn=path == "flash")
    errors = max_errors(graphs, G, W, lambda il: spec_of(model))
    assert sorted(errors) == list(range(model.config.n_layer)), "every layer takes Self-Extend"
    # beyond the window: some query of every layer attends to grouped keys
    assert max(lg.q_pos.max() for lg in graphs) >= W
    assert max(errors.values()) <= tol_for(model, tokens, CHUNKS[mode], path == "flash"), errors


def test_the_check_fails_when_the_rotation_is_wrong(tiny_llama, random_tokens):
    tokens = random_tokens(N, seed=22)
    graphs = run_captured(str(tiny_llama.path), tokens, [N], G, W, n_ctx=N, n_ubatch=64)
    right = spec_of(tiny_llama)
    tol = tol_for(tiny_llama, tokens, [N])
    assert max(max_errors(graphs, G, W, lambda il: right).values()) <= tol
    wrong_style = RopeSpec("neox", right.n_rot, right.base)          # llama ropes adjacent pairs
    wrong_base = RopeSpec(right.style, right.n_rot, right.base * 2)
    for wrong in (wrong_style, wrong_base):
        assert max(max_errors(graphs, G, W, lambda il: wrong).values()) > max(100 * TOL, 10 * tol)
    # and the same check against another group size
    assert max(max_errors(graphs, G + 1, W, lambda il: right).values()) > max(100 * TOL, 10 * tol)
