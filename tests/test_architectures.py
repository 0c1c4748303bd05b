"""Self-Extend on every architecture of tests/tiny_arch_models.py, verified layer by
layer (tests/layer_check.py): the layers that take Self-Extend are exactly the global
roped ones, each equals Algorithm 1 computed from its captured q, k and v, and G = 1
is vanilla attention bit for bit."""

import numpy as np
import pytest

from layer_check import (CHUNKS, G, N_TOKENS as N, TOL, W, RopeSpec, device_tolerance_for, max_errors,
                         run_captured)
from offload import N_GPU_LAYERS, core_model
from selfextend_gguf import Llama, _core
from tiny_arch_models import ARCHS, write_arch_model


@pytest.fixture(scope="module")
def arch_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("archs")
    return {arch: write_arch_model(directory, arch) for arch in ARCHS}


def expected_layers(m):
    return sorted(set(range(m.n_layer)) - set(m.swa_layers) - set(m.unroped_layers))


def rope_spec(m):
    # n_ctx beyond the trained context: llama.cpp takes the long LongRoPE factors where a model has them
    factors = m.weights.get("rope_freqs.weight", m.weights.get("rope_factors_long.weight"))
    return RopeSpec(m.rope_type, m.n_rot, m.rope_base, freq_factors=factors, offset=m.rope_offset)


def sinks_of(m):
    if not m.has_sinks:
        return None
    return lambda il: m.weights[f"blk.{il}.attn_sinks.weight"].astype(np.float64)


def tol_for(m, tokens, chunks, flash=False):
    return device_tolerance_for(str(m.path), tokens, chunks, W, lambda il: rope_spec(m), m.attn_softcap, sinks_of(m),
                                flash_attn=flash, n_ctx=N, n_ubatch=64)


# llama.cpp's own PLM graph aborts with flash attention (engine_limits refuses it)
NO_FLASH = {"plm"}


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
@pytest.mark.parametrize("mode", sorted(CHUNKS))
@pytest.mark.parametrize("arch", ARCHS)
def test_every_self_extend_layer_matches_algorithm1(arch_models, random_tokens, arch, mode, flash):
    if flash and arch in NO_FLASH:
        with pytest.raises(ValueError, match="flash_attn=True is not available for architecture 'plm'"):
            Llama(str(arch_models[arch].path), n_ctx=N, flash_attn=True)
        return
    m = arch_models[arch]
    tokens = random_tokens(N, seed=31)
    graphs = run_captured(str(m.path), tokens, CHUNKS[mode], G, W, n_ctx=N, n_ubatch=64, flash_attn=flash)
    errors = max_errors(graphs, G, W, lambda il: rope_spec(m), m.attn_softcap, sinks_of(m))
    assert sorted(errors) == expected_layers(m), "exactly the global roped layers take Self-Extend"
    assert max(errors.values()) <= tol_for(m, tokens, CHUNKS[mode], flash), errors


@pytest.mark.parametrize("arch", ARCHS)
def test_group_size_one_is_vanilla_bit_for_bit(arch_models, random_tokens, arch):
    m = arch_models[arch]
    tokens = random_tokens(N, seed=32)
    vanilla = Llama(str(m.path), n_ctx=N, type_k="f32", type_v="f32", logits_all=True, group_size=1, flash_attn=False,
                    n_gpu_layers=N_GPU_LAYERS)
    vanilla.eval(tokens)
    options = _core.ContextOptions()
    options.n_ctx, options.n_batch, options.n_ubatch, options.type_k, options.type_v = N, N, N, 0, 0
    ctx = _core.Context(core_model(m.path), options)
    ctx.set_self_extend(1, W)      # G = 1 forced through the Self-Extend layers
    assert np.array_equal(ctx.decode(tokens, 0, 0, True), vanilla.scores[:N])


@pytest.mark.parametrize("arch", ARCHS)
def test_self_extend_changes_long_prompts(arch_models, random_tokens, arch):
    """The comparison above can fail: with G > 1 the logits beyond the window differ."""
    m = arch_models[arch]
    tokens = random_tokens(N, seed=33)
    runs = []
    for group_size in (1, G):
        llm = Llama(str(m.path), n_ctx=N, type_k="f32", type_v="f32", logits_all=True, group_size=group_size,
                    flash_attn=False,
                    neighbor_window=W, n_gpu_layers=N_GPU_LAYERS)
        llm.eval(tokens)
        runs.append(llm.scores[:N].copy())
    # inside the window vanilla up to rounding (keys are cached grouped and derived back),
    # on a device up to its own rounding
    assert np.abs(runs[0][:W] - runs[1][:W]).max() <= tol_for(m, tokens, [N])
    assert np.abs(runs[0][W:] - runs[1][W:]).max() > 100 * TOL


@pytest.mark.parametrize("arch", ["minicpm3", "plm", "deepseek2"])
def test_trailing_rope_dims_are_the_ones_rotated(arch_models, random_tokens, arch):
    """MiniCPM3, PLM and DeepSeek-V2 rope the last n_rot dims of each head: the check fails if the
    grouped rotation is computed on the leading dims instead."""
    m = arch_models[arch]
    assert m.rope_offset > 0
    tokens = random_tokens(N, seed=34)
    graphs = run_captured(str(m.path), tokens, CHUNKS["one-shot"], G, W, n_ctx=N, n_ubatch=64)
    right = max_errors(graphs, G, W, lambda il: rope_spec(m))
    leading = RopeSpec(m.rope_type, m.n_rot, m.rope_base, freq_factors=rope_spec(m).freq_factors)
    wrong = max_errors(graphs, G, W, lambda il: leading)
    tol = tol_for(m, tokens, CHUNKS["one-shot"])
    assert max(right.values()) <= tol < min(wrong.values())


def test_a_model_where_no_layer_takes_self_extend_is_refused(tmp_path):
    """Granite with rope.scaling.finetuned = false ropes no layer: asking for Self-Extend
    must raise, never run vanilla attention silently."""
    m = write_arch_model(tmp_path, "granite", rope_finetuned=False)
    assert m.unroped_layers == set(range(m.n_layer))
    with pytest.raises(ValueError, match="no layer of this model has global RoPE attention"):
        Llama(str(m.path), n_ctx=N, group_size=G, neighbor_window=W)
    Llama(str(m.path), n_ctx=64).create_completion("ok", max_tokens=2)   # vanilla still serves it


def test_an_mla_deepseek2_is_refused(tmp_path, random_tokens):
    """The MLA layout caches one latent for all heads: no layer can take Self-Extend, and
    the error says why and which GGUFs can."""
    m = write_arch_model(tmp_path, "deepseek2", mla=True)
    with pytest.raises(ValueError, match="multi-head latent attention"):
        Llama(str(m.path), n_ctx=N, group_size=G, neighbor_window=W)
    llm = Llama(str(m.path), n_ctx=64, logits_all=True)   # vanilla still serves it
    llm.eval(random_tokens(8, seed=35))
    assert np.isfinite(llm.scores[7]).all()


def test_an_architecture_outside_the_table_is_refused(tmp_path):
    """xverse is llama-shaped but not in the capability table (not verified)."""
    from tiny_models import TinyConfig, write_tiny_model
    m = write_tiny_model(tmp_path, TinyConfig(arch="xverse"))
    with pytest.raises(ValueError, match="'xverse' is not in Self-Extend's capability table"):
        Llama(str(m.path), n_ctx=N, group_size=G, neighbor_window=W)
