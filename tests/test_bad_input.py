"""Every bad input gets a Python exception with a clear message, never an abort, and
the Llama object stays usable afterwards."""

import os
import shutil

import numpy as np
import pytest

import selfextend_gguf.llama as llama_module
from selfextend_gguf import Llama
from tiny_models import write_tiny_gpt2


@pytest.fixture
def llm(tiny_llama_512):
    return Llama(str(tiny_llama_512.path), n_ctx=256, n_batch=64)


def still_works(llm):
    out = llm.create_completion("ok", max_tokens=3, temperature=0)
    assert out["usage"]["completion_tokens"] == 3


# ---------------------------------------------------------------- model files

def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        Llama(str(tmp_path / "nope.gguf"))


def test_model_path_is_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="directory"):
        Llama(str(tmp_path))


def test_unreadable_model_file(tmp_path, tiny_llama, monkeypatch):
    path = tmp_path / "locked.gguf"
    shutil.copy(tiny_llama.path, path)
    if os.geteuid() != 0:
        os.chmod(path, 0)
    else:
        # root reads any file, so simulate what the OS says to everyone else
        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))
        monkeypatch.setattr(llama_module, "open", denied, raising=False)
    with pytest.raises(PermissionError, match="not readable"):
        Llama(str(path))


def test_truncated_model_file(tmp_path, tiny_llama):
    data = tiny_llama.path.read_bytes()
    for size in (len(data) // 2, 100, 8):
        path = tmp_path / f"truncated-{size}.gguf"
        path.write_bytes(data[:size])
        # llama.cpp's own reason comes along (bounds of a tensor, the header, ...)
        with pytest.raises(ValueError, match="not a valid GGUF model.*llama.cpp says: .*(bounds|failed to read)"):
            Llama(str(path))


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "random.gguf"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a GGUF model file"):
        Llama(str(path))
    path.write_bytes(b"GGUF" + np.random.default_rng(1).bytes(4096))
    with pytest.raises(ValueError, match="not a valid GGUF model"):
        Llama(str(path))


# ---------------------------------------------------------------- architectures

def test_architecture_without_rope(tmp_path):
    gpt2 = write_tiny_gpt2(tmp_path)
    with pytest.raises(ValueError, match="Self-Extend cannot serve this model .*gpt2.*RoPE"):
        Llama(str(gpt2), n_ctx=64, group_size=4, neighbor_window=16)
    with pytest.raises(ValueError, match="cannot run past its trained context"):
        Llama(str(gpt2), n_ctx=256)            # automatic Self-Extend would be needed
    with pytest.raises(ValueError, match="cannot run past its trained context"):
        Llama(str(gpt2), n_ctx=256, group_size=1)
    # within its window it runs, vanilla
    plain = Llama(str(gpt2), n_ctx=64)
    assert plain.self_extend is None
    still_works(plain)


# ---------------------------------------------------------------- G, W, n_ctx

@pytest.mark.parametrize("kwargs,message", [
    (dict(group_size=0), "group_size must be >= 1"),
    (dict(group_size=-3), "group_size must be >= 1"),
    (dict(group_size="4"), "group_size must be an integer"),
    (dict(group_size=4, neighbor_window=0), "0 < W < the model's trained context"),
    (dict(group_size=4, neighbor_window=512), "0 < W < the model's trained context"),
    (dict(group_size=2, neighbor_window=256, n_ctx=2048), r"eq. 4 requires n_ctx <= \(L - W\) \* G \+ W = 768"),
    (dict(n_ctx=-1), "n_ctx must be an integer >= 1"),
    (dict(n_batch=0), "n_batch must be an integer >= 1"),
    (dict(type_k="q3_x"), "type_k must be one of"),
    (dict(type_v="q8_0", flash_attn=False), "quantized V cache .* needs flash attention"),
])
def test_invalid_parameters(tiny_llama_512, kwargs, message):
    options = dict(n_ctx=1024)
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Llama(str(tiny_llama_512.path), **options)


# ---------------------------------------------------------------- prompts

def test_empty_prompt(llm):
    with pytest.raises(ValueError, match="empty prompt"):
        llm.create_completion("")
    with pytest.raises(ValueError, match="empty prompt"):
        llm.create_completion([])
    still_works(llm)


def test_prompt_longer_than_context(llm):
    with pytest.raises(ValueError, match=r"Requested tokens \(\d+\) exceed context window of 256"):
        llm.create_completion("x" * 400)
    with pytest.raises(ValueError, match="exceed context window"):
        llm.eval(list(range(3, 303)))
    assert llm.n_tokens == 0
    still_works(llm)


def test_invalid_utf8(llm):
    with pytest.raises(ValueError, match="not valid UTF-8"):
        llm.create_completion(b"abc \xff\xfe def")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        llm.tokenize(b"\xc3\x28")
    with pytest.raises(ValueError, match="cannot be encoded as UTF-8"):
        llm.create_completion("lone surrogate \ud800")
    still_works(llm)


def test_invalid_token_ids(llm):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.eval([5, 100000])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        llm.detokenize([-1])
    assert llm.n_tokens == 0
    still_works(llm)


def test_bad_sampling_parameters(llm):
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        llm.create_completion("hi", temperature=-1)
    with pytest.raises(ValueError, match="top_p must be in"):
        llm.create_completion("hi", top_p=1.5)
    still_works(llm)


def test_bad_chat_messages(llm):
    with pytest.raises(ValueError, match="non-empty list"):
        llm.create_chat_completion([])
    with pytest.raises(ValueError, match="role"):
        llm.create_chat_completion([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ValueError, match="content"):
        llm.create_chat_completion([{"role": "user", "content": 42}])
    still_works(llm)


def test_interrupted_prefill_rolls_back(tiny_llama_512, random_tokens):
    llm = Llama(str(tiny_llama_512.path), n_ctx=1024, n_batch=64, logits_all=True)
    first = random_tokens(100, seed=1)
    llm.eval(first)

    def interrupt(done, total):
        if done >= 128:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        llm.eval(random_tokens(300, seed=2), progress_callback=interrupt)
    assert llm.n_tokens == 100
    # the cache holds exactly the first 100 tokens again: continuing gives the same
    # logits as a fresh run
    more = random_tokens(50, seed=3)
    llm.eval(more)
    fresh = Llama(str(tiny_llama_512.path), n_ctx=1024, n_batch=64, logits_all=True)
    fresh.eval(first + more)
    # (equal up to float rounding: the two runs split the tokens into different batches)
    # (flash attention on, the default, rounds Q to f16 on the CPU: a little more)
    assert np.allclose(llm.scores[:150], fresh.scores[:150], atol=2e-3, rtol=0)
