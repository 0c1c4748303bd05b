"""Request bodies. Unknown fields are ignored (clients send many); known fields are
validated, and a violation becomes a 400 with an OpenAI-style error."""

from __future__ import annotations

from typing import Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, ge=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0)
    stop: Optional[Union[str, List[str]]] = None
    stream: bool = False
    seed: Optional[int] = None
    logit_bias: Optional[Dict[int, float]] = Field(None, description="token id -> bias, as OpenAI (-100 bans)")
    n: int = Field(1, ge=1, le=1, description="only one choice per request")


class CompletionRequest(_Sampling):
    prompt: Union[str, List[int]]
    max_tokens: Optional[int] = Field(16, gt=0)
    echo: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: Optional[str] = None


class ChatCompletionRequest(_Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, gt=0)
    temperature: float = Field(0.2, ge=0.0)
