"""The one place where errors become HTTP answers, chosen by the error's type: OpenAI-style
bodies {"error": {"message", "type", "param", "code"}}, or for the Anthropic Messages API
its own shape {"type": "error", "error": {"type", "message"}}."""

from __future__ import annotations

from typing import Any, Dict, Optional

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..engine.errors import ContextFull, ContextWindowExceeded, RpcServerLost


class QueueFull(Exception):
    """Every slot is busy and the waiting queue is full (503)."""


class Cancelled(Exception):
    """The client went away."""


class SlotBusy(RuntimeError):
    """The slot is running a request (409)."""


# HTTP status -> the Anthropic API's error type
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 409: "invalid_request_error", 413: "request_too_large",
                    429: "rate_limit_error", 501: "api_error", 503: "overloaded_error"}


def _body(message: str, type_: str, code: Optional[str] = None, param: Optional[str] = None,
          status: int = 400, style: str = "openai") -> Dict[str, Any]:
    if style == "anthropic":
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def style_of(path: str) -> str:
    """The error shape a route's clients read: Anthropic's for its Messages API."""
    return "anthropic" if path.startswith("/v1/messages") else "openai"


def error_response(status: int, message: str, type_: str = "invalid_request_error",
                   param: Optional[str] = None, code: Optional[str] = None, style: str = "openai") -> JSONResponse:
    return JSONResponse(status_code=status, content=_body(message, type_, code, param, status, style))


# type -> (HTTP status, OpenAI error type, code); the first that matches, in this order
_BY_TYPE = (
    (QueueFull, 503, "server_error", "queue_full"),
    (ContextFull, 503, "server_error", "context_full"),
    (SlotBusy, 409, "invalid_request_error", "slot_busy"),
    (ContextWindowExceeded, 400, "invalid_request_error", "context_length_exceeded"),
    (RpcServerLost, 500, "server_error", "rpc_server_lost"),
    (Cancelled, 500, "server_error", "cancelled"),
    (ValueError, 400, "invalid_request_error", None),   # bad input, in the API's own words
)


def _classify(err: BaseException):
    for kind, status, type_, code in _BY_TYPE:
        if isinstance(err, kind):
            return status, type_, code
    return 500, "server_error", None


def error_body(err: BaseException, style: str = "openai") -> Dict[str, Any]:
    """The body for an error (also sent as the last event of a broken stream)."""
    status, type_, code = _classify(err)
    if isinstance(err, Cancelled):
        return _body("cancelled", type_, code, status=status, style=style)
    # a server's own failure names its type (a bare message may say little)
    message = str(err) if status != 500 else f"{type(err).__name__}: {err}"
    return _body(message, type_, code, status=status, style=style)


def error_for(err: BaseException, style: str = "openai") -> JSONResponse:
    return JSONResponse(status_code=_classify(err)[0], content=error_body(err, style))


def validation_message(err: RequestValidationError) -> tuple:
    """A request body that does not fit its schema: (message, the parameter at fault)."""
    first = err.errors()[0] if err.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    return (f"{param}: {message}" if param else message), param
