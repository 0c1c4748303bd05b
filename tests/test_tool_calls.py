"""Tool calls by llama.cpp's common chat, for four templates of three families
(Llama 3.x JSON calls, Hermes/Qwen <tool_call> tags, Mistral [TOOL_CALLS]), on a tiny
random model whose vocabulary has the families' markers as special tokens.

A random model never decides to call a tool by itself, so a logits processor starts its
answer with the family's call opener (what a real model does when it calls); from there
llama.cpp's grammar (lazily triggered with tool_choice="auto") writes the call and the
family's parser reads it back into message.tool_calls."""

import json

import numpy as np
import pytest

import chat_templates as ct
from app_models import non_ascii_ban, write_app_model
from selfextend_gguf import Llama
from tiny_models import N_SPECIAL

N_CTX = 4096   # beyond the trained 512: Self-Extend is on

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}}}

# the tokens a model of each family starts a call with
OPENERS = {ct.LLAMA_3_1: ["{"], ct.HERMES: ["<tool_call>", "\n"], ct.QWEN_2_5: ["<tool_call>", "\n"],
           ct.MISTRAL_NEMO: ["[TOOL_CALLS]"]}


@pytest.fixture(scope="module")
def app_model(tmp_path_factory):
    return write_app_model(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module", params=list(OPENERS))
def family(request, app_model):
    llm = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2, chat_template=ct.template(request.param))
    assert llm.self_extend is not None
    return request.param, llm


def opener(app_model, name):
    """A logits processor that makes the first generated tokens the call opener."""
    ids = []
    for text in OPENERS[name]:
        ids.append(app_model.config.special_token_id(text) if text in app_model.config.special_tokens
                   else N_SPECIAL + ord(text))
    state = {"n": 0}

    def processor(input_ids, scores):
        i = state["n"]
        state["n"] += 1
        if i < len(ids):
            forced = np.full_like(scores, -1e9)
            forced[ids[i]] = 0.0
            return forced
        return scores
    return processor


def check_call(call, tool=WEATHER):
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == tool["function"]["name"]
    arguments = json.loads(call["function"]["arguments"])
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(arguments, tool["function"]["parameters"])
    return arguments


@pytest.mark.parametrize("tool_choice", ["required", "auto", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_tool_call_parses_into_tool_calls(family, app_model, tool_choice):
    name, llm = family
    if name == ct.LLAMA_3_1 and tool_choice == "auto":
        # llama.cpp gives Llama 3.x no grammar under "auto": the call is whatever the model
        # writes, which a random model never makes valid JSON
        assert llm.chat_formatter.render([{"role": "user", "content": "x"}], tools=[WEATHER]).grammar is None
        return
    # a named function: only it is offered (a random model would pick either tool otherwise)
    tools = [WEATHER, TIME] if isinstance(tool_choice, dict) else [WEATHER]
    out = llm.create_chat_completion(
        [{"role": "user", "content": "Weather in Paris for 3 days?"}], tools=tools, tool_choice=tool_choice,
        parallel_tool_calls=False, max_tokens=400, temperature=0.7, seed=4, logit_bias=non_ascii_ban(app_model),
        logits_processor=opener(app_model, name))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    calls = choice["message"]["tool_calls"]
    assert calls   # llama.cpp's grammars allow more than one call per answer for some families
    for call in calls:
        check_call(call)


def test_streamed_tool_call_equals_the_whole_one(family, app_model):
    name, llm = family
    kwargs = dict(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_tokens=400,
                  temperature=0.7, seed=9, logit_bias=non_ascii_ban(app_model))
    messages = [{"role": "user", "content": "Weather?"}]
    whole = llm.create_chat_completion(messages, logits_processor=opener(app_model, name), **kwargs)
    chunks = list(llm.create_chat_completion(messages, stream=True, logits_processor=opener(app_model, name),
                                             **kwargs))
    name_, arguments, ids = "", "", set()
    for chunk in chunks:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []):
            assert call["index"] == 0
            ids.add(call.get("id"))
            name_ += call.get("function", {}).get("name", "")
            arguments += call.get("function", {}).get("arguments", "")
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert name_ == "get_weather" and len(ids - {None}) == 1
    want = whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == json.loads(want)


def test_a_tool_result_round_trips_into_the_next_prompt(family):
    name, llm = family
    # Mistral's template insists on 9 alphanumeric characters
    call = {"id": "call12345", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 3})}}
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call12345", "content": "sunny, 21 C"}]
    prompt = llm.format_chat(messages)
    assert "sunny, 21 C" in prompt and "Paris" in prompt and "get_weather" in prompt
    out = llm.create_chat_completion(messages, tools=[WEATHER], max_tokens=4, temperature=0)
    assert out["choices"][0]["message"]["role"] == "assistant"


def test_tool_errors_are_clear(family, tiny_llama_512):
    _, llm = family
    with pytest.raises(ValueError, match="not in tools"):
        llm.create_chat_completion([{"role": "user", "content": "x"}], tools=[WEATHER],
                                   tool_choice={"type": "function", "function": {"name": "launch_rocket"}})
    with pytest.raises(ValueError, match="needs tools"):
        llm.create_chat_completion([{"role": "user", "content": "x"}], tool_choice="required")
    with pytest.raises(ValueError, match="grammar cannot be combined with tools"):
        llm.create_chat_completion([{"role": "user", "content": "x"}], tools=[WEATHER], grammar='root ::= "a"')
    plain = Llama(str(tiny_llama_512.path), n_ctx=256, n_threads=2)   # ChatML without tools
    with pytest.raises(ValueError, match="not in tools"):   # the generic envelope checks the same
        plain.create_chat_completion([{"role": "user", "content": "x"}], tools=[WEATHER],
                                     tool_choice={"type": "function", "function": {"name": "launch_rocket"}})


def test_legacy_functions_give_function_call(family, app_model):
    name, llm = family
    out = llm.create_chat_completion(
        [{"role": "user", "content": "Weather?"}], functions=[WEATHER["function"]],
        function_call={"name": "get_weather"}, max_tokens=400, temperature=0.7, seed=2,
        logit_bias=non_ascii_ban(app_model), logits_processor=opener(app_model, name))
    message = out["choices"][0]["message"]
    assert message["function_call"]["name"] == "get_weather"
    json.loads(message["function_call"]["arguments"])
