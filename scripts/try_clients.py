"""The client libraries apps are written with, against a running `selfextend-gguf serve`:
each call is tried once and reported as worked / failed (with the error). Not a test:
the libraries are not test dependencies, and a small model may answer badly where the
protocol works; the report says which.

    pip install openai anthropic instructor langchain-openai "pydantic-ai-slim[openai]" \\
        llama-index-llms-openai-like
    selfextend-gguf serve --port 8080 &
    python scripts/try_clients.py http://127.0.0.1:8080
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Callable, List, Tuple

import pydantic

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
QUESTION = "What is the weather in Paris?"


class Weather(pydantic.BaseModel):
    """The weather asked for."""
    city: str = pydantic.Field(max_length=40)
    celsius: int = pydantic.Field(ge=-50, le=60)


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"18 C in {city}"


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def openai_client():
    import openai
    return openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0, timeout=600)


def openai_chat():
    out = openai_client().chat.completions.create(model="local", messages=[{"role": "user", "content": "Hello"}],
                                                  max_tokens=32)
    return out.choices[0].message.content


def openai_stream():
    chunks = openai_client().chat.completions.create(model="local", max_tokens=32, stream=True,
                                                     messages=[{"role": "user", "content": "Hello"}])
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def openai_parse():
    out = openai_client().beta.chat.completions.parse(model="local", response_format=Weather, max_tokens=128,
                                                      messages=[{"role": "user", "content": QUESTION}])
    return out.choices[0].message.parsed


def openai_forced_tool():
    out = openai_client().chat.completions.create(
        model="local", messages=[{"role": "user", "content": QUESTION}], tools=[WEATHER_TOOL], max_tokens=128,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = out.choices[0].message.tool_calls[0].function
    return call.name, json.loads(call.arguments)


def openai_responses():
    out = openai_client().responses.create(model="local", input="Hello", max_output_tokens=32)
    return out.output_text


def openai_responses_tool():
    out = openai_client().responses.create(model="local", input=QUESTION, max_output_tokens=128,
                                           tools=[{"type": "function", **WEATHER_TOOL["function"]}],
                                           tool_choice="required")
    return [(i.name, i.arguments) for i in out.output if i.type == "function_call"]


def anthropic_message():
    import anthropic
    client = anthropic.Anthropic(base_url=URL, api_key="unused", max_retries=0, timeout=600)
    out = client.messages.create(model="local", max_tokens=32, messages=[{"role": "user", "content": "Hello"}])
    return out.content[0].text


def anthropic_tool():
    import anthropic
    client = anthropic.Anthropic(base_url=URL, api_key="unused", max_retries=0, timeout=600)
    out = client.messages.create(model="local", max_tokens=128, messages=[{"role": "user", "content": QUESTION}],
                                 tools=[{"name": "get_weather", "description": "Current weather in a city",
                                         "input_schema": WEATHER_TOOL["function"]["parameters"]}],
                                 tool_choice={"type": "tool", "name": "get_weather"})
    return [(b.name, b.input) for b in out.content if b.type == "tool_use"]


def instructor_tools():
    import instructor
    client = instructor.from_openai(openai_client(), mode=instructor.Mode.TOOLS)
    return client.chat.completions.create(model="local", response_model=Weather, max_tokens=128, max_retries=0,
                                          messages=[{"role": "user", "content": QUESTION}])


def instructor_json_schema():
    import instructor
    client = instructor.from_openai(openai_client(), mode=instructor.Mode.JSON_SCHEMA)
    return client.chat.completions.create(model="local", response_model=Weather, max_tokens=128, max_retries=0,
                                          messages=[{"role": "user", "content": QUESTION}])


def _langchain():
    from langchain_openai import ChatOpenAI
    return ChatOpenAI(base_url=URL + "/v1", api_key="unused", model="local", max_tokens=128, max_retries=0)


def langchain_invoke():
    return _langchain().invoke("Hello").content


def langchain_structured_function_calling():
    return _langchain().with_structured_output(Weather, method="function_calling").invoke(QUESTION)


def langchain_structured_json_schema():
    return _langchain().with_structured_output(Weather, method="json_schema").invoke(QUESTION)


def langchain_bind_tools():
    out = _langchain().bind_tools([get_weather], tool_choice="get_weather").invoke(QUESTION)
    return out.tool_calls


def pydantic_ai_output():
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    model = OpenAIChatModel("local", provider=OpenAIProvider(base_url=URL + "/v1", api_key="unused"))
    return Agent(model, output_type=Weather, retries=0).run_sync(QUESTION).output


def llama_index_chat():
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike
    llm = OpenAILike(model="local", api_base=URL + "/v1", api_key="unused", is_chat_model=True, max_tokens=32)
    return str(llm.chat([ChatMessage(role="user", content="Hello")]))


CALLS: List[Tuple[str, Callable]] = [
    ("openai chat.completions", openai_chat), ("openai chat stream", openai_stream),
    ("openai beta.chat.completions.parse", openai_parse), ("openai forced tool", openai_forced_tool),
    ("openai responses.create", openai_responses), ("openai responses tool", openai_responses_tool),
    ("anthropic messages.create", anthropic_message), ("anthropic forced tool", anthropic_tool),
    ("instructor TOOLS", instructor_tools), ("instructor JSON_SCHEMA", instructor_json_schema),
    ("langchain invoke", langchain_invoke),
    ("langchain with_structured_output(function_calling)", langchain_structured_function_calling),
    ("langchain with_structured_output(json_schema)", langchain_structured_json_schema),
    ("langchain bind_tools(tool_choice=...)", langchain_bind_tools),
    ("pydantic-ai Agent(output_type=...)", pydantic_ai_output), ("llama-index OpenAILike chat", llama_index_chat),
]


def main() -> int:
    worked = 0
    for name, call in CALLS:
        try:
            result = call()
            ok = result is not None and result != [] and result != ""
            worked += ok
            print(f"| {name} | {'worked' if ok else 'EMPTY'} | {str(result)[:100]!r} |", flush=True)
        except ImportError as err:
            print(f"| {name} | not installed | {err} |", flush=True)
        except Exception as err:  # noqa: BLE001 - reported
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            print(f"| {name} | FAILED | {last[:200]} |", flush=True)
    print(f"{worked} of {len(CALLS)} worked")
    return 0 if worked == len(CALLS) else 1


if __name__ == "__main__":
    sys.exit(main())
