import os
import tempfile

import numpy as np
import pytest

from tiny_models import TinyConfig, write_tiny_model

# settings remembered by `selfextend-gguf tune` on this machine must not change what the
# tests expect from eq. 5: the tests (and the processes they start) use their own file
os.environ["SELFEXTEND_GGUF_TUNED"] = os.path.join(tempfile.mkdtemp(prefix="se-tuned-"), "tuned-settings.json")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_llama(tiny_dir):
    """llama arch (NORM rope), GQA 4:2, head dim 64, trained context 64."""
    return write_tiny_model(tiny_dir, TinyConfig(arch="llama"))


@pytest.fixture(scope="session")
def tiny_qwen2(tiny_dir):
    """qwen2 arch (NEOX rope, q/k/v biases), GQA 4:2, trained context 64."""
    return write_tiny_model(tiny_dir, TinyConfig(arch="qwen2", seed=1))


@pytest.fixture(scope="session")
def tiny_llama_freq_factors(tiny_dir):
    """llama arch with llama3-style rope frequency factors (rope_freqs.weight)."""
    return write_tiny_model(tiny_dir, TinyConfig(arch="llama", rope_freq_factors=True, seed=2),
                            name="tiny-llama-rope-freqs.gguf")


@pytest.fixture(scope="session")
def tiny_llama_512(tiny_dir):
    """A tiny llama with a 512-token trained context, for CLI and API tests."""
    return write_tiny_model(tiny_dir, TinyConfig(arch="llama", n_ctx_train=512, seed=3),
                            name="tiny-llama-512.gguf")


@pytest.fixture
def random_tokens():
    def make(n, seed=0):
        return [int(t) for t in np.random.default_rng(seed).integers(3, 259, n)]
    return make
