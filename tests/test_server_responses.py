"""OpenAI's Responses API (/v1/responses, /v1/responses/input_tokens) through the official
`openai` client against `selfextend-gguf serve` on a tiny model with a tool-call
template: the response and stream shapes the client's types read, agreement with
/v1/chat/completions (one generation path), function tools, structured output, token
counts, and 400s for what is refused."""

import json

import httpx
import jsonschema
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from app_models import ascii_only, non_ascii_ban, write_app_model
from server_process import openai_client, tool_template_server

N_CTX = 4096   # beyond the tiny model's trained 512: Self-Extend is on

CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"]}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city", "parameters": CITY}
TIME = {"type": "function", "name": "get_time", "description": "Local time in a city", "parameters": CITY}
DIGIT = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"],
         "additionalProperties": False}
CALL_ID = "abcDEF123"   # Mistral's template wants tool call ids of 9 letters and digits

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)


@pytest.fixture(scope="module")
def app_model(tmp_path_factory):
    return write_app_model(tmp_path_factory.mktemp("server-responses"))


@pytest.fixture(scope="module")
def server(app_model):
    srv = tool_template_server(app_model.path, N_CTX)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


@pytest.fixture(scope="module")
def ascii_bias(app_model):
    return {str(k): -100 for k in non_ascii_ban(app_model)}


@pytest.fixture(scope="module")
def tool_bias(app_model, ascii_bias):
    bias = dict(ascii_bias)
    bias[str(app_model.config.special_token_id("[TOOL_CALLS]"))] = 8   # a model that decides to call
    return bias


def _post(server, path, body):
    return httpx.post(server.url + path, json={"model": "tiny", **body}, timeout=300)


def _raw_events(server, body):
    """The SSE stream of a request as (event name, data) pairs."""
    out = []
    with httpx.stream("POST", server.url + "/v1/responses", json={"model": "tiny", "stream": True, **body},
                      timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[len("data: "):])))
                name = None
    return out


def _text_request(ascii_bias, **kw):
    return dict(model="tiny", input="Hello", max_output_tokens=12, temperature=0.7,
                extra_body={"seed": 4, "logit_bias": ascii_bias}, **kw)


def _tool_request(tool_bias, **kw):
    return dict(model="tiny", input="Weather in Paris?", tools=[WEATHER], tool_choice="required",
                parallel_tool_calls=False, max_output_tokens=1500, temperature=0.7,
                extra_body={"seed": 5, "logit_bias": tool_bias}, **kw)


def test_string_input(client, server, ascii_bias):
    r = client.responses.create(**_text_request(ascii_bias))
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert (r.incomplete_details is not None) == (r.status == "incomplete")
    message = r.output[0]
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert r.output_text == message.content[0].text and r.output_text
    assert 1 <= r.usage.output_tokens <= 12 and r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    # the body as sent validates against the client's type, not only its lenient reading
    raw = _post(server, "/v1/responses", {"input": "Hello", "max_output_tokens": 3})
    assert Response.model_validate(raw.json()).usage.output_tokens <= 3
    assert _post(server, "/responses", {"input": "Hello", "max_output_tokens": 3}).status_code == 200


def test_same_result_as_chat_completions(client, ascii_bias):
    """Items, instructions and the chat request they stand for give the same prompt and,
    greedy, the same text."""
    items = [{"role": "user", "content": "Hi"},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "More"},
                                                             {"type": "input_text", "text": " please"}]}]
    r = client.responses.create(model="tiny", input=items, instructions="Be brief", max_output_tokens=8,
                                temperature=0, extra_body={"logit_bias": ascii_bias})
    chat = client.chat.completions.create(
        model="tiny", max_tokens=8, temperature=0, logit_bias=ascii_bias,
        messages=[{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": [{"type": "text", "text": "More"}, {"type": "text", "text": " please"}]}])
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert r.usage.output_tokens == chat.usage.completion_tokens
    assert r.output_text == chat.choices[0].message.content and r.output_text
    assert r.instructions == "Be brief"
    without = client.responses.input_tokens.count(model="tiny", input=items)
    assert without.input_tokens < r.usage.input_tokens


def test_reasoning_items_go_back_as_reasoning_content(client):
    items = [{"role": "user", "content": "Hi"},
             {"type": "reasoning", "id": "rs_1", "summary": [],
              "content": [{"type": "reasoning_text", "text": "They greet me."}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
             {"role": "user", "content": "More"}]
    counted = client.responses.input_tokens.count(model="tiny", input=items)
    chat = client.chat.completions.create(
        model="tiny", max_tokens=1, temperature=0,
        messages=[{"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello", "reasoning_content": "They greet me."},
                  {"role": "user", "content": "More"}])
    assert counted.input_tokens == chat.usage.prompt_tokens


def test_max_output_tokens_makes_it_incomplete(client, app_model):
    bias = {str(k): -100 for k in ascii_only(app_model)}   # no end of text: only the limit stops it
    r = client.responses.create(model="tiny", input="Hello", max_output_tokens=5, temperature=0.7,
                                extra_body={"seed": 1, "logit_bias": bias})
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 5 and r.max_output_tokens == 5
    assert r.output[-1].status == "incomplete"


def _types(events):
    return [data["type"] for _, data in events]


def test_stream_events(client, server, ascii_bias):
    whole = client.responses.create(**_text_request(ascii_bias))
    request = _text_request(ascii_bias)
    body = {"input": "Hello", "max_output_tokens": 12, "temperature": 0.7, **request["extra_body"]}
    events = _raw_events(server, body)
    types = _types(events)
    n_deltas = types.count("response.output_text.delta")
    final = "response.completed" if whole.status == "completed" else "response.incomplete"
    assert types == (["response.created", "response.in_progress", "response.output_item.added",
                      "response.content_part.added"] + ["response.output_text.delta"] * n_deltas
                     + ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                        final])
    assert n_deltas >= 1
    assert [name for name, _ in events] == types
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    for _, data in events:
        EVENTS.validate_python(data)   # every event fits the client's types
    item_id = events[2][1]["item"]["id"]
    assert all(data["item_id"] == item_id for _, data in events[3:-2])
    text = "".join(data["delta"] for _, data in events if data["type"] == "response.output_text.delta")
    assert text == whole.output_text
    assert events[-4][1]["text"] == text and events[-2][1]["item"]["content"][0]["text"] == text
    last = Response.model_validate(events[-1][1]["response"])
    assert last.output_text == text and last.id == events[0][1]["response"]["id"]
    assert last.usage.output_tokens == whole.usage.output_tokens and last.status == whole.status
    # the client reads the same stream into its own event types
    streamed = list(client.responses.create(stream=True, **_text_request(ascii_bias)))
    assert [e.type for e in streamed] == types
    assert streamed[-1].response.output_text == whole.output_text


def test_forced_function_call(client, tool_bias):
    r = client.responses.create(**_tool_request(tool_bias))
    assert r.status == "completed"
    calls = [item for item in r.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    assert calls[0].id.startswith("fc_") and calls[0].status == "completed"
    jsonschema.validate(json.loads(calls[0].arguments), CITY)
    assert r.tools[0].name == "get_weather" and r.tool_choice == "required"


def test_named_function_call(client, tool_bias):
    r = client.responses.create(**dict(_tool_request(tool_bias), tools=[TIME, WEATHER],
                                       tool_choice={"type": "function", "name": "get_weather"}))
    calls = [item for item in r.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"]
    jsonschema.validate(json.loads(calls[0].arguments), CITY)


def test_streamed_function_call(client, server, tool_bias):
    whole = client.responses.create(**_tool_request(tool_bias))
    request = _tool_request(tool_bias)
    body = {k: v for k, v in request.items() if k != "extra_body"} | request["extra_body"]
    events = _raw_events(server, body)
    for _, data in events:
        EVENTS.validate_python(data)
    types = _types(events)
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-3:] == ["response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"]
    added = events[2][1]["item"]
    assert added["type"] == "function_call" and added["name"] == "get_weather" and added["arguments"] == ""
    deltas = [data for _, data in events if data["type"] == "response.function_call_arguments.delta"]
    assert deltas and all(d["item_id"] == added["id"] and d["output_index"] == 0 for d in deltas)
    arguments = "".join(d["delta"] for d in deltas)
    assert events[-3][1]["arguments"] == arguments
    final = Response.model_validate(events[-1][1]["response"])
    assert final.output[0].arguments == arguments and final.output[0].call_id == added["call_id"]
    expected = [item for item in whole.output if item.type == "function_call"][0]
    assert json.loads(arguments) == json.loads(expected.arguments)


def test_function_call_output_round_trip(client, ascii_bias):
    items = [{"role": "user", "content": "Weather in Paris?"},
             {"type": "function_call", "call_id": CALL_ID, "name": "get_weather", "arguments": '{"city": "Paris"}'},
             {"type": "function_call_output", "call_id": CALL_ID, "output": "sunny, 21 C"}]
    r = client.responses.create(model="tiny", input=items, tools=[WEATHER], max_output_tokens=4, temperature=0,
                                extra_body={"logit_bias": ascii_bias})
    chat = client.chat.completions.create(
        model="tiny", max_tokens=4, temperature=0, logit_bias=ascii_bias,
        tools=[{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}],
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": CALL_ID, "type": "function",
                       "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                  {"role": "tool", "tool_call_id": CALL_ID, "content": "sunny, 21 C"}])
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert r.output_text == (chat.choices[0].message.content or "")
    # the tool's output is in the prompt
    shorter = client.responses.input_tokens.count(model="tiny", input=items[:2] + [dict(items[2], output="x")],
                                                  tools=[WEATHER])
    assert shorter.input_tokens < r.usage.input_tokens


def test_previous_output_items_go_back_as_input(client, ascii_bias):
    first = client.responses.create(model="tiny", input="Hi", max_output_tokens=4, temperature=0,
                                    extra_body={"logit_bias": ascii_bias})
    r = client.responses.create(model="tiny", input=[{"role": "user", "content": "Hi"}, *first.output,
                                                     {"role": "user", "content": "And?"}],
                                max_output_tokens=2, temperature=0)
    chat = client.chat.completions.create(
        model="tiny", max_tokens=2, temperature=0,
        messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": first.output_text},
                  {"role": "user", "content": "And?"}])
    assert r.usage.input_tokens == chat.usage.prompt_tokens


def test_json_schema_format(client, ascii_bias):
    fmt = {"type": "json_schema", "name": "digit", "schema": DIGIT, "strict": True}
    r = client.responses.create(model="tiny", input="A digit as JSON", text={"format": fmt}, max_output_tokens=200,
                                temperature=0.7, extra_body={"seed": 3, "logit_bias": ascii_bias})
    assert r.status == "completed"
    jsonschema.validate(json.loads(r.output_text), DIGIT)
    assert r.text.format.type == "json_schema" and r.text.format.name == "digit"

    class Digit(pydantic.BaseModel):
        n: int = pydantic.Field(ge=0, le=9)

    parsed = client.responses.parse(model="tiny", input="A digit", text_format=Digit, max_output_tokens=200,
                                    temperature=0.7, extra_body={"seed": 4, "logit_bias": ascii_bias})
    assert isinstance(parsed.output_parsed, Digit)


def test_json_object_format(client, ascii_bias):
    r = client.responses.create(model="tiny", input="JSON please", text={"format": {"type": "json_object"}},
                                max_output_tokens=800, temperature=0.7,
                                extra_body={"seed": 2, "logit_bias": ascii_bias})
    assert r.status == "completed" and isinstance(json.loads(r.output_text), dict)


def test_input_tokens(client, server, tool_bias):
    request = _tool_request(tool_bias, instructions="Use the tools")
    r = client.responses.create(**request)
    counted = client.responses.input_tokens.count(model="tiny", input=request["input"], tools=[WEATHER],
                                                  tool_choice="required", parallel_tool_calls=False,
                                                  instructions="Use the tools")
    assert counted.object == "response.input_tokens" and counted.input_tokens == r.usage.input_tokens
    body = {"input": request["input"], "tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False,
            "instructions": "Use the tools"}
    assert _post(server, "/responses/input_tokens", body).json() == {"object": "response.input_tokens",
                                                                     "input_tokens": r.usage.input_tokens}


def test_input_tokens_counts_a_prompt_too_long_to_run(client):
    long_input = "ab" * N_CTX
    counted = client.responses.input_tokens.count(model="tiny", input=long_input)
    assert counted.input_tokens > N_CTX
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="tiny", input=long_input, max_output_tokens=2)
    assert err.value.code == "context_length_exceeded"


def test_fields_without_effect_are_accepted(client):
    r = client.responses.create(model="tiny", input="Hi", max_output_tokens=2, store=False, metadata={"k": "v"},
                                user="u1", service_tier="auto", stream_options=None)
    assert r.metadata == {"k": "v"} and r.store is False


@pytest.mark.parametrize("body, named", [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"reasoning": {"effort": "high"}}, "reasoning"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"tools": [{"type": "web_search"}]}, "'web_search'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "flat"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}}, "'nope'"),
    ({"tools": [WEATHER], "tool_choice": {"type": "web_search_preview"}}, "web_search_preview"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
     "input[0].content[0]: input_image"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input_file"),
    ({"input": [{"type": "function_call", "name": "get_weather", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": ["Hi"]}, "input[0]"),
    ({"input": []}, "input"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "'web_search_call'"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item references"),
    ({"input": [{"role": "user", "content": "x", "mood": "happy"}]}, "mood"),
    ({"input": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}]}]}, "reasoning item"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 7}}}}, "schema"),
    ({"text": {"format": {"type": "xml"}}}, "'xml'"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"top_k": -1}, "top_k"),
])
def test_bad_requests_are_400_naming_the_problem(client, server, body, named):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="tiny", input="x", max_output_tokens=2, extra_body=body)
    assert named in err.value.message
    assert server.health()["status"] == "ok"


def test_bad_streamed_request_is_400_before_the_stream(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="tiny", input="x", stream=True, extra_body={"previous_response_id": "r"})
    assert "previous_response_id" in err.value.message


def test_every_kind_of_item_streams_in_order():
    """A chat stream with reasoning, text and two calls (more than the tiny model writes)
    becomes the items of the whole response, each closed before the next opens."""
    from selfextend_gguf.apps import openai_responses, responses as shapes

    deltas = [{"role": "assistant"}, {"reasoning_content": "Think"}, {"reasoning_content": "ing"},
              {"content": "Hel"}, {"content": "lo"},
              {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                               "function": {"name": "f", "arguments": '{"a"'}}]},
              {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
              {"tool_calls": [{"index": 1, "id": "c2", "type": "function", "function": {"name": "g"}}]},
              {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}]
    last = shapes.chat_chunk("x", "m", {}, "tool_calls")
    last["usage"] = shapes.usage(7, 9)
    chunks = (c for c in [shapes.chat_chunk("x", "m", d, None) for d in deltas] + [last])
    envelope = openai_responses.Envelope({"input": "x"}, 0.2, 0.95, True)
    events = [e["data"] for e in openai_responses.events(chunks, envelope)]
    for data in events:
        EVENTS.validate_python(data)
    item = ["response.output_item.added", "response.content_part.added"]
    done = ["response.content_part.done", "response.output_item.done"]
    args = "response.function_call_arguments"
    assert [e["type"] for e in events] == (
        ["response.created", "response.in_progress"]
        + item + ["response.reasoning_text.delta"] * 2 + ["response.reasoning_text.done"] + done
        + item + ["response.output_text.delta"] * 2 + ["response.output_text.done"] + done
        + ["response.output_item.added", f"{args}.delta", f"{args}.delta", f"{args}.done", "response.output_item.done"]
        + ["response.output_item.added", f"{args}.delta", f"{args}.done", "response.output_item.done"]
        + ["response.completed"])
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    streamed = Response.model_validate(events[-1]["response"])
    message = {"role": "assistant", "reasoning_content": "Thinking", "content": "Hello", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}
    whole = Response.model_validate(openai_responses.response(
        shapes.chat_completion("x", "m", message, "tool_calls", shapes.usage(7, 9)), envelope))
    for r in (streamed, whole):
        assert [i.type for i in r.output] == ["reasoning", "message", "function_call", "function_call"]
        assert r.output[0].content[0].text == "Thinking" and r.output_text == "Hello"
        calls = [(i.call_id, i.name, i.arguments) for i in r.output[2:]]
        assert calls == [("c1", "f", '{"a": 1}'), ("c2", "g", "{}")]
        assert r.status == "completed" and r.usage.total_tokens == 16
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2, 3]
