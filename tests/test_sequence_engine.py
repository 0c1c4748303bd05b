"""The one sequence engine (engine/sequence.py): `Llama` runs one Sequence and each
scheduler slot is one, with one state check, one prefix reuse and typed errors."""

import gc
import weakref

import numpy as np
import pytest

from selfextend_gguf import Llama, _core
from selfextend_gguf.engine.errors import ContextFull, ContextWindowExceeded, RpcServerLost
from selfextend_gguf.engine.prefix import common_prefix_length
from selfextend_gguf.engine.sequence import Sequence

N_CTX = 2048   # four times the tiny model's trained 512: Self-Extend on


@pytest.fixture(scope="module")
def llm(tiny_llama_512):
    return Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=2, n_seq_max=3)


def _tokens(n, seed):
    return [int(t) for t in np.random.default_rng(seed).integers(3, 259, n)]


def test_a_llama_out_of_scope_is_freed_at_once(tiny_llama_512):
    """No reference circle through its sequence: the context (and an RPC server's
    connection, a GPU's memory) goes when the last reference does, not at a later GC."""
    gc.disable()
    try:
        llm = Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=2)
        llm.eval(_tokens(20, 1))
        alive = weakref.ref(llm)
        sequence = weakref.ref(llm.sequence)
        del llm
        assert alive() is None and sequence() is None
    finally:
        gc.enable()


def test_llama_and_every_slot_run_a_sequence(llm):
    assert isinstance(llm.sequence, Sequence) and llm.sequence.whole_context
    scheduler = llm.scheduler(2)
    try:
        assert all(isinstance(s.seq, Sequence) and not s.seq.whole_context for s in scheduler.slots)
        assert [s.seq.seq_id for s in scheduler.slots] == [0, 1]
        out = llm.create_completion(_tokens(600, 2), max_tokens=4, temperature=0, scheduler=scheduler)
        held = [s for s in scheduler.slots if s.tokens]
        assert len(held) == 1 and len(held[0].tokens) >= 600 + out["usage"]["completion_tokens"] - 1
    finally:
        scheduler.stop()
        llm.reset()


def test_one_state_check_for_the_llama_and_the_slots(llm):
    """A slot's state (one sequence) and the Llama's (the whole context) are told apart by
    the same check, with the same message, both ways."""
    llm.eval(_tokens(40, 3))
    whole = llm.save_state()
    llm.reset()
    scheduler = llm.scheduler(2)
    try:
        slot = scheduler.slots[0]
        with pytest.raises(ValueError, match="saved with another model or other settings"):
            scheduler.call(lambda: scheduler.load_sequence(slot, whole))
        llm_tokens = _tokens(30, 4)
        scheduler.call(lambda: slot.seq.eval(llm_tokens))
        one = scheduler.call(lambda: scheduler.save_sequence(slot))
        assert one.identity["kind"] == "sequence" and one.n_tokens == 30
        scheduler.call(lambda: scheduler.load_sequence(scheduler.slots[1], one))
        assert scheduler.slots[1].tokens == llm_tokens
    finally:
        scheduler.stop()
        llm.reset()
    with pytest.raises(ValueError, match="saved with another model or other settings"):
        llm.load_state(one)


def test_a_slot_evaluates_what_a_llama_evaluates(llm, tiny_llama_512):
    """The same Sequence code on seq_id 1 of a shared context gives the logits that the
    Llama's own sequence gives alone (Self-Extend is exact per sequence)."""
    tokens = _tokens(700, 5)
    solo = Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=2, type_k="f32", type_v="f32")
    want = solo.eval_logits(tokens)[-1]
    scheduler = llm.scheduler(2)
    try:
        got = scheduler.call(lambda: scheduler.slots[1].seq.eval_logits(tokens))[-1]
    finally:
        scheduler.stop()
        llm.reset()
    assert np.abs(got - want).max() < 0.05


def test_errors_are_typed(llm):
    with pytest.raises(ContextWindowExceeded, match="exceed context window"):
        llm.create_completion(_tokens(N_CTX, 6), max_tokens=1)
    assert issubclass(ContextWindowExceeded, ValueError)      # llama_cpp callers catch ValueError
    assert issubclass(_core.KvCacheFull, _core.LlamaCppError)
    assert issubclass(RpcServerLost, _core.LlamaCppError)
    assert issubclass(ContextFull, RuntimeError)


def test_common_prefix_length_of_tokens_and_text():
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length("12345", "12945") == 2
    assert common_prefix_length("abc", "abc") == 3


def test_assigning_cache_is_set_cache(tiny_llama_512):
    """llama_cpp keeps the prompt cache in a plain attribute; assigning it must reach the
    sequence that prefills, not be dropped."""
    from selfextend_gguf import LlamaRAMCache

    cache = LlamaRAMCache()
    writer = Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=2)
    writer.cache = cache
    assert writer.cache is cache and writer.sequence.cache is cache
    tokens = _tokens(300, 7)
    writer.create_completion(tokens, max_tokens=1, temperature=0)
    assert cache.cache_size > 0
    reader = Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=2)
    reader.cache = cache
    totals = []
    reader.prefill(tokens + _tokens(5, 8), lambda done, total: totals.append(total))
    assert reader.n_tokens == 305 and totals[-1] == 5    # the 300 cached tokens were loaded, not evaluated
    writer.cache = None
    assert writer.sequence.cache is None
