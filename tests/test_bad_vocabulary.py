"""A GGUF whose vocabulary lacks byte-fallback tokens: llama.cpp's tokenizer throws
std::out_of_range ("unordered_map::at"). Users get a LlamaCppError that names the
operation and says what is wrong, the object stays usable, and the server answers
with an OpenAI-style JSON error, never a plain-text 500."""

import httpx
import pytest

from selfextend_gguf import Llama, LlamaCppError
from server_process import ServerProcess
from tiny_models import N_SPECIAL, TinyConfig, write_tiny_model

N_BYTE_TOKENS = 90   # <0xA6>..<0xFF>: no ASCII byte has a token


@pytest.fixture(scope="module")
def bad_vocab_model(tmp_path_factory):
    cfg = TinyConfig(n_embd=64, n_head=2, n_head_kv=1, n_ff=64, n_layer=1, n_ctx_train=128,
                     n_byte_tokens=N_BYTE_TOKENS, seed=7)
    return write_tiny_model(tmp_path_factory.mktemp("bad-vocab"), cfg, name="tiny-bad-vocab.gguf")


def test_tokenize_failure_is_a_clear_python_error(bad_vocab_model):
    llm = Llama(str(bad_vocab_model.path), n_ctx=128)
    with pytest.raises(LlamaCppError) as info:
        llm.tokenize("Hello")
    message = str(info.value)
    assert message.startswith("tokenize failed in llama.cpp: ")
    assert "unordered_map::at" in message               # llama.cpp's own message, kept
    assert "byte-fallback tokens" in message             # and what it means
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(LlamaCppError, match="tokenize failed"):
        llm.create_completion("Hello", max_tokens=2)
    with pytest.raises(LlamaCppError, match="tokenize failed"):
        llm.create_chat_completion([{"role": "user", "content": "Hello"}], max_tokens=2)
    # still usable with token ids
    out = llm.create_completion([1, N_SPECIAL + 5, N_SPECIAL + 6], max_tokens=3, temperature=0)
    assert out["usage"]["completion_tokens"] == 3
    assert isinstance(llm.detokenize([N_SPECIAL + 5]), bytes)


def test_cli_reports_the_error_without_a_traceback(bad_vocab_model):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "selfextend_gguf", "complete", "--model",
                             str(bad_vocab_model.path), "--prompt", "Hello", "-n", "2", "--n-ctx", "128"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "selfextend-gguf: error: tokenize failed in llama.cpp" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_answers_with_openai_json_errors(bad_vocab_model):
    server = ServerProcess("--model", str(bad_vocab_model.path), "--n-ctx", "128", "--threads", "1")
    try:
        for path, body in [("/v1/completions", {"prompt": "Hello", "max_tokens": 2}),
                           ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello"}]})]:
            r = httpx.post(server.url + path, json=body, timeout=60)
            assert r.status_code == 500, r.text
            assert r.headers["content-type"].startswith("application/json")
            error = r.json()["error"]
            assert error["type"] == "server_error"
            assert "tokenize failed in llama.cpp" in error["message"]
        # token-id prompts still work
        ok = httpx.post(server.url + "/v1/completions",
                        json={"prompt": [1, N_SPECIAL + 5], "max_tokens": 2, "temperature": 0}, timeout=60)
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2
    finally:
        server.stop()
