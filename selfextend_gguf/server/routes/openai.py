"""The OpenAI-style API: /v1/models, /v1/completions, /v1/chat/completions (also without
/v1, and its input_tokens count), /v1/embeddings, and llama-server's /apply-template. Each request is checked here (bad input is a 400 before it queues),
then runs on a slot of the batch scheduler through the bridge."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from ...apps import embeddings
from .. import requests
from ..bridge import run
from ..context import ServerContext, server_of
from ..errors import error_for, error_response
from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

router = APIRouter()


def _include_usage(body) -> bool:
    return bool(body.stream and body.stream_options and body.stream_options.include_usage)


async def _on_slots(server: ServerContext, request: Request, body, kwargs, create):
    """Run create(**kwargs) (n times: body.n choices) on the scheduler's slots."""
    def call(stream, progress, criteria):
        return requests.choices(create, body.n, stream,
                                dict(kwargs, stream=stream, progress_callback=progress,
                                     stopping_criteria=criteria, scheduler=server.scheduler))

    return await run(server, request, body.stream, call, _include_usage(body))


@router.get("/v1/models")
@router.get("/models")
async def models(server: ServerContext = Depends(server_of)):
    llm = server.llm
    se = llm.self_extend
    return {"object": "list", "data": [{
        "id": server.model_name, "object": "model", "created": int(time.time()), "owned_by": "selfextend-gguf",
        "meta": {"n_ctx": llm.n_ctx(), "n_ctx_train": llm.n_ctx_train(),
                 "self_extend": {"group_size": se.group_size, "neighbor_window": se.neighbor_window}
                 if se else None}}]}


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request, server: ServerContext = Depends(server_of)):
    llm = server.llm
    try:
        prompt_tokens = llm.prompt_tokens(body.prompt)
        kwargs = requests.completion_kwargs(body)
        requests.check_completion(kwargs)
    except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
        return error_for(err)

    return await _on_slots(server, request, body, kwargs, lambda **kw: llm.create_completion(prompt_tokens, **kw))


@router.post("/v1/chat/completions")
@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request, server: ServerContext = Depends(server_of)):
    llm = server.llm
    try:
        messages, kwargs = _chat_of(body)
        requests.chat_prompt_tokens(llm, messages, kwargs)
    except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
        return error_for(err)

    return await _on_slots(server, request, body, kwargs, lambda **kw: llm.create_chat_completion(messages, **kw))


def _chat_of(body: ChatCompletionRequest):
    return [m.model_dump(exclude_none=True) for m in body.messages], requests.chat_kwargs(body)


@router.post("/v1/chat/completions/input_tokens")
@router.post("/chat/completions/input_tokens")
async def chat_input_tokens(body: ChatCompletionRequest, server: ServerContext = Depends(server_of)):
    """llama-server's count of a chat request's prompt tokens (no generation)."""
    try:
        messages, kwargs = _chat_of(body)
        return {"input_tokens": requests.count_chat_tokens(server.llm, messages, kwargs)}
    except Exception as err:  # noqa: BLE001
        return error_for(err)


@router.post("/apply-template")
async def apply_template(body: ChatCompletionRequest, server: ServerContext = Depends(server_of)):
    """llama-server's rendering of a chat request's prompt (no generation)."""
    try:
        messages, kwargs = _chat_of(body)
        return {"prompt": requests.chat_prompt(server.llm, messages, kwargs)}
    except Exception as err:  # noqa: BLE001
        return error_for(err)


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingRequest, request: Request, server: ServerContext = Depends(server_of)):
    llm = server.llm
    if not llm.embedding_enabled:
        return error_response(501, "this server does not compute embeddings: start it with --embedding",
                              type_="not_supported_error")
    try:
        requests.check_embedding(llm, body)
    except Exception as err:  # noqa: BLE001
        return error_for(err)

    def call(stream, progress, criteria):
        result = embeddings.create_embedding(llm, body.input, model=server.model_name,
                                             embed_tokens=server.scheduler.embed)
        return requests.encode_embeddings(result, body.encoding_format)

    return await run(server, request, False, call)
