"""Chat messages -> prompt text, with the chat template stored in the GGUF."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

from . import _core

ROLES = ("system", "user", "assistant", "tool")

# used when a GGUF carries no template (ChatML, as most instruct GGUFs use)
FALLBACK_TEMPLATE = "chatml"


def message_pairs(messages: Sequence[Mapping[str, Any]]) -> List[Tuple[str, str]]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    pairs = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        role = message.get("role")
        content = message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {', '.join(ROLES)}, got {role!r}")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]['content'] must be a string, got {type(content).__name__}")
        pairs.append((role, content))
    return pairs


def format_chat(template: Optional[str], messages: Sequence[Mapping[str, Any]],
                add_generation_prompt: bool = True) -> str:
    pairs = message_pairs(messages)
    return _core.apply_chat_template(template or FALLBACK_TEMPLATE, pairs, add_generation_prompt)
