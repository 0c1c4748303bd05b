"""Embeddings with llama_cpp's shapes: Llama(embedding=True).embed(...) and
create_embedding(...). The pooling is the GGUF's (or pooling_type=); without pooling an
input gives one vector per token."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

import numpy as np

from . import responses
from ..engine.context_options import named_id
from .host import ModelHost


# llama_pooling_type
POOLING_TYPES = {"unspecified": -1, "none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
POOLING_NONE = 0

EmbeddingInput = Union[str, Sequence[str], Sequence[int], Sequence[Sequence[int]]]


def pooling_type_id(value: Union[int, str, None]) -> int:
    return -1 if value is None else named_id(value, POOLING_TYPES, "pooling_type")


def _inputs(llm: "ModelHost", input: EmbeddingInput, truncate: bool) -> List[List[int]]:
    """Each input as tokens: a string, a list of strings, a token list, or a list of them."""
    if isinstance(input, (str, bytes)):
        items: List[Any] = [input]
    elif isinstance(input, Sequence) and input and all(isinstance(t, int) for t in input):
        items = [list(input)]
    elif isinstance(input, Sequence) and input:
        items = list(input)
    else:
        raise ValueError("input must be a non-empty string, list of strings, or list of token ids")
    out = []
    for i, item in enumerate(items):
        tokens = llm.tokenize(item, add_bos=True) if isinstance(item, (str, bytes)) else [int(t) for t in item]
        if not tokens:
            raise ValueError(f"input {i} is empty")
        if truncate:
            tokens = tokens[:llm.sequence.ctx.n_ubatch()]   # one input is computed in one ubatch
        out.append(tokens)
    return out


def _normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def embed(llm: "ModelHost", input: EmbeddingInput, normalize: bool = True, truncate: bool = True,
          return_count: bool = False, embed_tokens=None):
    """llama_cpp's embed: one vector per input (pooled), or one list of per-token vectors
    per input (no pooling); a single string gives a single result. embed_tokens computes
    the rows of one input (default: the Llama's own; a batch scheduler's beside its slots)."""
    embed_tokens = embed_tokens or llm.sequence.embed
    if not llm.embedding_enabled:
        raise RuntimeError("Llama model must be created with embedding=True to call this method")
    single = isinstance(input, (str, bytes)) or (bool(input) and all(isinstance(t, int) for t in input))
    results: List[Any] = []
    n_tokens = 0
    for tokens in _inputs(llm, input, truncate):
        rows = embed_tokens(tokens)
        n_tokens += len(tokens)
        if normalize:
            rows = _normalized(rows)
        if llm.pooling_type() == POOLING_NONE:
            results.append(rows.tolist())
        else:
            results.append(rows[0].tolist())
    data = results[0] if single else results
    return (data, n_tokens) if return_count else data


def create_embedding(llm: "ModelHost", input: EmbeddingInput, model: str = None, embed_tokens=None) -> Dict[str, Any]:
    data, n_tokens = embed(llm, input, normalize=True, truncate=True, return_count=True, embed_tokens=embed_tokens)
    single = isinstance(input, (str, bytes)) or (bool(input) and all(isinstance(t, int) for t in input))
    vectors = [data] if single else data
    return responses.embeddings(model or llm.model_path, vectors, n_tokens)
