"""The grouped-key cache stays consistent with the KV cache under every cache operation
users reach: rollback (seq_rm), reset, state save/load, several sequences in one
context, and position edits (seq_add/seq_div and the K-shift). Each test compares with
a fresh run, or with the path that derives grouped keys from the cache in every graph."""

import numpy as np
import pytest

from selfextend_gguf import Llama, _core

N_CTX = 256      # 4x the tiny model's trained context of 64
G, W = 6, 16
TOL = 1e-3


def make(model, grouped=True, **kwargs):
    options = dict(n_ctx=N_CTX, type_k="f32", type_v="f32", logits_all=True, group_size=G,
                   neighbor_window=W, grouped_key_cache=grouped, n_batch=64, n_ubatch=64)
    options.update(kwargs)
    return Llama(str(model.path), **options)


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
    assert np.abs(got - fresh_rows(tiny_llama, prefix + new, 150)).max() <= TOL
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
    # other keys at the very same positions, then back: the stored grouped keys now belong
    # to `other` although every position matches, so loading must invalidate them
    llm.reset()
    llm.eval(other)
    llm.load_state(state)
    assert list(llm.input_ids) == saved_part
    assert np.allclose(llm.last_logits(), state.last_logits)
    llm.eval(more)
    expected = fresh_rows(tiny_llama, saved_part + more, 150)
    assert np.abs(llm.scores[150:200] - expected).max() <= TOL
    # into another Llama with the same model and settings
    twin = make(tiny_llama)
    twin.load_state(state)
    twin.eval(more)
    assert np.abs(twin.scores[150:200] - expected).max() <= TOL


@pytest.mark.parametrize("grouped,flash", [(True, False), (False, False), (True, True)],
                         ids=["grouped-key-cache", "rotate", "grouped-key-cache-flash"])
def test_two_sequences_in_one_context_each_equal_their_own_run(tiny_llama, random_tokens, grouped, flash):
    a, b = random_tokens(N_CTX, seed=9), random_tokens(200, seed=10)
    options = _core.ContextOptions()
    options.n_ctx, options.n_batch, options.n_ubatch, options.n_seq_max = 2 * N_CTX, 64, 64, 2
    options.type_k = options.type_v = 0  # f32
    options.flash_attn = flash
    ctx = _core.Context(_core.Model(str(tiny_llama.path)), options)
    ctx.set_self_extend(G, W, grouped)
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
        assert np.abs(got - fresh_rows(tiny_llama, tokens, 0)).max() <= TOL, f"sequence {seq}"


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
@pytest.mark.parametrize("edit", ["seq_add", "seq_div"])
def test_position_edits_agree_with_deriving_grouped_keys_every_graph(tiny_llama, random_tokens, edit, flash):
    """After seq_add/seq_div the K-shift re-rotates the cached keys; the stored grouped
    keys must follow. The path without the cache derives them from the KV cache in every
    graph, so the two must agree."""
    tokens, more = random_tokens(200, seed=11), random_tokens(30, seed=12)
    results = []
    for grouped in (True, False):
        llm = make(tiny_llama, grouped=grouped, flash_attn=flash and grouped)
        llm.eval(tokens)
        if edit == "seq_add":
            llm.kv_seq_add(100, 200, -40)      # positions 100..199 -> 60..159
            pos = 160
        else:
            llm.kv_seq_div(120, 200, 2)        # positions 120..199 -> 60..99 (119 stays the last)
            pos = 120
        out = [llm.eval_at(more[:10], pos)]
        out += [llm.eval_at([t], pos + 10 + i) for i, t in enumerate(more[10:])]
        results.append(np.stack(out))
    assert np.abs(results[0] - results[1]).max() <= 1e-4
    # and the edit mattered: without it the continuation differs
    plain = make(tiny_llama)
    plain.eval(tokens)
    unedited = plain.eval_at(more[:10], 200)
    assert np.abs(unedited - results[0][0]).max() > 100 * TOL


def test_memory_is_one_more_k_cache_and_can_be_turned_off(tiny_llama):
    on = make(tiny_llama, type_k="f16", type_v="f16").memory_breakdown()
    off = make(tiny_llama, grouped=False, type_k="f16", type_v="f16").memory_breakdown()
    kv = sum(parts["context"] for name, parts in off.items())
    assert "grouped_keys" not in off
    # K and V of equal size: the grouped keys are one more K cache, half the KV cache
    assert on["grouped_keys"]["context"] == kv // 2
