"""OpenAI-shaped completion, chat-completion and embedding objects, as llama_cpp returns them."""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, List, Optional


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> Dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(id_: str, model: str, text: str, finish_reason: Optional[str],
               usage_: Optional[Dict[str, int]] = None, chunk: bool = False,
               logprobs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "id": id_, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}],
    }
    if usage_ is not None and not chunk:
        out["usage"] = usage_
    return out


def chat_completion(id_: str, model: str, message: Dict[str, Any], finish_reason: Optional[str],
                    usage_: Dict[str, int], logprobs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {
        "id": id_, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}],
        "usage": usage_,
    }


def chat_chunk(id_: str, model: str, delta: Dict[str, Any], finish_reason: Optional[str],
               logprobs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {
        "id": id_, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }


def embeddings(model: str, vectors: List[Any], prompt_tokens: int) -> Dict[str, Any]:
    return {
        "object": "list", "model": model,
        "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
