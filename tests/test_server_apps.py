"""What apps ask of an OpenAI-compatible server, through the official `openai` client
against `selfextend-gguf serve` on a tiny model (beyond its trained window): JSON
schema and structured outputs, tool calls, logprobs, usage in streams, content parts,
n > 1, embeddings, /tokenize and /detokenize, and 400s for what is refused."""

import json

import httpx
import pydantic
import pytest

from app_models import SPECIAL_TOKENS, non_ascii_ban, write_app_model
from selfextend_gguf import Llama
from server_process import openai_client, tool_template_server

N_CTX = 4096   # beyond the tiny model's trained 512: Self-Extend is on

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def app_model(tmp_path_factory):
    return write_app_model(tmp_path_factory.mktemp("server-apps"))


@pytest.fixture(scope="module")
def server(app_model):
    srv = tool_template_server(app_model.path, N_CTX, "--embedding", "--pooling", "mean")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


@pytest.fixture(scope="module")
def ascii_bias(app_model):
    return {str(k): -100 for k in non_ascii_ban(app_model)}


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=8)
    age: int = pydantic.Field(ge=0, le=120)
    tags: list[str] = pydantic.Field(max_length=2)


def test_structured_output_parses_into_a_pydantic_object(client, ascii_bias):
    out = client.beta.chat.completions.parse(
        model="tiny", messages=[{"role": "user", "content": "Who?"}], response_format=Person,
        max_tokens=800, temperature=0.7, seed=1, logit_bias=ascii_bias)
    person = out.choices[0].message.parsed
    assert isinstance(person, Person) and 0 <= person.age <= 120


def test_json_object(client, ascii_bias):
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "JSON please"}],
                                         response_format={"type": "json_object"}, max_tokens=800,
                                         temperature=0.7, seed=2, logit_bias=ascii_bias)
    assert out.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(out.choices[0].message.content), dict)


def test_completions_take_a_schema_too(client, ascii_bias):
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["n"]}
    out = client.completions.create(model="tiny", prompt="JSON:", max_tokens=200, temperature=0.7, seed=3,
                                    logit_bias=ascii_bias,
                                    extra_body={"response_format": {"type": "json_object", "schema": schema}})
    assert 0 <= json.loads(out.choices[0].text)["n"] <= 9


def _tool_kwargs(app_model, ascii_bias):
    bias = dict(ascii_bias)
    bias[str(app_model.config.special_token_id("[TOOL_CALLS]"))] = 8   # a model that decides to call
    return dict(model="tiny", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
                tool_choice="required", parallel_tool_calls=False, max_tokens=1500, temperature=0.7, seed=5,
                logit_bias=bias)


def test_forced_tool_call(client, app_model, ascii_bias):
    out = client.chat.completions.create(**_tool_kwargs(app_model, ascii_bias))
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)


def test_streamed_tool_call(client, app_model, ascii_bias):
    whole = client.chat.completions.create(**_tool_kwargs(app_model, ascii_bias))
    stream = client.chat.completions.create(stream=True, **_tool_kwargs(app_model, ascii_bias))
    name, arguments, finish = "", "", None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and name == "get_weather"
    assert json.loads(arguments) == json.loads(whole.choices[0].message.tool_calls[0].function.arguments)


def test_logprobs_chat_and_completions(client):
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                         temperature=0, logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens and all(len(c.top_logprobs) == 3 for c in content)
    out = client.completions.create(model="tiny", prompt="Hi", max_tokens=4, temperature=0, logprobs=2)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == 4 and len(lp.token_logprobs) == 4 and all(len(t) <= 3 for t in lp.top_logprobs)


def test_stream_usage(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=5, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_content_parts(client):
    as_parts = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        max_tokens=5, temperature=0)
    as_text = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}],
                                             max_tokens=5, temperature=0)
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content


def test_n_choices(client):
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=6,
                                         temperature=1.0, seed=3, n=2)
    assert [c.index for c in out.choices] == [0, 1]
    assert 2 <= out.usage.completion_tokens <= 12
    assert out.choices[0].message.content != out.choices[1].message.content
    stream = client.completions.create(model="tiny", prompt="Hi", max_tokens=4, temperature=1.0, seed=3, n=2,
                                       stream=True)
    assert {c.choices[0].index for c in stream} == {0, 1}


def test_embeddings(client, app_model):
    out = client.embeddings.create(model="tiny", input=["one", "two"])
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == app_model.config.n_embd
    local = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=1, embedding=True, pooling_type="mean")
    assert out.data[0].embedding == pytest.approx(local.embed("one"), abs=1e-4)


def test_tokenize_and_detokenize(server, app_model):
    tokens = httpx.post(server.url + "/tokenize", json={"content": "abc"}).json()["tokens"]
    assert len(tokens) == 3
    assert httpx.post(server.url + "/detokenize", json={"tokens": tokens}).json()["content"] == "abc"
    marker = SPECIAL_TOKENS[0]
    pieces = httpx.post(server.url + "/tokenize", json={"content": marker, "with_pieces": True}).json()["tokens"]
    assert pieces == [{"id": app_model.config.special_token_id(marker), "piece": marker}]


@pytest.mark.parametrize("body, param", [
    ({"grammar": "root ::= undefined"}, "grammar"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 7}}}}, "schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not in tools"),
    ({"best_of": 3}, "best_of"),
    ({"audio": {"voice": "x"}}, "audio"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "multimodal"),
    ({"top_logprobs": 2}, "top_logprobs"),
])
def test_bad_requests_are_400_with_a_json_body(server, body, param):
    payload = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, **body}
    r = httpx.post(server.url + "/v1/chat/completions", json=payload, timeout=60)
    assert r.status_code == 400, r.text
    assert param in r.json()["error"]["message"]
    assert server.health()["status"] == "ok"


def test_fields_that_change_nothing_are_accepted(client):
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                         user="u1", metadata={"k": "v"}, store=False, service_tier="auto")
    assert out.choices[0].message.role == "assistant"
