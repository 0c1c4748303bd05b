"""The server with the default model (SmolLM2-135M-Instruct), through the openai client."""

import threading

import openai
import pytest

from server_process import ServerProcess

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def server():
    # 16k context on a model trained on 8k: Self-Extend chosen automatically (G=6, W=1024)
    srv = ServerProcess("--n-ctx", "16384", "--parallel", "2", "--n-ubatch", "256")
    yield srv
    srv.stop()


def test_models_reports_self_extend(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    meta = client.models.list().data[0].model_extra["meta"]
    assert meta["n_ctx_train"] == 8192 and meta["n_ctx"] == 16384
    assert meta["self_extend"] == {"group_size": 6, "neighbor_window": 1024}


def test_chat_answers_with_the_real_model(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    out = client.chat.completions.create(
        model="smollm2", temperature=0, max_tokens=20,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}])
    assert "Paris" in out.choices[0].message.content


def test_two_concurrent_streams(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    prompts = {"The capital of France is": "Paris", "The capital of Germany is": "Berlin"}
    results = {}

    def one(prompt):
        stream = client.completions.create(model="smollm2", prompt=prompt, max_tokens=6, temperature=0, stream=True)
        results[prompt] = "".join(c.choices[0].text for c in stream)

    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for prompt, city in prompts.items():
        assert city in results[prompt], results
