"""Request bodies. Known fields are validated (a violation is a 400 with an OpenAI-style
error). A field that would change the result and that this server does not implement is
a 400 naming it, never silently ignored; fields that change nothing here (user,
metadata, store, service_tier, ...) are accepted, as OpenAI-compatible servers do."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationInfo, field_validator,
                      model_validator)

# accepted and without effect on the result
IGNORED_FIELDS = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier",
                  "cache_prompt", "timings_per_token", "return_tokens", "id_slot", "t_max_predict_ms"}


class RequestBody(BaseModel):
    # unknown fields are collected (model_extra) and refused by refuse_unknown below,
    # except those a protocol accepts without effect (ignored_fields)
    model_config = ConfigDict(extra="allow")
    ignored_fields: ClassVar[frozenset] = frozenset(IGNORED_FIELDS)

    @model_validator(mode="after")
    def refuse_unknown(self):
        unknown = sorted(k for k in (self.model_extra or {}) if k not in self.ignored_fields)
        if unknown:
            raise ValueError(f"unsupported field(s) {', '.join(unknown)}: this server does not implement them, "
                             f"and ignoring them would change the result")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class _Sampling(RequestBody):
    model: Optional[str] = None
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    typical_p: float = Field(1.0, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    mirostat_mode: int = Field(0, ge=0, le=2)
    mirostat_tau: float = Field(5.0, gt=0.0)
    mirostat_eta: float = Field(0.1, gt=0.0)
    stop: Optional[Union[str, List[str]]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    seed: Optional[int] = None
    logit_bias: Optional[Dict[str, float]] = Field(None, description="token id -> bias, as OpenAI (-100 bans)")
    n: int = Field(1, ge=1, le=16, description="choices per request, generated one after another")
    grammar: Optional[str] = Field(None, description="GBNF (llama-server's field)")
    json_schema: Optional[Dict[str, Any]] = Field(None, description="a JSON schema (llama-server's field)")
    response_format: Optional[Dict[str, Any]] = None


class CompletionRequest(_Sampling):
    prompt: Union[str, List[int]]
    suffix: Optional[str] = None
    max_tokens: Optional[int] = Field(16, gt=0)
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=20)


class ChatMessage(BaseModel):
    # the message fields the template reads; others in a message (refusal, audio ...) are dropped
    model_config = ConfigDict(extra="ignore")

    role: str
    content: Optional[Union[str, List[Dict[str, Any]]]] = None
    name: Optional[str] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None
    tool_call_id: Optional[str] = None
    reasoning_content: Optional[str] = None


class ChatCompletionRequest(_Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, gt=0)
    max_completion_tokens: Optional[int] = Field(None, gt=0)
    temperature: float = Field(0.2, ge=0.0)
    tools: Optional[List[Dict[str, Any]]] = None
    tool_choice: Optional[Union[str, Dict[str, Any]]] = None
    parallel_tool_calls: Optional[bool] = None
    functions: Optional[List[Dict[str, Any]]] = None
    function_call: Optional[Union[str, Dict[str, Any]]] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)


class EmbeddingRequest(RequestBody):
    input: Union[str, List[str], List[int], List[List[int]]]
    model: Optional[str] = None
    encoding_format: Optional[str] = Field("float", pattern="^(float|base64)$",
                                           description="float, or base64 of little-endian float32 (the openai "
                                                       "client's default)")
    dimensions: Optional[int] = None


class TokenizeRequest(RequestBody):
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(RequestBody):
    tokens: List[int]


# ---------------------------------------------------------------------------- llama-server's own

# llama-server's default sampler order (llama.cpp's common sampling), the one this
# server's chain follows; the samplers it does not implement are off in it
DEFAULT_SAMPLERS = ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]
DEFAULT_SAMPLER_CHARS = "edskypmxt"

# fields accepted only at the value that turns them off: (is it off, why not otherwise)
_OFF_ONLY = {
    "dynatemp_range": (lambda v: v == 0, "dynamic temperature is not implemented; leave it 0"),
    "top_n_sigma": (lambda v: v < 0, "top-n-sigma sampling is not implemented; leave it -1"),
    "xtc_probability": (lambda v: v == 0, "XTC sampling is not implemented; leave it 0"),
    "dry_multiplier": (lambda v: v == 0, "DRY sampling is not implemented; leave it 0"),
    "adaptive_target": (lambda v: v < 0, "adaptive-p sampling is not implemented; leave it -1"),
    "min_keep": (lambda v: v == 0, "min_keep is not implemented; leave it 0"),
    "n_indent": (lambda v: v == 0, "n_indent is not implemented; leave it 0"),
    "t_max_predict_ms": (lambda v: v <= 0, "a time limit on generation is not implemented; use n_predict"),
    "post_sampling_probs": (lambda v: not v, "probabilities after the sampler chain are not available; n_probs "
                                             "gives the model's own (before sampling)"),
    "backend_sampling": (lambda v: not v, "backend sampling is not implemented"),
    "return_progress": (lambda v: not v, "prompt progress events are not implemented"),
    "grammar_lazy": (lambda v: not v, "lazy grammars (with triggers) are not implemented here"),
    "grammar_triggers": (lambda v: not v, "grammar triggers are not implemented here"),
    "preserved_tokens": (lambda v: not v, "preserved tokens are not implemented here"),
    "n_cmpl": (lambda v: v == 1, "one completion per request here; send several requests"),
    "n": (lambda v: v == 1, "one completion per request here; send several requests"),
    "lora": (lambda v: not v, "per-request LoRA adapters are not implemented"),
    "verbose": (lambda v: not v, "the __verbose field is not implemented"),
}


class NativeCompletionRequest(RequestBody):
    """llama-server's /completion body, with its names and defaults. prompt: a string, a
    list of token ids, or a list of strings and ids (one prompt). Fields that change
    nothing here (cache_prompt: prompts always reuse cached cells; n_keep, n_discard and
    n_cache_reuse: there is no context shift; the settings of samplers that are off) are
    accepted."""
    prompt: Any
    model: Optional[str] = None
    n_predict: Optional[int] = Field(None, ge=-1, description="-1: until a stop or the context's end")
    max_tokens: Optional[int] = Field(None, ge=-1, description="n_predict's other name")
    max_completion_tokens: Optional[int] = Field(None, ge=-1, description="n_predict's other name")
    temperature: float = Field(0.8, ge=0.0)
    top_k: int = Field(40, ge=0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    typical_p: float = Field(1.0, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0)
    repeat_last_n: int = Field(64, ge=-1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    mirostat: int = Field(0, ge=0, le=2)
    mirostat_tau: float = Field(5.0, gt=0.0)
    mirostat_eta: float = Field(0.1, gt=0.0)
    seed: int = Field(-1, description="-1: random")
    stop: Optional[Union[str, List[str]]] = None
    grammar: Optional[str] = None
    json_schema: Optional[Dict[str, Any]] = None
    logit_bias: Optional[Union[List[Any], Dict[str, Any]]] = Field(
        None, description="[[token id or text, bias], ...] or {id or text: bias}; a bias of false bans")
    n_probs: Optional[int] = Field(None, ge=0, le=20)
    logprobs: Optional[int] = Field(None, ge=0, le=20, description="n_probs' other name")
    ignore_eos: bool = False
    stream: bool = False
    stream_options: Optional[Dict[str, Any]] = None
    cache_prompt: bool = True
    id_slot: int = Field(-1, ge=-1, description="a hint: the scheduler picks the slot holding most of the prompt")
    return_tokens: bool = False
    timings_per_token: bool = False
    response_fields: Optional[List[str]] = None
    samplers: Optional[Union[List[str], str]] = None
    n_keep: int = Field(0, ge=-1)
    n_discard: int = Field(0, ge=0)
    n_cache_reuse: int = Field(0, ge=0)
    sse_ping_interval: Optional[float] = None
    dynatemp_exponent: float = 1.0
    xtc_threshold: float = 0.1
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_penalty_last_n: int = 64
    dry_sequence_breakers: Optional[List[str]] = None
    adaptive_decay: float = 0.9
    # off, or refused (_OFF_ONLY)
    dynatemp_range: float = 0.0
    top_n_sigma: float = -1.0
    xtc_probability: float = 0.0
    dry_multiplier: float = 0.0
    adaptive_target: float = -1.0
    min_keep: int = 0
    n_indent: int = 0
    t_max_predict_ms: int = -1
    post_sampling_probs: bool = False
    backend_sampling: bool = False
    return_progress: bool = False
    grammar_lazy: bool = False
    grammar_triggers: Optional[List[Any]] = None
    preserved_tokens: Optional[List[str]] = None
    n_cmpl: int = 1
    n: int = 1
    lora: Optional[List[Any]] = None
    verbose: bool = False

    @field_validator(*_OFF_ONLY)
    @classmethod
    def only_off(cls, value, info: ValidationInfo):
        is_off, why = _OFF_ONLY[info.field_name]
        if value is not None and not is_off(value):
            raise ValueError(why)
        return value

    @field_validator("samplers")
    @classmethod
    def default_order(cls, value):
        if value is not None and value not in (DEFAULT_SAMPLERS, DEFAULT_SAMPLER_CHARS):
            raise ValueError(f"another sampler order is not implemented; this server's is "
                             f"{DEFAULT_SAMPLERS} (leave samplers out)")
        return value

    @property
    def limit(self) -> int:
        """n_predict, or its other names."""
        for value in (self.n_predict, self.max_tokens, self.max_completion_tokens):
            if value is not None:
                return value
        return -1

    @property
    def top_probs(self) -> int:
        """n_probs, or logprobs."""
        return self.n_probs if self.n_probs is not None else (self.logprobs or 0)


class InfillChunk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr
    filename: StrictStr = "tmp"


class InfillRequest(NativeCompletionRequest):
    """llama-server's /infill body: the code before and after the cursor (text, or text and
    token ids), other files of the project, and prompt: the cursor's line so far (it
    ends the prefix); besides, /completion's fields."""
    prompt: StrictStr = ""
    input_prefix: Union[StrictStr, List[Union[StrictInt, StrictStr]]]
    input_suffix: Union[StrictStr, List[Union[StrictInt, StrictStr]]]
    input_extra: List[InfillChunk] = Field(default_factory=list)
