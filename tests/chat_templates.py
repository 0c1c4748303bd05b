"""Chat templates of real model families, read from the pinned llama.cpp tree
(models/templates/*.jinja, the templates llama.cpp's own chat tests use)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "cmake"))

import llama_source  # noqa: E402

# one template per tool-call family the tests cover
LLAMA_3_1 = "meta-llama-Llama-3.1-8B-Instruct.jinja"      # JSON tool call after the header
HERMES = "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"  # ChatML with <tool_call> tags
QWEN_2_5 = "Qwen-Qwen2.5-7B-Instruct.jinja"                # the same family, Qwen's wording
MISTRAL_NEMO = "mistralai-Mistral-Nemo-Instruct-2407.jinja"   # [TOOL_CALLS] [...]
MISTRAL_SMALL_3_2 = "Mistral-Small-3.2-24B-Instruct-2506.jinja"  # [TOOL_CALLS]name[ARGS]{...}
GRANITE_4_0 = "ibm-granite-granite-4.0.jinja"              # Granite's own <tool_call> JSON
QWEN_3_CODER = "Qwen3-Coder.jinja"                         # XML: <function=...><parameter=...>


def template_path(name: str) -> Path:
    return llama_source.pristine_tree() / "models" / "templates" / name


def template(name: str) -> str:
    return template_path(name).read_text(encoding="utf-8")
