"""The llama_cpp.Llama surface apps use, on tiny models: llama.cpp's sampler chain,
grammars and JSON schemas, logprobs, fill-in-the-middle, embeddings, constructor
arguments, LoRA, from_pretrained (a local Hugging Face cache), and what is refused."""

import json
import math

import numpy as np
import pytest

from app_models import ascii_only, non_ascii_ban, write_app_model, write_lora
from random_schemas import random_schema
from selfextend_gguf import Llama
from selfextend_gguf.apps.grammar import LlamaGrammar
from tiny_models import N_SPECIAL, byte_tokens

N_CTX = 1024   # twice the trained 512: Self-Extend is on in every test here


@pytest.fixture(scope="module")
def app_model(tmp_path_factory):
    return write_app_model(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def llm(app_model):
    return Llama(str(app_model.path), n_ctx=N_CTX, n_threads=2)


def text_of(out):
    return out["choices"][0]["text"]


# ----------------------------------------------------------------------------- sampling

def test_self_extend_is_on(llm):
    assert llm.self_extend is not None and llm.self_extend.group_size >= 2


def test_same_seed_same_text_other_seed_other_text(llm):
    runs = [text_of(llm.create_completion("Seed", max_tokens=24, temperature=1.0, seed=s)) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_greedy_is_the_argmax_of_the_logits(llm, app_model):
    prompt = llm.tokenize("Greedy")
    bias = ascii_only(app_model)
    out = llm.create_completion(prompt, max_tokens=12, temperature=0, logit_bias=bias)
    generated = llm.tokenize(text_of(out), add_bos=False)
    assert len(generated) == 12
    llm.reset()
    logits = llm.eval_logits(prompt + generated)
    for token, value in bias.items():
        logits[:, token] += value
    argmax = [int(np.argmax(logits[len(prompt) - 1 + i])) for i in range(12)]
    assert generated == argmax


def _fixed_logits(tokens_and_values, n_vocab):
    """A logits processor that replaces the model's logits with fixed ones."""
    def processor(input_ids, scores):
        out = np.full(n_vocab, -1e9, dtype=np.float32)
        for token, value in tokens_and_values.items():
            out[token] = value
        return out
    return processor


@pytest.mark.parametrize("penalty, seen, expect_a", [
    (dict(), 1, True),                                        # no penalty: A (5.0) beats B (4.9)
    (dict(repeat_penalty=1.5), 1, False),                     # 5.0 / 1.5 < 4.9
    (dict(presence_penalty=0.5), 1, False),                   # 5.0 - 0.5 < 4.9
    (dict(frequency_penalty=0.05), 1, True),                  # 5.0 - 1 * 0.05 > 4.9
    (dict(frequency_penalty=0.05), 3, False),                 # 5.0 - 3 * 0.05 < 4.9
])
def test_penalties_change_the_distribution_as_llama_cpp_defines_them(llm, penalty, seen, expect_a):
    """llama.cpp's penalties sampler: a positive logit of a recent token is divided by
    repeat_penalty, and count * frequency_penalty + presence_penalty is subtracted."""
    a, b = N_SPECIAL + ord("A"), N_SPECIAL + ord("B")
    prompt = byte_tokens(b"xyz") + [a] * seen
    out = llm.create_completion(prompt, max_tokens=1, temperature=0, top_k=0, top_p=1.0, min_p=0.0,
                                logits_processor=_fixed_logits({a: 5.0, b: 4.9}, llm.n_vocab()), **penalty)
    assert text_of(out) == ("A" if expect_a else "B")


def test_penalty_window_is_last_n_tokens_size(app_model):
    a, b = N_SPECIAL + ord("A"), N_SPECIAL + ord("B")
    near = Llama(str(app_model.path), n_ctx=256, n_threads=2, last_n_tokens_size=4)
    prompt = [a] + byte_tokens(b"0123456789")   # A is 11 tokens back: outside the window of 4
    out = near.create_completion(prompt, max_tokens=1, temperature=0, repeat_penalty=1.5,
                                 logits_processor=_fixed_logits({a: 5.0, b: 4.9}, near.n_vocab()))
    assert text_of(out) == "A"


def test_logit_bias_bans_the_argmax(llm):
    prompt = llm.tokenize("Bias")
    llm.reset()
    first = int(np.argmax(llm.eval_logits(prompt)[-1]))
    for bias in ({first: float("-inf")}, {str(first): -100}):   # OpenAI sends the ids as strings
        out = llm.create_completion(prompt, max_tokens=1, temperature=0, logprobs=1, logit_bias=bias)
        chosen = out["choices"][0]["logprobs"]["token_logprobs"][0]
        assert chosen < max(out["choices"][0]["logprobs"]["top_logprobs"][0].values())


@pytest.mark.parametrize("options", [dict(typical_p=0.5), dict(mirostat_mode=1), dict(mirostat_mode=2, mirostat_tau=3.0),
                                     dict(top_k=1), dict(min_p=0.3), dict(top_p=0.2)])
def test_other_samplers_run_and_reproduce(llm, options):
    a = text_of(llm.create_completion("Other", max_tokens=10, temperature=0.9, seed=3, **options))
    b = text_of(llm.create_completion("Other", max_tokens=10, temperature=0.9, seed=3, **options))
    assert a == b and a


@pytest.mark.parametrize("bad, match", [
    (dict(temperature=-0.1), "temperature"), (dict(top_p=1.5), "top_p"), (dict(typical_p=2.0), "typical_p"),
    (dict(mirostat_mode=3), "mirostat_mode"), (dict(presence_penalty=5.0), "presence_penalty"),
    (dict(repeat_penalty=0.0), "repeat_penalty"), (dict(tfs_z=0.9), "tail-free"),
    (dict(logit_bias={"x": 1.0}), "logit_bias"), (dict(logit_bias={10 ** 9: 1.0}), "outside the vocabulary"),
])
def test_bad_sampling_settings_are_clear_errors(llm, bad, match):
    with pytest.raises(ValueError, match=match):
        llm.create_completion("x", max_tokens=2, **bad)
    assert text_of(llm.create_completion("x", max_tokens=2, temperature=0))


def test_sample_and_generate(llm, app_model):
    prompt = llm.tokenize("Gen")
    tokens = []
    for token in llm.generate(prompt, temp=0):
        tokens.append(token)
        if len(tokens) == 6:
            break
    out = llm.create_completion(prompt, max_tokens=6, temperature=0, logprobs=0)
    expected = [t for t in llm.input_ids[len(prompt):]]   # the last one is drawn, not evaluated
    assert tokens[:5] == expected and len(out["choices"][0]["logprobs"]["tokens"]) == 6
    llm.reset()
    llm.eval(prompt)
    assert llm.sample(temp=0) == expected[0]


# ----------------------------------------------------------------------------- grammars

def test_gbnf_grammar_constrains_the_output(llm):
    grammar = 'root ::= ("yes" | "no") " " [0-9] [0-9]'
    for seed in range(5):
        out = llm.create_completion("Answer:", max_tokens=20, temperature=1.0, seed=seed, grammar=grammar)
        text = text_of(out)
        assert text[:3] in ("yes", "no ") and text.split(" ")[1].isdigit(), text
        assert out["choices"][0]["finish_reason"] == "stop"
    out = llm.create_completion("Answer:", max_tokens=20, temperature=0, grammar=LlamaGrammar.from_string(grammar))
    assert out["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("bad", ['root ::= "a" | undefined-rule', 'root ::= [a-', "nothing here"])
def test_malformed_grammar_is_a_clear_error(llm, bad):
    with pytest.raises(ValueError, match="grammar"):
        LlamaGrammar.from_string(bad)
    with pytest.raises(ValueError, match="grammar"):
        llm.create_completion("x", max_tokens=2, grammar=bad)
    assert text_of(llm.create_completion("x", max_tokens=2, temperature=0))


@pytest.mark.parametrize("bad", [{"type": 5}, {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}])
def test_malformed_schema_is_a_clear_error(llm, bad):
    with pytest.raises(ValueError, match="schema"):
        LlamaGrammar.from_json_schema(bad)
    with pytest.raises(ValueError, match="schema"):
        llm.create_chat_completion([{"role": "user", "content": "x"}], max_tokens=2,
                                   response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": bad}})


def test_keywords_the_grammar_cannot_enforce_are_refused_in_strict_mode(llm):
    schema = {"type": "object", "properties": {"x": {"type": "number", "minimum": 1.5}}, "required": ["x"]}
    with pytest.raises(ValueError, match="minimum"):
        llm.create_chat_completion([{"role": "user", "content": "x"}], max_tokens=2, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    # not strict: accepted (with a warning), the rest of the schema holds
    out = llm.create_chat_completion([{"role": "user", "content": "x"}], max_tokens=2, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert out["choices"][0]["message"]["content"] is not None


@pytest.mark.parametrize("index", range(20))
def test_random_json_schemas_give_valid_json(llm, app_model, index):
    jsonschema = pytest.importorskip("jsonschema")
    rng = np.random.default_rng(1000 + index)
    schema = random_schema(rng)
    if schema.get("type") != "object":
        schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    chat = index % 2 == 0
    if chat:
        out = llm.create_chat_completion(
            [{"role": "user", "content": "Give JSON."}], max_tokens=600, temperature=0.8, seed=index,
            logit_bias=non_ascii_ban(app_model),
            response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema, "strict": True}})
        text, finish = out["choices"][0]["message"]["content"], out["choices"][0]["finish_reason"]
    else:
        out = llm.create_completion("JSON:", max_tokens=600, temperature=0.8, seed=index,
                                    logit_bias=non_ascii_ban(app_model), grammar=LlamaGrammar.from_json_schema(schema))
        text, finish = text_of(out), out["choices"][0]["finish_reason"]
    assert finish == "stop", f"ran out of tokens: {text!r}"
    jsonschema.validate(json.loads(text), schema)


# ----------------------------------------------------------------------------- logprobs

def test_completion_logprobs_are_the_model_distribution(llm, app_model):
    prompt = llm.tokenize("Logprob")
    out = llm.create_completion(prompt, max_tokens=5, temperature=0.7, seed=1, logprobs=3,
                                logit_bias=ascii_only(app_model))
    lp = out["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "text_offset", "token_logprobs", "top_logprobs"}
    assert "".join(lp["tokens"]) == text_of(out) and lp["text_offset"][0] == 0
    generated = llm.tokenize(text_of(out), add_bos=False)
    llm.reset()
    logits = llm.eval_logits(prompt + generated)
    for i, token in enumerate(generated):
        row = logits[len(prompt) - 1 + i].astype(np.float64)
        ref = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        assert math.isclose(lp["token_logprobs"][i], ref[token], abs_tol=1e-4)
        top = lp["top_logprobs"][i]
        assert math.isclose(max(top.values()), float(np.max(ref)), abs_tol=1e-4)
        assert lp["tokens"][i] in top and len(top) <= 4   # the chosen token is always included


def test_echo_with_logprobs_scores_the_prompt(llm):
    out = llm.create_completion("Echo", max_tokens=2, temperature=0, logprobs=1, echo=True)
    lp = out["choices"][0]["logprobs"]
    n_prompt = len(llm.tokenize("Echo"))   # BOS and four letters
    assert lp["token_logprobs"][0] is None and all(x is not None for x in lp["token_logprobs"][1:])
    assert len(lp["tokens"]) == n_prompt + 2 and text_of(out).startswith("Echo")
    assert lp["tokens"][1:5] == list("Echo")


def test_chat_logprobs_in_openai_shape(llm):
    out = llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0,
                                     logprobs=True, top_logprobs=2)
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == out["usage"]["completion_tokens"]
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"} and len(entry["top_logprobs"]) == 2
        assert entry["top_logprobs"][0]["logprob"] >= entry["logprob"] - 1e-6   # greedy: the top one
    with pytest.raises(ValueError, match="top_logprobs"):
        llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1, top_logprobs=2)


# ----------------------------------------------------------------------------- FIM, chat

def test_suffix_fills_in_the_middle(llm, app_model):
    cfg = app_model.config
    llm.create_completion("def_f(", suffix="return_x", max_tokens=3, temperature=0)
    ids = [int(t) for t in llm.input_ids]
    pre, suf, mid = (cfg.special_token_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    assert ids[:2] == [1, pre]   # BOS, then the prefix
    assert ids[2:8] == byte_tokens(b"def_f(") and ids[8] == suf
    assert ids[9:17] == byte_tokens(b"return_x") and ids[17] == mid
    spm = Llama(str(app_model.path), n_ctx=256, n_threads=2, spm_infill=True)
    spm.create_completion("ab", suffix="cd", max_tokens=2, temperature=0)
    assert [int(t) for t in spm.input_ids[:8]] == [1, suf] + byte_tokens(b"cd") + [pre] + byte_tokens(b"ab") + [mid]


def test_suffix_without_fim_tokens_is_a_clear_error(tiny_llama_512):
    plain = Llama(str(tiny_llama_512.path), n_ctx=256, n_threads=2)
    with pytest.raises(ValueError, match="fill-in-the-middle"):
        plain.create_completion("def_f(", suffix="return_x", max_tokens=3)


def test_content_parts_equal_a_string(llm):
    as_string = llm.format_chat([{"role": "user", "content": "Hello there"}])
    as_parts = llm.format_chat([{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}])
    assert as_string == as_parts
    with pytest.raises(ValueError, match="multimodal"):
        llm.create_chat_completion([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])


def test_chat_format_names_llama_cpp_templates(app_model):
    llama3 = Llama(str(app_model.path), n_ctx=256, n_threads=2, chat_format="llama-3")
    prompt = llama3.format_chat([{"role": "user", "content": "Hi"}])
    assert "<|start_header_id|>user<|end_header_id|>" in prompt
    with pytest.raises(ValueError, match="not a template llama.cpp has built in"):
        Llama(str(app_model.path), n_ctx=256, chat_format="no-such-format")
    # a built-in renderer has no tools: they go in the generic JSON envelope
    rendered = llama3.chat_formatter.render([{"role": "user", "content": "Hi"}], tools=[{
        "type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert rendered.generic and '"name": "f"' in rendered.prompt and rendered.grammar is not None


# ----------------------------------------------------------------------------- embeddings

def test_embeddings_pooled_and_per_token(app_model):
    mean = Llama(str(app_model.path), n_ctx=256, n_threads=2, embedding=True, pooling_type="mean")
    none = Llama(str(app_model.path), n_ctx=256, n_threads=2, embedding=True, pooling_type="none")
    vec = np.array(mean.embed("Embed this"))
    assert vec.shape == (app_model.config.n_embd,) and math.isclose(np.linalg.norm(vec), 1.0, rel_tol=1e-5)
    rows = np.array(none.embed("Embed this", normalize=False))
    assert rows.shape == (len(none.tokenize("Embed this")), app_model.config.n_embd)
    pooled = np.array(mean.embed("Embed this", normalize=False))
    np.testing.assert_allclose(pooled, rows.mean(axis=0), rtol=1e-4, atol=1e-5)
    batch = mean.embed(["one", "two"])
    assert len(batch) == 2 and batch[0] != batch[1]
    out = mean.create_embedding(["one", "two"])
    assert [d["index"] for d in out["data"]] == [0, 1] and out["usage"]["prompt_tokens"] > 0
    # the context still generates after embedding
    assert text_of(mean.create_completion("Still", max_tokens=3, temperature=0))


def test_embed_needs_embedding_true(llm):
    with pytest.raises(RuntimeError, match="embedding=True"):
        llm.embed("x")


# ----------------------------------------------------------------------------- constructor

def test_llama_cpp_constructor_arguments(app_model):
    llm = Llama(str(app_model.path), n_ctx=256, n_threads=2, use_mmap=False, use_mlock=False, main_gpu=0,
                tensor_split=[1.0], split_mode="layer", offload_kqv=True, op_offload=True, swa_full=True,
                yarn_attn_factor=None, no_perf=True, last_n_tokens_size=32, chat_format="chatml",
                chat_handler=None, lora_path=None)
    assert text_of(llm.create_completion("Args", max_tokens=3, temperature=0))


def test_kv_overrides_change_the_metadata(app_model):
    llm = Llama(str(app_model.path), n_ctx=256, n_threads=2, kv_overrides={"llama.context_length": 128})
    assert llm.n_ctx_train() == 128
    with pytest.raises(ValueError, match="kv_overrides"):
        Llama(str(app_model.path), n_ctx=256, kv_overrides={"llama.context_length": [1, 2]})


def test_vocab_only_tokenizes_but_has_no_context(app_model):
    llm = Llama(str(app_model.path), vocab_only=True)
    assert llm.tokenize("abc", add_bos=False) == byte_tokens(b"abc")
    assert llm.format_chat([{"role": "user", "content": "x"}]).startswith("<|im_start|>")
    with pytest.raises(ValueError, match="vocab_only"):
        llm.create_completion("x")


@pytest.mark.parametrize("argument, value, match", [
    ("rpc_servers", "no-port-here", "host:port"), ("lora_base", "x.gguf", "lora_base"),
    ("chat_handler", object(), "chat_handler"), ("draft_model", object(), "draft"),
    ("tokenizer", object(), "tokenizer"), ("split_mode", "diagonal", "split_mode"),
    ("tensor_split", [-1.0], "tensor_split"), ("pooling_type", "median", "pooling_type"),
])
def test_unsupported_constructor_arguments_are_clear_errors(app_model, argument, value, match):
    with pytest.raises(ValueError, match=match):
        Llama(str(app_model.path), n_ctx=256, **{argument: value})


def test_unknown_keyword_is_a_type_error(app_model, llm):
    with pytest.raises(TypeError):
        Llama(str(app_model.path), n_ctx=256, no_such_argument=1)
    with pytest.raises(TypeError):
        llm.create_completion("x", no_such_argument=1)


def test_lora_adapter(app_model, tmp_path):
    base = Llama(str(app_model.path), n_ctx=256, n_threads=2, logits_all=True)
    zero = Llama(str(app_model.path), n_ctx=256, n_threads=2, lora_path=str(write_lora(tmp_path, app_model, 0.0, "z.gguf")))
    strong = Llama(str(app_model.path), n_ctx=256, n_threads=2, lora_path=str(write_lora(tmp_path, app_model, 1.0, "s.gguf")))
    off = Llama(str(app_model.path), n_ctx=256, n_threads=2, lora_scale=0.0,
                lora_path=str(write_lora(tmp_path, app_model, 1.0, "s2.gguf")))
    tokens = base.tokenize("LoRA")
    ref = base.eval_logits(tokens)
    np.testing.assert_allclose(zero.eval_logits(tokens), ref, atol=1e-4)
    np.testing.assert_allclose(off.eval_logits(tokens), ref, atol=1e-4)
    assert np.abs(strong.eval_logits(tokens) - ref).max() > 1e-2
    with pytest.raises(ValueError, match="LoRA"):
        Llama(str(app_model.path), n_ctx=256, lora_path=str(app_model.path))


# ----------------------------------------------------------------------------- from_pretrained

def test_from_pretrained_reads_a_local_hugging_face_cache(app_model, tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--tiny-gguf"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / "a1b2c3"
    blob.parent.mkdir()
    blob.write_bytes(app_model.path.read_bytes())
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "tiny-Q8_0.gguf").symlink_to(blob)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    llm = Llama.from_pretrained("tiny-org/tiny-gguf", "*q8_0.gguf", cache_dir=str(cache), n_ctx=256, n_threads=2)
    assert llm.model_path.endswith("tiny-Q8_0.gguf")
    assert text_of(llm.create_completion("Hub", max_tokens=2, temperature=0))
    with pytest.raises(ValueError, match="no file matching"):
        Llama.from_pretrained("tiny-org/tiny-gguf", "*q4_k_m.gguf", cache_dir=str(cache))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        Llama.from_pretrained("other/repo", "*.gguf", cache_dir=str(cache))
