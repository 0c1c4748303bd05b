"""llama-server's route table against ours: every route it serves either answers here or
is refused with a JSON body that says why; the small llama-server routes (aliases
without /v1, the chat prompt's rendering and token count) answer as it does."""

import httpx
import pytest

from server_process import ServerProcess

# llama-server's routes (pinned tree, tools/server/server.cpp) -> what a request here gets
ROUTES = [
    ("get", "/health", 200), ("get", "/v1/health", 200), ("get", "/props", 200), ("get", "/models", 200),
    ("get", "/v1/models", 200), ("get", "/slots", 200), ("get", "/metrics", 501),   # 501: needs --metrics
    ("post", "/props", 501),
    ("post", "/completion", 200), ("post", "/completions", 200), ("post", "/v1/completions", 200),
    ("post", "/chat/completions", 200), ("post", "/v1/chat/completions", 200),
    ("post", "/v1/responses", 200), ("post", "/responses", 200), ("post", "/v1/messages", 200),
    ("post", "/infill", 400),   # the tiny model has no FIM tokens: a 400 that says so
    ("post", "/tokenize", 200), ("post", "/detokenize", 200), ("post", "/apply-template", 200),
    ("post", "/chat/completions/input_tokens", 200), ("post", "/v1/chat/completions/input_tokens", 200),
    ("post", "/responses/input_tokens", 200), ("post", "/v1/responses/input_tokens", 200),
    ("post", "/v1/messages/count_tokens", 200), ("post", "/v1/embeddings", 501),   # 501: needs --embedding
]

BODIES = {
    "/completion": {"prompt": "Hi", "n_predict": 2}, "/completions": {"prompt": "Hi", "n_predict": 2},
    "/v1/completions": {"prompt": "Hi", "max_tokens": 2}, "/infill": {"input_prefix": "a", "input_suffix": "b"},
    "/tokenize": {"content": "Hi"}, "/detokenize": {"tokens": [1, 2]}, "/v1/embeddings": {"input": "Hi"},
    "/v1/responses": {"input": "Hi", "max_output_tokens": 2}, "/responses": {"input": "Hi", "max_output_tokens": 2},
    "/responses/input_tokens": {"input": "Hi"}, "/v1/responses/input_tokens": {"input": "Hi"},
    "/v1/messages": {"max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "Hi"}]},
    "/props": {},
}
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def server(tiny_llama_512):
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "2048", "--threads", "1")
    yield srv
    srv.stop()


@pytest.mark.parametrize("method,path,status", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_llama_server_route_answers(server, method, path, status):
    if method == "get":
        r = httpx.get(server.url + path, timeout=120)
    else:
        r = httpx.post(server.url + path, json=BODIES.get(path, CHAT), timeout=120)
    assert r.status_code == status, r.text
    if status >= 400:
        body = r.json()
        assert body["error"]["message"]   # says why


def test_apply_template_and_input_tokens_agree_with_a_chat_completion(server):
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]}
    prompt = httpx.post(server.url + "/apply-template", json=body).json()["prompt"]
    assert "Be brief." in prompt and "Hello there" in prompt and prompt.endswith("assistant\n")
    n = httpx.post(server.url + "/v1/chat/completions/input_tokens", json=body).json()["input_tokens"]
    out = httpx.post(server.url + "/v1/chat/completions", json=dict(body, max_tokens=1), timeout=120).json()
    assert n == out["usage"]["prompt_tokens"]
    tokens = httpx.post(server.url + "/tokenize", json={"content": prompt, "add_special": True,
                                                        "parse_special": True}).json()["tokens"]
    assert len(tokens) == n


# integers and enums only: a random byte-level model writes no strings to keep ASCII
DICE = {"name": "roll_dice", "description": "Roll dice",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 6},
                                                        "kind": {"enum": ["d6", "d20"]}},
                       "required": ["n", "kind"]}}


def test_tools_on_a_template_without_them_through_every_protocol(server):
    """The tiny model's template is plain ChatML (no tools): the generic JSON envelope
    gives forced calls to the OpenAI, Responses and Anthropic clients alike."""
    import anthropic
    import jsonschema
    import openai

    oai = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    out = oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Roll"}],
                                      tools=[{"type": "function", "function": DICE}], tool_choice="required",
                                      max_tokens=200, seed=1)
    assert out.choices[0].finish_reason == "tool_calls"
    call = out.choices[0].message.tool_calls[0].function
    assert call.name == "roll_dice"
    jsonschema.validate(__import__("json").loads(call.arguments), DICE["parameters"])

    resp = oai.responses.create(model="tiny", input="Roll", tools=[{"type": "function", **DICE}],
                                tool_choice={"type": "function", "name": "roll_dice"}, max_output_tokens=200)
    [item] = [i for i in resp.output if i.type == "function_call"]
    jsonschema.validate(__import__("json").loads(item.arguments), DICE["parameters"])

    ant = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=300)
    msg = ant.messages.create(model="tiny", max_tokens=200, messages=[{"role": "user", "content": "Roll"}],
                              tools=[{"name": DICE["name"], "description": DICE["description"],
                                      "input_schema": DICE["parameters"]}], tool_choice={"type": "any"})
    assert msg.stop_reason == "tool_use"
    [use] = [b for b in msg.content if b.type == "tool_use"]
    jsonschema.validate(use.input, DICE["parameters"])

