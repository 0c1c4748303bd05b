"""The FastAPI application: /v1/completions, /v1/chat/completions, /v1/embeddings,
/v1/models, /health, /tokenize, /detokenize and the slot actions.

One model and one context serve every request: the batch scheduler (batching.py) gives
each request a slot (a sequence of the context) and decodes all of them together. A
request's worker thread waits for its pieces and hands them to the event loop through a
queue. A client that disconnects cancels its request at the next step of the scheduler,
which removes its cells at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import embeddings
from . import requests, slot_files
from ..batching import BatchScheduler, ContextFull
from ..llama import Llama
from .errors import QueueFull, error_response
from .schemas import (ChatCompletionRequest, CompletionRequest, DetokenizeRequest, EmbeddingRequest,
                      TokenizeRequest)
from .slots import Admission


class Cancelled(Exception):
    """The client went away."""


def _validation_message(err: RequestValidationError) -> tuple:
    first = err.errors()[0] if err.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    return (f"{param}: {message}" if param else message), param


def create_app(llm0: Llama, scheduler: BatchScheduler, max_queue: int, model_name: str,
               api_key: Optional[str] = None, slot_save_path: Optional[str] = None) -> FastAPI:
    """The app over one Llama and its batch scheduler; with the Llama made with
    embedding=True, /v1/embeddings answers too, and with slot_save_path the slot actions
    (save, restore, erase) of llama-server."""
    app = FastAPI(title="selfextend-gguf", version="0.1.0")
    n_slots = len(scheduler.slots)
    admission = Admission(n_slots, max_queue)
    # a worker thread per running or waiting request (they wait on the scheduler)
    executor = ThreadPoolExecutor(max_workers=n_slots + max_queue + 1, thread_name_prefix="request")

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, err: RequestValidationError):
        message, param = _validation_message(err)
        return error_response(400, message, param=param)

    @app.exception_handler(Exception)
    async def on_unexpected_error(request: Request, err: Exception):
        # anything a route did not answer itself: still an OpenAI-style body, never
        # Starlette's plain-text "Internal Server Error"
        return _error_for(err)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail),
                              type_="invalid_request_error" if err.status_code < 500 else "server_error")

    @app.middleware("http")
    async def check_api_key(request: Request, call_next):
        if api_key and (request.url.path.startswith(("/v1", "/slots")) or
                        request.url.path in ("/tokenize", "/detokenize")):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                return error_response(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                                      code="invalid_api_key")
        return await call_next(request)

    @app.get("/health")
    async def health():
        slots = [slot.stats() for slot in scheduler.slots]
        return {"status": "ok", "slots_total": n_slots, "slots_idle": sum(not s["busy"] for s in slots),
                "queue": scheduler.n_waiting, "queue_max": max_queue, "slots": slots,
                "n_ctx": llm0.n_ctx(), "memory": llm0.memory_breakdown()}

    @app.get("/v1/models")
    async def models():
        se = llm0.self_extend
        return {"object": "list", "data": [{
            "id": model_name, "object": "model", "created": int(time.time()), "owned_by": "selfextend-gguf",
            "meta": {"n_ctx": llm0.n_ctx(), "n_ctx_train": llm0.n_ctx_train(),
                     "self_extend": {"group_size": se.group_size, "neighbor_window": se.neighbor_window}
                     if se else None}}]}

    async def run(request: Request, stream: bool, call: Callable[..., Any], include_usage: bool = False):
        """Run call(stream, progress_callback, stopping_criteria) in a worker thread (it waits
        for its slot's pieces); a stream ends with a usage chunk when include_usage."""
        try:
            admission.enter()
        except QueueFull:
            return error_response(503, f"server busy: all {n_slots} slots are in use and "
                                       f"{max_queue} requests are waiting; retry later",
                                  type_="server_error", code="queue_full")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        # both checked by the scheduler at each step; raising ends the request there and
        # frees its cells at once
        def check_cancel(done: int, total: int) -> None:
            if cancelled.is_set():
                raise Cancelled()

        def stop_if_cancelled(ids, logits) -> bool:
            if cancelled.is_set():
                raise Cancelled()
            return False

        def put(kind: str, item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        def worker() -> None:
            try:
                result = call(stream, check_cancel, [stop_if_cancelled])
                if stream:
                    try:
                        for chunk in result:
                            usage = chunk.pop("usage", None)
                            put("chunk", chunk)
                            if usage is not None and include_usage:
                                put("chunk", requests.usage_chunk(chunk, usage))
                    finally:
                        result.close()
                else:
                    put("result", result)
            except BaseException as err:  # noqa: BLE001 - reported to the client below
                put("error", err)
            finally:
                put("end", None)

        future = loop.run_in_executor(executor, worker)
        future.add_done_callback(lambda _: admission.leave())

        def cancel() -> None:
            if not future.done():
                cancelled.set()

        if stream:
            first = await queue.get()
            if first[0] == "error":
                await future
                return _error_for(first[1])

            async def events():
                item = first
                try:
                    while True:
                        kind, value = item
                        if kind == "chunk":
                            yield f"data: {json.dumps(value)}\n\n"
                        elif kind == "error":
                            yield f"data: {json.dumps(_error_body(value))}\n\n"
                        elif kind == "end":
                            yield "data: [DONE]\n\n"
                            return
                        item = await queue.get()
                finally:
                    cancel()

            return StreamingResponse(events(), media_type="text/event-stream")

        async def watch_disconnect():
            while not future.done():
                if await request.is_disconnected():
                    cancel()
                    return
                await asyncio.sleep(0.2)

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            kind, value = await queue.get()
        finally:
            watcher.cancel()
        await future
        if kind == "error":
            return _error_for(value)
        return JSONResponse(value)

    def tokens_of(prompt) -> List[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("empty prompt: give at least one character of text")
            return llm0.tokenize(prompt, add_bos=True, special=True)
        return list(prompt)

    def include_usage(body) -> bool:
        return bool(body.stream and body.stream_options and body.stream_options.include_usage)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        try:
            prompt_tokens = tokens_of(body.prompt)
            kwargs = requests.completion_kwargs(body)
            requests.check_completion(llm0, prompt_tokens, kwargs)
        except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
            return _error_for(err)

        def call(stream, progress, criteria):
            return requests.choices(lambda **kw: llm0.create_completion(prompt_tokens, **kw), body.n, stream,
                                    dict(kwargs, stream=stream, progress_callback=progress,
                                         stopping_criteria=criteria, scheduler=scheduler))

        return await run(request, body.stream, call, include_usage(body))

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        try:
            kwargs = requests.chat_kwargs(body)
            prompt_tokens = requests.chat_prompt_tokens(llm0, messages, kwargs)
        except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
            return _error_for(err)

        def call(stream, progress, criteria):
            return requests.choices(lambda **kw: llm0.create_chat_completion(messages, **kw), body.n, stream,
                                    dict(kwargs, stream=stream, progress_callback=progress,
                                         stopping_criteria=criteria, scheduler=scheduler))

        return await run(request, body.stream, call, include_usage(body))

    @app.post("/v1/embeddings")
    async def create_embeddings(body: EmbeddingRequest, request: Request):
        if not llm0.embedding_enabled:
            return error_response(501, "this server does not compute embeddings: start it with --embedding",
                                  type_="not_supported_error")
        try:
            requests.check_embedding(llm0, body)
        except Exception as err:  # noqa: BLE001
            return _error_for(err)

        def call(stream, progress, criteria):
            result = embeddings.create_embedding(llm0, body.input, model=model_name, embed_tokens=scheduler.embed)
            return requests.encode_embeddings(result, body.encoding_format)

        return await run(request, False, call)

    @app.post("/slots/{id_slot}")
    async def slot_action(id_slot: int, request: Request, action: str):
        if slot_save_path is None and action in ("save", "restore"):
            return error_response(501, "slot save and restore are off: start the server with --slot-save-path DIR",
                                  type_="not_supported_error")
        if action not in ("save", "restore", "erase"):
            return error_response(400, "action must be save, restore or erase", param="action")
        if not 0 <= id_slot < n_slots:
            return error_response(400, f"no slot {id_slot}: slots are 0..{n_slots - 1}", param="id_slot")
        try:
            body = await request.json() if action != "erase" else {}
        except ValueError:
            return error_response(400, "request body is not valid JSON")
        try:
            path = slot_files.path_of(slot_save_path, body.get("filename")) if action != "erase" else None
        except ValueError as err:
            return error_response(400, str(err), param="filename")
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                executor, scheduler.call, lambda: slot_files.run_action(action, scheduler, id_slot, path))
        except Exception as err:  # noqa: BLE001 - a foreign or damaged file is the client's error
            return _error_for(err)
        return result

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        try:
            tokens = llm0.tokenize(body.content, add_bos=body.add_special, special=body.parse_special)
        except Exception as err:  # noqa: BLE001
            return _error_for(err)
        if body.with_pieces:
            return {"tokens": [{"id": t, "piece": llm0.token_bytes(t, True).decode("utf-8", errors="replace")}
                               for t in tokens]}
        return {"tokens": tokens}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        try:
            text = llm0.detokenize(body.tokens).decode("utf-8", errors="replace")
        except Exception as err:  # noqa: BLE001
            return _error_for(err)
        return {"content": text}

    return app


def _error_body(err: BaseException) -> Dict[str, Any]:
    if isinstance(err, ContextFull):
        return {"error": {"message": str(err), "type": "server_error", "param": None, "code": "context_full"}}
    if isinstance(err, slot_files.SlotBusy):
        return {"error": {"message": str(err), "type": "invalid_request_error", "param": None, "code": "slot_busy"}}
    if isinstance(err, ValueError):
        code = "context_length_exceeded" if "exceed context window" in str(err) else None
        return {"error": {"message": str(err), "type": "invalid_request_error", "param": None, "code": code}}
    if isinstance(err, Cancelled):
        return {"error": {"message": "cancelled", "type": "server_error", "param": None, "code": "cancelled"}}
    return {"error": {"message": f"{type(err).__name__}: {err}", "type": "server_error", "param": None,
                      "code": None}}


def _error_for(err: BaseException) -> JSONResponse:
    body = _error_body(err)
    status = 400 if body["error"]["type"] == "invalid_request_error" else 500
    status = {"context_full": 503, "slot_busy": 409}.get(body["error"]["code"], status)
    return JSONResponse(status_code=status, content=body)
