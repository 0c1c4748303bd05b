"""A forced tool choice always gives a call, on every template: with tool_choice
"required" or a named function the grammar holds the answer from its first token (no
text before the call, so even a random model calls), and the arguments satisfy the
tool's JSON schema. Four tool templates of three families, and the generic JSON envelope
for a template without tools (plain ChatML), on a tiny random model beyond its window."""

import json

import numpy as np
import pytest

import chat_templates as ct
from app_models import non_ascii_ban, write_app_model
from random_schemas import random_schema
from selfextend_gguf import Llama

jsonschema = pytest.importorskip("jsonschema")

N_CTX = 4096   # the Llama 3.1 template writes 2.8k byte tokens; beyond the trained 512: Self-Extend is on

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time",
    "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}}}

# None: the app model's own template, ChatML without tools (the generic envelope)
TEMPLATES = [None, ct.LLAMA_3_1, ct.QWEN_2_5, ct.HERMES, ct.MISTRAL_NEMO]


@pytest.fixture(scope="module")
def app_model(tmp_path_factory):
    return write_app_model(tmp_path_factory.mktemp("forced-tools"))


@pytest.fixture(scope="module", params=TEMPLATES, ids=lambda t: t or "chatml-without-tools")
def llm(request, app_model):
    template = ct.template(request.param) if request.param else None
    llm = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2, chat_template=template)
    assert llm.self_extend is not None
    assert llm.chat_formatter.expresses_tools == (request.param is not None)
    return llm


def _ask(llm, app_model, tools, choice, seed, stream=False, **kw):
    return llm.create_chat_completion(
        [{"role": "user", "content": "What should I do?"}], tools=tools, tool_choice=choice, max_tokens=600,
        temperature=0.8, seed=seed, logit_bias=non_ascii_ban(app_model), stream=stream, **kw)


# what each answer must start with when a call is forced
OPENERS = {None: ("{", "```json"), ct.LLAMA_3_1: ("{",), ct.QWEN_2_5: ("<tool_call>",), ct.HERMES: ("<tool_call>",),
           ct.MISTRAL_NEMO: ("[TOOL_CALLS]",), ct.QWEN_3_CODER: ("<tool_call>", "<function=")}


@pytest.mark.parametrize("template", list(OPENERS), ids=lambda t: t or "chatml-without-tools")
def test_a_forced_answer_opens_a_call_at_once(app_model, template):
    """No text before the call: the answer's first tokens open it, in every format (Qwen3
    Coder's XML calls too, which llama.cpp builds by a handler of their own)."""
    llm = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2,
                chat_template=ct.template(template) if template else None)
    for seed in range(3):
        seen = []   # the ids so far at each step (the answer's special tokens included)
        _ask(llm, app_model, [WEATHER, TIME], "required", seed, parallel_tool_calls=False,
             logits_processor=lambda ids, scores: seen.append(list(ids)) or scores)
        answer = seen[-1][len(seen[0]):]
        text = llm.detokenize(answer, special=True).decode("utf-8", errors="replace")
        assert text.lstrip().startswith(OPENERS[template]), text[:80]


def _schema_of(tools, name):
    return next(t["function"]["parameters"] for t in tools if t["function"]["name"] == name)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}],
                         ids=["required", "named"])
def test_a_forced_choice_always_calls(llm, app_model, choice):
    tools = [WEATHER, TIME]
    for seed in range(3):
        # one call: a random model given parallel calls may go on calling until max_tokens
        out = _ask(llm, app_model, tools, choice, seed, parallel_tool_calls=False)
        choice_ = out["choices"][0]
        message = choice_["message"]
        assert choice_["finish_reason"] == "tool_calls", message
        assert not message.get("content"), "text before the call"
        assert len(message["tool_calls"]) == 1
        for call in message["tool_calls"]:
            name = call["function"]["name"]
            if isinstance(choice, dict):
                assert name == "get_time"
            jsonschema.validate(json.loads(call["function"]["arguments"]), _schema_of(tools, name))


def test_a_streamed_forced_call_equals_the_whole_one(llm, app_model):
    whole = _ask(llm, app_model, [WEATHER], "required", 7, parallel_tool_calls=False)
    whole = whole["choices"][0]["message"]["tool_calls"]
    names, arguments, finish = {}, {}, None
    for chunk in _ask(llm, app_model, [WEATHER], "required", 7, stream=True, parallel_tool_calls=False):
        delta = chunk["choices"][0]["delta"]
        assert not delta.get("content")
        for call in delta.get("tool_calls") or []:
            i = call["index"]
            fn = call.get("function") or {}
            names[i] = names.get(i, "") + (fn.get("name") or "")
            arguments[i] = arguments.get(i, "") + (fn.get("arguments") or "")
        finish = chunk["choices"][0]["finish_reason"] or finish
    assert finish == "tool_calls"
    assert [names[i] for i in sorted(names)] == [c["function"]["name"] for c in whole]
    assert [json.loads(arguments[i]) for i in sorted(arguments)] == \
        [json.loads(c["function"]["arguments"]) for c in whole]


@pytest.mark.parametrize("index", range(6))
def test_random_tool_parameters_give_valid_arguments(llm, app_model, index):
    """The random-schema test of response formats, on tool parameters."""
    rng = np.random.default_rng(2000 + index)
    parameters = random_schema(rng)
    if parameters.get("type") != "object":
        parameters = {"type": "object", "properties": {"value": parameters}, "required": ["value"]}
    tool = {"type": "function", "function": {"name": f"tool_{index}", "parameters": parameters}}
    out = _ask(llm, app_model, [tool], "required", index, parallel_tool_calls=False)
    message = out["choices"][0]["message"]
    assert out["choices"][0]["finish_reason"] == "tool_calls", message
    [call] = message["tool_calls"]
    jsonschema.validate(json.loads(call["function"]["arguments"]), parameters)


def test_a_named_function_is_called_once(llm, app_model):
    """A named function is one call unless parallel calls are asked for (llama_cpp's
    reading of a named tool_choice)."""
    out = _ask(llm, app_model, [WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}}, 11)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in out["choices"][0]["message"]["tool_calls"]] == ["get_time"]


def test_generic_history_round_trips(app_model):
    """A template without tools gets the calls and results of earlier turns in the
    envelope's terms, and the tools in its system message."""
    llm = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2)
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                   "name": "get_weather", "arguments": '{"city": "Oslo", "days": 1}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "4 C, rain"}]
    prompt = llm.chat_formatter.render(history, tools=[WEATHER]).prompt
    assert prompt.count("<|im_start|>system") == 1 and "Be brief." in prompt and '"get_weather"' in prompt
    assert '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}]}' in prompt
    assert '{"tool_response": {"tool_call_id": "c1", "content": "4 C, rain"}}' in prompt
    assert "<|im_start|>tool" not in prompt
    # with tool_choice "none" the history is still written, and the answer is free text
    rendered = llm.chat_formatter.render(history, tools=[WEATHER], tool_choice="none")
    assert rendered.grammar is None and "4 C, rain" in rendered.prompt and "You can call" not in rendered.prompt


def test_generic_auto_answers_text_or_calls(app_model):
    llm = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2)
    rendered = llm.chat_formatter.render([{"role": "user", "content": "x"}], tools=[WEATHER], tool_choice="auto")
    assert rendered.generic and rendered.grammar is not None and not rendered.grammar.lazy
    # the parser reads either branch of the envelope
    for text, expect in [('{"response": "Hello"}', {"content": "Hello"}),
                         ('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}]}',
                          {"name": "get_weather"}),
                         ('{"respo', {"content": '{"respo'})]:
        parser = rendered.parser()
        assert parser.update(text[:5], True) == []     # nothing until the JSON is whole
        parser.update(text[5:], False)
        message = json.loads(parser.message_json())
        if "name" in expect:
            assert message["tool_calls"][0]["function"]["name"] == expect["name"]
            assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Rome", "days": 2}
        else:
            assert message["content"] == expect["content"] and not message.get("tool_calls")


def test_built_in_templates_take_tools_too(app_model):
    """chat_format= names a llama.cpp built-in renderer, which has no tools: the envelope."""
    llm = Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2, chat_format="llama-3")
    out = _ask(llm, app_model, [WEATHER], "required", 3)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    jsonschema.validate(json.loads(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]),
                        WEATHER["function"]["parameters"])
