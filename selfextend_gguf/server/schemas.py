"""Request bodies. Known fields are validated (a violation is a 400 with an OpenAI-style
error). A field that would change the result and that this server does not implement is
a 400 naming it, never silently ignored; fields that change nothing here (user,
metadata, store, service_tier, ...) are accepted, as OpenAI-compatible servers do."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

# accepted and without effect on the result
IGNORED_FIELDS = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier",
                  "cache_prompt", "timings_per_token", "return_tokens", "id_slot", "t_max_predict_ms"}


class _Request(BaseModel):
    # unknown fields are collected (model_extra) and refused by refuse_unknown below
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def refuse_unknown(self):
        unknown = sorted(k for k in (self.model_extra or {}) if k not in IGNORED_FIELDS)
        if unknown:
            raise ValueError(f"unsupported field(s) {', '.join(unknown)}: this server does not implement them, "
                             f"and ignoring them would change the result")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class _Sampling(_Request):
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


class EmbeddingRequest(_Request):
    input: Union[str, List[str], List[int], List[List[int]]]
    model: Optional[str] = None
    encoding_format: Optional[str] = Field("float", pattern="^(float|base64)$",
                                           description="float, or base64 of little-endian float32 (the openai "
                                                       "client's default)")
    dimensions: Optional[int] = None


class TokenizeRequest(_Request):
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = False


class DetokenizeRequest(_Request):
    tokens: List[int]
