"""The Anthropic Messages API (/v1/messages, /v1/messages/count_tokens) through the official
`anthropic` client against `selfextend-gguf serve` on a tiny model (beyond its trained
window): text, system prompts, stop sequences, streaming events, tool use and tool
results, token counts, the API key, and 400s in Anthropic's error shape for what is
refused. The model is random: the tests check shapes and consistency, not wording."""

import json

import anthropic
import jsonschema
import pytest

from app_models import ascii_only, non_ascii_ban, write_app_model
from server_process import ServerProcess, tool_template_server

N_CTX = 4096   # beyond the tiny model's trained 512: Self-Extend is on
EOS = 2        # the tiny vocabulary's </s>

WEATHER = {"name": "get_weather", "description": "Current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
                            "required": ["city"]}}
TIME = {"name": "get_time", "description": "Local time in a zone",
        "input_schema": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 6}},
                         "required": ["zone"]}}
HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def app_model(tmp_path_factory):
    return write_app_model(tmp_path_factory.mktemp("server-anthropic"))


@pytest.fixture(scope="module")
def server(app_model):
    srv = tool_template_server(app_model.path, N_CTX)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def text_bias(app_model):
    """Plain ASCII text that never ends by itself (end of text banned): max_tokens ends it."""
    return {str(k): -100 for k in ascii_only(app_model)}


@pytest.fixture(scope="module")
def tool_bias(app_model):
    bias = {str(k): -100 for k in non_ascii_ban(app_model)}
    bias[str(app_model.config.special_token_id("[TOOL_CALLS]"))] = 8   # a model that decides to call
    return bias


def _sampled(bias, seed, temperature=0.7):
    # this anthropic client has no sampling arguments; the server reads them from the body
    return {"logit_bias": bias, "seed": seed, "temperature": temperature}


def _text(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


# ---------------------------------------------------------------------------- messages

def test_plain_message(client, text_bias):
    out = client.messages.create(model="tiny", max_tokens=6, messages=HELLO, metadata={"user_id": "u1"},
                                 extra_body=_sampled(text_bias, 1))
    assert out.id.startswith("msg_") and out.type == "message" and out.role == "assistant"
    assert out.model == "tiny-app.gguf"
    assert [b.type for b in out.content] == ["text"] and out.content[0].text
    assert out.stop_reason == "max_tokens" and out.stop_sequence is None
    assert out.usage.output_tokens == 6 and out.usage.input_tokens > 0


def test_end_of_text_is_end_turn(client):
    out = client.messages.create(model="tiny", max_tokens=20, messages=HELLO,
                                 extra_body={"logit_bias": {str(EOS): 100}})
    assert out.stop_reason == "end_turn" and out.stop_sequence is None
    assert out.content == [] and out.usage.output_tokens == 0


def test_system_prompt_as_string_and_as_blocks(client, text_bias):
    def count(system=None):
        extra = {} if system is None else {"system": system}
        return client.messages.count_tokens(model="tiny", messages=HELLO, **extra).input_tokens

    as_text = count("Be brief.")
    assert as_text > count()
    assert count([{"type": "text", "text": "Be brief."}]) == as_text
    # several blocks are joined as the template joins text parts: with a newline
    assert count([{"type": "text", "text": "Be"}, {"type": "text", "text": "brief."}]) == count("Be\nbrief.")

    kwargs = dict(model="tiny", max_tokens=8, messages=HELLO, extra_body=_sampled(text_bias, 2))
    one = client.messages.create(system="Be brief.", **kwargs)
    two = client.messages.create(system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                                 **kwargs)
    assert _text(one) == _text(two) and one.usage.input_tokens == two.usage.input_tokens == as_text


def test_stop_sequences(client, text_bias):
    kwargs = dict(model="tiny", max_tokens=16, messages=HELLO, extra_body=_sampled(text_bias, 3))
    text = _text(client.messages.create(**kwargs))
    stop = text[6:8]
    expected = text[:text.find(stop)]

    out = client.messages.create(stop_sequences=["@@never@@", stop], **kwargs)
    assert out.stop_reason == "stop_sequence" and out.stop_sequence == stop
    assert _text(out) == expected

    events = list(client.messages.create(stop_sequences=["@@never@@", stop], stream=True, **kwargs))
    delta = [e for e in events if e.type == "message_delta"][0]
    assert delta.delta.stop_reason == "stop_sequence" and delta.delta.stop_sequence == stop
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == expected

    # a stop sequence that never comes: the text runs to max_tokens
    out = client.messages.create(stop_sequences=["@@never@@"], **kwargs)
    assert out.stop_reason == "max_tokens" and out.stop_sequence is None and _text(out) == text


# ---------------------------------------------------------------------------- streaming

def test_stream_events_and_text(client, text_bias):
    kwargs = dict(model="tiny", max_tokens=10, messages=HELLO, extra_body=_sampled(text_bias, 4))
    whole = client.messages.create(**kwargs)
    events = list(client.messages.create(stream=True, **kwargs))
    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    start = events[0].message
    assert start.content == [] and start.stop_reason is None
    assert start.usage.input_tokens == whole.usage.input_tokens
    assert events[1].index == 0 and events[1].content_block.type == "text"
    assert all(e.index == 0 and e.delta.type == "text_delta" for e in events[2:-3])
    assert "".join(e.delta.text for e in events[2:-3]) == _text(whole)
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 10


def test_stream_helper_gives_the_same_message(client, text_bias):
    kwargs = dict(model="tiny", max_tokens=10, messages=HELLO, extra_body=_sampled(text_bias, 5))
    whole = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _text(whole) == _text(final)
    assert final.stop_reason == whole.stop_reason and final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens


# ---------------------------------------------------------------------------- tools

def _tool_kwargs(tool_bias, tool_choice, seed=5):
    return dict(model="tiny", max_tokens=1500, messages=[{"role": "user", "content": "Weather in Paris?"}],
                tools=[WEATHER, TIME], tool_choice=dict(tool_choice, disable_parallel_tool_use=True),
                extra_body=_sampled(tool_bias, seed))


def _check_tool_use(block, names):
    assert block.type == "tool_use" and block.id and block.name in names
    schema = {t["name"]: t["input_schema"] for t in (WEATHER, TIME)}[block.name]
    assert isinstance(block.input, dict)
    jsonschema.validate(block.input, schema)


def test_tool_choice_names_a_tool(client, tool_bias):
    out = client.messages.create(**_tool_kwargs(tool_bias, {"type": "tool", "name": "get_weather"}))
    assert out.stop_reason == "tool_use"
    uses = [b for b in out.content if b.type == "tool_use"]
    assert len(uses) == 1
    _check_tool_use(uses[0], {"get_weather"})


def test_tool_choice_any(client, tool_bias):
    out = client.messages.create(**_tool_kwargs(tool_bias, {"type": "any"}, seed=6))
    assert out.stop_reason == "tool_use"
    uses = [b for b in out.content if b.type == "tool_use"]
    assert len(uses) == 1
    _check_tool_use(uses[0], {"get_weather", "get_time"})


def test_streamed_tool_use(client, tool_bias):
    kwargs = _tool_kwargs(tool_bias, {"type": "tool", "name": "get_weather"})
    whole = [b for b in client.messages.create(**kwargs).content if b.type == "tool_use"][0]
    events = list(client.messages.create(stream=True, **kwargs))
    starts = [e for e in events if e.type == "content_block_start"]
    assert [s.content_block.type for s in starts] == ["tool_use"]
    block = starts[0].content_block
    assert block.name == "get_weather" and block.id and block.input == {}
    pieces = [e.delta.partial_json for e in events
              if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(pieces) > 1 and all(e.index == starts[0].index for e in events if e.type == "content_block_delta")
    assert json.loads("".join(pieces)) == whole.input
    assert [e.type for e in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2].delta.stop_reason == "tool_use"

    with client.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["tool_use"] and final.content[0].input == whole.input


def _round_trip(result_content, **result):
    # Mistral's template wants tool call ids of 9 letters and digits
    return [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "abcDEF123", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "abcDEF123",
                                          "content": result_content, **result}]}]


def test_tool_result_round_trip(client, text_bias):
    def count(result_content):
        return client.messages.count_tokens(model="tiny", messages=_round_trip(result_content),
                                            tools=[WEATHER]).input_tokens

    short = count("Sunny")
    assert count("Sunny, 25 degrees and a light wind") > short
    # an error result reaches the model as its text marked "Error: " (templates have no flag)
    error = client.messages.count_tokens(model="tiny", messages=_round_trip("Sunny", is_error=True),
                                         tools=[WEATHER]).input_tokens
    assert error == count("Error: Sunny") > short
    assert count([{"type": "text", "text": "Sunny"}]) == short
    out = client.messages.create(model="tiny", max_tokens=5, messages=_round_trip("Sunny"), tools=[WEATHER],
                                 extra_body=_sampled(text_bias, 7))
    assert out.usage.input_tokens == short and out.stop_reason == "max_tokens" and _text(out)


# ---------------------------------------------------------------------------- count_tokens

def test_count_tokens_equals_input_tokens(client, text_bias, tool_bias):
    plain = client.messages.count_tokens(model="tiny", messages=HELLO, system="Be brief.")
    out = client.messages.create(model="tiny", max_tokens=2, messages=HELLO, system="Be brief.",
                                 extra_body=_sampled(text_bias, 8))
    assert plain.input_tokens == out.usage.input_tokens

    kwargs = _tool_kwargs(tool_bias, {"type": "tool", "name": "get_weather"})
    counted = client.messages.count_tokens(model="tiny", messages=kwargs["messages"], tools=kwargs["tools"],
                                           tool_choice=kwargs["tool_choice"])
    assert counted.input_tokens > plain.input_tokens
    assert counted.input_tokens == client.messages.create(**kwargs).usage.input_tokens


# ---------------------------------------------------------------------------- refused

_IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}

BAD = {
    "image block": ({"messages": [{"role": "user", "content": [_IMAGE]}]}, "image"),
    "unknown tool in tool_choice": ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
    "tool_choice any without tools": ({"tool_choice": {"type": "any"}}, "needs tools"),
    "text block without text": ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text"),
    "unknown key in a block": ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                                                                            "colour": "red"}]}]}, "colour"),
    "tool_use input not an object": ({"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "abcDEF123", "name": "get_weather",
                                           "input": "Paris"}]},
        {"role": "user", "content": "Go on"}]}, "input"),
    "tool_result without id": ({"messages": [{"role": "user", "content": [{"type": "tool_result",
                                                                           "content": "x"}]}]}, "tool_use_id"),
    "content not blocks": ({"messages": [{"role": "user", "content": 5}]}, "content"),
    "system role in messages": ({"messages": [{"role": "system", "content": "Hi"}]}, "role"),
    "prefilled assistant turn": ({"messages": HELLO + [{"role": "assistant", "content": "Hi"}]}, "assistant"),
    "server tool": ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305"),
    "thinking": ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    "unknown field": ({"frobnicate": True}, "frobnicate"),
    "empty messages": ({"messages": []}, "messages"),
    "missing max_tokens": ({"max_tokens": None}, "max_tokens"),
    "max_tokens zero": ({"max_tokens": 0}, "max_tokens"),
}


def _check_bad_request(err, word):
    assert err.status_code == 400
    body = err.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert word in body["error"]["message"]


@pytest.mark.parametrize("case", sorted(BAD))
def test_refused_with_anthropic_error(client, case):
    change, word = BAD[case]
    body = {"model": "tiny", "max_tokens": 5, "messages": HELLO}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(anthropic.BadRequestError) as err:
        client.post("/v1/messages", body=body, cast_to=dict)
    _check_bad_request(err.value, word)


def test_refused_by_count_tokens_too(client):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.count_tokens(model="tiny", messages=[{"role": "user", "content": [_IMAGE]}])
    _check_bad_request(err.value, "image")
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.count_tokens(model="tiny", messages=HELLO, tools=[WEATHER],
                                     tool_choice={"type": "tool", "name": "nope"})
    _check_bad_request(err.value, "nope")
    # count_tokens has no max_tokens (nor other generation settings)
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.count_tokens(model="tiny", messages=HELLO, extra_body={"max_tokens": 5})
    _check_bad_request(err.value, "max_tokens")


# ---------------------------------------------------------------------------- API key

def test_api_key(app_model):
    srv = ServerProcess("--model", str(app_model.path), "--n-ctx", "512", "--threads", "1", "--api-key", "s3cret")
    try:
        good = anthropic.Anthropic(base_url=srv.url, api_key="s3cret", max_retries=0)
        out = good.messages.create(model="tiny", max_tokens=3, messages=HELLO)
        assert out.type == "message" and out.usage.output_tokens <= 3
        assert good.messages.count_tokens(model="tiny", messages=HELLO).input_tokens == out.usage.input_tokens
        bad = anthropic.Anthropic(base_url=srv.url, api_key="nope", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as err:
            bad.messages.create(model="tiny", max_tokens=3, messages=HELLO)
        assert err.value.status_code == 401
        assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "authentication_error"
    finally:
        srv.stop()
