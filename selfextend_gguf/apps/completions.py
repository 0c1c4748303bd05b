"""create_completion and create_chat_completion: prompt, sampler and parser put together,
the generation loop run, and the result shaped as llama_cpp and OpenAI shape it."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import logprobs as lp
from . import responses
from .chat_format import RenderedChat
from ..engine.generation import Generation, LogitsProcessor, logits_processors
from .host import ModelHost
from .infill import fim_prompt
from .grammar import output_format_grammar, response_format_schema, user_grammar
from ..engine.sampling import GrammarSpec, SamplingParams, new_sampler


ProgressCallback = Callable[[int, int], None]


@dataclass
class GenerationOptions:
    """What both completion calls take besides the prompt and the sampling settings."""
    max_tokens: Optional[int] = 16
    stop: Union[str, Sequence[str], None] = None
    stream: bool = False
    progress_callback: Optional[ProgressCallback] = None
    stopping_criteria: Optional[Sequence[Callable[[np.ndarray, np.ndarray], bool]]] = None
    logits_processor: Union[None, LogitsProcessor, Sequence[LogitsProcessor]] = None
    # a BatchScheduler: run on one of its slots, batched with other calls (None: alone)
    scheduler: Optional[Any] = None

    def lock(self, llm: "ModelHost"):
        """Alone, the Llama is held for the whole generation; on a scheduler's slot the
        scheduler owns the context and other calls run beside this one."""
        return llm.lock if self.scheduler is None else contextlib.nullcontext()

    def store_in_cache(self, llm: "ModelHost") -> None:
        if self.scheduler is None:
            llm.sequence.store_in_cache()


def _stops(stop: Union[str, Sequence[str], None], extra: Sequence[str] = ()) -> List[str]:
    if stop is None:
        stops: List[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    else:
        stops = list(stop)
        if not all(isinstance(s, str) for s in stops):
            raise ValueError("stop must be a string or a list of strings")
    return stops + [s for s in extra if s not in stops]


def _generation(llm: "ModelHost", prompt_tokens: List[int], sampling: SamplingParams, options: GenerationOptions,
                grammar: Optional[GrammarSpec], n_logprobs: Optional[int], extra_stops: Sequence[str] = (),
                special_tokens: Sequence[int] = ()) -> Generation:
    max_tokens = options.max_tokens
    if max_tokens is not None and max_tokens <= 0:
        max_tokens = None  # llama_cpp: unlimited, bounded by n_ctx
    sampler = new_sampler(llm.model, sampling, llm.n_ctx(), grammar)
    return Generation(llm.sequence, llm.model, prompt_tokens, sampler, max_tokens, _stops(options.stop, extra_stops),
                      options.progress_callback, options.stopping_criteria or (),
                      logits_processors(options.logits_processor), n_logprobs, special_tokens,
                      llm.n_ctx() if sampling.penalty_last_n == -1 else sampling.penalty_last_n,
                      options.scheduler.run if options.scheduler is not None else None)


# ---------------------------------------------------------------------------- completions

def completion(llm: "ModelHost", prompt: Union[str, bytes, Sequence[int]], sampling: SamplingParams,
               options: GenerationOptions, *, suffix: Optional[str] = None, logprobs: Optional[int] = None,
               echo: bool = False, grammar: Any = None,
               response_format: Optional[Mapping[str, Any]] = None) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
    n_logprobs = lp.check_count(logprobs, "logprobs")
    if grammar is not None and response_format is not None and response_format_schema(response_format):
        raise ValueError("give a grammar or a JSON schema (response_format), not both")
    spec = user_grammar(grammar) or output_format_grammar(response_format_schema(response_format))
    if suffix is not None:
        if echo:
            raise ValueError("echo=True cannot be combined with suffix= (fill-in-the-middle)")
        prompt_tokens = llm.prompt_tokens(fim_prompt(llm, prompt, suffix, llm.spm_infill))
    else:
        prompt_tokens = llm.prompt_tokens(prompt)
    gen = _generation(llm, prompt_tokens, sampling, options, spec, n_logprobs)
    id_ = responses.new_id("cmpl")
    prefix = llm.detokenize(prompt_tokens).decode("utf-8", errors="replace") if echo else ""
    if echo and n_logprobs is not None:
        gen.prompt_logprobs_wanted = n_logprobs   # the first prompt token has none: None

    def logprobs_of(items, offset0: int):
        return lp.completion_logprobs(items, llm.token_bytes, offset0) if n_logprobs is not None else None

    def prompt_items():
        return [None] + gen.prompt_logprob_items if gen.prompt_logprobs_wanted is not None else []

    if options.stream:
        return _stream_completion(llm, gen, id_, prefix, prompt_items, logprobs_of, options)
    with options.lock(llm):
        text = "".join(gen)
        options.store_in_cache(llm)
    logprobs_out = logprobs_of(prompt_items() + gen.logprobs, 0)
    return responses.completion(id_, llm.model_path, prefix + text, gen.finish_reason,
                                responses.usage(len(prompt_tokens), len(gen.completion_tokens)),
                                logprobs=logprobs_out)


def _stream_completion(llm: "ModelHost", gen: Generation, id_: str, prefix: str, prompt_items, logprobs_of,
                       options: GenerationOptions):
    with options.lock(llm):
        offset = 0
        pieces = iter(gen)
        first = next(pieces, None)   # the prompt is evaluated (and, with echo and logprobs, scored)
        if prefix:
            yield responses.completion(id_, llm.model_path, prefix, None, chunk=True,
                                       logprobs=logprobs_of(prompt_items(), 0))
            offset = len(prefix)
        for piece in _then_all(first, pieces):
            yield responses.completion(id_, llm.model_path, piece, None, chunk=True,
                                       logprobs=logprobs_of(gen.take_logprobs(), offset))
            offset += len(piece)
        last = responses.completion(id_, llm.model_path, "", gen.finish_reason, chunk=True,
                                    logprobs=logprobs_of(gen.take_logprobs(), offset))
        last["usage"] = responses.usage(len(gen.prompt_tokens), len(gen.completion_tokens))
        options.store_in_cache(llm)
        yield last


def _then_all(first, rest):
    if first is not None:
        yield first
    yield from rest


# ---------------------------------------------------------------------------- chat

def legacy_functions(functions, function_call):
    """llama_cpp's (and OpenAI's older) functions/function_call, as tools/tool_choice."""
    tools = [{"type": "function", "function": f} for f in functions]
    if function_call is None or function_call in ("auto", "none"):
        return tools, function_call
    if isinstance(function_call, Mapping) and function_call.get("name"):
        return tools, {"type": "function", "function": {"name": function_call["name"]}}
    raise ValueError("function_call must be 'auto', 'none' or {'name': ...}")


def chat_completion(llm: "ModelHost", messages: Sequence[Mapping[str, Any]], sampling: SamplingParams,
                    options: GenerationOptions, *, tools=None, tool_choice=None, functions=None,
                    function_call=None, response_format=None, grammar=None, logprobs: Optional[bool] = None,
                    top_logprobs: Optional[int] = None,
                    parallel_tool_calls: Optional[bool] = None) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
    if functions is not None:
        if tools is not None:
            raise ValueError("give tools or functions (the older form), not both")
        tools, tool_choice = legacy_functions(functions, function_call)
    elif function_call is not None:
        raise ValueError("function_call needs functions")
    if top_logprobs is not None and not logprobs:
        raise ValueError("top_logprobs needs logprobs=True")
    n_logprobs = (lp.check_count(top_logprobs, "top_logprobs") or 0) if logprobs else None
    rendered: RenderedChat = llm.chat_formatter.render(
        messages, tools=tools, tool_choice=tool_choice, json_schema=response_format_schema(response_format),
        grammar=user_grammar(grammar), parallel_tool_calls=parallel_tool_calls)
    prompt_tokens = llm.prompt_tokens(rendered.prompt)
    gen = _generation(llm, prompt_tokens, sampling, options, rendered.grammar, n_logprobs, rendered.stop,
                      rendered.special_tokens)
    id_ = responses.new_id("chatcmpl")
    parser = rendered.parser()
    legacy = functions is not None

    def logprobs_of(items):
        return lp.chat_logprobs(items, llm.token_bytes) if n_logprobs is not None else None

    if options.stream:
        return _stream_chat(llm, gen, parser, id_, logprobs_of, options)
    with options.lock(llm):
        text = "".join(gen)
        options.store_in_cache(llm)
    parser.update(text, False)
    message = _message(parser, legacy)
    finish = "tool_calls" if message.get("tool_calls") and gen.finish_reason == "stop" else gen.finish_reason
    return responses.chat_completion(id_, llm.model_path, message, finish,
                                     responses.usage(len(prompt_tokens), len(gen.completion_tokens)),
                                     logprobs=logprobs_of(gen.logprobs))


def _message(parser, legacy: bool) -> Dict[str, Any]:
    message = json.loads(parser.message_json())
    message["role"] = "assistant"
    if message.get("tool_calls"):
        message.setdefault("content", None)
        if legacy:
            first = message["tool_calls"][0]["function"]
            message["function_call"] = {"name": first["name"], "arguments": first["arguments"]}
    else:
        message.setdefault("content", "")
    return message


def _stream_chat(llm: "ModelHost", gen: Generation, parser, id_: str, logprobs_of, options: GenerationOptions):
    saw_tool_call = False
    pending: List[lp.TokenLogprob] = []  # log-probabilities of tokens not yet in a chunk
    with options.lock(llm):
        yield responses.chat_chunk(id_, llm.model_path, {"role": "assistant"}, None)
        pieces = ((piece, True) for piece in gen)
        for piece, partial in _then(pieces, ("", False)):
            pending += gen.take_logprobs()
            for delta in parser.update(piece, partial):
                saw_tool_call = saw_tool_call or "tool_calls" in delta
                yield responses.chat_chunk(id_, llm.model_path, delta, None, logprobs=logprobs_of(pending))
                pending = []
        finish = "tool_calls" if saw_tool_call and gen.finish_reason == "stop" else gen.finish_reason
        last = responses.chat_chunk(id_, llm.model_path, {}, finish,
                                    logprobs=logprobs_of(pending) if pending else None)
        last["usage"] = responses.usage(len(gen.prompt_tokens), len(gen.completion_tokens))
        options.store_in_cache(llm)
        yield last


def _then(items, last):
    yield from items
    yield last
