"""Engine logits against the NumPy Algorithm 1 reference, at 4x the trained context."""

import numpy as np
import pytest

from device_tolerance import tolerance, vanilla_error
from engine_logits import engine_logits as run_engine
from offload import core_model
from reference import forward
from selfextend_gguf import _core

N = 256          # 4x the tiny models' trained context of 64
G, W = 6, 16     # eq. 4: (64 - 16) * 6 + 16 = 304 >= 256
TOL = 1e-3
OPTIONS = dict(n_ctx=N, type_k="f32", type_v="f32", group_size=G, neighbor_window=W)
# ways of feeding the prompt: (chunks of llm.eval, context options)
FEEDS = {"one-shot": (None, dict(n_batch=N, n_ubatch=N)),
         "uneven-chunks": ([1, 37, 100, 5, 64, 49], {}),
         "small-ubatch": (None, dict(n_batch=96, n_ubatch=23)),
         "token-by-token": ([1] * N, {})}


def engine_logits(model, tokens, chunks=None, **kwargs):
    return run_engine(model.path, tokens, chunks, **dict(OPTIONS, **kwargs))


def tol_for(model, tokens, chunks=None, tol=TOL, **kwargs):
    """tol, or on a GPU the device's own error on vanilla attention fed alike (device_tolerance.py)"""
    return tolerance(tol, vanilla_error(model, tokens, chunks, **dict(OPTIONS, **kwargs)))


@pytest.fixture(scope="module")
def references(tiny_llama, tiny_qwen2, tiny_llama_freq_factors):
    tokens = [int(t) for t in np.random.default_rng(7).integers(3, 259, N)]
    out = {}
    for name, model in (("llama", tiny_llama), ("qwen2", tiny_qwen2), ("freq_factors", tiny_llama_freq_factors)):
        out[name] = (model, tokens, forward(model, tokens, G, W), forward(model, tokens))
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2", "freq_factors"])
@pytest.mark.parametrize("mode", ["one-shot", "uneven-chunks", "small-ubatch", "token-by-token"])
def test_matches_reference(references, arch, mode):
    model, tokens, ref_se, ref_vanilla = references[arch]
    chunks, feed = FEEDS[mode]
    got = engine_logits(model, tokens, chunks, **feed)
    err = np.abs(got - ref_se).max()
    tol = tol_for(model, tokens, chunks, **feed)
    assert err <= tol, f"max abs diff {err:.2e} against the Self-Extend reference (tolerance {tol:.2e})"
    # the comparison can fail: beyond the window, Self-Extend is far from vanilla attention
    assert np.abs(ref_se - ref_vanilla)[W:].max() > 100 * TOL


@pytest.mark.parametrize("arch", ["llama", "qwen2", "freq_factors"])
@pytest.mark.parametrize("mode", ["one-shot", "uneven-chunks", "small-ubatch", "token-by-token"])
@pytest.mark.parametrize("kernel", ["cpu", "cpu-derived", "stock", "logits"])
def test_flash_path_matches_reference(references, arch, mode, kernel, monkeypatch):
    """flash_attn=True, each form: the CPU kernel (se-flash-cpu.h; few queries turn the near
    keys in the kernel, ubatches of 16 or more queries take tiles), the same kernel reading
    derived near keys, the stock-op form a GPU takes (one flash attention over doubled
    heads; few queries: the logit form), and the logit form for every ubatch (what a device
    that refuses the stock-op form's shapes takes, with the flash-attention cache layout).
    Uneven chunks mix 1, 5 and tiled ubatches."""
    if kernel == "cpu":
        monkeypatch.delenv("SELFEXTEND_GGUF_FLASH_KERNEL", raising=False)
    else:
        monkeypatch.setenv("SELFEXTEND_GGUF_FLASH_KERNEL", {"cpu-derived": "derived"}.get(kernel, kernel))
    model, tokens, ref_se, _ = references[arch]
    chunks, feed = FEEDS[mode]
    got = engine_logits(model, tokens, chunks, flash_attn=True, **feed)
    err = np.abs(got - ref_se).max()
    tol = tol_for(model, tokens, chunks, flash_attn=True, **feed)
    assert err <= tol, f"max abs diff {err:.2e} against the Self-Extend reference (tolerance {tol:.2e})"


@pytest.mark.parametrize("type_k,type_v,flash", [("f16", "f16", False), ("q8_0", "f16", False),
                                                   ("q8_0", "f32", False), ("q8_0", "q8_0", True)])
def test_cache_types_f16_and_q8_0(references, type_k, type_v, flash):
    """Low-precision caches add rounding noise (q8_0 also quantizes the queries in the
    KQ product). Self-Extend's error must stay at the level that the same cache types
    give vanilla attention inside the trained window, and far below the distance to
    vanilla attention beyond it. (head dim 64: q8_0 K also takes the Hadamard path.)"""
    model, tokens, ref_se, ref_vanilla = references["llama"]
    in_window = engine_logits(model, tokens[:64], type_k=type_k, type_v=type_v, flash_attn=flash, group_size=1)
    baseline = np.abs(in_window - forward(model, tokens[:64])).max()
    got = engine_logits(model, tokens, type_k=type_k, type_v=type_v, flash_attn=flash)
    err = np.abs(got - ref_se).max()
    far = np.abs(got - ref_vanilla).max()
    assert err <= 2 * baseline + 0.05, (err, baseline)
    assert err < far / 5, (err, far)


def test_group_size_one_is_vanilla_bit_for_bit(tiny_llama, random_tokens):
    tokens = random_tokens(N, seed=3)
    vanilla = engine_logits(tiny_llama, tokens, group_size=1)
    # G = 1 forced through the Self-Extend attention path of the core
    model = core_model(tiny_llama.path)
    options = _core.ContextOptions()
    options.n_ctx, options.n_batch, options.n_ubatch, options.type_k, options.type_v = N, N, N, 0, 0
    ctx = _core.Context(model, options)
    ctx.set_self_extend(1, W)
    assert ctx.get_self_extend() == (1, W)
    forced = ctx.decode(tokens, 0, 0, True)
    assert np.array_equal(forced, vanilla)


# Below W a query sees only neighbors: vanilla attention. Self-Extend layers cache grouped
# keys and derive the normal ones back (one more rotation), so the logits are vanilla's up
# to rounding: with an f32 cache within 1e-4 (measured 1e-5 on logits of std 2); with f16
# or q8_0 no further from the f32 result than vanilla's own logits with that cache
# (measured, tiny llama, 48 positions: f16 0.016 against vanilla's 0.024 without flash
# attention, 0.016 against 0.014 with it; q8_0 0.39 against 0.64-0.65).
@pytest.mark.parametrize("type_k,flash", [("f32", False), ("f32", True), ("f16", False), ("f16", True),
                                          ("q8_0", True)])
def test_sequence_shorter_than_window_is_vanilla(tiny_llama, random_tokens, type_k, flash):
    tokens = random_tokens(176, seed=4)
    cache = dict(type_k=type_k, type_v="f32" if type_k == "f32" else "f16", flash_attn=flash)
    exact = engine_logits(tiny_llama, tokens, group_size=1, n_ctx=176)
    vanilla = engine_logits(tiny_llama, tokens, group_size=1, n_ctx=176, **cache)
    wide = engine_logits(tiny_llama, tokens, group_size=8, neighbor_window=48,
                         n_ctx=176, n_batch=64, n_ubatch=64, **cache)   # eq. 4: (64 - 48) * 8 + 48 = 176
    # on a GPU the two batchings (64 against 176 tokens) round apart by the device's error
    noise = tolerance(1e-4, vanilla_error(tiny_llama, tokens, n_ctx=176, n_batch=64, n_ubatch=64, **cache))
    if type_k == "f32" and not flash:
        assert np.abs(wide[:48] - vanilla[:48]).max() <= noise
    else:
        assert np.abs(wide[:48] - exact[:48]).max() <= 1.5 * np.abs(vanilla[:48] - exact[:48]).max() + noise
    # beyond the window Self-Extend differs
    assert np.abs(wide[48:] - vanilla[48:]).max() > 0.1


def test_window_larger_than_prompt_matches_vanilla_everywhere(tiny_llama_512, random_tokens):
    tokens = random_tokens(300, seed=5)
    vanilla = engine_logits(tiny_llama_512, tokens, group_size=1, n_ctx=800)
    extended = engine_logits(tiny_llama_512, tokens, group_size=4, neighbor_window=400, n_ctx=800)
    assert np.abs(extended - vanilla).max() <= tol_for(tiny_llama_512, tokens, tol=1e-4, n_ctx=800)


def test_decode_after_prefill_matches_one_shot(references):
    model, tokens, ref_se, _ = references["qwen2"]
    got = engine_logits(model, tokens, chunks=[200] + [1] * 56)
    assert np.abs(got - ref_se).max() <= tol_for(model, tokens, [200] + [1] * 56)
