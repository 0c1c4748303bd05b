"""The Anthropic Messages API over the one chat path, as llama-server runs it: a Messages
request becomes OpenAI chat messages, tools and tool_choice for create_chat_completion,
and the chat result (whole, or its chunk stream) becomes Anthropic's message (or its
event stream). What the conversion cannot carry (images, documents, server tools, ...)
is a ValueError that names it, never dropped; a tool_result marked is_error reaches the
model as its content prefixed with "Error: " (templates have no error flag).

Two places differ from llama-server on purpose: a stop on one of stop_sequences is
stop_reason "stop_sequence" (Anthropic's value; llama-server says "end_turn"), and a
tool_choice naming a tool offers that tool alone (llama-server offers them all)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

# keys a block may carry besides those it needs; cache_control changes nothing here
# (the prompt cache is automatic)
_NO_EFFECT = {"cache_control"}

_BLOCK_KEYS = {
    "text": {"type", "text", "citations"},
    "tool_use": {"type", "id", "name", "input"},
    "tool_result": {"type", "tool_use_id", "content", "is_error"},
    "thinking": {"type", "thinking", "signature"},
}

_TOOL_KEYS = {"name", "description", "input_schema", "type"}

_TOOL_CHOICES = ("auto", "any", "tool", "none")


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------- request

def _keys(block: Mapping[str, Any], allowed: set, where: str) -> None:
    unknown = sorted(k for k in block if k not in allowed and k not in _NO_EFFECT)
    if unknown:
        raise ValueError(f"{where}: unsupported field(s) {', '.join(unknown)}")


def _block(block: Any, where: str, kinds: Sequence[str]) -> Mapping[str, Any]:
    """A content block of one of kinds, its fields checked."""
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        raise ValueError(f"{where} must be a content block: an object with a 'type'")
    kind = block["type"]
    if kind not in kinds:
        why = (" (images and documents need a multimodal projector, which this server does not load)"
               if kind in ("image", "document") else "")
        raise ValueError(f"{where}: content blocks of type {kind!r} are not supported here{why}; "
                         f"supported: {', '.join(kinds)}")
    _keys(block, _BLOCK_KEYS[kind], where)
    return block


def _text(block: Mapping[str, Any], where: str) -> str:
    if not isinstance(block.get("text"), str):
        raise ValueError(f"{where}.text must be a string")
    if block.get("citations"):
        raise ValueError(f"{where}.citations: citations are not supported")
    return block["text"]


def _text_parts(content: Any, where: str) -> Any:
    """A string, or text blocks as OpenAI text parts (the template joins them as it joins
    an OpenAI message's parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(f"{where} must be a string or a list of text blocks")
    return [{"type": "text", "text": _text(_block(b, f"{where}[{j}]", ("text",)), f"{where}[{j}]")}
            for j, b in enumerate(content)]


def _tool_call(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) or not block["name"]:
        raise ValueError(f"{where}: a tool_use block needs a string 'id' and 'name'")
    if not isinstance(block.get("input"), Mapping):
        raise ValueError(f"{where}.input must be an object (the tool's arguments)")
    return {"id": block["id"], "type": "function",
            "function": {"name": block["name"], "arguments": json.dumps(block["input"])}}


def _tool_message(block: Mapping[str, Any], where: str) -> Dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise ValueError(f"{where}: a tool_result block needs a string 'tool_use_id'")
    content = block.get("content")
    content = "" if content is None else _text_parts(content, f"{where}.content")
    if block.get("is_error"):
        # chat templates have no error flag: the model reads it in the result's text
        text = content if isinstance(content, str) else "".join(part["text"] for part in content)
        content = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}


def _user_messages(content: List[Any], where: str) -> List[Dict[str, Any]]:
    """A user turn: its text as user messages and its tool results as tool messages, in
    the order of its blocks."""
    out: List[Dict[str, Any]] = []
    for j, raw in enumerate(content):
        at = f"{where}[{j}]"
        block = _block(raw, at, ("text", "tool_result"))
        if block["type"] == "tool_result":
            out.append(_tool_message(block, at))
            continue
        part = {"type": "text", "text": _text(block, at)}
        if out and out[-1]["role"] == "user":
            out[-1]["content"].append(part)
        else:
            out.append({"role": "user", "content": [part]})
    return out


def _assistant_message(content: List[Any], where: str) -> Dict[str, Any]:
    """An assistant turn: text, tool calls, and earlier thinking as reasoning_content."""
    parts, calls, thinking = [], [], []
    for j, raw in enumerate(content):
        at = f"{where}[{j}]"
        block = _block(raw, at, ("text", "tool_use", "thinking"))
        if block["type"] == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif block["type"] == "tool_use":
            calls.append(_tool_call(block, at))
        else:
            if not isinstance(block.get("thinking"), str):
                raise ValueError(f"{at}.thinking must be a string")
            thinking.append(block["thinking"])
    message: Dict[str, Any] = {"role": "assistant", "content": parts or ""}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    return message


def chat_messages(messages: Any, system: Any = None) -> List[Dict[str, Any]]:
    """Anthropic's system and messages as OpenAI chat messages."""
    out: List[Dict[str, Any]] = []
    if system is not None:
        out.append({"role": "system", "content": _text_parts(system, "system")})
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise ValueError(f"{where} must be an object with 'role' and 'content'")
        _keys(message, {"role", "content"}, where)
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise ValueError(f"{where}.role must be 'user' or 'assistant', got {role!r}")
        if isinstance(content, list) and not content:
            raise ValueError(f"{where}.content must not be empty")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif not isinstance(content, list):
            raise ValueError(f"{where}.content must be a string or a list of content blocks")
        elif role == "user":
            out.extend(_user_messages(content, f"{where}.content"))
        else:
            out.append(_assistant_message(content, f"{where}.content"))
    if messages[-1].get("role") == "assistant":
        raise ValueError("the last message is the assistant's: continuing a prefilled assistant turn is not "
                         "supported; end with a user message")
    return out


def chat_tools(tools: Any) -> Optional[List[Dict[str, Any]]]:
    """Anthropic's client tools ({name, description, input_schema}) as OpenAI function tools."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise ValueError("tools must be a list of {'name', 'description', 'input_schema'} objects")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, Mapping):
            raise ValueError(f"{where} must be an object")
        if tool.get("type", "custom") not in ("custom", None):
            raise ValueError(f"{where}: the server tool {tool['type']!r} is not supported; only client tools "
                             f"({{'name', 'description', 'input_schema'}}) are")
        _keys(tool, _TOOL_KEYS, where)
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise ValueError(f"{where}.name must be a non-empty string")
        if not isinstance(tool.get("input_schema"), Mapping):
            raise ValueError(f"{where}.input_schema must be a JSON schema object")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise ValueError(f"{where}.description must be a string")
        function = {"name": tool["name"], "parameters": dict(tool["input_schema"])}
        if description is not None:
            function["description"] = description
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(tool_choice: Any, tools: Optional[List[Dict[str, Any]]]) -> Tuple[Any, Optional[bool]]:
    """Anthropic's tool_choice as (OpenAI tool_choice, parallel_tool_calls): "any" is
    "required", "tool" a named function; disable_parallel_tool_use turns parallel calls off."""
    if tool_choice is None:
        return None, None
    if not isinstance(tool_choice, Mapping) or tool_choice.get("type") not in _TOOL_CHOICES:
        raise ValueError(f"tool_choice must be {{'type': ...}} with a type of {', '.join(_TOOL_CHOICES)}")
    kind = tool_choice["type"]
    allowed = {"type"} | ({"name"} if kind == "tool" else set())
    _keys(tool_choice, allowed | ({"disable_parallel_tool_use"} if kind != "none" else set()), "tool_choice")
    disable = tool_choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise ValueError("tool_choice.disable_parallel_tool_use must be a boolean")
    parallel = None if disable is None else not disable
    names = [t["function"]["name"] for t in tools or []]
    if kind in ("any", "tool") and not names:
        raise ValueError(f"tool_choice {{'type': {kind!r}}} needs tools")
    if kind == "auto":
        return "auto", parallel
    if kind == "none":
        return "none", None
    if kind == "any":
        return "required", parallel
    name = tool_choice.get("name")
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"tool_choice names the tool {name!r}, which is not in tools (they are: "
                         f"{', '.join(map(repr, names))})")
    return {"type": "function", "function": {"name": name}}, parallel


def chat_request(messages: Any, system: Any = None, tools: Any = None,
                 tool_choice: Any = None) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """(messages, keyword arguments of create_chat_completion) for the conversation part
    of a Messages request; the caller adds the sampling settings."""
    chat_tools_ = chat_tools(tools)
    choice, parallel = chat_tool_choice(tool_choice, chat_tools_)
    kwargs = dict(tools=chat_tools_, tool_choice=choice, parallel_tool_calls=parallel, functions=None,
                  function_call=None, response_format=None, grammar=None)
    return chat_messages(messages, system), kwargs


# ---------------------------------------------------------------------------- response

def _stop(finish_reason: Optional[str], tokens: List[bytes],
          stop_sequences: Optional[Sequence[str]]) -> Tuple[str, Optional[str]]:
    """(stop_reason, stop_sequence). Which stop sequence ended the text is read from the
    generated tokens (the chat result's log-probabilities carry their bytes, the stop
    sequence included, which the text leaves out)."""
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason == "tool_calls":
        return "tool_use", None
    text = b"".join(tokens).decode("utf-8", errors="replace")
    found = [(text.find(s), len(s), s) for s in stop_sequences or () if s and s in text]
    if found:
        return "stop_sequence", min(found)[2]
    return "end_turn", None


def _token_bytes(logprobs: Optional[Mapping[str, Any]]) -> List[bytes]:
    return [bytes(item["bytes"]) for item in (logprobs or {}).get("content") or ()]


def _tool_input(arguments: str) -> Dict[str, Any]:
    """A tool call's arguments as Anthropic's input object ({} when they are not one, as
    when max_tokens cut them short)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message(result: Mapping[str, Any], model: str, stop_sequences: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """A whole chat completion as an Anthropic message."""
    choice = result["choices"][0]
    chat = choice["message"]
    content: List[Dict[str, Any]] = []
    if chat.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": chat["reasoning_content"], "signature": ""})
    if chat.get("content"):
        content.append({"type": "text", "text": chat["content"]})
    for call in chat.get("tool_calls") or ():
        content.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                        "input": _tool_input(call["function"]["arguments"])})
    stop_reason, stop_sequence = _stop(choice["finish_reason"], _token_bytes(choice.get("logprobs")),
                                       stop_sequences)
    usage = result["usage"]
    return {"id": new_message_id(), "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}}


def _event(name: str, **data: Any) -> Dict[str, Any]:
    return {"event": name, "data": {"type": name, **data}}


class _Blocks:
    """The content blocks of a streamed message, numbered in the order they start."""

    def __init__(self):
        self.index: Dict[Any, int] = {}

    def delta(self, key: Any, start: Dict[str, Any], delta: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        if key not in self.index:
            self.index[key] = len(self.index)
            yield _event("content_block_start", index=self.index[key], content_block=start)
        if delta:
            yield _event("content_block_delta", index=self.index[key], delta=delta)

    def stops(self) -> Iterator[Dict[str, Any]]:
        for key, index in self.index.items():
            if key == "thinking":   # Anthropic's clients expect a signature before a thinking block ends
                yield _event("content_block_delta", index=index, delta={"type": "signature_delta", "signature": ""})
            yield _event("content_block_stop", index=index)


def stream_events(chunks: Iterator[Mapping[str, Any]], model: str, input_tokens: int,
                  stop_sequences: Optional[Sequence[str]] = None) -> Iterator[Dict[str, Any]]:
    """A chat chunk stream as Anthropic's events ({"event": name, "data": {...}}), in
    llama-server's order: message_start, each block's start and deltas, the stops of all
    blocks, message_delta (stop_reason, output tokens), message_stop."""
    blocks = _Blocks()
    tokens: List[bytes] = []
    finish_reason, output_tokens = None, 0
    try:
        yield _event("message_start", message={
            "id": new_message_id(), "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 0}})
        for chunk in chunks:
            if chunk.get("usage"):
                output_tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk["choices"]:
                tokens += _token_bytes(choice.get("logprobs"))
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice.get("delta") or {}
                if delta.get("reasoning_content"):
                    yield from blocks.delta("thinking", {"type": "thinking", "thinking": "", "signature": ""},
                                            {"type": "thinking_delta", "thinking": delta["reasoning_content"]})
                if delta.get("content"):
                    yield from blocks.delta("text", {"type": "text", "text": ""},
                                            {"type": "text_delta", "text": delta["content"]})
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    start = {"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
                             "input": {}}
                    arguments = function.get("arguments")
                    yield from blocks.delta(("tool_use", call["index"]), start,
                                            {"type": "input_json_delta", "partial_json": arguments}
                                            if arguments else {})
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    yield from blocks.stops()
    stop_reason, stop_sequence = _stop(finish_reason, tokens, stop_sequences)
    yield _event("message_delta", delta={"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                 usage={"output_tokens": output_tokens})
    yield _event("message_stop")
