"""Grammars: GBNF text checked by llama.cpp's parser, JSON schemas converted by llama.cpp's
json-schema-to-grammar, and OpenAI's response_format read the way llama-server reads it."""

from __future__ import annotations

import json
import logging
from typing import Any, List, Mapping, Optional, Union

from .. import _core
from ..engine.sampling import GrammarSpec

logger = logging.getLogger("selfextend_gguf")

# JSON-schema keywords that llama.cpp's json-schema-to-grammar reads past without
# enforcing (bounds are enforced on integers only)
_UNENFORCED = ("multipleOf", "uniqueItems", "minProperties", "maxProperties", "patternProperties", "not", "if",
               "then", "else", "dependentRequired", "dependentSchemas", "contains", "minContains", "maxContains",
               "propertyNames", "unevaluatedProperties", "unevaluatedItems")
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# keys whose values are data, not schemas
_DATA_KEYS = ("enum", "const", "default", "examples", "description", "title", "required")


class LlamaGrammar:
    """A GBNF grammar (llama_cpp's class name and constructors)."""

    def __init__(self, *, _grammar: str, root: str = "root"):
        if not isinstance(_grammar, str) or not _grammar.strip():
            raise ValueError("a grammar needs GBNF text with at least one rule")
        why = _core.grammar_error(_grammar, root)
        if why:
            raise ValueError(f"invalid GBNF grammar: {why}")
        self._grammar = _grammar
        self.root = root

    @classmethod
    def from_string(cls, grammar: str, verbose: bool = True) -> "LlamaGrammar":
        return cls(_grammar=grammar)

    @classmethod
    def from_file(cls, file: str, verbose: bool = True) -> "LlamaGrammar":
        with open(file, encoding="utf-8") as f:
            return cls(_grammar=f.read())

    @classmethod
    def from_json_schema(cls, json_schema: Union[str, Mapping[str, Any]], verbose: bool = True) -> "LlamaGrammar":
        schema = json.loads(json_schema) if isinstance(json_schema, str) else json_schema
        check_enforceable(schema, strict=False)
        return cls(_grammar=schema_to_gbnf(schema))

    @property
    def grammar(self) -> str:
        return self._grammar

    def __repr__(self) -> str:
        return f"LlamaGrammar({len(self._grammar)} characters of GBNF)"


def schema_to_gbnf(schema: Union[str, Mapping[str, Any]]) -> str:
    """llama.cpp's conversion of a JSON schema (a dict or JSON text) to GBNF."""
    if isinstance(schema, Mapping):
        text = json.dumps(schema)
    elif isinstance(schema, str):
        text = schema
    else:
        raise ValueError(f"a JSON schema must be a dict or JSON text, got {type(schema).__name__}")
    return _core.json_schema_to_grammar(text)


def unenforced_keywords(schema: Any, path: str = "#") -> List[str]:
    """Where schema uses keywords that llama.cpp's grammar would not enforce."""
    found: List[str] = []
    if isinstance(schema, Mapping):
        for key in _UNENFORCED:
            if key in schema:
                found.append(f"{path}/{key}")
        kind = schema.get("type")
        kinds = set(kind) if isinstance(kind, list) else {kind}
        if "number" in kinds:
            found += [f"{path}/{key} (on a number; integers are fine)" for key in _BOUNDS if key in schema]
        for key, value in schema.items():
            if key not in _DATA_KEYS and key not in _UNENFORCED:
                found += unenforced_keywords(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            found += unenforced_keywords(item, f"{path}/{i}")
    return found


def check_enforceable(schema: Any, strict: bool) -> None:
    """A strict schema (OpenAI's json_schema with strict: true) must be enforced whole:
    keywords the grammar cannot enforce are an error. Otherwise they are a warning."""
    found = unenforced_keywords(schema)
    if not found:
        return
    message = (f"llama.cpp's JSON-schema grammar does not enforce {', '.join(found)}; the output follows the "
               f"rest of the schema")
    if strict:
        raise ValueError(message + ". Remove these keywords, or send the schema with strict: false to accept that")
    logger.warning(message)


def user_grammar(grammar: Union[None, str, LlamaGrammar]) -> Optional[GrammarSpec]:
    """grammar= as llama_cpp takes it: a LlamaGrammar or GBNF text."""
    if grammar is None:
        return None
    if isinstance(grammar, str):
        grammar = LlamaGrammar.from_string(grammar)
    if not isinstance(grammar, LlamaGrammar):
        raise ValueError(f"grammar must be GBNF text or a LlamaGrammar, got {type(grammar).__name__}")
    return GrammarSpec(grammar.grammar, "user")


def response_format_schema(response_format: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """The JSON schema that response_format asks for (None: free text):
    {"type": "text"}; {"type": "json_object"} (any object, or llama_cpp's "schema");
    {"type": "json_schema", "json_schema": {"name", "schema", "strict"}} (OpenAI)."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise ValueError("response_format must be an object such as {\"type\": \"json_object\"}")
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        if schema is not None and not isinstance(schema, Mapping):
            raise ValueError("response_format.schema must be a JSON schema object")
        check_enforceable(schema, strict=False)
        return dict(schema) if schema else {"type": "object"}
    if kind == "json_schema":
        wrapper = response_format.get("json_schema")
        if not isinstance(wrapper, Mapping) or not isinstance(wrapper.get("schema", {}), Mapping):
            raise ValueError("response_format.json_schema must be an object with a 'schema' object")
        schema = wrapper.get("schema") or {}
        check_enforceable(schema, strict=bool(wrapper.get("strict")))
        return dict(schema) if schema else {"type": "object"}
    raise ValueError(f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}")


def output_format_grammar(schema: Optional[dict]) -> Optional[GrammarSpec]:
    """The grammar of a JSON schema, for completions (chat builds it with the template)."""
    if schema is None:
        return None
    return GrammarSpec(schema_to_gbnf(schema), "output_format")
