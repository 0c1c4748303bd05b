"""How a protocol's stream is written as server-sent events, as llama-server writes it:
OpenAI's chat and completions send `data: {json}` and end with `data: [DONE]`; the
Responses and Anthropic Messages APIs send named events (`event: name` then
`data: {json}`) and end with nothing; llama-server's native /completion sends
`data: {json}` and ends with nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from .errors import error_body


@dataclass(frozen=True)
class StreamFormat:
    # item -> SSE text; named-event formats take {"event": name, "data": {...}}
    encode: Callable[[Any], str]
    # written after the last item ("" for none)
    end: str
    # the error that breaks a stream, as its last event
    error: Callable[[BaseException], str]


def _data(item: Any) -> str:
    return f"data: {json.dumps(item)}\n\n"


def _named(item: Dict[str, Any]) -> str:
    return f"event: {item['event']}\ndata: {json.dumps(item['data'])}\n\n"


def _anthropic_error(err: BaseException) -> str:
    return _named({"event": "error", "data": error_body(err, style="anthropic")})


OPENAI = StreamFormat(_data, "data: [DONE]\n\n", lambda err: _data(error_body(err)))
NATIVE = StreamFormat(_data, "", lambda err: _data(error_body(err)))
RESPONSES = StreamFormat(_named, "", lambda err: _named({"event": "error", "data": error_body(err)}))
ANTHROPIC = StreamFormat(_named, "", _anthropic_error)


def default(fmt: Optional[StreamFormat]) -> StreamFormat:
    return fmt or OPENAI
