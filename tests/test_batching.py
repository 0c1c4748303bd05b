"""Continuous batching in one context (engine/scheduler.py, Llama.create_completions and
scheduler=): outputs as solo runs give them, beyond the trained window with Self-Extend;
prefix reuse across slots by copying cells; cancellation frees cells; generations that do
not fit beside the others wait; a failure drops only the generations of its batch."""

import threading
import time

import pytest

from greedy_match import assert_same_greedy
from layouts import logits_in_layouts
from device_tolerance import tolerance
from offload import N_GPU_LAYERS, on_device
from selfextend_gguf import Llama
from selfextend_gguf.engine.errors import ContextFull

ON_DEVICE = on_device()
N_CTX = 4096   # eight times the tiny model's trained 512: Self-Extend (G=32 by eq. 5)


@pytest.fixture(scope="module")
def solo(tiny_llama_512):
    return Llama(str(tiny_llama_512.path), n_gpu_layers=N_GPU_LAYERS, n_ctx=N_CTX, n_threads=2)


@pytest.fixture(scope="module")
def batched(tiny_llama_512):
    return Llama(str(tiny_llama_512.path), n_gpu_layers=N_GPU_LAYERS, n_ctx=N_CTX, n_threads=2, n_seq_max=4)


def lp(out):
    return out["choices"][0]["logprobs"]


def test_create_completions_equal_solo_runs(solo, batched):
    assert batched.self_extend is not None
    # short ones and ones past the trained window, of different lengths
    prompts = [f"Prompt {i}: " + "abcdefgh"[i] * (5 + 3 * i) for i in range(4)] + \
              [f"Long {i}: " + ("word%d " % i) * (90 + 70 * i) for i in range(4)]
    want = [solo.create_completion(p, max_tokens=16, temperature=0, logprobs=2) for p in prompts]
    got = batched.create_completions(prompts, max_tokens=16, temperature=0, logprobs=2)
    assert len(got) == len(prompts)
    for a, b in zip(want, got):
        assert_same_greedy(lp(a), lp(b))
    assert max(len(solo.tokenize(p)) for p in prompts) > 1000


def test_echo_logprobs_and_sampling_options_on_slots(solo, batched):
    prompt = "Echo " + "x" * 700
    a = solo.create_completion(prompt, max_tokens=4, temperature=0, logprobs=2, echo=True)
    (b,) = batched.create_completions([prompt], max_tokens=4, temperature=0, logprobs=2, echo=True)
    pa, pb = lp(a)["token_logprobs"], lp(b)["token_logprobs"]
    assert pa[0] is None and pb[0] is None and len(pa) == len(pb)
    assert max(abs(x - y) for x, y in zip(pa[1:], pb[1:])) < 1e-2
    if ON_DEVICE:
        # not asserted on a device: its products round by the batch's shape and by a row's
        # place in it (vanilla attention's too), and a random tiny model's flat distribution
        # turns that into other tokens, so slots sampled together may differ
        return
    seeded = batched.create_completions(["Seeded"] * 3, max_tokens=12, temperature=1.0, seed=5)
    assert len({r["choices"][0]["text"] for r in seeded}) == 1    # one seed, one text, on any slot


@pytest.mark.parametrize("flash_attn", [False, True])
def test_a_sequences_logits_do_not_depend_on_what_else_the_cache_holds(tiny_llama_512, flash_attn):
    """The same tokens at the same positions, beyond the window: evaluated in other chunk
    sizes, after another sequence's cells, or as a copied prefix beside another sequence's
    decode token, the logits are those of one plain run. (An f32 model and cache: with a
    quantized model llama.cpp itself moves them by more, see bench/layout_noise.py.)"""
    import numpy as np

    def make(**kw):
        return Llama(str(tiny_llama_512.path), n_gpu_layers=N_GPU_LAYERS, n_ctx=N_CTX, n_threads=2, n_seq_max=2,
                     flash_attn=flash_attn, type_k="f32", type_v="f32", **kw)

    llm = make()
    assert llm.self_extend is not None
    rng = np.random.default_rng(3)
    doc = [int(t) for t in rng.integers(3, llm.n_vocab(), 1500)]
    ask = tuple([int(t) for t in rng.integers(3, llm.n_vocab(), 12)] for _ in range(2))
    ref, got = logits_in_layouts(llm._context(), doc, ask, chunk=37)

    def vanilla_moves():
        # on a device, how far the layouts move vanilla attention's logits (its products
        # round by the batch's shape): the scale of the comparison (device_tolerance.py)
        v_ref, v_got = logits_in_layouts(make(group_size=1)._context(), doc, ask, chunk=37)
        return max(float(np.max(np.abs(row - v_ref))) for row in v_got.values())
    tol = tolerance(1e-3, vanilla_moves)
    for layout, row in got.items():
        assert np.max(np.abs(row - ref)) < tol, layout


def _stream(llm, scheduler, prompt, **kwargs):
    return llm.create_completion(prompt, stream=True, scheduler=scheduler, temperature=0, **kwargs)


def test_a_shared_prefix_is_copied_from_another_slot(batched, solo):
    doc = "A long document about foxes. " * 30      # about 1,400 tokens
    scheduler = batched.scheduler(2)
    try:
        first = _stream(batched, scheduler, doc + "First question?", max_tokens=1500,
                        logit_bias={2: float("-inf")})
        next(first)                                  # slot A now holds the document, and is busy
        counted = []
        out = batched.create_completion(doc + "Second question?", max_tokens=8, temperature=0, logprobs=2,
                                        scheduler=scheduler, progress_callback=lambda d, t: counted.append(t))
        n_prompt = len(batched.tokenize(doc + "Second question?"))
        assert counted[-1] < 40 < n_prompt            # only the question was evaluated
        assert sum(1 for s in scheduler.slots if s.tokens) == 2
        first.close()
    finally:
        scheduler.stop()
    ref = solo.create_completion(doc + "Second question?", max_tokens=8, temperature=0, logprobs=2)
    assert_same_greedy(lp(ref), lp(out))


def test_cancelling_frees_the_cells(batched):
    scheduler = batched.scheduler(2)
    try:
        stream = _stream(batched, scheduler, "Cancel " + "y" * 900, max_tokens=500)
        next(stream)
        busy = [s for s in scheduler.slots if s.job is not None]
        assert len(busy) == 1 and len(busy[0].tokens) > 900
        stream.close()
        scheduler.call(lambda: None)   # one scheduler turn
        assert all(not s.tokens and s.job is None for s in scheduler.slots)
    finally:
        scheduler.stop()


def test_generations_that_do_not_fit_together_wait(tiny_llama_512):
    small = Llama(str(tiny_llama_512.path), n_gpu_layers=N_GPU_LAYERS, n_ctx=2048, n_threads=2, n_seq_max=4)
    solo = Llama(str(tiny_llama_512.path), n_gpu_layers=N_GPU_LAYERS, n_ctx=2048, n_threads=2)
    prompts = [f"{i}:" + "z" * 700 for i in range(4)]          # four times 700 tokens in 2048 cells
    got = small.create_completions(prompts, max_tokens=8, temperature=0, logprobs=2)
    for prompt, out in zip(prompts, got):
        assert_same_greedy(lp(solo.create_completion(prompt, max_tokens=8, temperature=0, logprobs=2)), lp(out))
    with pytest.raises(ValueError, match="exceed context window"):
        small.create_completions(["w" * 3000], max_tokens=2)


def test_a_failure_drops_only_its_own_generations(batched):
    def broken(ids, scores):
        raise RuntimeError("processor failed")

    scheduler = batched.scheduler(3)
    try:
        results, errors = {}, {}

        def one(name, **kwargs):
            try:
                results[name] = batched.create_completion("Same prompt", max_tokens=10, temperature=0,
                                                          scheduler=scheduler, **kwargs)
            except Exception as err:  # noqa: BLE001
                errors[name] = err

        threads = [threading.Thread(target=one, args=("ok1",)),
                   threading.Thread(target=one, args=("bad",), kwargs={"logits_processor": broken}),
                   threading.Thread(target=one, args=("ok2",))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(errors) == {"bad"} and "processor failed" in str(errors["bad"])
        assert results["ok1"]["choices"][0]["text"] == results["ok2"]["choices"][0]["text"]

        # a failed decode: every generation of that batch fails, later ones are fine
        real = scheduler.ctx.decode_batch
        calls = {"n": 0}

        def fail_once(*args):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("injected decode failure")
            return real(*args)

        scheduler.ctx = type("Ctx", (), {"__getattr__": lambda self, name: getattr(batched._context(), name),
                                         "decode_batch": staticmethod(fail_once)})()
        with pytest.raises(RuntimeError, match="injected"):
            batched.create_completion("Fails", max_tokens=4, scheduler=scheduler)
        assert batched.create_completion("Works", max_tokens=4, temperature=0, scheduler=scheduler)
    finally:
        scheduler.stop()


def test_when_growing_generations_fill_the_cache_the_newest_fails(tiny_llama_512):
    """Two generations admitted together (each with its prompt and 256 tokens of room)
    that grow past the cache: the newer one fails with ContextFull, the older goes on."""
    llm = Llama(str(tiny_llama_512.path), n_gpu_layers=N_GPU_LAYERS, n_ctx=1024, n_threads=2, n_seq_max=2)
    scheduler = llm.scheduler(2)
    no_eos = {2: float("-inf")}
    try:
        results = {}

        def one(name, prompt):
            try:
                results[name] = llm.create_completion(prompt, max_tokens=700, temperature=0, logit_bias=no_eos,
                                                      scheduler=scheduler)
            except Exception as err:  # noqa: BLE001
                results[name] = err

        first = threading.Thread(target=one, args=("first", "a" * 300))
        first.start()
        while not any(s.job is not None and s.job.next_token is not None for s in scheduler.slots):
            time.sleep(0.005)                       # until the first is generating
        second = threading.Thread(target=one, args=("second", "b" * 150))
        second.start()
        first.join()
        second.join()
    finally:
        scheduler.stop()
    assert isinstance(results["second"], ContextFull) and "KV cache" in str(results["second"])
    assert results["first"]["choices"][0]["finish_reason"] == "length"
