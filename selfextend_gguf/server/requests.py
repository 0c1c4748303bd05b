"""From request bodies to Llama calls: the keyword arguments of create_completion and
create_chat_completion, checks that run before a request takes a slot (so that bad
input is a 400 at once), and n > 1 choices."""

from __future__ import annotations

import base64
from typing import Any, Callable, Dict, Iterator, List, Union

import numpy as np

from ..llama import Llama
from ..engine.threads import map_in_threads
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest


def _sampling(body) -> Dict[str, Any]:
    out = dict(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, min_p=body.min_p,
               typical_p=body.typical_p, repeat_penalty=body.repeat_penalty, presence_penalty=body.presence_penalty,
               frequency_penalty=body.frequency_penalty, mirostat_mode=body.mirostat_mode,
               mirostat_tau=body.mirostat_tau, mirostat_eta=body.mirostat_eta, stop=body.stop, seed=body.seed,
               logit_bias=body.logit_bias)
    response_format = body.response_format
    if body.json_schema is not None:  # llama-server's own field
        if response_format is not None:
            raise ValueError("give json_schema or response_format, not both")
        response_format = {"type": "json_object", "schema": body.json_schema}
    out["response_format"] = response_format
    out["grammar"] = body.grammar
    return out


def completion_kwargs(body: CompletionRequest) -> Dict[str, Any]:
    out = _sampling(body)
    out.update(max_tokens=body.max_tokens, echo=body.echo, logprobs=body.logprobs, suffix=body.suffix)
    return out


def chat_kwargs(body: ChatCompletionRequest) -> Dict[str, Any]:
    out = _sampling(body)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise ValueError("give max_tokens or max_completion_tokens, not both")
    out.update(max_tokens=body.max_completion_tokens or body.max_tokens, tools=body.tools,
               tool_choice=body.tool_choice, parallel_tool_calls=body.parallel_tool_calls,
               functions=body.functions, function_call=body.function_call, logprobs=body.logprobs,
               top_logprobs=body.top_logprobs)
    return out


def check_completion(kwargs: Dict[str, Any]) -> None:
    """What create_completion would refuse (besides the prompt: Llama.prompt_tokens), refused
    before the request queues."""
    from ..apps.grammar import output_format_grammar, response_format_schema, user_grammar

    user_grammar(kwargs["grammar"])
    output_format_grammar(response_format_schema(kwargs["response_format"]))


def chat_prompt(llm: Llama, messages: List[Dict[str, Any]], kwargs: Dict[str, Any]) -> str:
    """The prompt text create_chat_completion renders for these arguments (the tools and
    format asked for: bad ones are a 400 here)."""
    from ..apps.completions import legacy_functions
    from ..apps.grammar import response_format_schema, user_grammar

    tools, tool_choice = kwargs["tools"], kwargs["tool_choice"]
    if kwargs.get("functions") is not None:
        tools, tool_choice = legacy_functions(kwargs["functions"], kwargs.get("function_call"))
    rendered = llm.chat_formatter.render(messages, tools=tools, tool_choice=tool_choice,
                                         json_schema=response_format_schema(kwargs.get("response_format")),
                                         grammar=user_grammar(kwargs.get("grammar")),
                                         parallel_tool_calls=kwargs.get("parallel_tool_calls"))
    return rendered.prompt


def chat_prompt_tokens(llm: Llama, messages: List[Dict[str, Any]], kwargs: Dict[str, Any]) -> List[int]:
    """The prompt's tokens (to pick the slot with the longest cached prefix), checked to
    leave room for an answer."""
    return llm.prompt_tokens(chat_prompt(llm, messages, kwargs))


def count_chat_tokens(llm: Llama, messages: List[Dict[str, Any]], kwargs: Dict[str, Any]) -> int:
    """The prompt's token count as usage would report it, for the token-counting routes: a
    prompt too long for the context is counted too (that is how a client finds out)."""
    return len(llm.tokenize(chat_prompt(llm, messages, kwargs), add_bos=True, special=True))


def check_embedding(llm: Llama, body: EmbeddingRequest) -> None:
    if llm.pooling_type() == 0:
        raise ValueError("this server's embeddings are per token (pooling none), which OpenAI's shape cannot "
                         "carry: start it with --pooling mean (or cls, last)")
    if body.dimensions is not None and body.dimensions != llm.n_embd():
        raise ValueError(f"dimensions: this model's embeddings have {llm.n_embd()} dimensions; other sizes are "
                         f"not implemented")


def encode_embeddings(result: Dict[str, Any], encoding_format: str) -> Dict[str, Any]:
    """OpenAI's encoding_format: "base64" is the vector as little-endian float32 bytes."""
    if encoding_format == "base64":
        for item in result["data"]:
            item["embedding"] = base64.b64encode(np.asarray(item["embedding"], dtype="<f4").tobytes()).decode()
    return result


def usage_chunk(last_chunk: Dict[str, Any], usage: Dict[str, int]) -> Dict[str, Any]:
    """OpenAI's stream_options.include_usage: a last chunk with no choices and the usage."""
    return {"id": last_chunk["id"], "object": last_chunk["object"], "created": last_chunk["created"],
            "model": last_chunk["model"], "choices": [], "usage": usage}


def choices(create: Callable[..., Any], n: int, stream: bool,
            kwargs: Dict[str, Any]) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
    """n choices of one request (choice i uses seed + i when a seed is given, so that they
    differ): whole ones run side by side on the scheduler's slots, streamed ones one after
    another."""
    if n == 1:
        return create(**kwargs)

    def kwargs_of(i: int) -> Dict[str, Any]:
        return dict(kwargs, seed=None if kwargs.get("seed") is None else kwargs["seed"] + i)

    if stream:
        return _stream_choices(create, n, kwargs_of)
    results = map_in_threads(lambda i: create(**kwargs_of(i)), range(n), name="choice")
    choices_ = [result["choices"][0] for result in results]
    for i, choice in enumerate(choices_):
        choice["index"] = i
    merged = results[0]
    merged["choices"] = choices_
    usage = merged["usage"]
    usage["completion_tokens"] = sum(r["usage"]["completion_tokens"] for r in results)
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return merged


def _stream_choices(create, n: int, kwargs_of) -> Iterator[Dict[str, Any]]:
    prompt_tokens, completion_tokens = 0, 0
    chunk = None
    for i in range(n):
        stream = create(**kwargs_of(i))
        try:
            for chunk in stream:
                usage = chunk.pop("usage", None)
                if usage is not None:
                    prompt_tokens = usage["prompt_tokens"]
                    completion_tokens += usage["completion_tokens"]
                for choice in chunk["choices"]:
                    choice["index"] = i
                if i == n - 1 and usage is not None:
                    chunk["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                      "total_tokens": prompt_tokens + completion_tokens}
                yield chunk
        finally:
            stream.close()
