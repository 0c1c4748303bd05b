"""Apply patches/NNNN-*.patch to a llama.cpp tree, in order, idempotently.

A patch that is already applied is skipped. A patch that neither applies nor is
already applied stops the build with a message to regenerate it against the pin. So
does a patch that both applies and looks applied: its context occurs more than once,
and applying it again would patch a second place (this happened once: a concat fix
landed three times in ggml's repeat).

Usage: python apply_patches.py LLAMA_TREE PATCH_DIR
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _git_apply(tree: Path, patch: Path, *flags: str) -> bool:
    env = dict(os.environ)
    # never let git discover a repository above the tree (e.g. a cache dir inside a checkout)
    env["GIT_CEILING_DIRECTORIES"] = str(tree.parent)
    result = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", *flags, str(patch)],
        cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return result.returncode == 0


def patch_files(patch_dir: Path) -> list[Path]:
    return sorted(p for p in patch_dir.glob("[0-9][0-9][0-9][0-9]-*.patch"))


def apply_all(tree: Path, patch_dir: Path) -> None:
    for patch in patch_files(patch_dir):
        applies = _git_apply(tree, patch, "--check")
        applied = _git_apply(tree, patch, "--check", "--reverse")
        if applies and applied:
            raise SystemExit(
                f"apply_patches.py: error: {patch.name} both applies to {tree} and looks already applied: "
                f"its context occurs more than once. Give the hunks unique context and regenerate it "
                f"(make patches LLAMA_DEV=...).")
        if applies:
            if not _git_apply(tree, patch):
                raise SystemExit(f"apply_patches.py: error: {patch.name} passed --check but failed to apply")
            print(f"-- selfextend-gguf: applied {patch.name}", file=sys.stderr)
        elif applied:
            print(f"-- selfextend-gguf: already applied {patch.name}", file=sys.stderr)
        else:
            raise SystemExit(
                f"apply_patches.py: error: {patch.name} does not apply to {tree}.\n"
                f"The tree is not the pinned llama.cpp (see cmake/llama_source.py), or the patch "
                f"is stale: regenerate it against the pin (make patches LLAMA_DEV=...).")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    apply_all(Path(argv[0]).resolve(), Path(argv[1]).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
