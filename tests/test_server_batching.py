"""The server's slots are sequences of one context, decoded together (continuous
batching): one model load and one KV cache whatever --parallel is, outputs as solo runs
give them, prefix reuse across slots, and a disconnect that frees the cells at once."""

import time

import httpx
import pytest

from greedy_match import assert_same_greedy
from selfextend_gguf import Llama
from selfextend_gguf.engine.threads import map_in_threads
from server_process import ServerProcess, openai_client, stream_logprobs

N_CTX = 4096   # beyond the tiny model's trained 512


@pytest.fixture(scope="module")
def server(tiny_llama_512):
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", str(N_CTX), "--parallel", "4",
                        "--queue-size", "8", "--threads", "2")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def solo(tiny_llama_512):
    return Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=2)


def test_one_model_and_one_cache_whatever_parallel_is(server, tiny_llama_512):
    memory = server.health()["memory"]
    alone = Llama(str(tiny_llama_512.path), n_ctx=N_CTX, n_threads=1, n_seq_max=2).memory_breakdown()
    total = lambda breakdown, kind: sum(b[kind] for b in breakdown.values())   # noqa: E731
    assert total(memory, "model") == total(alone, "model")            # the weights once
    assert total(memory, "context") == total(alone, "context")        # one KV cache of --n-ctx cells
    assert total(memory, "compute") <= 1.5 * total(alone, "compute")


def test_eight_concurrent_streams_on_four_slots_equal_solo_runs(server, solo):
    client = openai_client(server)
    prompts = [f"Stream {i}: " + ("tok%d " % i) * (20 + 40 * i) for i in range(8)]   # some past the window
    got = dict(zip(prompts, map_in_threads(lambda prompt: stream_logprobs(client, "tiny", prompt, 16), prompts)))
    for prompt in prompts:
        ref = solo.create_completion(prompt, max_tokens=16, temperature=0, logprobs=2)
        assert_same_greedy(ref["choices"][0]["logprobs"], got[prompt])
    assert server.health()["status"] == "ok"


def test_a_disconnect_frees_its_cells_at_once(server):
    prompt = "Leaving " + "q" * 1500
    with httpx.stream("POST", server.url + "/v1/completions", timeout=120,
                      json={"prompt": prompt, "max_tokens": 2500, "temperature": 0, "stream": True,
                            "logit_bias": {"2": -100}}) as r:
        lines = r.iter_lines()
        next(lines)                                  # the first chunk: it is generating
        busy = [s for s in server.health()["slots"] if s["busy"]]
        assert len(busy) == 1 and busy[0]["n_cached"] > 1500
        slot = busy[0]["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = server.health()["slots"][slot]
        if not state["busy"]:
            break
        time.sleep(0.1)
    assert state["n_cached"] == 0 and not state["busy"]


def test_a_shared_document_is_copied_to_another_slot(server, solo):
    doc = "Shared document line. " * 40
    with httpx.stream("POST", server.url + "/v1/completions", timeout=120,
                      json={"prompt": doc + "Busy?", "max_tokens": 2500, "temperature": 0, "stream": True,
                            "logit_bias": {"2": -100}}) as r:
        lines = r.iter_lines()
        next(lines)                                  # this slot holds the document and is busy
        out = httpx.post(server.url + "/v1/completions", timeout=120,
                         json={"prompt": doc + "Second?", "max_tokens": 8, "temperature": 0}).json()
        slots = server.health()["slots"]
    second = [s for s in slots if not s["busy"] and s["n_cached"] > 0]
    assert second and second[0]["last_evaluated"] < 30 < second[0]["last_prompt_tokens"]
    assert out["choices"][0]["text"] == solo.create_completion(doc + "Second?", max_tokens=8,
                                                               temperature=0)["choices"][0]["text"]


def test_a_prompt_that_does_not_fit_is_a_400(server):
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "x" * (N_CTX + 10), "max_tokens": 2},
                   timeout=60)
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]
