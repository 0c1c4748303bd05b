"""The FastAPI application over one Llama and its batch scheduler.

One model and one context serve every request: the batch scheduler (engine/scheduler.py)
gives each request a slot (a sequence of the context) and decodes all of them together.
The routes live in routes/ (a router per API family), the thread-to-event-loop bridge in
bridge.py, and the mapping of errors to HTTP answers in errors.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.scheduler import BatchScheduler
from ..llama import Llama
from .context import ServerContext
from .errors import error_for, error_response, style_of, validation_message
from .metrics import Metrics
from .routes import anthropic, native, native_completion, openai, responses, web
from .slots import Admission

# paths open without the API key when the server has one (as llama-server's); the chat
# page and its files too: the page asks for the key and sends it on its API calls
_PUBLIC_PATHS = ("/health", "/v1/health", "/")


def _is_public(path: str) -> bool:
    return path in _PUBLIC_PATHS or path.startswith(web.ASSET_PREFIX)


def _api_key_of(request: Request) -> str:
    """The key a client sent: OpenAI's clients send 'Authorization: Bearer <key>', Anthropic's
    'x-api-key: <key>'."""
    key = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    return key[len("Bearer "):] if key.startswith("Bearer ") else key


def create_app(llm0: Llama, scheduler: BatchScheduler, max_queue: int, model_name: str,
               api_key: Optional[str] = None, slot_save_path: Optional[str] = None,
               metrics: bool = False) -> FastAPI:
    """The app over one Llama and its batch scheduler; with the Llama made with
    embedding=True, /v1/embeddings answers too, with slot_save_path the slot actions
    (save, restore, erase) of llama-server, and with metrics its /metrics."""
    app = FastAPI(title="selfextend-gguf", version="0.1.0")
    n_slots = len(scheduler.slots)
    app.state.server = ServerContext(
        llm=llm0, scheduler=scheduler, admission=Admission(n_slots, max_queue),
        executor=ThreadPoolExecutor(max_workers=n_slots + max_queue + 1, thread_name_prefix="request"),
        model_name=model_name, max_queue=max_queue, api_key=api_key, slot_save_path=slot_save_path,
        metrics=Metrics(scheduler) if metrics else None)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, err: RequestValidationError):
        message, param = validation_message(err)
        return error_response(400, message, param=param, style=style_of(request.url.path))

    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, err: Exception):
        # anything a route did not answer itself: still an OpenAI-style body, never
        # Starlette's plain-text "Internal Server Error"
        return error_for(err, style=style_of(request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail),
                              type_="invalid_request_error" if err.status_code < 500 else "server_error",
                              style=style_of(request.url.path))

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        path = request.url.path
        if api_key and not _is_public(path) and _api_key_of(request) != api_key:
            return error_response(401, "invalid or missing API key (send 'Authorization: Bearer <key>' or "
                                       "'x-api-key: <key>')", type_="authentication_error",
                                  code="invalid_api_key", style=style_of(path))
        return await call_next(request)

    app.include_router(native.router)
    app.include_router(native_completion.router)
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(anthropic.router)
    app.include_router(web.router)
    return app
