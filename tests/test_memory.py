"""Python-side memory follows what is used, not n_ctx x n_vocab: a 40k context with a
200k-token vocabulary would need 32 GB for one row of logits per position."""

import tracemalloc

import numpy as np
import pytest

from selfextend_gguf import Llama
from tiny_models import TinyConfig, write_tiny_model

N_VOCAB = 200_000
N_CTX = 40_000


@pytest.fixture(scope="module")
def big_vocab_model(tmp_path_factory):
    cfg = TinyConfig(n_embd=32, n_head=2, n_head_kv=1, n_ff=64, n_layer=1, seed=5,
                     n_extra_tokens=N_VOCAB - 259)
    model = write_tiny_model(tmp_path_factory.mktemp("big-vocab"), cfg, name="tiny-200k-vocab.gguf")
    assert cfg.n_vocab == N_VOCAB
    return model


def test_large_context_and_vocabulary_hold_little_python_memory(big_vocab_model, random_tokens):
    full_table = N_CTX * N_VOCAB * 4   # 32 GB
    tracemalloc.start()
    try:
        llm = Llama(str(big_vocab_model.path), n_ctx=N_CTX, n_threads=1)
        llm.create_completion(random_tokens(700), max_tokens=4, temperature=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert llm.n_vocab() == N_VOCAB
    assert llm.scores.nbytes == N_VOCAB * 4          # one row: the last logits
    assert peak < full_table / 1000, f"Python-side peak {peak} bytes"


def test_logits_all_rows_grow_with_the_sequence(big_vocab_model, random_tokens):
    llm = Llama(str(big_vocab_model.path), n_ctx=N_CTX, n_batch=64, logits_all=True, n_threads=1)
    assert llm.scores.nbytes <= 64 * N_VOCAB * 4       # n_batch rows to start with
    tokens = random_tokens(150)
    llm.eval(tokens)
    assert 150 <= len(llm.scores) < 1000
    expected = Llama(str(big_vocab_model.path), n_ctx=N_CTX, n_batch=64, n_threads=1).eval_logits(tokens)
    assert np.allclose(llm.scores[:150], expected, atol=1e-5, rtol=0)
    assert not np.any(llm.scores[150:])


def test_last_logits_survive_rollback_and_reset(tiny_llama_512, random_tokens):
    llm = Llama(str(tiny_llama_512.path), n_ctx=256)
    tokens = random_tokens(30)
    last = llm.prefill(tokens).copy()
    assert np.array_equal(llm.last_logits(), last)
    # a prefill that shares a prefix re-evaluates at least one token and keeps its logits
    again = llm.prefill(tokens[:20])
    fresh = Llama(str(tiny_llama_512.path), n_ctx=256).prefill(tokens[:20])
    assert np.allclose(again, fresh, atol=1e-4, rtol=0)
    llm.reset()
    with pytest.raises(ValueError, match="no tokens evaluated"):
        llm.last_logits()
