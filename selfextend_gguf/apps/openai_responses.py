"""OpenAI's Responses API over chat completions, as llama-server serves it: a Responses
request becomes a chat-completions request (messages, tools, response_format), and the
chat result, whole or as its stream of chunks, becomes a response object or the
Responses event stream. Both APIs thus share one generation path.

What would change the result and has no chat counterpart here (stored responses,
reasoning settings, built-in tools, images and files) is refused, never dropped."""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional

# Responses request fields turned into chat fields here (the others pass through)
_CONVERTED = ("input", "instructions", "tools", "tool_choice", "text", "max_output_tokens")
# fields without effect here: stream obfuscation is not done, and max_tool_calls limits
# built-in tools only
_DROPPED = ("stream_options", "max_tool_calls")

# fields that would change the result, with why they are refused; a value equal to the
# default (None, or the one given here) is accepted
_REFUSED = {
    "previous_response_id": ("this server keeps no responses; send the whole conversation as input", None),
    "conversation": ("this server keeps no conversations; send the whole conversation as input", None),
    "prompt": ("this server keeps no prompt templates; send instructions and input", None),
    "reasoning": ("reasoning settings are not implemented; a reasoning model reasons as its chat template "
                  "makes it", None),
    "include": ("no extra output data (logprobs, encrypted reasoning, tool results) is implemented", []),
    "top_logprobs": ("log-probabilities are not implemented on this route; use /v1/chat/completions", None),
    "background": ("background responses need stored responses, which this server does not keep", False),
    "truncation": ("the conversation is never truncated here: a prompt longer than the context is an error",
                   "disabled"),
}

_MEDIA = ("input_image", "input_file", "input_audio")


# ---------------------------------------------------------------------------- request

def chat_request(body: Mapping[str, Any]) -> Dict[str, Any]:
    """The chat-completions request body for a Responses request body (JSON values; unset
    fields absent). Raises ValueError naming what cannot be translated."""
    for name, (why, default) in _REFUSED.items():
        if body.get(name) not in (None, default):
            raise ValueError(f"{name}: {why}")
    options = body.get("stream_options") or {}
    unknown = sorted(set(options) - {"include_obfuscation"})
    if unknown:
        raise ValueError(f"stream_options: unknown option(s) {', '.join(unknown)}")
    chat = {k: v for k, v in body.items() if k not in _CONVERTED + _DROPPED and k not in _REFUSED}
    chat["messages"] = messages(body.get("input"), body.get("instructions"))
    if body.get("tools") is not None:
        chat["tools"] = tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = tool_choice(body["tool_choice"])
    if body.get("text") is not None:
        chat["response_format"] = response_format(body["text"])
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    return chat


def _check_keys(item: Mapping[str, Any], allowed: tuple, where: str) -> None:
    unknown = sorted(k for k, v in item.items() if k not in allowed and v is not None)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _string(item: Mapping[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key} must be a string")
    return value


def _text_parts(content: Any, kinds: tuple, where: str) -> Any:
    """Content (where names it) as chat content: a string stays one, parts become text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError(f"{where} must be a string or a list of content parts")
    parts = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in _MEDIA:
            raise ValueError(f"{at}: {kind} parts need a multimodal projector, which this server does not load; "
                             f"send text only")
        if kind not in kinds:
            raise ValueError(f"{at}: the type must be one of {', '.join(kinds)}, got {kind!r}")
        key = "refusal" if kind == "refusal" else "text"
        _check_keys(part, ("type", key, "annotations", "logprobs"), at)
        parts.append({"type": "text", "text": _string(part, key, at)})
    return parts


def _parts(content: Any) -> List[Dict[str, Any]]:
    if content is None:
        return []
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _assistant(out: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The assistant message that an output item joins: the last message when it is the
    assistant's (one turn's items are one chat message, as llama-server merges them)."""
    if out and out[-1]["role"] == "assistant":
        return out[-1]
    out.append({"role": "assistant", "content": None})
    return out[-1]


def messages(input_: Any, instructions: Optional[str]) -> List[Dict[str, Any]]:
    """Responses input (a string, or a list of items) as chat messages."""
    out: List[Dict[str, Any]] = []
    if instructions is not None:
        out.append({"role": "system", "content": instructions})
    if isinstance(input_, str):
        out.append({"role": "user", "content": input_})
        return out
    if not isinstance(input_, list) or not input_:
        raise ValueError("input must be a string or a non-empty list of items")
    for i, item in enumerate(input_):
        where = f"input[{i}]"
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object (a message or another input item)")
        kind = item.get("type", "message")
        if kind == "message":
            _message(out, item, where)
        elif kind == "function_call":
            _check_keys(item, ("type", "call_id", "name", "arguments", "id", "status"), where)
            call = {"id": _string(item, "call_id", where), "type": "function",
                    "function": {"name": _string(item, "name", where),
                                 "arguments": _string(item, "arguments", where)}}
            _assistant(out).setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            _check_keys(item, ("type", "call_id", "output", "id", "status"), where)
            output = item.get("output")
            content = _text_parts(output, ("input_text",), where + ".output")
            out.append({"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": content})
        elif kind == "reasoning":
            _reasoning(out, item, where)
        elif kind == "item_reference":
            raise ValueError(f"{where}: item references need stored items, which this server does not keep; "
                             f"send the item itself")
        else:
            raise ValueError(f"{where}: input items of type {kind!r} are not supported (only message, "
                             f"function_call, function_call_output and reasoning)")
    return out


def _message(out: List[Dict[str, Any]], item: Mapping[str, Any], where: str) -> None:
    _check_keys(item, ("type", "role", "content", "id", "status"), where)
    role = item.get("role")
    if role in ("user", "system", "developer"):
        out.append({"role": role, "content": _text_parts(item.get("content"), ("input_text",), where + ".content")})
    elif role == "assistant":
        content = _text_parts(item.get("content"), ("output_text", "input_text", "refusal"), where + ".content")
        message = _assistant(out)
        message["content"] = content if message["content"] is None else _parts(message["content"]) + _parts(content)
    else:
        raise ValueError(f"{where}.role must be user, system, developer or assistant, got {role!r}")


def _reasoning(out: List[Dict[str, Any]], item: Mapping[str, Any], where: str) -> None:
    _check_keys(item, ("type", "id", "summary", "content", "status", "encrypted_content"), where)
    if item.get("encrypted_content"):
        raise ValueError(f"{where}: encrypted reasoning cannot be read by this server")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise ValueError(f"{where}: a reasoning item needs its content (reasoning_text parts); a summary cannot "
                         f"stand for the reasoning")
    texts = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, Mapping) or part.get("type") != "reasoning_text":
            raise ValueError(f"{at}: reasoning content parts must be of type reasoning_text")
        texts.append(_string(part, "text", at))
    message = _assistant(out)
    message["reasoning_content"] = (message.get("reasoning_content") or "") + "".join(texts)


def tools(tools_: Any) -> List[Dict[str, Any]]:
    """Responses' flat function tools as chat tools."""
    if not isinstance(tools_, list):
        raise ValueError("tools must be a list of tools")
    out = []
    for i, tool in enumerate(tools_):
        where = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind != "function":
            raise ValueError(f"{where}: tools of type {kind!r} are not available on this server (built-in tools "
                             f"run on OpenAI's servers); only function tools are")
        if isinstance(tool.get("function"), Mapping):
            raise ValueError(f"{where}: a Responses function tool is flat: {{'type': 'function', 'name': ..., "
                             f"'parameters': {{...}}}}, not the chat shape with 'function'")
        _check_keys(tool, ("type", "name", "description", "parameters", "strict"), where)
        function = {"name": _string(tool, "name", where)}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def tool_choice(choice: Any) -> Any:
    """"auto", "none", "required", or a named function as chat names it."""
    if isinstance(choice, str):
        return choice   # the chat template's checks name a bad value
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        _check_keys(choice, ("type", "name"), "tool_choice")
        return {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    kind = choice.get("type") if isinstance(choice, Mapping) else type(choice).__name__
    raise ValueError(f"tool_choice must be 'auto', 'none', 'required' or {{'type': 'function', 'name': ...}}; "
                     f"{kind!r} is not supported")


def response_format(text: Any) -> Optional[Dict[str, Any]]:
    """text.format as chat's response_format."""
    if not isinstance(text, Mapping):
        raise ValueError("text must be an object such as {'format': {'type': 'text'}}")
    _check_keys(text, ("format",), "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    if kind == "text" or kind == "json_object":
        _check_keys(fmt, ("type",), "text.format")
        return {"type": kind}
    if kind == "json_schema":
        _check_keys(fmt, ("type", "name", "schema", "strict", "description"), "text.format")
        if not isinstance(fmt.get("schema"), Mapping):
            raise ValueError("text.format.schema must be a JSON schema object")
        wrapper = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            wrapper["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": wrapper}
    raise ValueError(f"text.format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


# ---------------------------------------------------------------------------- response

def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def usage(chat_usage: Mapping[str, int]) -> Dict[str, Any]:
    """Chat usage in Responses' words. The openai client's types require the details;
    cached prompt tokens and reasoning tokens are not counted per request here, and no
    explicit prompt cache is written, so they read 0."""
    return {"input_tokens": chat_usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": chat_usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": chat_usage["total_tokens"]}


class Envelope:
    """A response's identity and the request settings it repeats, as OpenAI's response
    object carries them."""

    def __init__(self, body: Mapping[str, Any], temperature: float, top_p: float, parallel_tool_calls: bool):
        self.id = new_id("resp")
        self.created_at = int(time.time())
        text = body.get("text") or {}
        self.settings = {
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {}, "parallel_tool_calls": parallel_tool_calls,
            "previous_response_id": None, "reasoning": None, "store": False, "temperature": temperature,
            "text": {"format": text.get("format") or {"type": "text"}},
            "tool_choice": body.get("tool_choice") or "auto", "tools": body.get("tools") or [], "top_p": top_p,
            "truncation": "disabled", "user": body.get("user"),
        }

    def response(self, model: str, status: str, output: List[Dict[str, Any]],
                 usage_: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "completed_at": int(time.time()) if status == "completed" else None, "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "model": model, "output": output, "usage": usage_, **self.settings,
        }


def _status(finish_reason: Optional[str]) -> str:
    return "incomplete" if finish_reason == "length" else "completed"


def _text_part(text: str) -> Dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(id_: str, text: Optional[str], status: str) -> Dict[str, Any]:
    return {"type": "message", "id": id_, "status": status, "role": "assistant",
            "content": [] if text is None else [_text_part(text)]}


def _reasoning_item(id_: str, text: Optional[str], status: str) -> Dict[str, Any]:
    return {"type": "reasoning", "id": id_, "status": status, "summary": [],
            "content": [] if text is None else [{"type": "reasoning_text", "text": text}]}


def _call_item(call_id: str, name: str, arguments: str, status: str) -> Dict[str, Any]:
    return {"type": "function_call", "id": new_id("fc"), "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def response(result: Mapping[str, Any], envelope: Envelope) -> Dict[str, Any]:
    """A whole chat completion as a response object: reasoning, then the message, then the
    function calls, as llama-server orders them."""
    choice = result["choices"][0]
    message = choice["message"]
    output = []
    if message.get("reasoning_content"):
        output.append(_reasoning_item(new_id("rs"), message["reasoning_content"], "completed"))
    if message.get("content"):
        output.append(_message_item(new_id("msg"), message["content"], "completed"))
    for call in message.get("tool_calls") or []:
        output.append(_call_item(call["id"], call["function"]["name"], call["function"]["arguments"], "completed"))
    status = _status(choice["finish_reason"])
    if output:
        output[-1]["status"] = status   # the item that the token limit cut short
    return envelope.response(result["model"], status, output, usage(result["usage"]))


class _Events:
    """The Responses event stream of one chat chunk stream. Each output item is announced
    (output_item.added), grows by deltas, and is closed (its .done events) when the next
    item starts or the stream ends, as OpenAI streams them."""

    def __init__(self, envelope: Envelope):
        self.envelope = envelope
        self.sequence = 0
        self.model = ""
        self.output: List[Dict[str, Any]] = []
        self.open: Optional[Dict[str, Any]] = None   # the item now growing
        self.calls: Dict[int, Dict[str, Any]] = {}   # chat's tool call index -> its item

    def event(self, type_: str, **fields: Any) -> Dict[str, Any]:
        data = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return {"event": type_, "data": data}

    def _item_event(self, type_: str, item: Mapping[str, Any], **fields: Any) -> Dict[str, Any]:
        return self.event(type_, item_id=item["id"], output_index=self.output.index(item), **fields)

    def start(self, model: str) -> Iterator[Dict[str, Any]]:
        self.model = model
        started = self.envelope.response(model, "in_progress", [])
        yield self.event("response.created", response=started)
        yield self.event("response.in_progress", response=started)

    def _add(self, item: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        yield from self.close("completed")
        self.output.append(item)
        self.open = item
        yield self.event("response.output_item.added", output_index=len(self.output) - 1, item=dict(item))
        if item["type"] == "message":
            yield self._item_event("response.content_part.added", item, content_index=0, part=_text_part(""))
            item["content"] = [_text_part("")]
        elif item["type"] == "reasoning":
            part = {"type": "reasoning_text", "text": ""}
            yield self._item_event("response.content_part.added", item, content_index=0, part=dict(part))
            item["content"] = [part]

    def close(self, status: str) -> Iterator[Dict[str, Any]]:
        item, self.open = self.open, None
        if item is None:
            return
        item["status"] = status
        if item["type"] == "message":
            part = item["content"][0]
            yield self._item_event("response.output_text.done", item, content_index=0, text=part["text"],
                                   logprobs=[])
            yield self._item_event("response.content_part.done", item, content_index=0, part=part)
        elif item["type"] == "reasoning":
            part = item["content"][0]
            yield self._item_event("response.reasoning_text.done", item, content_index=0, text=part["text"])
            yield self._item_event("response.content_part.done", item, content_index=0, part=part)
        else:
            yield self._item_event("response.function_call_arguments.done", item, arguments=item["arguments"])
        yield self.event("response.output_item.done", output_index=self.output.index(item), item=item)

    def delta(self, delta: Mapping[str, Any]) -> Iterator[Dict[str, Any]]:
        if delta.get("reasoning_content"):
            if self.open is None or self.open["type"] != "reasoning":
                yield from self._add(_reasoning_item(new_id("rs"), None, "in_progress"))
            self.open["content"][0]["text"] += delta["reasoning_content"]
            yield self._item_event("response.reasoning_text.delta", self.open, content_index=0,
                                   delta=delta["reasoning_content"])
        if delta.get("content"):
            if self.open is None or self.open["type"] != "message":
                yield from self._add(_message_item(new_id("msg"), None, "in_progress"))
            self.open["content"][0]["text"] += delta["content"]
            yield self._item_event("response.output_text.delta", self.open, content_index=0,
                                   delta=delta["content"], logprobs=[])
        for call in delta.get("tool_calls") or []:
            function = call.get("function") or {}
            if call.get("id"):   # a call is announced once, with its id and whole name
                self.calls[call["index"]] = _call_item(call["id"], function.get("name", ""), "", "in_progress")
                yield from self._add(self.calls[call["index"]])
            item = self.calls[call["index"]]
            if function.get("arguments"):
                item["arguments"] += function["arguments"]
                yield self._item_event("response.function_call_arguments.delta", item,
                                       delta=function["arguments"])

    def finish(self, finish_reason: Optional[str], chat_usage: Mapping[str, int]) -> Iterator[Dict[str, Any]]:
        status = _status(finish_reason)
        yield from self.close(status)
        final = self.envelope.response(self.model, status, self.output, usage(chat_usage))
        # OpenAI ends a response cut short by the token limit with response.incomplete
        yield self.event("response.completed" if status == "completed" else "response.incomplete",
                         response=final)


def events(chunks: Iterator[Dict[str, Any]], envelope: Envelope) -> Iterator[Dict[str, Any]]:
    """A chat chunk stream as Responses events ({"event": name, "data": {...}}); its last
    chunk's finish_reason and usage make the final event. Closing this closes chunks."""
    stream = _Events(envelope)
    try:
        for chunk in chunks:
            if not stream.model:
                yield from stream.start(chunk["model"])
            for choice in chunk["choices"]:
                yield from stream.delta(choice.get("delta") or {})
                if choice.get("finish_reason") is not None:
                    yield from stream.finish(choice["finish_reason"], chunk["usage"])
    finally:
        chunks.close()
