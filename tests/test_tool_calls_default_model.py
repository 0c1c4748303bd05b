"""Forced tool calls on the default model, SmolLM2-135M-Instruct, for real: with its own
template (ChatML without tools: the generic JSON envelope) and four tool templates of
four families, a named function or "required" gives a call from the answer's first
token, streamed and not, whose arguments satisfy the tool's schema."""

import json

import pytest

import chat_templates as ct
from selfextend_gguf import Llama

pytestmark = pytest.mark.real_model
jsonschema = pytest.importorskip("jsonschema")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
STOCK = {"type": "function", "function": {
    "name": "get_stock_price", "description": "Latest price of a stock",
    "parameters": {"type": "object", "properties": {"ticker": {"type": "string", "maxLength": 8}},
                   "required": ["ticker"]}}}
QUESTION = [{"role": "user", "content": "Tell me a story about a dragon."}]   # nothing to call for

# Mistral Nemo's calls carry a generated id that the 135M model never ends: Mistral
# Small 3.2's format (no id) stands for the family
TEMPLATES = [None, ct.HERMES, ct.LLAMA_3_1, ct.MISTRAL_SMALL_3_2, ct.GRANITE_4_0]


@pytest.fixture(scope="module", params=TEMPLATES, ids=lambda t: t or "own-template")
def llm(request):
    return Llama(n_ctx=4096, chat_template=ct.template(request.param) if request.param else None)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_forced_call_on_the_default_model(llm, choice, stream):
    out = llm.create_chat_completion(QUESTION, tools=[WEATHER, STOCK], tool_choice=choice, max_tokens=160,
                                     temperature=0, stream=stream, parallel_tool_calls=False)
    if stream:
        content, name, arguments, finish = "", "", "", None
        for chunk in out:
            delta = chunk["choices"][0]["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                name += (call.get("function") or {}).get("name") or ""
                arguments += (call.get("function") or {}).get("arguments") or ""
            finish = chunk["choices"][0]["finish_reason"] or finish
    else:
        message = out["choices"][0]["message"]
        content, finish = message.get("content") or "", out["choices"][0]["finish_reason"]
        [call] = message["tool_calls"]
        name, arguments = call["function"]["name"], call["function"]["arguments"]
    assert finish == "tool_calls" and content == ""
    assert name in ("get_weather", "get_stock_price")
    if isinstance(choice, dict):
        assert name == "get_weather"
    schema = (WEATHER if name == "get_weather" else STOCK)["function"]["parameters"]
    jsonschema.validate(json.loads(arguments), schema)
