"""Tool calls for a model whose chat template cannot express tools.

Any instruction model can follow a plain convention: the tools are described in the
system message, and the answer is one JSON object, either {"tool_calls": [{"name": ...,
"arguments": {...}}]} or {"response": "..."}. A JSON-schema grammar (llama.cpp's, through
the template's response-format path) holds the answer to that envelope and each call's
arguments to its tool's parameters; with tool_choice "required" or a named function only
the calls branch exists. The answer is read back into OpenAI's message.tool_calls.

Earlier llama.cpp versions had such a generic format in common/chat.cpp; the pinned one
dropped it. History is rewritten into the same convention: an assistant message with
tool_calls becomes its JSON envelope, and tool results become a user message holding
{"tool_response": ...} (templates without tools often know no "tool" role).

A text answer is streamed as one piece when the JSON is complete: its characters are
inside a JSON string until then."""

from __future__ import annotations

import json
import secrets
import string
from typing import Any, Dict, List, Mapping, Optional, Sequence

INSTRUCTIONS = (
    "You can call the tools described below. Answer with one JSON object and nothing else: "
    '{"tool_calls": [{"name": "<tool name>", "arguments": {<the tool\'s parameters>}}]} to call tools, '
    'or {"response": "<your answer>"} to answer the user directly. '
    "A tool's result comes back in a message holding {\"tool_response\": ...}.")
INSTRUCTIONS_CALL_ONLY = (
    "You must call one of the tools described below. Answer with one JSON object and nothing else: "
    '{"tool_calls": [{"name": "<tool name>", "arguments": {<the tool\'s parameters>}}]}. '
    "A tool's result comes back in a message holding {\"tool_response\": ...}.")

_ID_CHARS = string.ascii_letters + string.digits


def _call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(24))


def _function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    return tool["function"]


class GenericTools:
    """The envelope for one request: its system text, JSON schema and history rewrite."""

    def __init__(self, tools: Sequence[Mapping[str, Any]], choice: str, parallel: bool,
                 response_schema: Optional[dict] = None):
        self.tools = list(tools)
        self.calls_only = choice == "required"
        self.parallel = parallel
        self.response_schema = response_schema

    def system_text(self) -> str:
        described = [{k: v for k, v in _function(t).items() if k in ("name", "description", "parameters")}
                     for t in self.tools]
        head = INSTRUCTIONS_CALL_ONLY if self.calls_only else INSTRUCTIONS
        if not self.parallel:
            head += " Call at most one tool at a time."
        return f"{head}\n\nTools:\n{json.dumps(described, indent=2)}"

    def schema(self) -> dict:
        calls = [{"type": "object",
                  "properties": {"name": {"const": _function(t)["name"]},
                                 "arguments": _function(t).get("parameters") or {"type": "object"}},
                  "required": ["name", "arguments"], "additionalProperties": False} for t in self.tools]
        array: Dict[str, Any] = {"type": "array", "items": calls[0] if len(calls) == 1 else {"anyOf": calls},
                                 "minItems": 1}
        if not self.parallel:
            array["maxItems"] = 1
        call_branch = {"type": "object", "properties": {"tool_calls": array}, "required": ["tool_calls"],
                       "additionalProperties": False}
        if self.calls_only:
            return call_branch
        answer = self.response_schema if self.response_schema is not None else {"type": "string"}
        response_branch = {"type": "object", "properties": {"response": answer}, "required": ["response"],
                           "additionalProperties": False}
        return {"anyOf": [call_branch, response_branch]}

    def messages(self, checked: List[Dict[str, Any]], describe_tools: bool = True) -> List[Dict[str, Any]]:
        """The conversation in the envelope's terms, with the tools in the system message
        (describe_tools: this answer may call them)."""
        out: List[Dict[str, Any]] = []
        for m in checked:
            if m["role"] == "assistant" and m.get("tool_calls"):
                out.append({"role": "assistant", "content": json.dumps({"tool_calls": [
                    {"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
                    for c in m["tool_calls"]]})})
            elif m["role"] == "tool":
                result = {"tool_call_id": m.get("tool_call_id"), "content": _text(m.get("content"))}
                if m.get("name"):
                    result["name"] = m["name"]
                text = json.dumps({"tool_response": result})
                if out and out[-1].get("_tool_results"):
                    out[-1]["content"] += "\n" + text  # results of one turn in one message
                else:
                    out.append({"role": "user", "content": text, "_tool_results": True})
            else:
                out.append({k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id")})
        for m in out:
            m.pop("_tool_results", None)
        if not describe_tools:
            return out
        if out and out[0]["role"] == "system":
            out[0] = dict(out[0], content=_text(out[0]["content"]) + "\n\n" + self.system_text())
        else:
            out.insert(0, {"role": "system", "content": self.system_text()})
        return out


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments if arguments is not None else {}


class GenericToolParser:
    """The chat parser's face (update, message_json) over the envelope: the template's own
    parser reads the answer's content, and the final JSON becomes tool calls or text."""

    def __init__(self, inner: Any):
        self._inner = inner
        self._message: Dict[str, Any] = {"role": "assistant", "content": ""}

    def update(self, added: str, is_partial: bool) -> List[Dict[str, Any]]:
        self._inner.update(added, is_partial)
        if is_partial:
            return []
        inner = json.loads(self._inner.message_json())
        content = inner.get("content") or ""
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None  # cut short (max_tokens): what was written stays plain content
        deltas: List[Dict[str, Any]] = []
        if isinstance(answer, dict) and isinstance(answer.get("tool_calls"), list):
            calls = []
            for i, call in enumerate(answer["tool_calls"]):
                function = {"name": call.get("name", ""), "arguments": json.dumps(call.get("arguments", {}))}
                calls.append({"type": "function", "id": _call_id(), "function": function})
                deltas.append({"tool_calls": [{"index": i, "id": calls[-1]["id"], "type": "function",
                                               "function": dict(function)}]})
            self._message = {"role": "assistant", "content": None, "tool_calls": calls}
        else:
            if isinstance(answer, dict) and "response" in answer:
                response = answer["response"]
                content = response if isinstance(response, str) else json.dumps(response)
            self._message = {"role": "assistant", "content": content}
            if content:
                deltas.append({"content": content})
        if inner.get("reasoning_content"):
            self._message["reasoning_content"] = inner["reasoning_content"]
            deltas.insert(0, {"reasoning_content": inner["reasoning_content"]})
        return deltas

    def message_json(self) -> str:
        return json.dumps(self._message)
