"""llama-server's native generation routes: POST /completion (and /completions) and POST
/infill. A request is translated into create_completion's keyword arguments (the same
generation as /v1/completions, on a slot of the batch scheduler) and the result into
llama-server's shape: content, stop_type, timings, completion_probabilities, ...;
streams are `data: {json}` events, the last one with stop: true, and no [DONE]."""

from __future__ import annotations

import codecs
import math
from typing import Any, Dict, Iterator, List, Optional

from fastapi import APIRouter, Depends, Request

from ...apps.infill import infill_prompt
from ...engine.sampling import LLAMA_DEFAULT_SEED
from ...llama import Llama
from .. import requests
from ..bridge import run
from ..context import ServerContext, server_of
from ..errors import error_for, error_response
from ..metrics import RequestClock
from ..schemas import DEFAULT_SAMPLERS, CompletionRequest, InfillRequest, NativeCompletionRequest
from ..stream_format import NATIVE

router = APIRouter()


class FieldError(ValueError):
    """Bad input in one field (a 400 that names it)."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


# ---------------------------------------------------------------------------- request

def _token_ids(llm: Llama, ids: List[Any], param: str) -> List[int]:
    n_vocab = llm.n_vocab()
    for t in ids:
        if not 0 <= t < n_vocab:
            raise FieldError(param, f"token id {t} is outside the vocabulary [0, {n_vocab})")
    return ids


def _is_id(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool)


def prompt_tokens(llm: Llama, prompt: Any) -> List[int]:
    """llama-server's prompt forms for one prompt: text (BOS added when the vocabulary
    wants it, special tokens parsed), token ids, or text and ids mixed (BOS only before
    leading text); a list holding one of these, or {"prompt_string": ...}, too."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list, dict)):
        prompt = prompt[0]
    if isinstance(prompt, dict) and set(prompt) == {"prompt_string"}:
        prompt = prompt["prompt_string"]
    if isinstance(prompt, str):
        if not prompt:
            raise FieldError("prompt", "empty prompt: give at least one character of text")
        return llm.prompt_tokens(prompt)
    if isinstance(prompt, list) and prompt and all(_is_id(p) or isinstance(p, str) for p in prompt) \
            and any(_is_id(p) for p in prompt):
        tokens: List[int] = []
        for i, item in enumerate(prompt):
            tokens += [item] if _is_id(item) else llm.tokenize(item, add_bos=i == 0, special=True)
        return llm.prompt_tokens(_token_ids(llm, tokens, "prompt"))
    raise FieldError("prompt", "must be a string, a list of token ids, or a list of strings and token ids (one "
                     "prompt; several prompts in one request are not implemented, and multimodal data is not "
                     "supported)")


def logit_bias(llm: Llama, value: Any, ignore_eos: bool) -> Optional[Dict[str, float]]:
    """llama-server's logit_bias: [[id or text, bias], ...] or {id or text: bias}; text
    biases each of its tokens, and a bias of false bans. ignore_eos bans the end tokens."""
    as_dict = isinstance(value, dict)
    out: Dict[str, float] = {}
    for pair in value.items() if as_dict else (value or []):
        if not as_dict and (not isinstance(pair, list) or len(pair) != 2):
            raise FieldError("logit_bias", f"entries must be [token id or text, bias], got {pair!r}")
        key, bias = pair
        if bias is False:
            bias = float("-inf")
        elif isinstance(bias, bool) or not isinstance(bias, (int, float)):
            raise FieldError("logit_bias", f"a bias must be a number or false, got {bias!r}")
        if as_dict and key.lstrip("-").isdigit():   # an object's keys are text: digits name an id
            ids = [int(key)]
        elif isinstance(key, str):
            ids = llm.tokenize(key, add_bos=False, special=False)
        elif isinstance(key, int) and not isinstance(key, bool):
            ids = [key]
        else:
            raise FieldError("logit_bias", f"a token must be an id or a text, got {key!r}")
        for t in _token_ids(llm, ids, "logit_bias"):
            out[str(t)] = float(bias)
    if ignore_eos:
        out.update({str(t): b for t, b in llm.eog_bias().items()})
    return out or None


def completion_kwargs(llm: Llama, body: NativeCompletionRequest, tokens: List[int]) -> Dict[str, Any]:
    """create_completion's keyword arguments, by way of /v1/completions' request."""
    if body.limit == 0:
        raise FieldError("n_predict", "0 (evaluate the prompt only) is not implemented; give -1 or a limit")
    penalties_on = body.repeat_penalty != 1.0 or body.presence_penalty != 0.0 or body.frequency_penalty != 0.0
    if penalties_on and body.repeat_last_n != llm.last_n_tokens_size:
        raise FieldError("repeat_last_n", f"this server's penalties look at the last {llm.last_n_tokens_size} "
                                          f"tokens (its setting for all requests); other values are not "
                                          f"implemented")
    if body.grammar is not None and body.json_schema is not None:
        raise FieldError("grammar", "give grammar or json_schema, not both")
    openai_body = CompletionRequest(
        prompt=tokens, max_tokens=body.limit if body.limit > 0 else None, temperature=body.temperature,
        top_k=body.top_k, top_p=body.top_p, min_p=body.min_p, typical_p=body.typical_p,
        repeat_penalty=body.repeat_penalty, presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty, mirostat_mode=body.mirostat, mirostat_tau=body.mirostat_tau,
        mirostat_eta=body.mirostat_eta, stop=body.stop, seed=None if body.seed == -1 else body.seed,
        logit_bias=logit_bias(llm, body.logit_bias, body.ignore_eos), grammar=body.grammar,
        json_schema=body.json_schema, logprobs=body.top_probs or None, stream=body.stream)
    kwargs = requests.completion_kwargs(openai_body)
    requests.check_completion(kwargs)
    return kwargs


def generation_settings(llm: Llama, body: NativeCompletionRequest) -> Dict[str, Any]:
    """llama-server's generation_settings (its task params): what this request runs with."""
    stop = [body.stop] if isinstance(body.stop, str) else [s for s in body.stop or [] if s]
    bias = logit_bias(llm, body.logit_bias, body.ignore_eos) or {}
    return {
        "seed": LLAMA_DEFAULT_SEED if body.seed == -1 else body.seed, "temperature": body.temperature,
        "dynatemp_range": body.dynatemp_range, "dynatemp_exponent": body.dynatemp_exponent, "top_k": body.top_k,
        "top_p": body.top_p, "min_p": body.min_p, "top_n_sigma": body.top_n_sigma,
        "xtc_probability": body.xtc_probability, "xtc_threshold": body.xtc_threshold, "typical_p": body.typical_p,
        "repeat_last_n": llm.last_n_tokens_size, "repeat_penalty": body.repeat_penalty,
        "presence_penalty": body.presence_penalty, "frequency_penalty": body.frequency_penalty,
        "dry_multiplier": body.dry_multiplier, "dry_base": body.dry_base,
        "dry_allowed_length": body.dry_allowed_length, "dry_penalty_last_n": body.dry_penalty_last_n,
        "mirostat": body.mirostat, "mirostat_tau": body.mirostat_tau, "mirostat_eta": body.mirostat_eta,
        "stop": stop, "max_tokens": body.limit, "n_predict": body.limit, "n_keep": body.n_keep,
        "n_discard": body.n_discard, "ignore_eos": body.ignore_eos, "stream": body.stream,
        # a ban (-inf) is null, as llama-server writes it
        "logit_bias": [{"bias": b if math.isfinite(b) else None, "token": int(t)} for t, b in bias.items()],
        "n_probs": body.top_probs,
        "min_keep": body.min_keep, "grammar": body.grammar or "", "json_schema": body.json_schema,
        "samplers": DEFAULT_SAMPLERS, "timings_per_token": body.timings_per_token,
        "post_sampling_probs": False, "lora": [],
    }


# ---------------------------------------------------------------------------- result

class _Watch:
    """One generation seen from its slot. create_completion answers in OpenAI's shape, so
    llama-server's own fields (the token ids, why it stopped, the slot) are read from the
    Generation itself, found on the scheduler's slot by its progress callback, which the
    scheduler calls on its thread for every prompt chunk (at least one)."""

    def __init__(self, scheduler, progress):
        self.clock = RequestClock()
        self.gen = None
        self.id_slot = -1

        def on_progress(done: int, total: int) -> None:
            progress(done, total)   # the bridge's: raises when the client has gone
            self.clock.prompt_read(done, total)
            for slot in scheduler.slots:
                if slot.job is not None and slot.job.gen.progress_callback is on_progress:
                    self.gen, self.id_slot = slot.job.gen, slot.seq_id

        self.progress = on_progress

    @property
    def tokens(self) -> List[int]:
        return self.gen.completion_tokens if self.gen is not None else []


def _text(raw: bytes) -> str:
    """A token's text, without a UTF-8 character that it only begins (as llama-server)."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(raw, final=False)


class _Shape:
    """llama-server's response objects for one request."""

    def __init__(self, server: ServerContext, body: NativeCompletionRequest, prompt: List[int], watch: _Watch):
        self.llm, self.body, self.prompt, self.watch = server.llm, body, prompt, watch
        self.model = server.model_name
        self.settings = generation_settings(server.llm, body)

    def _probs(self, items) -> List[Dict[str, Any]]:
        def entry(token: int, logprob: float) -> Dict[str, Any]:
            raw = self.llm.token_bytes(token)
            return {"id": token, "token": _text(raw), "bytes": list(raw), "logprob": logprob}

        return [dict(entry(it.token, it.logprob), top_logprobs=[entry(t, lp) for t, lp in it.top]) for it in items]

    def timings(self) -> Dict[str, Any]:
        clock = self.watch.clock
        n_prompt, n_gen = clock.n_prompt_read, len(self.watch.tokens)
        prompt_ms, gen_ms = clock.prompt_s * 1e3, clock.predicted_s * 1e3
        return {"cache_n": len(self.prompt) - n_prompt, "prompt_n": n_prompt, "prompt_ms": prompt_ms,
                "prompt_per_token_ms": prompt_ms / n_prompt if n_prompt else 0.0,
                "prompt_per_second": 1e3 * n_prompt / prompt_ms if prompt_ms > 0 else 0.0,
                "predicted_n": n_gen, "predicted_ms": gen_ms,
                "predicted_per_token_ms": gen_ms / n_gen if n_gen else 0.0,
                "predicted_per_second": 1e3 * n_gen / gen_ms if gen_ms > 0 else 0.0}

    def partial(self, text: str, tokens: List[int], probs, n_sent: int) -> Dict[str, Any]:
        out = {"index": 0, "content": text, "tokens": tokens, "stop": False, "id_slot": self.watch.id_slot,
               "tokens_predicted": n_sent, "tokens_evaluated": len(self.prompt)}
        if self.body.timings_per_token:
            out["timings"] = self.timings()
        if self.body.top_probs > 0 and probs:
            out["completion_probabilities"] = self._probs(probs)
        return out

    def _stop(self, content: str, finish_reason: str):
        """(stop_type, stopping_word): "limit" at n_predict or the context's end; "word" when
        a stop string ended it (the first that the text holds where the content ends);
        else "eos", an end-of-generation token."""
        gen = self.watch.gen
        if finish_reason == "length":
            return "limit", ""
        if gen is None or not gen.stream.stopped:
            return "eos", ""
        text = b"".join(self.llm.token_bytes(t) for t in gen.completion_tokens).decode("utf-8", errors="replace")
        found = [(text.find(s, len(content)), i, s) for i, s in enumerate(gen.stream.stop)]
        found = sorted(f for f in found if f[0] >= 0)
        return "word", found[0][2] if found else ""

    def final(self, content: str, finish_reason: str, streamed: bool) -> Dict[str, Any]:
        self.watch.clock.end()
        stop_type, word = self._stop(content, finish_reason)
        tokens = self.watch.tokens
        n_gen, n_prompt, limit = len(tokens), len(self.prompt), self.body.limit
        out = {
            "index": 0, "content": "" if streamed else content,
            "tokens": list(tokens) if self.body.return_tokens and not streamed else [],
            "id_slot": self.watch.id_slot, "stop": True, "model": self.model, "tokens_predicted": n_gen,
            "tokens_evaluated": n_prompt, "generation_settings": self.settings,
            "prompt": self.llm.detokenize(self.prompt, special=True).decode("utf-8", errors="replace"),
            "has_new_line": "\n" in content,
            "truncated": stop_type == "limit" and (limit <= 0 or n_gen < limit),
            "stop_type": stop_type, "stopping_word": word,
            # the last token drawn is evaluated only when the generation goes on after it
            "tokens_cached": n_prompt + max(0, n_gen - (stop_type != "eos")),
            "timings": self.timings(),
        }
        if self.body.top_probs > 0 and not streamed and self.watch.gen is not None:
            probs = self.watch.gen.logprobs
            if stop_type == "word" and word:   # as llama-server: less as many tokens as the stop string has
                probs = probs[:max(0, len(probs) - len(self.llm.tokenize(word, add_bos=False)))]
            out["completion_probabilities"] = self._probs(probs)
        if self.body.response_fields:
            out = _fields(out, self.body.response_fields)
        return out


def _fields(result: Dict[str, Any], paths: List[str]) -> Dict[str, Any]:
    """llama-server's response_fields: only these, a/b naming b inside a (kept under "a/b")."""
    out = {}
    for path in paths:
        value: Any = result
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            out[path] = value
    return out


def _stream(chunks, shape: _Shape) -> Iterator[Dict[str, Any]]:
    """create_completion's chunks as llama-server's events: each piece with the tokens whose
    text it completes (the scheduler may have drawn more by then), then the tokens that
    showed no text (a stop string's), then the final object."""
    watch, llm = shape.watch, shape.llm
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    sent, n_chars, content = 0, 0, []   # tokens sent; the length of their text

    def take(upto: Optional[int]):
        nonlocal sent, n_chars
        tokens, start = watch.tokens, sent
        while sent < len(tokens) and (upto is None or n_chars < upto):
            n_chars += len(decoder.decode(llm.token_bytes(tokens[sent])))
            sent += 1
        probs = watch.gen.logprobs[start:sent] if watch.gen is not None and watch.gen.n_logprobs else []
        return tokens[start:sent], probs, sent

    try:
        for chunk in chunks:
            choice = chunk["choices"][0]
            if choice["finish_reason"] is None:
                content.append(choice["text"])
                yield shape.partial(choice["text"], *take(sum(map(len, content))))
                continue
            rest, probs, n_sent = take(None)
            if rest:
                yield shape.partial("", rest, probs, n_sent)
            yield shape.final("".join(content), choice["finish_reason"], streamed=True)
    finally:
        chunks.close()


# ---------------------------------------------------------------------------- routes

def _bad_input(err: Exception):
    if isinstance(err, FieldError):
        return error_response(400, str(err), param=err.param)
    return error_for(err)


async def _generate(server: ServerContext, request: Request, body: NativeCompletionRequest, tokens: List[int]):
    llm = server.llm
    try:
        kwargs = completion_kwargs(llm, body, tokens)
        if body.id_slot >= server.n_slots:
            raise FieldError("id_slot", f"no slot {body.id_slot}: slots are 0..{server.n_slots - 1} (or -1: any)")
    except Exception as err:  # noqa: BLE001 - bad input (400) or a broken model (500)
        return _bad_input(err)

    def call(stream, progress, criteria):
        watch = _Watch(server.scheduler, progress)
        shape = _Shape(server, body, tokens, watch)
        result = llm.create_completion(tokens, **dict(kwargs, stream=stream, progress_callback=watch.progress,
                                                      stopping_criteria=criteria, scheduler=server.scheduler))
        if stream:
            return _stream(result, shape)
        choice = result["choices"][0]
        return shape.final(choice["text"], choice["finish_reason"], streamed=False)

    return await run(server, request, body.stream, call, stream_format=NATIVE)


@router.post("/completion")
@router.post("/completions")
async def completion(body: NativeCompletionRequest, request: Request, server: ServerContext = Depends(server_of)):
    try:
        tokens = prompt_tokens(server.llm, body.prompt)
    except Exception as err:  # noqa: BLE001
        return _bad_input(err)
    return await _generate(server, request, body, tokens)


@router.post("/infill")
async def infill(body: InfillRequest, request: Request, server: ServerContext = Depends(server_of)):
    llm = server.llm
    try:
        for name, value in (("input_prefix", body.input_prefix), ("input_suffix", body.input_suffix)):
            if not isinstance(value, str):
                _token_ids(llm, [v for v in value if isinstance(v, int)], name)
        cursor_line = llm.tokenize(body.prompt, add_bos=False, special=True) if body.prompt else []
        tokens = llm.prompt_tokens(infill_prompt(
            llm, body.input_prefix, body.input_suffix, [c.model_dump() for c in body.input_extra], cursor_line,
            llm.n_batch(), body.limit, llm.n_ctx(), llm.spm_infill))
    except Exception as err:  # noqa: BLE001
        return _bad_input(err)
    return await _generate(server, request, body, tokens)
