"""The default model on two local RPC servers (127.0.0.1), for real: every layer remote."""

import gguf
import numpy as np
import pytest

import layer_check as lc
from rpc_process import RpcServer
from selfextend_gguf import Llama, _core, default_model_path
from selfextend_gguf.eval import passkey

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def servers():
    pair = [RpcServer(threads=1), RpcServer(threads=1)]
    yield ",".join(s.endpoint for s in pair)
    for s in pair:
        s.stop()


def test_logits_equal_a_local_run(servers):
    prompt = "The capital of France is Paris. The capital of Germany is"
    local = Llama(n_ctx=512, logits_all=True)
    remote = Llama(n_ctx=512, logits_all=True, rpc_servers=servers, n_gpu_layers=-1)
    tokens = local.tokenize(prompt)
    want, got = local.eval_logits(tokens), remote.eval_logits(tokens)
    assert np.abs(want - got).max() <= 1e-3
    assert sum(name.startswith("RPC") for name in remote.memory_breakdown()) == 2


def test_passkey_beyond_the_window_on_rpc(servers):
    llm = Llama(n_ctx=12000 + 64, rpc_servers=servers, n_gpu_layers=-1, flash_attn=True)
    assert llm.self_extend is not None
    result = passkey.run(llm, 12000, 0.5, seed=0)
    assert result["found"], result


def test_every_layer_on_rpc_matches_algorithm1(servers):
    path = default_model_path()
    fields = gguf.GGUFReader(path).fields
    base = float(fields["llama.rope.freq_base"].parts[-1][0])
    head_dim = int(fields["llama.embedding_length"].parts[-1][0]) // int(fields["llama.attention.head_count"].parts[-1][0])
    options = _core.ModelOptions()
    options.n_gpu_layers, options.use_devices = -1, True
    options.devices = [name for endpoint in servers.split(",") for name in _core.rpc_add_server(endpoint)]
    tokens = [int(t) for t in np.random.default_rng(5).integers(100, 40000, 600)]
    G, W = 4, 128
    graphs = lc.run_captured(path, tokens, [256, 100, 244], G, W, n_ctx=1024, n_ubatch=128, model_options=options)
    errors = lc.max_errors(graphs, G, W, lambda il: lc.RopeSpec("norm", head_dim, base))
    assert sorted(errors) == list(range(30)), "every layer of the default model takes Self-Extend"
    assert max(errors.values()) <= 1e-3, errors
