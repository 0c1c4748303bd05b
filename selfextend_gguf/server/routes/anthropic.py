"""The Anthropic Messages API: /v1/messages and /v1/messages/count_tokens. As llama-server
does, a request becomes a chat completion (apps/anthropic_messages.py converts both ways),
so it runs on the batch scheduler's slots like /v1/chat/completions; errors are in
Anthropic's shape.

Beyond Anthropic's fields, llama-server's seed and logit_bias are accepted. Unset sampling
settings take llama-server's defaults (temperature 0.8, top_p 0.95, top_k 40, min_p 0.05)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ...apps import anthropic_messages
from .. import requests, stream_format
from ..bridge import run
from ..context import ServerContext, server_of
from ..errors import error_for
from ..schemas import RequestBody

router = APIRouter()

class _Conversation(RequestBody):
    # blocks are checked by apps/anthropic_messages.py; these are accepted and without
    # effect on the result (the prompt cache is automatic)
    ignored_fields = frozenset({"metadata", "service_tier", "cache_control"})

    model: Optional[str] = None
    messages: List[Any] = Field(min_length=1)
    system: Optional[Union[str, List[Any]]] = None
    tools: Optional[List[Any]] = None
    tool_choice: Optional[Dict[str, Any]] = None

    def chat(self):
        return anthropic_messages.chat_request(self.messages, self.system, self.tools, self.tool_choice)


class CountTokensRequest(_Conversation):
    pass


class MessagesRequest(_Conversation):
    max_tokens: int = Field(gt=0)
    stop_sequences: Optional[List[str]] = None
    stream: bool = False
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    seed: Optional[int] = Field(None, description="llama-server's field")
    logit_bias: Optional[Dict[str, float]] = Field(None, description="llama-server's field: token id -> bias")


def _sampling(body: MessagesRequest) -> Dict[str, Any]:
    # with stop sequences, the log-probabilities carry the tokens that tell which one ended the text
    return dict(max_tokens=body.max_tokens, stop=body.stop_sequences, temperature=body.temperature,
                top_p=body.top_p, top_k=body.top_k, seed=body.seed, logit_bias=body.logit_bias,
                logprobs=True if body.stop_sequences else None)


@router.post("/v1/messages")
async def messages(body: MessagesRequest, request: Request, server: ServerContext = Depends(server_of)):
    llm = server.llm
    try:
        chat, kwargs = body.chat()
        kwargs.update(_sampling(body))
        prompt_tokens = requests.chat_prompt_tokens(llm, chat, kwargs)
    except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
        return error_for(err, style="anthropic")

    def call(stream, progress, criteria):
        result = llm.create_chat_completion(chat, **kwargs, stream=stream, progress_callback=progress,
                                            stopping_criteria=criteria, scheduler=server.scheduler)
        if stream:
            return anthropic_messages.stream_events(result, server.model_name, len(prompt_tokens),
                                                    body.stop_sequences)
        return anthropic_messages.message(result, server.model_name, body.stop_sequences)

    return await run(server, request, body.stream, call, stream_format=stream_format.ANTHROPIC)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, server: ServerContext = Depends(server_of)):
    """The tokens of the rendered prompt, as /v1/messages would count them (no generation;
    a prompt longer than the context is counted too)."""
    llm = server.llm
    try:
        chat, kwargs = body.chat()
        n_tokens = requests.count_chat_tokens(llm, chat, kwargs)
    except Exception as err:  # noqa: BLE001
        return error_for(err, style="anthropic")
    return {"input_tokens": n_tokens}
