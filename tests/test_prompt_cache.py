"""Prompt caches (Llama.set_cache with LlamaRAMCache / LlamaDiskCache), state files, the
CLI's --prompt-cache and the chat's document cache, on tiny models beyond their trained
window: the same answers as without a cache, only the suffix evaluated, and every file
that does not belong (another model or settings, damaged, foreign) refused."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from offload import N_GPU_LAYERS
from selfextend_gguf import Llama, LlamaDiskCache, LlamaRAMCache
from selfextend_gguf.engine import state_file
from selfextend_gguf.settings import tuned as tuned_settings
from selfextend_gguf.cli.chat import ChatSession
from selfextend_gguf.engine.prefix import common_prefix_length
from tiny_models import TinyConfig, write_tiny_model

N_CTX = 2048          # four times the tiny model's trained 512
DOC = "The quick brown fox jumps over the lazy dog; " * 25    # about 1,100 tokens, past the window


def make(model, **kwargs):
    kwargs.setdefault("n_ctx", N_CTX)
    kwargs.setdefault("n_gpu_layers", N_GPU_LAYERS)
    return Llama(str(model.path), n_threads=2, **kwargs)


def answer(llm, prompt, **kwargs):
    counted = []
    out = llm.create_completion(prompt, max_tokens=12, temperature=0,
                                progress_callback=lambda done, total: counted.append(total), **kwargs)
    return out["choices"][0]["text"], (counted[-1] if counted else 0)


@pytest.mark.parametrize("cache_kind", ["disk", "ram"])
def test_a_loaded_prefix_gives_the_same_answer_and_only_the_suffix_is_evaluated(tiny_llama_512, tmp_path,
                                                                               cache_kind):
    cache = LlamaDiskCache(str(tmp_path / "c")) if cache_kind == "disk" else LlamaRAMCache()
    first = make(tiny_llama_512)
    assert first.self_extend is not None
    first.set_cache(cache)
    answer(first, DOC + "Question one?")
    stored = list(first.input_ids)

    second = make(tiny_llama_512)
    second.set_cache(cache)
    prompt = second.tokenize(DOC + "Question two?", special=True)
    text, evaluated = answer(second, prompt)
    assert evaluated == len(prompt) - common_prefix_length(stored, prompt)
    assert evaluated < 10
    assert text == answer(make(tiny_llama_512), prompt)[0]    # without a cache


def test_chat_with_a_cached_prefix_answers_the_same(tiny_llama_512, tmp_path):
    cache = LlamaDiskCache(str(tmp_path))
    messages = [{"role": "system", "content": DOC}, {"role": "user", "content": "Why?"}]
    a = make(tiny_llama_512)
    a.set_cache(cache)
    a.create_chat_completion(messages[:1] + [{"role": "user", "content": "How?"}], max_tokens=4, temperature=0)
    b = make(tiny_llama_512)
    b.set_cache(cache)
    with_cache = b.create_chat_completion(messages, max_tokens=10, temperature=0)["choices"][0]["message"]
    without = make(tiny_llama_512).create_chat_completion(messages, max_tokens=10, temperature=0)
    assert with_cache == without["choices"][0]["message"]


def test_a_tuned_setting_is_part_of_the_identity(tiny_llama_512, tmp_path):
    tuned_settings.remember(str(tiny_llama_512.path), N_CTX, 8, 64)
    try:
        tuned = make(tiny_llama_512)
        assert tuned.self_extend_origin == "tuned"
        cache = LlamaDiskCache(str(tmp_path))
        tuned.set_cache(cache)
        answer(tuned, DOC + "One?")
        again = make(tiny_llama_512)
        again.set_cache(cache)
        text, evaluated = answer(again, DOC + "Two?")
        assert evaluated < 10 and text == answer(make(tiny_llama_512), DOC + "Two?")[0]
        eq5 = make(tiny_llama_512, use_tuned_setting=False)
        eq5.set_cache(cache)
        assert answer(eq5, DOC + "Two?")[1] > 1000    # another G/W: a miss, everything evaluated
    finally:
        tuned_settings.forget(str(tiny_llama_512.path))


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("other"), TinyConfig(arch="llama", n_ctx_train=512, seed=9),
                            name="tiny-other.gguf")


@pytest.mark.parametrize("other", [
    "model", "group_size", "vanilla", "n_ctx", "type_k", "flash_attn"])
def test_states_of_other_models_or_settings_are_misses_and_refused(tiny_llama_512, other_model, tmp_path, other):
    cache = LlamaDiskCache(str(tmp_path))
    writer = make(tiny_llama_512)
    writer.set_cache(cache)
    answer(writer, DOC + "One?")
    # (Self-Extend layers cache grouped keys: a state of one setting holds that G's keys)
    kwargs = {"model": dict(), "group_size": dict(group_size=8, neighbor_window=32), "vanilla": dict(group_size=1),
              "n_ctx": dict(n_ctx=N_CTX + 256),
              "type_k": dict(type_k="f32"), "flash_attn": dict(flash_attn=False)}[other]
    reader = make(other_model if other == "model" else tiny_llama_512, **kwargs)
    reader.set_cache(cache)
    prompt = reader.tokenize(DOC + "Two?", special=True)
    text, evaluated = answer(reader, prompt)
    assert evaluated == len(prompt)                        # a miss
    fresh = make(other_model if other == "model" else tiny_llama_512, **kwargs)
    assert text == answer(fresh, prompt)[0]                # and the answer is right
    written = writer.save_state()
    with pytest.raises(ValueError, match="another model or other settings") as refused:
        reader.load_state(written)                         # explicitly: a clear error
    if other in ("group_size", "vanilla"):
        assert "self_extend" in str(refused.value)
    path = tmp_path / cache.file_name(written)
    with pytest.raises(state_file.StateFileError, match="another model or other settings"):
        state_file.read(path, reader.state_identity())


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif how == "flipped":
        flipped = bytearray(data)
        flipped[-100] ^= 0xFF
        path.write_bytes(bytes(flipped))


@pytest.mark.parametrize("how", ["truncated", "random", "flipped"])
def test_damaged_files_are_misses_with_a_warning_and_never_loaded(tiny_llama_512, tmp_path, how, caplog):
    cache = LlamaDiskCache(str(tmp_path))
    writer = make(tiny_llama_512)
    writer.set_cache(cache)
    answer(writer, DOC + "One?")
    (path,) = tmp_path.glob("*.sgpc")
    _damage(path, how)
    reader = make(tiny_llama_512)
    reader.set_cache(LlamaDiskCache(str(tmp_path)))
    prompt = reader.tokenize(DOC + "Two?", special=True)
    text, evaluated = answer(reader, prompt)
    assert evaluated == len(prompt)
    assert text == answer(make(tiny_llama_512), prompt)[0]
    assert "not used" in caplog.text
    assert not path.exists()     # removed, so that the warning is not repeated


def test_a_prefix_that_differs_at_the_first_token_is_a_miss(tiny_llama_512, tmp_path):
    cache = LlamaRAMCache()
    writer = make(tiny_llama_512)
    writer.set_cache(cache)
    answer(writer, DOC)
    reader = make(tiny_llama_512)
    reader.set_cache(cache)
    prompt = [1] + reader.tokenize("X" + DOC, add_bos=False)   # BOS, then a different first token
    assert answer(reader, prompt)[1] == len(prompt)             # only BOS shared: nothing worth loading
    assert cache.lookup(prompt[1:], reader.state_identity()) is None


def test_lru_eviction_under_capacity(tiny_llama_512, tmp_path):
    llm = make(tiny_llama_512)
    probe = LlamaDiskCache(str(tmp_path / "probe"))
    llm.set_cache(probe)
    answer(llm, DOC + "size?")
    one = probe.cache_size
    cache = LlamaDiskCache(str(tmp_path / "c"), capacity_bytes=int(2.5 * one))
    llm.set_cache(cache)
    for i in range(4):
        llm.reset()
        answer(llm, f"{i} " + DOC)
    kept = sorted(state_file.read_header(p)[1][:3] for p in (tmp_path / "c").glob("*.sgpc"))
    assert len(kept) == 2 and cache.cache_size <= 2.5 * one
    heads = [llm.tokenize(f"{i} ", special=True)[:3] for i in range(4)]
    assert kept == sorted(heads[2:])             # the two most recent stay


def test_two_processes_writing_one_folder_leave_no_damaged_file(tiny_llama_512, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from selfextend_gguf import Llama, LlamaDiskCache
        llm = Llama({str(tiny_llama_512.path)!r}, n_ctx=1024, n_threads=1)
        llm.set_cache(LlamaDiskCache({str(tmp_path)!r}))
        for i in range(6):
            llm.reset()
            llm.create_completion("shared prefix " * 20 + str(i % 3) + sys.argv[1], max_tokens=2, temperature=0)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag]) for tag in ("a", "b")]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    files = list(tmp_path.iterdir())
    assert files and all(f.suffix == ".sgpc" for f in files)     # no temporary files left
    reader = Llama(str(tiny_llama_512.path), n_ctx=1024, n_threads=1)
    for f in files:
        tokens, _ = state_file.read(f, reader.state_identity())    # every checksum holds
        assert tokens


def test_a_folder_that_cannot_be_written_warns_once_and_writes_nothing(tiny_llama_512, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = LlamaDiskCache(str(blocker / "prompts"))   # cannot be created, for any user
    llm = make(tiny_llama_512)
    llm.set_cache(cache)
    first = answer(llm, DOC + "a")
    answer(llm, DOC + "b")
    assert caplog.text.count("cannot be written") == 1 and cache.read_only
    assert first == answer(make(tiny_llama_512), DOC + "a")


def test_chat_document_cache_makes_the_second_session_start_at_once(tiny_llama_512, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    cache = LlamaDiskCache(str(tmp_path / "prompts"))
    one = ChatSession(make(tiny_llama_512), document_path=str(doc), max_tokens=4, temperature=0)
    assert "evaluated the system prompt" in one.prepare_system_prompt(cache)
    first_reply = "".join(one.send("What is it?"))
    llm = make(tiny_llama_512)
    two = ChatSession(llm, document_path=str(doc), max_tokens=4, temperature=0)
    assert "loaded" in two.prepare_system_prompt(cache)
    assert "".join(two.send("What is it?")) == first_reply
    prefix = llm.tokenize(llm.format_chat(two.messages[:1], add_generation_prompt=False), special=True)
    prompt = llm.tokenize(llm.format_chat(two.messages[:2]), special=True)
    assert len(prefix) > 1000 and two.last_evaluated_tokens == len(prompt) - len(prefix)   # only the question


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "selfextend_gguf", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_cli_prompt_cache_file(tiny_llama_512, other_model, tmp_path):
    cache = tmp_path / "doc.state"
    common = ["complete", "--model", str(tiny_llama_512.path), "--n-ctx", str(N_CTX), "-n", "6", "--temp", "0",
              "--threads", "2"]
    first = _cli(*common, "--prompt", DOC + "One?", "--prompt-cache", str(cache))
    assert first.returncode == 0, first.stderr and cache.exists()
    before = cache.read_bytes()
    second = _cli(*common, "--prompt", DOC + "Two?", "--prompt-cache", str(cache), "--prompt-cache-ro")
    assert second.returncode == 0 and "loaded" in second.stderr
    assert cache.read_bytes() == before            # read-only: not written
    plain = _cli(*common, "--prompt", DOC + "Two?")
    assert second.stdout == plain.stdout
    foreign = _cli("complete", "--model", str(other_model.path), "--n-ctx", str(N_CTX), "-n", "2", "--prompt",
                   DOC, "--prompt-cache", str(cache))
    assert foreign.returncode == 2 and "another model or other settings" in foreign.stderr
