"""The one bridge between a request's worker thread, which waits on the batch scheduler
for its pieces, and the event loop, which answers the client: one wake-up of the loop
per piece. A client that disconnects cancels its request at the scheduler's next step,
which removes its cells at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from . import requests
from .context import ServerContext
from .errors import Cancelled, QueueFull, error_for, style_of
from .metrics import RequestClock
from .stream_format import OPENAI, StreamFormat


async def run(server: ServerContext, request: Request, stream: bool, call: Callable[..., Any],
              include_usage: bool = False, stream_format: StreamFormat = OPENAI):
    """Run call(stream, progress_callback, stopping_criteria) in a worker thread; a stream
    ends with a usage chunk when include_usage (OpenAI's stream_options) and is written
    in stream_format; errors before the first piece are answered in the route's error shape."""
    error_style = style_of(request.url.path)
    try:
        server.admission.enter()
    except QueueFull:
        return error_for(QueueFull(f"server busy: all {server.n_slots} slots are in use and "
                                   f"{server.max_queue} requests are waiting; retry later"), style=error_style)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    clock = RequestClock() if server.metrics is not None else None   # counted for --metrics

    # both checked by the scheduler at each step; raising ends the request there and
    # frees its cells at once
    def check_cancel(done: int, total: int) -> None:
        if cancelled.is_set():
            raise Cancelled()
        if clock is not None:
            clock.prompt_read(done, total)

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
                        if clock is not None:
                            clock.saw(chunk, usage)
                        put("chunk", chunk)
                        if usage is not None and include_usage:
                            put("chunk", requests.usage_chunk(chunk, usage))
                finally:
                    result.close()
            else:
                if clock is not None:
                    clock.saw(result)
                put("result", result)
        except BaseException as err:  # noqa: BLE001 - reported to the client below
            put("error", err)
        finally:
            if clock is not None:
                server.metrics.finished(clock)
            put("end", None)

    future = loop.run_in_executor(server.executor, worker)
    future.add_done_callback(lambda _: server.admission.leave())

    def cancel() -> None:
        if not future.done():
            cancelled.set()

    if stream:
        first = await queue.get()
        if first[0] == "error":
            await future
            return error_for(first[1], style=error_style)

        async def events():
            item = first
            try:
                while True:
                    kind, value = item
                    if kind == "chunk":
                        yield stream_format.encode(value)
                    elif kind == "error":
                        yield stream_format.error(value)
                    elif kind == "end":
                        if stream_format.end:
                            yield stream_format.end
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
        return error_for(value, style=error_style)
    return JSONResponse(value)


async def on_scheduler_thread(server: ServerContext, fn: Callable[[], Any]) -> Any:
    """fn run on the scheduler's thread between two steps (the only thread that touches
    the context while it runs), awaited from the event loop."""
    return await asyncio.get_running_loop().run_in_executor(server.executor, server.scheduler.call, fn)
