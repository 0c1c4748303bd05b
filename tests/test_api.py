"""The Python API: llama_cpp-compatible names and OpenAI-shaped results."""

import numpy as np
import pytest

from selfextend_gguf import Llama, SelfExtend
from selfextend_gguf.settings import self_extend as se


@pytest.fixture(scope="module")
def llm(tiny_llama_512):
    return Llama(str(tiny_llama_512.path), n_ctx=512, n_batch=128, seed=1)


def test_tokenize_roundtrip(llm):
    tokens = llm.tokenize("héllo", add_bos=True)
    assert tokens[0] == llm.token_bos() == 1
    assert llm.tokenize(b"h\xc3\xa9llo", add_bos=False) == tokens[1:]
    assert llm.detokenize(tokens[1:]) == "héllo".encode()


def test_completion_shape_and_usage(llm):
    out = llm.create_completion("The", max_tokens=5, temperature=0)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    choice = out["choices"][0]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert choice["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}


def test_stream_equals_non_stream(llm):
    whole = llm.create_completion("Stream", max_tokens=12, temperature=0)["choices"][0]["text"]
    chunks = list(llm.create_completion("Stream", max_tokens=12, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_seed_makes_sampling_reproducible(llm):
    a = llm.create_completion("Seed", max_tokens=10, temperature=1.0, seed=42)["choices"][0]["text"]
    b = llm.create_completion("Seed", max_tokens=10, temperature=1.0, seed=42)["choices"][0]["text"]
    assert a == b


def test_stop_string(llm):
    full = llm.create_completion("Stop", max_tokens=40, temperature=0)["choices"][0]["text"]
    stop = full[10:13]
    assert len(stop) == 3
    out = llm.create_completion("Stop", max_tokens=40, temperature=0, stop=[stop])
    assert out["choices"][0]["text"] == full[:full.index(stop)]
    assert out["choices"][0]["finish_reason"] == "stop"


def test_chat_completion_shapes(llm):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = llm.create_chat_completion(messages, max_tokens=4, temperature=0)
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["usage"]["completion_tokens"] <= 4
    chunks = list(llm.create_chat_completion(messages, max_tokens=4, temperature=0, stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == out["choices"][0]["message"]["content"]


def test_prefix_is_reused(llm):
    seen = []
    prompt = "A long shared beginning of a conversation. " * 4
    llm.create_completion(prompt, max_tokens=1, temperature=0)
    llm.create_completion(prompt + "And more.", max_tokens=1, temperature=0,
                          progress_callback=lambda done, total: seen.append(total))
    # the last generated token is not evaluated when generation ends there
    assert llm.n_tokens == len(llm.tokenize(prompt + "And more."))
    new_tokens = len(llm.tokenize(prompt + "And more.")) - len(llm.tokenize(prompt))
    assert seen == [new_tokens]  # only the tokens after the shared prefix are evaluated


def test_eval_scores_and_reset(tiny_llama_512, random_tokens):
    llm = Llama(str(tiny_llama_512.path), n_ctx=256, logits_all=True)
    tokens = random_tokens(40)
    llm.eval(tokens[:25])
    llm.eval(tokens[25:])
    assert llm.n_tokens == 40 and list(llm.input_ids) == tokens
    assert np.abs(llm.scores[:40]).min(axis=1).all() or np.abs(llm.scores[:40]).max() > 0
    assert not np.any(llm.scores[40])  # nothing written past the sequence
    kept = llm.scores[:40].copy()
    llm.reset()
    assert llm.n_tokens == 0
    llm.eval(tokens)
    assert np.array_equal(llm.scores[:40], kept)


def test_progress_callback_reports_chunks(tiny_llama_512, random_tokens):
    llm = Llama(str(tiny_llama_512.path), n_ctx=512, n_batch=100)
    calls = []
    llm.eval(random_tokens(250), progress_callback=lambda d, t: calls.append((d, t)))
    assert calls == [(100, 250), (200, 250), (250, 250)]


def test_automatic_self_extend(tiny_llama_512, caplog):
    caplog.set_level("INFO", logger="selfextend_gguf")
    llm = Llama(str(tiny_llama_512.path), n_ctx=2048)
    assert llm.self_extend == se.choose(2048, 512) == SelfExtend(group_size=16, neighbor_window=128)
    assert "Self-Extend on with group_size=16, neighbor_window=128" in caplog.text
    assert llm.n_ctx() == 2048 and llm.n_ctx_train() == 512
    assert Llama(str(tiny_llama_512.path), n_ctx=512).self_extend is None
    assert Llama(str(tiny_llama_512.path), n_ctx=2048, group_size=1).self_extend is None


def test_choose_follows_eq5_and_eq4():
    for L in (2048, 4096, 8192, 32768):
        for N in (L + 1, 2 * L, 3 * L, 8 * L):
            G, W = se.choose(N, L)
            assert W + (N - W) / G < L / 2                  # eq. 5
            assert N <= se.max_context(L, G, W)             # eq. 4
            assert not (G > 2 and W + (N - W) / (G - 1) < L / 2)   # smallest such G
    assert se.choose(16384, 8192) == (6, 1024)
    assert se.choose(12288, 8192) == (4, 1024)


def test_type_names_and_ggml_ids_are_equivalent(tiny_llama, random_tokens):
    tokens = random_tokens(30)
    a = Llama(str(tiny_llama.path), n_ctx=64, type_k="q8_0", type_v="f32", logits_all=True)
    b = Llama(str(tiny_llama.path), n_ctx=64, type_k=8, type_v=0, logits_all=True)
    a.eval(tokens)
    b.eval(tokens)
    assert np.array_equal(a.scores[:30], b.scores[:30])


def test_flash_attn_defaults_to_auto(tiny_llama_512, random_tokens):
    """llama.cpp's -fa auto: on where the device runs flash attention (a CPU does: Self-Extend's
    own kernel); True/False and llama.cpp's on/off force it; the fast path gives what the
    forced one gives."""
    from offload import N_GPU_LAYERS

    tokens = random_tokens(700, seed=3)   # beyond the trained 512: Self-Extend is on
    runs = {}
    for setting in ("auto", True, "on", False, "off"):
        llm = Llama(str(tiny_llama_512.path), n_ctx=1024, n_gpu_layers=N_GPU_LAYERS, logits_all=True,
                    **({} if setting == "auto" else {"flash_attn": setting}))
        assert llm.self_extend is not None
        llm.eval(tokens)
        runs[setting] = (llm.flash_attn, llm.scores[len(tokens) - 1].copy())
    assert runs["auto"][0] is True and runs[True][0] is True and runs["on"][0] is True
    assert runs[False][0] is False and runs["off"][0] is False
    assert np.array_equal(runs["auto"][1], runs[True][1])
    with pytest.raises(ValueError, match="flash_attn must be"):
        Llama(str(tiny_llama_512.path), n_ctx=256, flash_attn="fast")
