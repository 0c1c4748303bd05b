"""Chat messages -> prompt, grammar and stops; generated text -> an OpenAI message.

All of it is llama.cpp's common chat (what llama-server runs with --jinja): the GGUF's
Jinja template (ChatML when the GGUF has none), or one given with chat_template=, or a
llama.cpp built-in template named by chat_format=; tools and tool_choice; the tool-call
grammar with its lazy triggers; and the per-family parser of the generated text.
This module validates what Python callers pass and moves it across as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Union

from .. import _core
from ..engine.sampling import GrammarSpec
from .generic_tools import GenericToolParser, GenericTools

ROLES = ("system", "developer", "user", "assistant", "tool")

# llama_cpp's chat_format names for templates that llama.cpp has built in
LLAMA_CPP_CHAT_FORMATS = {
    "llama-2": "llama2", "llama-3": "llama3", "mistral-instruct": "mistral-v1", "chatml": "chatml",
    "gemma": "gemma", "zephyr": "zephyr", "vicuna": "vicuna", "openchat": "openchat", "chatglm3": "chatglm3",
    "phi-3": "phi3", "qwen": "chatml",
}


@dataclass
class RenderedChat:
    """A conversation ready to generate from."""
    prompt: str
    grammar: Optional[GrammarSpec]
    stop: List[str]
    prompt_core: "_core.ChatPrompt"
    # special tokens the parser must see as text (tool-call markers such as <tool_call>)
    special_tokens: Set[int] = field(default_factory=set)
    # tools in the generic JSON envelope (the template has none): apps/generic_tools.py
    generic: bool = False

    def parser(self):
        """A parser of the generated text into an OpenAI message (update, message_json)."""
        if self.generic:
            return GenericToolParser(_core.ChatParser(self.prompt_core))
        return _core.ChatParser(self.prompt_core)


def _content_text(content: Any, where: str) -> Union[str, List[Dict[str, str]], None]:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ValueError(f"{where}[{j}]: only text parts ({{'type': 'text', 'text': ...}}) are supported, "
                                 f"got {kind!r}; images and audio need a multimodal projector, which this "
                                 f"package does not load")
            parts.append({"type": "text", "text": part["text"]})
        return parts
    raise ValueError(f"{where} must be a string, a list of text parts, or null; got {type(content).__name__}")


def check_messages(messages: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """OpenAI messages, checked and copied ("developer" is read as "system")."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {', '.join(ROLES)}, got {role!r}")
        m: Dict[str, Any] = {"role": "system" if role == "developer" else role,
                             "content": _content_text(message.get("content"), f"messages[{i}]['content']")}
        if m["content"] is None and not message.get("tool_calls"):
            m["content"] = ""
        for key in ("tool_calls", "tool_call_id", "name", "reasoning_content"):
            if message.get(key) is not None:
                m[key] = message[key]
        out.append(m)
    return out


def _tool_name(tool: Any) -> Optional[str]:
    if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping):
        return tool["function"].get("name")
    return None


def resolve_tool_choice(tools: Optional[Sequence[Mapping[str, Any]]], tool_choice: Any):
    """(tools, choice) with choice "auto", "none" or "required"; a named function forces
    a call of that function (the other tools are not offered)."""
    tools = list(tools or [])
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or tool.get("type", "function") != "function" or not _tool_name(tool):
            raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., "
                             f"'parameters': {{...}}}}}}")
    if tool_choice is None:
        return tools, "auto" if tools else "none"
    if isinstance(tool_choice, str):
        if tool_choice not in ("auto", "none", "required"):
            raise ValueError(f"tool_choice must be 'auto', 'none', 'required' or a named function, got {tool_choice!r}")
        if tool_choice == "required" and not tools:
            raise ValueError("tool_choice='required' needs tools")
        return tools, tool_choice
    if isinstance(tool_choice, Mapping):
        name = (tool_choice.get("function") or {}).get("name") if isinstance(tool_choice.get("function"),
                                                                                Mapping) else None
        if not name:
            raise ValueError("tool_choice must name a function: {'type': 'function', 'function': {'name': ...}}")
        chosen = [t for t in tools if _tool_name(t) == name]
        if not chosen:
            known = ", ".join(repr(_tool_name(t)) for t in tools) or "none"
            raise ValueError(f"tool_choice names the function {name!r}, which is not in tools (they are: {known})")
        return chosen, "required"
    raise ValueError("tool_choice must be a string or {'type': 'function', 'function': {'name': ...}}")


class ChatFormatter:
    """The chat template of one model."""

    @staticmethod
    def check_names(chat_format: Optional[str], chat_template: Optional[str]) -> Optional[str]:
        """The llama.cpp built-in template that chat_format names (None: not given)."""
        if chat_template is not None and chat_format is not None:
            raise ValueError("give chat_format or chat_template, not both")
        if chat_template is not None and (not isinstance(chat_template, str) or not chat_template.strip()):
            raise ValueError("chat_template must be the Jinja source of a chat template")
        if chat_format is None:
            return None
        builtin = LLAMA_CPP_CHAT_FORMATS.get(chat_format, chat_format)
        known = _core.builtin_chat_templates()
        if builtin not in known:
            raise ValueError(f"chat_format {chat_format!r} is not a template llama.cpp has built in; use one of "
                             f"{', '.join(sorted(set(known) | set(LLAMA_CPP_CHAT_FORMATS)))}, or pass the "
                             f"template itself as chat_template=, or leave both None for the GGUF's own")
        return builtin

    def __init__(self, model: "_core.Model", chat_format: Optional[str] = None, chat_template: Optional[str] = None):
        self._model = model
        builtin = self.check_names(chat_format, chat_template)
        if chat_template is not None:
            self._templates = _core.ChatTemplates(model, chat_template, True)
            self.name = "chat_template"
        elif builtin is not None:
            # built-in templates are llama.cpp's non-Jinja renderers (no tools)
            self._templates = _core.ChatTemplates(model, builtin, False)
            self.name = builtin
        else:
            self._templates = _core.ChatTemplates(model, "", True)
            self.name = "gguf" if model.chat_template() else "chatml"
        self.caps = self._templates.caps()

    @property
    def expresses_tools(self) -> bool:
        """Whether the template writes tools and tool calls itself (llama.cpp's analysis)."""
        return self._templates.use_jinja and bool(self.caps.get("supports_tools"))

    def render(self, messages: Sequence[Mapping[str, Any]], tools: Optional[Sequence[Mapping[str, Any]]] = None,
               tool_choice: Any = None, json_schema: Optional[dict] = None,
               grammar: Optional[GrammarSpec] = None, parallel_tool_calls: Optional[bool] = None,
               add_generation_prompt: bool = True) -> RenderedChat:
        checked = check_messages(messages)
        tools, choice = resolve_tool_choice(tools, tool_choice)
        uses_tools = bool(tools) and choice != "none"
        if grammar is not None and uses_tools:
            raise ValueError("a grammar cannot be combined with tools (the tool calls have a grammar of their own)")
        if grammar is not None and json_schema is not None:
            raise ValueError("give a grammar or a JSON schema (response_format), not both")
        if parallel_tool_calls is None:
            # a named function is called once (as llama_cpp does); otherwise the template decides
            named = isinstance(tool_choice, Mapping)
            parallel_tool_calls = bool(self.caps.get("supports_parallel_tool_calls")) and not named
        generic = None
        has_tool_history = any(m.get("tool_calls") or m["role"] == "tool" for m in checked)
        if not self.expresses_tools and (uses_tools or has_tool_history):
            # the template cannot write tools: the generic JSON envelope does
            generic = GenericTools(tools if uses_tools else [], choice, bool(parallel_tool_calls), json_schema)
            checked = generic.messages(checked, describe_tools=uses_tools)
            if uses_tools:
                json_schema = generic.schema()
            tools, choice = [], "none"
        core = self._templates.apply(
            json.dumps(checked), json.dumps(tools) if tools else "", choice,
            json.dumps(json_schema) if json_schema is not None else "", "",
            bool(parallel_tool_calls), bool(add_generation_prompt))
        spec = grammar
        if core.grammar:
            spec = GrammarSpec(core.grammar, "tool_calls", core.grammar_lazy, list(core.grammar_triggers),
                               list(core.preserved_tokens), core.generation_prompt)
        special = set()
        for text in core.preserved_tokens:
            ids = self._model.tokenize(text.encode("utf-8"), False, True)
            if len(ids) == 1:
                special.add(ids[0])
        return RenderedChat(core.prompt, spec, list(core.additional_stops), core, special,
                            generic=generic is not None and uses_tools)

    def format(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
        """The prompt text for messages."""
        return self.render(messages, add_generation_prompt=add_generation_prompt).prompt
