"""The OpenAI-compatible server, driven by the official `openai` client and httpx over
loopback, with the tiny test model (the default model: test_server_default_model.py)."""

import threading
import time

import httpx
import openai
import pytest

from selfextend_gguf import Llama
from selfextend_gguf.engine.threads import map_in_threads
from server_process import ServerProcess

N_CTX = 1024   # twice the tiny model's trained 512: Self-Extend is on


@pytest.fixture(scope="module")
def server(tiny_llama_512):
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", str(N_CTX), "--parallel", "4",
                        "--queue-size", "8", "--threads", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def local(tiny_llama_512):
    """The same model and settings in-process, for the expected greedy outputs."""
    return Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=1)


def expected_text(local, prompt, max_tokens):
    return local.create_completion(prompt, max_tokens=max_tokens, temperature=0)["choices"][0]["text"]


def test_health_and_models(server, client):
    assert server.health()["slots_total"] == 4
    models = client.models.list()
    meta = models.data[0].model_extra["meta"]
    assert meta["n_ctx"] == N_CTX and meta["self_extend"]["group_size"] >= 2


def test_completion(client, local):
    out = client.completions.create(model="tiny", prompt="Hello there", max_tokens=8, temperature=0)
    assert out.choices[0].text == expected_text(local, "Hello there", 8)
    assert out.usage.completion_tokens == 8 and out.choices[0].finish_reason == "length"


def test_streaming_completion(client, local):
    stream = client.completions.create(model="tiny", prompt="Streaming", max_tokens=10, temperature=0, stream=True)
    pieces = [c.choices[0].text for c in stream]
    assert "".join(pieces) == expected_text(local, "Streaming", 10)


def test_chat(client, local):
    messages = [{"role": "user", "content": "Say something"}]
    out = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, temperature=0)
    want = local.create_chat_completion(messages, max_tokens=6, temperature=0)["choices"][0]["message"]["content"]
    assert out.choices[0].message.role == "assistant" and out.choices[0].message.content == want
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == want


def test_eight_concurrent_streams_keep_their_own_outputs(server, client, local):
    prompts = [f"Prompt number {i}: " + "abcdefgh"[i] * (5 + 3 * i) for i in range(8)]
    expected = {p: expected_text(local, p, 24) for p in prompts}
    results = {}

    def one(prompt):
        stream = client.completions.create(model="tiny", prompt=prompt, max_tokens=24, temperature=0, stream=True)
        results[prompt] = "".join(c.choices[0].text for c in stream)

    map_in_threads(one, prompts)
    assert len(set(expected.values())) == 8     # distinct answers, so mixing would show
    assert results == expected
    assert server.health()["slots_idle"] == 4


def test_bad_requests_get_openai_errors(server):
    url = server.url + "/v1/completions"
    cases = [
        (dict(content=b"{not json"), 400, None),
        (dict(json={"prompt": "x", "max_tokens": 0}), 400, "max_tokens"),
        (dict(json={"prompt": "x", "max_tokens": -5}), 400, "max_tokens"),
        (dict(json={"prompt": "x", "temperature": "hot"}), 400, "temperature"),
        (dict(json={"max_tokens": 3}), 400, "prompt"),
        (dict(json={"prompt": "x" * 5000, "max_tokens": 3}), 400, None),
        (dict(json={"prompt": "", "max_tokens": 3}), 400, None),
    ]
    for kwargs, status, param in cases:
        r = httpx.post(url, headers={"content-type": "application/json"}, timeout=60, **kwargs)
        assert r.status_code == status, (kwargs, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
        if param:
            assert error["param"] == param
    too_long = httpx.post(url, json={"prompt": "x" * 5000}, timeout=60).json()["error"]
    assert too_long["code"] == "context_length_exceeded"
    bad_chat = httpx.post(server.url + "/v1/chat/completions", json={"messages": [{"role": "wizard", "content": "x"}]})
    assert bad_chat.status_code == 400
    # still serving (greedy: a sampled token could be end-of-text and stop after 1)
    ok = httpx.post(url, json={"prompt": "fine", "max_tokens": 2, "temperature": 0}, timeout=60)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2


def test_disconnect_stops_generation_and_frees_the_slot(server):
    before = server.health()["slots_idle"]
    max_tokens = 900
    with httpx.stream("POST", server.url + "/v1/completions", timeout=60,
                      json={"prompt": "Long one", "max_tokens": max_tokens, "temperature": 0, "stream": True,
                            "logit_bias": {"2": -100}}) as r:   # end-of-sequence banned: it would run to 900
        lines = r.iter_lines()
        got = [next(lines) for _ in range(3)]
        assert any(line.startswith("data: ") for line in got)
    # the client is gone: within a bounded wait the slot must be free again
    for _ in range(100):
        if server.health()["slots_idle"] == before:
            break
        time.sleep(0.1)
    health = server.health()
    assert health["slots_idle"] == before
    # and its generation stopped early: the slot's cache holds far fewer than 900 new tokens
    slot = max(health["slots"], key=lambda s: s["n_cached"])
    assert slot["n_cached"] < slot["last_prompt_tokens"] + max_tokens - 100, slot


def wait_for(predicate, what, attempts=300):
    for _ in range(attempts):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_queue_full_answers_503(tiny_llama_512):
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "8192", "--parallel", "1",
                        "--queue-size", "1", "--threads", "1")
    try:
        queued = {}
        # A holds the only slot: a long streamed generation
        with httpx.stream("POST", srv.url + "/v1/completions", timeout=120,
                          json={"prompt": "busy", "max_tokens": 8000, "temperature": 0, "stream": True,
                                "logit_bias": {"2": -100}}) as a:   # no end-of-sequence: runs long
            lines_a = a.iter_lines()   # keep the iterator: dropping it closes the connection
            next(lines_a)
            assert srv.health()["slots_idle"] == 0

            # B waits in the queue
            def b():
                r = httpx.post(srv.url + "/v1/completions", json={"prompt": "queued", "max_tokens": 2}, timeout=300)
                queued["status"] = r.status_code
            tb = threading.Thread(target=b)
            tb.start()
            wait_for(lambda: srv.health()["queue"] == 1, "the request to queue")

            # C finds the slot busy and the queue full
            c = httpx.post(srv.url + "/v1/completions", json={"prompt": "rejected", "max_tokens": 2}, timeout=60)
            assert c.status_code == 503
            assert c.json()["error"]["code"] == "queue_full"
        # A disconnected: its slot goes to B
        tb.join(timeout=300)
        assert queued["status"] == 200
        wait_for(lambda: srv.health()["slots_idle"] == 1, "the slot to be free")
    finally:
        srv.stop()


def test_api_key(tiny_llama_512):
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "256", "--api-key", "s3cret",
                        "--threads", "1")
    try:
        r = httpx.post(srv.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = httpx.get(srv.url + "/v1/models", headers={"authorization": "Bearer wrong"})
        assert r.status_code == 401
        good = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(model="tiny", prompt="x", max_tokens=2, temperature=0).usage.completion_tokens == 2
        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="tiny", prompt="x", max_tokens=2)
    finally:
        srv.stop()


def test_prefix_reuse_in_a_slot(server, local):
    """A follow-up whose prompt extends the previous one lands on the slot holding that
    prefix and evaluates only the new tokens."""
    base = "Shared context for reuse. " * 12
    follow = base + "Follow-up question?"
    for prompt in (base, follow):
        r = httpx.post(server.url + "/v1/completions", json={"prompt": prompt, "max_tokens": 1}, timeout=60)
        assert r.status_code == 200
    slots = server.health()["slots"]
    n_follow = len(local.tokenize(follow, add_bos=True, special=True))
    n_new = n_follow - len(local.tokenize(base, add_bos=True, special=True))
    slot = next(s for s in slots if s["last_prompt_tokens"] == n_follow)
    assert slot["last_evaluated"] == n_new < n_follow / 5
