"""The one place where errors become HTTP answers: OpenAI-style bodies
{"error": {"message", "type", "param", "code"}}, chosen by the error's type."""

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


def error_response(status: int, message: str, type_: str = "invalid_request_error",
                   param: Optional[str] = None, code: Optional[str] = None) -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": type_, "param": param, "code": code}})


def _body(message: str, type_: str, code: Optional[str] = None) -> Dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# type -> (HTTP status, OpenAI error type, code); the first that matches, in this order
_BY_TYPE = (
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


def error_body(err: BaseException) -> Dict[str, Any]:
    """The body for an error (also sent as the last event of a broken stream)."""
    status, type_, code = _classify(err)
    if isinstance(err, Cancelled):
        return _body("cancelled", type_, code)
    # a server's own failure names its type (a bare message may say little)
    message = str(err) if status != 500 else f"{type(err).__name__}: {err}"
    return _body(message, type_, code)


def error_for(err: BaseException) -> JSONResponse:
    return JSONResponse(status_code=_classify(err)[0], content=error_body(err))


def validation_message(err: RequestValidationError) -> tuple:
    """A request body that does not fit its schema: (message, the parameter at fault)."""
    first = err.errors()[0] if err.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    return (f"{param}: {message}" if param else message), param
