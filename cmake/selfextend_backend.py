"""The package's build backend: scikit-build-core, except that an sdist first gets the
pinned, patched llama.cpp source written into vendor/llama.cpp, so that the sdist
builds with no download (as llama-cpp-python's sdist vendors llama.cpp).

pyproject.toml names this module (backend-path = ["cmake"]); every other hook is
scikit-build-core's own.
"""

from __future__ import annotations

from pathlib import Path

from scikit_build_core.build import *  # noqa: F401,F403 - the PEP 517 hooks
from scikit_build_core.build import build_sdist as _scikit_build_sdist

import llama_source  # beside this file, on the backend path


def build_sdist(sdist_directory, config_settings=None):
    project = Path(__file__).resolve().parent.parent
    llama_source.write_vendored_tree(project / "vendor" / "llama.cpp", project / "patches")
    return _scikit_build_sdist(sdist_directory, config_settings)
