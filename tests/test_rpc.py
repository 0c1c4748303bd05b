"""Self-Extend on llama.cpp's RPC backend (127.0.0.1 only): layers on `selfextend-gguf
rpc-server` processes compute what local layers compute (NumPy Algorithm 1, the per-layer
check), and a server that cannot be reached, dies, or speaks another version is an
exception that names it, never a hang or an abort."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import layer_check as lc
from engine_logits import engine_logits
from reference import forward
from rpc_process import RpcServer, WrongVersionServer
from selfextend_gguf import Llama, _core
from server_process import free_port

N, G, W = 256, 6, 16      # 4x the tiny models' trained 64 (as test_reference_equivalence)


@pytest.fixture(scope="module")
def server():
    srv = RpcServer()
    yield srv
    srv.stop()


def test_a_model_split_between_a_server_and_this_cpu_matches_algorithm1(tiny_llama, server):
    tokens = [int(t) for t in np.random.default_rng(7).integers(3, 259, N)]
    want = forward(tiny_llama, tokens, G, W)
    for flash in (False, True):
        got = engine_logits(tiny_llama.path, tokens, None, n_ctx=N, type_k="f32", type_v="f32", group_size=G,
                            neighbor_window=W, flash_attn=flash, rpc_servers=server.endpoint, n_gpu_layers=1)
        assert np.abs(got - want).max() <= 1e-3


def test_the_layers_on_the_server_pass_the_per_layer_check(tiny_llama, server):
    devices = _core.rpc_add_server(server.endpoint)
    options = _core.ModelOptions()
    options.n_gpu_layers, options.use_devices, options.devices = -1, True, devices
    tokens = [int(t) for t in np.random.default_rng(21).integers(3, 259, N)]
    graphs = lc.run_captured(str(tiny_llama.path), tokens, lc.CHUNKS["uneven-chunks"], G, W, n_ctx=N, n_ubatch=64,
                             model_options=options)
    spec = lc.RopeSpec("norm", tiny_llama.config.head_dim)
    errors = lc.max_errors(graphs, G, W, lambda il: spec)
    assert errors and max(errors.values()) <= lc.TOL, errors


def test_memory_breakdown_and_info_show_the_server(tiny_llama, server):
    llm = Llama(str(tiny_llama.path), n_ctx=N, rpc_servers=server.endpoint, n_gpu_layers=-1)
    assert any(name.startswith("RPC") for name in llm.memory_breakdown())
    info = [sys.executable, "-m", "selfextend_gguf", "info", "--rpc", server.endpoint]
    # an rpc-server serves one client at a time: another process is told so, it does not wait
    busy = subprocess.run(info, capture_output=True, text=True)
    assert busy.returncode != 0 and "another client" in busy.stderr, busy.stderr
    llm.close()
    out = subprocess.run(info, capture_output=True, text=True)
    assert out.returncode == 0 and server.endpoint in out.stdout, out.stderr


def test_an_unreachable_server_is_a_quick_clear_error(tiny_llama):
    endpoint = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=endpoint.replace(".", r"\.")):
        Llama(str(tiny_llama.path), n_ctx=N, rpc_servers=endpoint, n_gpu_layers=-1)
    assert time.monotonic() - start < 30
    with pytest.raises(ValueError, match="host:port"):
        Llama(str(tiny_llama.path), n_ctx=N, rpc_servers="no-port-here")


def test_a_server_of_another_version_is_refused(tiny_llama):
    fake = WrongVersionServer()
    try:
        with pytest.raises(ConnectionError, match="another version"):
            Llama(str(tiny_llama.path), n_ctx=N, rpc_servers=fake.endpoint, n_gpu_layers=-1)
    finally:
        fake.close()


def test_a_server_killed_during_a_prefill_or_between_requests(tiny_llama_512):
    prompt = [int(t) for t in np.random.default_rng(3).integers(3, 259, 1500)]
    for when in ("during", "between"):
        srv = RpcServer()
        llm = Llama(str(tiny_llama_512.path), n_ctx=2048, n_batch=64, n_ubatch=64, rpc_servers=srv.endpoint,
                    n_gpu_layers=-1)

        def kill_midway(done, total):
            if when == "during" and done >= 256 and srv.proc.poll() is None:
                srv.kill()

        start = time.monotonic()
        try:
            if when == "between":
                llm.create_completion(prompt[:100], max_tokens=2, temperature=0)
                srv.kill()
            with pytest.raises(Exception, match=srv.endpoint.replace(".", r"\.")):
                llm.create_completion(prompt, max_tokens=2, temperature=0, progress_callback=kill_midway)
            with pytest.raises(RuntimeError, match="create a new Llama"):
                llm.create_completion("again", max_tokens=2)
        finally:
            srv.stop()
        assert time.monotonic() - start < 120
        del llm
    # the process goes on: `info` still reports, the lost server's memory unknown and why
    from selfextend_gguf import system_info
    lost = [d for d in system_info()["devices"] if srv.endpoint in d["description"] + d["name"]]
    assert lost and all(d["memory_total"] is None and srv.endpoint in d["error"] for d in lost), lost
    # and a new Llama, here on this machine alone
    local = Llama(str(tiny_llama_512.path), n_ctx=2048)
    assert local.create_completion("still here", max_tokens=2, temperature=0)["choices"][0]["text"] is not None


def test_cli_complete_with_rpc(tiny_llama_512, server):
    out = subprocess.run([sys.executable, "-m", "selfextend_gguf", "complete", "--model", str(tiny_llama_512.path),
                          "--n-ctx", "1024", "--prompt", "Hello", "-n", "4", "--temp", "0", "--rpc", server.endpoint,
                          "--tensor-split", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    local = Llama(str(tiny_llama_512.path), n_ctx=1024).create_completion("Hello", max_tokens=4, temperature=0)
    assert out.stdout.strip() == local["choices"][0]["text"].strip()


def test_rpc_server_warns_when_it_listens_beyond_loopback():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "selfextend_gguf", "rpc-server", "--host", "0.0.0.0",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "WARNING" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "no authentication" in line
    finally:
        proc.kill()
        proc.wait()


def test_the_server_answers_a_lost_rpc_server_with_a_json_error(tiny_llama_512):
    import openai

    from server_process import ServerProcess, openai_client

    srv = RpcServer()
    api = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", "1024", "--rpc", srv.endpoint)
    try:
        client = openai_client(api)
        assert client.completions.create(model="x", prompt="Hello", max_tokens=2, temperature=0).choices
        srv.kill()
        with pytest.raises(openai.InternalServerError) as err:
            client.completions.create(model="x", prompt="Hello again", max_tokens=2, temperature=0)
        assert srv.endpoint in str(err.value)
        assert api.proc.poll() is None and api.health()    # the server itself goes on
    finally:
        api.stop()
        srv.stop()
