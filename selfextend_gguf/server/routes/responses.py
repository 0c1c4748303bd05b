"""OpenAI's Responses API: /v1/responses and /v1/responses/input_tokens (also without
/v1, as llama-server serves them). As llama-server does, a request becomes a
chat-completions request (apps/openai_responses.py), is checked as /v1/chat/completions
checks one, runs on a slot of the batch scheduler as a chat completion, and its result
(or its stream) is turned into the Responses shapes."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import pydantic
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field

from ...apps import openai_responses
from ...llama import Llama
from .. import requests, stream_format
from ..bridge import run
from ..context import ServerContext, server_of
from ..errors import error_for, validation_message
from ..schemas import ChatCompletionRequest, RequestBody

router = APIRouter()


class ResponsesRequest(RequestBody):
    """OpenAI's Responses request, with llama-server's sampling fields as chat takes them."""
    model: Optional[str] = None
    input: Union[str, List[Any]]
    instructions: Optional[str] = None
    tools: Optional[List[Any]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    parallel_tool_calls: Optional[bool] = None
    text: Optional[Dict[str, Any]] = None
    max_output_tokens: Optional[int] = Field(None, gt=0)
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    stream: bool = False
    stream_options: Optional[Dict[str, Any]] = None
    max_tool_calls: Optional[int] = Field(None, ge=0)
    # refused unless left at their defaults (apps/openai_responses.py says why)
    previous_response_id: Optional[str] = None
    conversation: Optional[Any] = None
    prompt: Optional[Any] = None
    reasoning: Optional[Any] = None
    include: Optional[List[Any]] = None
    top_logprobs: Optional[int] = None
    background: Optional[bool] = None
    truncation: Optional[str] = None
    # llama-server's sampling fields; their bounds are chat's (ChatCompletionRequest)
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    typical_p: Optional[float] = None
    repeat_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    mirostat_mode: Optional[int] = None
    mirostat_tau: Optional[float] = None
    mirostat_eta: Optional[float] = None
    stop: Optional[Union[str, List[str]]] = None
    seed: Optional[int] = None
    logit_bias: Optional[Dict[str, float]] = None
    grammar: Optional[str] = None
    json_schema: Optional[Dict[str, Any]] = None


def _as_chat(llm: Llama, body: ResponsesRequest) -> Tuple[List[Dict[str, Any]], Dict[str, Any],
                                                          openai_responses.Envelope]:
    """The chat messages and create_chat_completion arguments of a Responses request, and
    the envelope of its response. Raises ValueError (a 400) for what cannot run."""
    fields = body.model_dump(exclude_none=True)
    try:
        chat = ChatCompletionRequest.model_validate(openai_responses.chat_request(fields))
    except pydantic.ValidationError as err:
        raise ValueError(validation_message(RequestValidationError(err.errors()))[0]) from None
    messages = [m.model_dump(exclude_none=True) for m in chat.messages]
    kwargs = requests.chat_kwargs(chat)
    parallel = kwargs["parallel_tool_calls"]
    if parallel is None:   # the template decides, as ChatFormatter.render does
        parallel = bool(llm.chat_formatter.caps.get("supports_parallel_tool_calls"))
    return messages, kwargs, openai_responses.Envelope(fields, chat.temperature, chat.top_p, parallel)


@router.post("/v1/responses")
@router.post("/responses")
async def create_response(body: ResponsesRequest, request: Request, server: ServerContext = Depends(server_of)):
    llm = server.llm
    try:
        messages, kwargs, envelope = _as_chat(llm, body)
        requests.chat_prompt_tokens(llm, messages, kwargs)
    except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
        return error_for(err)

    def call(stream, progress, criteria):
        result = llm.create_chat_completion(messages, **dict(kwargs, stream=stream, progress_callback=progress,
                                                             stopping_criteria=criteria, scheduler=server.scheduler))
        if stream:
            return openai_responses.events(result, envelope)
        return openai_responses.response(result, envelope)

    return await run(server, request, body.stream, call, stream_format=stream_format.RESPONSES)


@router.post("/v1/responses/input_tokens")
@router.post("/responses/input_tokens")
async def input_tokens(body: ResponsesRequest, server: ServerContext = Depends(server_of)):
    """The prompt's token count, as the response would count usage.input_tokens."""
    llm = server.llm
    try:
        messages, kwargs, _ = _as_chat(llm, body)
        count = requests.count_chat_tokens(llm, messages, kwargs)
    except Exception as err:  # noqa: BLE001
        return error_for(err)
    return {"object": "response.input_tokens", "input_tokens": count}
