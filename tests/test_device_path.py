"""The device path as users reach it, beyond the exactness tests that run everywhere:
where the ops run, where the cache lives, layers split between the CPU and a device,
and states that move between the CPU and a device, within one build and between two.

On the CPU build (the CPU suite) each test checks the CPU's side of the same claim; in
the device suite (scripts/device_suite.sh: SELFEXTEND_TEST_N_GPU_LAYERS=-1 on the Vulkan
build) the device's."""

import os
import subprocess

import numpy as np
import pytest

from device_tolerance import tolerance, vanilla_error
from engine_logits import engine_logits
from offload import N_GPU_LAYERS, accelerators, on_device
from reference import forward
from selfextend_gguf import Llama
from selfextend_gguf.engine import state_file
from selfextend_gguf.eval import placement
from selfextend_gguf.engine.state import LlamaState

N = 256
G, W = 6, 16
OPTIONS = dict(n_ctx=N, type_k="f32", type_v="f32", group_size=G, neighbor_window=W)

# the device suite: every layer on a device this build offers
ON_DEVICE = on_device()


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
def test_where_the_ops_run(tiny_llama_512, flash):
    """Offloaded: no Self-Extend op and no attention op on the CPU, and no more graph
    splits than vanilla attention (each would copy the cache between devices). On the CPU
    build: one split, on the CPU."""
    result = placement.check(str(tiny_llama_512.path), flash, n_gpu_layers=-1)
    vanilla, se = result["vanilla"], result["self_extend"]
    assert se.nodes and vanilla.nodes, "a run printed no graph"
    if not ON_DEVICE:
        assert se.backends == ["CPU"] and se.splits == vanilla.splits == 1
        return
    assert result["gpu"], "no device took part with every layer offloaded"
    assert not se.se_on_cpu, se.se_on_cpu
    assert not se.attention_on_cpu, se.attention_on_cpu
    assert se.splits <= vanilla.splits, (se.splits, vanilla.splits)
    assert result["ok"]


def test_the_kv_cache_lives_on_the_device(tiny_llama):
    llm = Llama(str(tiny_llama.path), n_gpu_layers=N_GPU_LAYERS, **OPTIONS)
    breakdown = llm.memory_breakdown()
    context = {buft: parts["context"] for buft, parts in breakdown.items() if parts["context"]}
    assert context, breakdown
    if ON_DEVICE:
        assert all(not buft.upper().startswith("CPU") for buft in context), context
    else:
        assert all(buft.upper().startswith("CPU") for buft in context), context


@pytest.mark.parametrize("flash", [False, True], ids=["no-flash", "flash"])
@pytest.mark.parametrize("n_gpu_layers", [0, 1, -1], ids=["no-layer", "one-layer", "every-layer"])
def test_f32_and_q8_0_caches_on_cpu_and_device_match_the_reference(tiny_llama, random_tokens, n_gpu_layers, flash):
    """Every layer on the device, one of the tiny model's two, or none (a device build
    still sends large products there: op offload), in ubatches of 64. Found on Vulkan:
    with layers split, a merge in place on the device wrote into the CPU's buffer of
    logits computed there (a crash, q8_0 K); with a q8_0 K cache on the device, the keys
    derived after the first ubatch were read from the wrong cells (logits off by 7)."""
    tokens = random_tokens(N, seed=41)
    ref = forward(tiny_llama, tokens, G, W)
    for type_k in ("f32", "q8_0"):
        options = dict(OPTIONS, type_k=type_k, type_v="f32" if type_k == "f32" else "f16",
                       flash_attn=flash, n_gpu_layers=n_gpu_layers, n_batch=N, n_ubatch=64)
        got = engine_logits(tiny_llama.path, tokens, **options)
        if type_k == "f32":
            tol = tolerance(1e-3, vanilla_error(tiny_llama, tokens, **options))
            assert np.abs(got - ref).max() <= tol
        else:
            # a q8_0 cache rounds: as far from the reference as vanilla with it inside the window
            in_window = engine_logits(tiny_llama.path, tokens[:64], **dict(options, group_size=1))
            noise = np.abs(in_window - forward(tiny_llama, tokens[:64])).max()
            assert np.abs(got - ref).max() <= 2 * noise + 0.05


def _fresh(model, tokens, n_gpu_layers):
    llm = Llama(str(model.path), logits_all=True, n_gpu_layers=n_gpu_layers, op_offload=n_gpu_layers != 0,
                **OPTIONS)
    llm.eval(tokens)
    return llm.scores[:len(tokens)].copy()


@pytest.mark.parametrize("direction", ["device-to-cpu", "cpu-to-device"])
def test_a_state_moves_between_cpu_and_device(tiny_llama, random_tokens, direction):
    """A state saved from one placement (the cache in device buffers, or in the CPU's with
    op offload off) loads into the other and continues as a fresh run there."""
    saved, more = random_tokens(150, seed=42), random_tokens(40, seed=43)
    where = (N_GPU_LAYERS, 0) if direction == "device-to-cpu" else (0, N_GPU_LAYERS)

    def make(n_gpu_layers):
        return Llama(str(tiny_llama.path), logits_all=True, n_gpu_layers=n_gpu_layers,
                     op_offload=n_gpu_layers != 0, **OPTIONS)

    writer = make(where[0])
    writer.eval(saved)
    state = writer.save_state()
    reader = make(where[1])
    reader.load_state(state)
    reader.eval(more)
    expected = _fresh(tiny_llama, saved + more, where[1])[150:]
    tol = tolerance(1e-3, vanilla_error(tiny_llama, saved + more, **OPTIONS))
    assert np.abs(reader.scores[150:190] - expected).max() <= tol


_OTHER_BUILD = """
import sys
import numpy as np
from selfextend_gguf import Llama
from selfextend_gguf.engine import state_file
from selfextend_gguf.engine.state import LlamaState
model, state_path, tokens, more, logits_path = sys.argv[1:6]
tokens = [int(t) for t in tokens.split(",")]
more = [int(t) for t in more.split(",")]
llm = Llama(model, logits_all=True, n_gpu_layers=0, op_offload=False, **{options})
if logits_path == "-":
    llm.eval(tokens)
    st = llm.save_state()
    state_file.write(state_path, st.identity, [int(t) for t in st.input_ids], st.llama_state)
else:
    ids, state = state_file.read(state_path, llm.state_identity())
    llm.load_state(LlamaState(np.array(ids, dtype=np.intc), state, None, llm.state_identity()))
    llm.eval(more)
    np.save(logits_path, llm.scores[len(tokens):len(tokens) + len(more)])
"""


@pytest.mark.parametrize("direction", ["other-build-to-this", "this-build-to-other"])
def test_a_state_file_moves_between_builds(tiny_llama, random_tokens, tmp_path, direction):
    """A state file written by the CPU build (SELFEXTEND_TEST_OTHER_PYTHON: the other
    build's Python, set by scripts/device_suite.sh) loads into this one, on its device,
    and the reverse; both continue as a fresh run."""
    other = os.environ.get("SELFEXTEND_TEST_OTHER_PYTHON")
    if not other:
        pytest.skip("no other build to exchange states with (SELFEXTEND_TEST_OTHER_PYTHON, "
                    "set by scripts/device_suite.sh)")
    saved, more = random_tokens(150, seed=44), random_tokens(40, seed=45)
    path = tmp_path / "state.sgpc"
    child = _OTHER_BUILD.replace("{options}", repr(OPTIONS))
    args = [str(tiny_llama.path), str(path), ",".join(map(str, saved)), ",".join(map(str, more))]
    expected = _fresh(tiny_llama, saved + more, N_GPU_LAYERS)[150:]
    tol = tolerance(1e-3, vanilla_error(tiny_llama, saved + more, **OPTIONS))
    if direction == "other-build-to-this":
        subprocess.run([other, "-c", child, *args, "-"], check=True)
        llm = Llama(str(tiny_llama.path), logits_all=True, n_gpu_layers=N_GPU_LAYERS, **OPTIONS)
        ids, state = state_file.read(path, llm.state_identity())
        llm.load_state(LlamaState(np.array(ids, dtype=np.intc), state, None, llm.state_identity()))
        assert ids == saved
        llm.eval(more)
        got = llm.scores[150:190]
    else:
        llm = Llama(str(tiny_llama.path), logits_all=True, n_gpu_layers=N_GPU_LAYERS, **OPTIONS)
        llm.eval(saved)
        st = llm.save_state()
        state_file.write(path, st.identity, [int(t) for t in st.input_ids], st.llama_state)
        subprocess.run([other, "-c", child, *args, str(tmp_path / "logits.npy")], check=True)
        got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - expected).max() <= tol


@pytest.mark.real_model
def test_passkey_beyond_the_window_with_every_layer_offloaded():
    """The default model (trained on 8,192 tokens) finds a passkey in a prompt of 10,000
    tokens with Self-Extend, every layer on the device in the device suite."""
    from selfextend_gguf.eval import passkey

    llm = Llama(n_ctx=10000 + 64, n_gpu_layers=N_GPU_LAYERS, flash_attn=True)
    assert llm.self_extend is not None
    result = passkey.run(llm, 10000, 0.5, seed=0)
    print(f"\npasskey, {result['length']} tokens, {llm.self_extend}, every layer on "
          f"{accelerators() if ON_DEVICE else 'the CPU'}: {result}")
    assert result["length"] > 8192 and result["found"], result
    if ON_DEVICE:
        context = {b: p["context"] for b, p in llm.memory_breakdown().items() if p["context"]}
        assert all(not b.upper().startswith("CPU") for b in context), context
