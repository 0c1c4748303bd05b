"""Llama.from_pretrained: a GGUF from a Hugging Face repository, through huggingface_hub
(the optional extra `selfextend-gguf[hub]`), as llama_cpp does it. `filename` may be a
glob ("*q4_k_m.gguf"); with HF_HUB_OFFLINE=1 or local_files_only=True only the local
cache is read."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import List, Optional, Sequence


def _hub():
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError("Llama.from_pretrained needs huggingface_hub: pip install 'selfextend-gguf[hub]' "
                          "(or pip install huggingface_hub)") from err
    return huggingface_hub


def _offline(local_files_only: bool) -> bool:
    return local_files_only or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _cached_files(hub, repo_id: str, cache_dir: Optional[str]) -> List[str]:
    """Files of the newest cached snapshot of repo_id (the offline listing)."""
    for repo in hub.scan_cache_dir(cache_dir).repos:
        if repo.repo_id == repo_id and repo.repo_type == "model" and repo.revisions:
            newest = max(repo.revisions, key=lambda r: r.last_modified)
            return sorted(str(f.file_path.relative_to(newest.snapshot_path)) for f in newest.files)
    return []


def _match(files: Sequence[str], pattern: str, repo_id: str) -> str:
    # case-insensitive: repositories spell quantizations Q8_0 or q8_0
    pattern = pattern.lower()
    matches = [f for f in files if fnmatch.fnmatchcase(f.lower(), pattern)
               or fnmatch.fnmatchcase(Path(f).name.lower(), pattern)]
    if not matches:
        ggufs = [f for f in files if f.endswith(".gguf")]
        raise ValueError(f"no file matching {pattern!r} in {repo_id}; its GGUF files: {', '.join(ggufs) or 'none'}")
    if len(matches) > 1:
        raise ValueError(f"{pattern!r} matches several files in {repo_id}: {', '.join(matches)}; name one")
    return matches[0]


def download(repo_id: str, filename: str, additional_files: Optional[Sequence[str]] = None,
             local_dir: Optional[str] = None, cache_dir: Optional[str] = None,
             local_files_only: bool = False) -> str:
    """The local path of repo_id's file (downloaded, or found in the cache)."""
    hub = _hub()
    offline = _offline(local_files_only)
    if any(c in filename for c in "*?["):
        files = _cached_files(hub, repo_id, cache_dir) if offline else hub.list_repo_files(repo_id)
        if offline and not files:
            raise FileNotFoundError(f"{repo_id} is not in the local Hugging Face cache and the hub is offline "
                                    f"(HF_HUB_OFFLINE or local_files_only)")
        filename = _match(files, filename, repo_id)

    def fetch(name: str) -> str:
        try:
            return hub.hf_hub_download(repo_id=repo_id, filename=name, local_dir=local_dir, cache_dir=cache_dir,
                                       local_files_only=offline)
        except Exception as err:  # the hub's errors name no remedy
            where = "the local Hugging Face cache" if offline else "the Hugging Face hub"
            raise FileNotFoundError(f"could not get {name!r} of {repo_id} from {where}: {err}") from err

    path = fetch(filename)
    for extra in additional_files or ():
        fetch(extra)
    return path
