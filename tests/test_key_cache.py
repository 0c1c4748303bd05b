"""The one K cache (Self-Extend layers cache grouped keys R(p//G) k) stays right under
every cache operation users reach: rollback (seq_rm), reset, state save/load, several
sequences in one context, position edits (seq_add/seq_div and the K-shift) and a new
group size on a filled cache (the keys are turned). Each test compares with a fresh run,
or with a path that gets there another way."""

import numpy as np
import pytest

from device_tolerance import tolerance, vanilla_error
from offload import N_GPU_LAYERS, core_model
from selfextend_gguf import Llama, _core

N_CTX = 256      # 4x the tiny model's trained context of 64
G, W = 6, 16
TOL = 1e-3


def make(model, **kwargs):
    # flash attention off unless a test asks: the tolerances are those of f32 attention
    options = dict(n_ctx=N_CTX, type_k="f32", type_v="f32", logits_all=True, group_size=G,
                   neighbor_window=W, n_batch=64, n_ubatch=64, n_gpu_layers=N_GPU_LAYERS, flash_attn=False)
    options.update(kwargs)
    return Llama(str(model.path), **options)


def tol_for(model, tokens, tol=TOL):
    """tol, or with a GPU the device's own error on vanilla attention over these tokens fed
    in ubatches of 64 (device_tolerance.py: runs batched differently round apart there)"""
    return tolerance(tol, vanilla_error(model, tokens, n_ctx=N_CTX, type_k="f32", type_v="f32", n_batch=64, n_ubatch=64,
                                        n_gpu_layers=N_GPU_LAYERS))


def fresh_rows(model, tokens, first):
    llm = make(model)
    llm.eval(tokens)
    return llm.scores[first:len(tokens)].copy()


def test_rollback_to_a_prefix_then_other_tokens_equals_a_fresh_run(tiny_llama, random_tokens):
    prefix, old, new = random_tokens(150, seed=1), random_tokens(60, seed=2), random_tokens(60, seed=3)
    llm = make(tiny_llama)
    llm.eval(prefix + old)
    # the cells of `old` are freed and written again at the same positions with other keys
    llm.prefill(prefix + new)
    got = llm.scores[150:210]
    assert np.abs(got - fresh_rows(tiny_llama, prefix + new, 150)).max() <= tol_for(tiny_llama, prefix + new)
    # the comparison can fail: the old continuation gives other logits
    assert np.abs(fresh_rows(tiny_llama, prefix + old, 150) - got).max() > 100 * TOL


def test_reset_then_another_prompt_equals_a_fresh_run(tiny_llama, random_tokens):
    first, second = random_tokens(200, seed=4), random_tokens(200, seed=5)
    llm = make(tiny_llama)
    llm.eval(first)
    llm.reset()
    llm.eval(second)
    assert np.abs(llm.scores[:200] - fresh_rows(tiny_llama, second, 0)).max() <= TOL


def test_state_save_and_load_round_trip(tiny_llama, random_tokens):
    saved_part, other, more = random_tokens(150, seed=6), random_tokens(150, seed=7), random_tokens(50, seed=8)
    llm = make(tiny_llama)
    llm.eval(saved_part)
    state = llm.save_state()
    assert state.n_tokens == 150 and state.llama_state_size > 0
    # other keys at the very same positions, then back: loading must bring back the
    # cached keys of `saved_part`
    llm.reset()
    llm.eval(other)
    llm.load_state(state)
    assert list(llm.input_ids) == saved_part
    assert np.allclose(llm.last_logits(), state.last_logits)
    llm.eval(more)
    expected = fresh_rows(tiny_llama, saved_part + more, 150)
    tol = tol_for(tiny_llama, saved_part + more)
    assert np.abs(llm.scores[150:200] - expected).max() <= tol
    # into another Llama with the same model and settings
    twin = make(tiny_llama)
    twin.load_state(state)
    twin.eval(more)
    assert np.abs(twin.scores[150:200] - expected).max() <= tol


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
def test_two_sequences_in_one_context_each_equal_their_own_run(tiny_llama, random_tokens, flash):
    a, b = random_tokens(N_CTX, seed=9), random_tokens(200, seed=10)
    options = _core.ContextOptions()
    options.n_ctx, options.n_batch, options.n_ubatch, options.n_seq_max = 2 * N_CTX, 64, 64, 2
    options.type_k = options.type_v = 0  # f32
    options.flash_attn_type = int(bool(flash))
    ctx = _core.Context(core_model(tiny_llama.path), options)
    ctx.set_self_extend(G, W)
    rows = {0: [], 1: []}
    done = {0: 0, 1: 0}

    def feed(seq, tokens, n):
        start = done[seq]
        rows[seq].append(ctx.decode(tokens[start:start + n], start, seq, True))
        done[seq] += n

    # interleaved in chunks, then token by token: cells of the two sequences alternate,
    # so no sequence's cell j holds position j (the general form)
    for n_a, n_b in [(50, 30), (64, 64), (40, 50)]:
        feed(0, a, n_a)
        feed(1, b, n_b)
    while done[0] < len(a) or done[1] < len(b):
        for seq, tokens in ((0, a), (1, b)):
            if done[seq] < len(tokens):
                feed(seq, tokens, 1)
    for seq, tokens in ((0, a), (1, b)):
        got = np.concatenate(rows[seq])
        assert np.abs(got - fresh_rows(tiny_llama, tokens, 0)).max() <= tol_for(tiny_llama, tokens), f"sequence {seq}"


def edit_positions(llm, edit):
    """Edit the cache's positions; returns the position the continuation starts at."""
    if edit == "seq_add":
        llm.kv_seq_add(100, 200, -40)      # positions 100..199 -> 60..159
        return 160
    llm.kv_seq_div(120, 200, 2)            # positions 120..199 -> 60..99 (119 stays the last)
    return 120


def continue_at(llm, more, pos):
    out = [llm.eval_at(more[:10], pos)]
    out += [llm.eval_at([t], pos + 10 + i) for i, t in enumerate(more[10:])]
    return np.stack(out)


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
@pytest.mark.parametrize("edit", ["seq_add", "seq_div"])
def test_position_edits_move_grouped_keys_by_their_grouped_positions(tiny_llama, random_tokens, edit, flash):
    """After seq_add/seq_div the K-shift turns each cached grouped key by p//G - p_old//G.
    The other way there: the same cache turned to normal keys (Self-Extend off), edited by
    llama.cpp's own K-shift, and turned back (Self-Extend on again). The two must agree."""
    tokens, more = random_tokens(200, seed=11), random_tokens(30, seed=12)
    llm = make(tiny_llama, flash_attn=flash)
    llm.eval(tokens)
    got = continue_at(llm, more, edit_positions(llm, edit))

    other = make(tiny_llama, flash_attn=flash)
    other.eval(tokens)
    other._ctx.set_self_extend(0, 0)
    pos = edit_positions(other, edit)
    other._ctx.set_self_extend(G, W)
    expected = continue_at(other, more, pos)
    # on a device, within its own error: the two caches differ by float rounding, which its
    # products of f32 matrices (f16 inside on Vulkan, TF32 on CUDA) turn into more
    assert np.abs(got - expected).max() <= tol_for(tiny_llama, tokens, 1e-4)
    # and the edit mattered: without it the continuation differs
    plain = make(tiny_llama)
    plain.eval(tokens)
    unedited = plain.eval_at(more[:10], 200)
    assert np.abs(unedited - got[0]).max() > 100 * TOL


@pytest.mark.parametrize("edit", ["seq_add", "seq_div"])
def test_position_edits_with_a_quantized_cache(tiny_llama, random_tokens, edit):
    """q8_0 K (head dim 64, so with llama.cpp's Hadamard rotation): the K-shift dequantizes
    whole heads, turns them and quantizes them again (one more rounding). Its continuation
    is about as far from the f32 cache's as a q8_0 cache is without any edit (measured:
    0.68 and 0.36 for seq_add and seq_div against 0.44; the edit itself moves logits by
    7-8, so a wrong turn could not hide)."""
    tokens, more = random_tokens(200, seed=17), random_tokens(30, seed=18)

    def run(type_k, edited):
        llm = make(tiny_llama, type_k=type_k)
        llm.eval(tokens)
        return continue_at(llm, more, edit_positions(llm, edit) if edited else 200)

    noise = np.abs(run("q8_0", False) - run("f32", False)).max()
    edited_f32 = run("f32", True)
    assert np.abs(run("q8_0", True) - edited_f32).max() <= 2 * noise
    assert np.abs(run("f32", False) - edited_f32).max() > 6 * noise   # the edit mattered


@pytest.mark.parametrize("before", [0, 4], ids=["from-vanilla", "from-G4"])
def test_a_new_group_size_turns_the_cached_keys(tiny_llama, random_tokens, before):
    """Self-Extend switched on (or to another G) over a filled cache continues as a run that
    had the new setting from the start. The prefix is shorter than W, so that every setting
    attends to it alike and only the cached keys' form differs."""
    tokens, more = random_tokens(W - 4, seed=13), random_tokens(80, seed=14)
    llm = make(tiny_llama)
    llm._ctx.set_self_extend(before, W if before else 0)
    llm.eval(tokens)
    llm._ctx.set_self_extend(G, W)
    llm.eval(more)
    n = len(tokens)
    expected = fresh_rows(tiny_llama, tokens + more, n)
    assert np.abs(llm.scores[n:n + 80] - expected).max() <= tol_for(tiny_llama, tokens + more)
    # and the setting mattered: the old one throughout continues otherwise
    stay = make(tiny_llama)
    stay._ctx.set_self_extend(before, W if before else 0)
    stay.eval(tokens + more)
    assert np.abs(stay.scores[n:n + 80] - expected).max() > 100 * TOL


@pytest.mark.parametrize("other", [0, 4], ids=["via-vanilla", "via-G4"])
def test_turning_the_keys_there_and_back_changes_nothing(tiny_llama, random_tokens, other):
    tokens, more = random_tokens(200, seed=15), random_tokens(20, seed=16)
    llm = make(tiny_llama)
    llm.eval(tokens)
    llm._ctx.set_self_extend(other, W if other else 0)
    llm._ctx.set_self_extend(G, W)
    llm.eval(more)
    expected = fresh_rows(tiny_llama, tokens + more, 200)
    assert np.abs(llm.scores[200:220] - expected).max() <= tol_for(tiny_llama, tokens + more, 1e-4)


def test_kv_memory_equals_vanillas(tiny_llama):
    for type_k in ("f16", "q8_0"):
        se = make(tiny_llama, type_k=type_k, type_v="f16", flash_attn=type_k != "f16").memory_breakdown()
        vanilla = make(tiny_llama, group_size=1, neighbor_window=None, type_k=type_k, type_v="f16",
                       flash_attn=type_k != "f16").memory_breakdown()
        assert set(se) == set(vanilla)
        assert sum(p["context"] for p in se.values()) == sum(p["context"] for p in vanilla.values())
