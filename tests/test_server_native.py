"""llama-server's native routes over loopback: /completion (whole and streamed), /infill on
a model with FIM tokens (and a 400 without them), /props, /slots, /metrics (and 501
without --metrics), the API key, and 400s for bad input; the FIM prompt in-process."""

import json

import httpx
import pytest

from app_models import SPECIAL_TOKENS, ascii_only, non_ascii_ban
from selfextend_gguf import Llama
from selfextend_gguf.apps.infill import fim_prompt, fim_tokens, infill_prompt
from server_process import ServerProcess
from tiny_models import TinyConfig, byte_tokens, write_tiny_model

N_CTX = 1024   # twice the tiny models' trained 512: Self-Extend is on
KEY = "native-key"
# llama.cpp finds a repo-level FIM vocabulary's FIM_REP and FIM_SEP by these texts
REPO_TOKENS = ("<|repo_name|>", "<|file_sep|>")


@pytest.fixture(scope="module")
def fim_model(tmp_path_factory):
    """The app model's vocabulary (FIM prefix, suffix, middle) plus FIM_REP and FIM_SEP."""
    return write_tiny_model(tmp_path_factory.mktemp("native"),
                            TinyConfig(arch="llama", n_ctx_train=512, seed=5, special_tokens=SPECIAL_TOKENS + REPO_TOKENS),
                            name="tiny-fim-repo.gguf")


@pytest.fixture(scope="module")
def server(fim_model):
    srv = ServerProcess("--model", str(fim_model.path), "--n-ctx", str(N_CTX), "--parallel", "2", "--threads", "1",
                        "--metrics")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keyed_server(tiny_llama_512):
    """A model without FIM tokens, with an API key and without --metrics."""
    srv = ServerProcess("--model", str(tiny_llama_512.path), "--n-ctx", str(N_CTX), "--threads", "1",
                        "--api-key", KEY)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ascii_ban(fim_model):
    """llama-server's list form of logit_bias: plain ASCII without spaces, no end of text
    (so every token is one character and a generation runs to its limit)."""
    return [[t, False] for t in sorted(ascii_only(fim_model))]


def post(server, path, body, **kwargs):
    return httpx.post(server.url + path, json=body, timeout=300, **kwargs)


def events(server, path, body):
    """A stream's `data:` events; anything else but blank lines fails."""
    out = []
    with httpx.stream("POST", server.url + path, json=body, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line:
                assert line.startswith("data: ") and line != "data: [DONE]", line
                out.append(json.loads(line[len("data: "):]))
    return out


def tokenize(server, text, special=False, **kwargs):
    return post(server, "/tokenize", {"content": text, "add_special": False, "parse_special": special},
                **kwargs).json()["tokens"]


def metrics(server):
    r = httpx.get(server.url + "/metrics", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {}
    for line in r.text.splitlines():
        if not line.startswith("#"):
            name, value = line.split(" ")
            values[name[len("llamacpp:"):]] = float(value)
    return values, r.text


# ----------------------------------------------------------------------------- /completion

def test_streamed_pieces_join_to_the_whole_completion(server, ascii_ban):
    body = {"prompt": "Once", "n_predict": 12, "seed": 7, "temperature": 0.9, "logit_bias": ascii_ban,
            "return_tokens": True, "timings_per_token": True}
    whole = post(server, "/completion", body).json()
    assert whole["stop"] is True and whole["stop_type"] == "limit" and whole["stopping_word"] == ""
    assert whole["tokens_predicted"] == 12 == len(whole["tokens"]) and len(whole["content"]) == 12
    assert whole["truncated"] is False and whole["prompt"] == "<s>Once"
    timings = whole["timings"]
    assert timings["predicted_n"] == 12 and timings["prompt_n"] + timings["cache_n"] == whole["tokens_evaluated"] == 5
    assert timings["prompt_ms"] >= 0 and timings["predicted_ms"] > 0 and timings["predicted_per_second"] > 0
    settings = whole["generation_settings"]
    assert settings["n_predict"] == 12 and settings["seed"] == 7 and settings["temperature"] == 0.9
    assert whole["id_slot"] in (0, 1) and whole["model"].endswith(".gguf")

    stream = events(server, "/completion", dict(body, stream=True))
    partial, final = stream[:-1], stream[-1]
    assert all(e["stop"] is False and "timings" in e for e in partial)
    assert "".join(e["content"] for e in partial) == whole["content"]
    assert [t for e in partial for t in e["tokens"]] == whole["tokens"]
    assert [e["tokens_predicted"] for e in partial] == list(range(1, 13))
    assert final["stop"] is True and final["content"] == "" and final["tokens_predicted"] == 12
    assert final["stop_type"] == "limit" and final["timings"]["predicted_n"] == 12


def test_stop_string_and_end_of_text(server, ascii_ban):
    body = {"prompt": "Stop", "n_predict": 24, "seed": 11, "temperature": 1.0, "logit_bias": ascii_ban, "n_probs": 1}
    free = post(server, "/completion", body).json()["content"]
    word = free[len(free) // 2]
    cut = free.index(word)
    stopped = post(server, "/completion", dict(body, stop=["\u2603", word])).json()
    assert stopped["stop_type"] == "word" and stopped["stopping_word"] == word
    assert stopped["content"] == free[:cut] and stopped["tokens_predicted"] == cut + 1
    # as llama-server: the stop string's tokens have no probabilities
    assert len(stopped["completion_probabilities"]) == cut
    streamed = events(server, "/completion", dict(body, stop=[word], stream=True))
    assert "".join(e["content"] for e in streamed) == free[:cut] and streamed[-1]["stop_type"] == "word"
    assert sum(len(e["tokens"]) for e in streamed) == cut + 1

    ending = {"prompt": "End", "n_predict": 8, "temperature": 0, "logit_bias": {"2": 60}}
    eos = post(server, "/completion", ending).json()
    assert eos["stop_type"] == "eos" and eos["tokens_predicted"] == 0 and eos["content"] == ""
    ignored = post(server, "/completion", dict(ending, ignore_eos=True)).json()
    assert ignored["stop_type"] == "limit" and ignored["tokens_predicted"] == 8


def test_grammar_and_json_schema(server, fim_model):
    # no bytes >= 0x80 (see non_ascii_ban); the end of text stays allowed, for the grammar to end
    body = {"prompt": "Answer", "n_predict": 50, "seed": 4,
            "logit_bias": [[t, False] for t in sorted(non_ascii_ban(fim_model))]}
    yes_no = post(server, "/completion", dict(body, grammar='root ::= "yes" | "no"')).json()
    assert yes_no["content"] in ("yes", "no") and yes_no["stop_type"] == "eos"
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["n"], "additionalProperties": False}
    out = post(server, "/completion", dict(body, json_schema=schema, n_predict=200)).json()
    assert out["stop_type"] == "eos" and 0 <= json.loads(out["content"])["n"] <= 9


def test_n_probs_have_llama_servers_shape(server):
    body = {"prompt": "Probs", "n_predict": 4, "temperature": 0, "n_probs": 3, "return_tokens": True,
            "logit_bias": [[2, False]]}
    out = post(server, "/completion", body).json()
    probs = out["completion_probabilities"]
    assert [p["id"] for p in probs] == out["tokens"] and len(probs) == 4
    for p in probs:
        assert set(p) == {"id", "token", "bytes", "logprob", "top_logprobs"} and p["logprob"] <= 0
        assert len(p["top_logprobs"]) == 3 and all(set(t) == {"id", "token", "bytes", "logprob"}
                                                   for t in p["top_logprobs"])
        assert p["top_logprobs"][0]["logprob"] >= p["logprob"] - 1e-6   # greedy: the most likely
    streamed = events(server, "/completion", dict(body, stream=True))
    with_tokens = [e for e in streamed[:-1] if e["tokens"]]
    assert all([p["id"] for p in e["completion_probabilities"]] == e["tokens"] for e in with_tokens)
    assert "completion_probabilities" not in streamed[-1]


def test_token_and_mixed_prompts(server):
    body = {"n_predict": 5, "temperature": 0, "logit_bias": [[2, False]]}
    as_text = post(server, "/completion", dict(body, prompt="Hello")).json()
    ids = post(server, "/tokenize", {"content": "Hello", "add_special": True}).json()["tokens"]
    as_ids = post(server, "/completion", dict(body, prompt=ids)).json()
    mixed = post(server, "/completion", dict(body, prompt=[ids[0], "Hel", "lo"])).json()
    for out in (as_ids, mixed):
        assert out["content"] == as_text["content"] and out["tokens_evaluated"] == len(ids) == 6
    assert post(server, "/completions", dict(body, prompt=["Hello"])).json()["content"] == as_text["content"]


# ----------------------------------------------------------------------------- /infill

def test_infill_prompt_holds_the_fim_tokens_in_order(server, fim_model):
    cfg = fim_model.config
    pre, suf, mid, rep, sep = (cfg.special_token_id(t) for t in
                               ("<fim_prefix>", "<fim_suffix>", "<fim_middle>") + REPO_TOKENS)
    body = {"input_prefix": "def_f(", "input_suffix": "return_x", "prompt": "ab", "n_predict": 2,
            "input_extra": [{"filename": "a.py", "text": "x=1\n"}], "temperature": 0}
    out = post(server, "/infill", body).json()
    expected = ([rep] + byte_tokens(b"myproject\n") + [sep] + byte_tokens(b"a.py\n") + byte_tokens(b"x=1\n")
                + [sep] + byte_tokens(b"filename\n") + [1, pre] + byte_tokens(b"def_f(ab") + [suf]
                + byte_tokens(b"return_x") + [mid])
    assert out["tokens_evaluated"] == len(expected)
    assert tokenize(server, out["prompt"], special=True) == expected
    assert out["stop"] is True and out["generation_settings"]["n_predict"] == 2
    # the prefix given as text and token ids reads the same
    mixed = post(server, "/infill", dict(body, input_prefix=["def_", byte_tokens(b"f")[0], "("])).json()
    assert mixed["prompt"] == out["prompt"]


def test_infill_without_fim_tokens_is_a_400(keyed_server):
    r = post(keyed_server, "/infill", {"input_prefix": "a", "input_suffix": "b"},
             headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "fill-in-the-middle" in message and "prefix" in message


def test_fim_prompt_without_repo_tokens(app_model_llm):
    llm, cfg = app_model_llm
    pre, suf, mid = (cfg.special_token_id(t) for t in ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"))
    extra = [{"filename": "a.py", "text": "x"}]
    psm = infill_prompt(llm, "ab", "cd", extra, byte_tokens(b"e"), 512, -1, N_CTX, False)
    snippet = llm.tokenize("\n\n--- snippet ---\n\n", add_bos=False)   # llama-server's separator of files
    assert psm == snippet + byte_tokens(b"x") + [1, pre] + byte_tokens(b"abe") + [suf] + byte_tokens(b"cd") + [mid]
    spm = infill_prompt(llm, "ab", "cd", [], [], 512, -1, N_CTX, True)
    assert spm == [1, suf] + byte_tokens(b"cd") + [pre] + byte_tokens(b"ab") + [mid]
    # a batch of 16: the prefix keeps its last 12 tokens, the suffix its first 4 - (2 + 1)
    cut = infill_prompt(llm, "p" * 20, "s" * 20, [], byte_tokens(b"e"), 16, -1, N_CTX, False)
    assert cut == [1, pre] + byte_tokens(b"p" * 12 + b"e") + [suf] + byte_tokens(b"s") + [mid]
    # create_completion's suffix= builds the same plain order
    assert fim_prompt(llm, "ab", "cd", False) == [1, pre] + byte_tokens(b"ab") + [suf] + byte_tokens(b"cd") + [mid]


def test_fim_tokens_missing_names_them(tiny_llama_512):
    plain = Llama(str(tiny_llama_512.path), vocab_only=True)
    with pytest.raises(ValueError, match="fill-in-the-middle.*prefix, suffix, middle"):
        fim_tokens(plain, "infill")


@pytest.fixture(scope="module")
def app_model_llm(tmp_path_factory):
    model = write_tiny_model(tmp_path_factory.mktemp("native-fim"),
                             TinyConfig(arch="llama", n_ctx_train=512, seed=5, special_tokens=SPECIAL_TOKENS),
                             name="tiny-fim.gguf")
    return Llama(str(model.path), vocab_only=True), model.config


# ----------------------------------------------------------------------------- /props, /slots

def test_props(server):
    props = httpx.get(server.url + "/props", timeout=60).json()
    defaults = props["default_generation_settings"]
    assert defaults["n_ctx"] == N_CTX and defaults["params"]["n_predict"] == -1
    assert defaults["params"]["temperature"] == 0.8 and defaults["params"]["top_k"] == 40
    assert props["total_slots"] == 2 and props["model_path"].endswith("tiny-fim-repo.gguf")
    assert props["self_extend"]["group_size"] >= 2 and props["endpoint_metrics"] is True
    assert props["modalities"] == {"vision": False, "video": False, "audio": False}
    assert "im_start" in props["chat_template"] and props["bos_token"] == "<s>" and props["build_info"]
    r = httpx.post(server.url + "/props", json={}, timeout=60)
    assert r.status_code == 501 and r.json()["error"]["message"]


def test_slots_after_a_request(server):
    out = post(server, "/completion", {"prompt": "Slots please", "n_predict": 3, "temperature": 0}).json()
    slots = httpx.get(server.url + "/slots", timeout=60).json()
    assert [s["id"] for s in slots] == [0, 1]
    assert all(s["n_ctx"] == N_CTX and s["is_processing"] is False for s in slots)
    used = slots[out["id_slot"]]
    assert used["n_prompt_tokens"] == out["tokens_evaluated"]
    assert used["n_prompt_tokens_processed"] + used["n_prompt_tokens_cache"] == out["tokens_evaluated"]
    assert used["n_prompt_tokens_processed"] == out["timings"]["prompt_n"]


# ----------------------------------------------------------------------------- /metrics

METRICS = ("prompt_tokens_total", "prompt_tokens_cached_total", "prompt_seconds_total", "tokens_predicted_total",
           "tokens_predicted_seconds_total", "n_decode_total", "n_tokens_max", "prompt_tokens_seconds",
           "predicted_tokens_seconds", "requests_processing", "requests_deferred", "n_busy_slots_per_decode")


def test_metrics_count_each_request(server, ascii_ban):
    before, text = metrics(server)
    for name in METRICS:
        assert f"# HELP llamacpp:{name} " in text and f"# TYPE llamacpp:{name} " in text and name in before
    out = post(server, "/completion", {"prompt": "Count me", "n_predict": 6, "logit_bias": ascii_ban}).json()
    after, _ = metrics(server)
    assert after["tokens_predicted_total"] - before["tokens_predicted_total"] == 6
    assert after["prompt_tokens_total"] - before["prompt_tokens_total"] == out["timings"]["prompt_n"]
    assert (after["prompt_tokens_cached_total"] - before["prompt_tokens_cached_total"]
            == out["tokens_evaluated"] - out["timings"]["prompt_n"])
    assert after["n_decode_total"] - before["n_decode_total"] >= 6   # the prompt, then 5 tokens
    assert after["tokens_predicted_seconds_total"] > before["tokens_predicted_seconds_total"]
    assert after["requests_processing"] == 0 and after["requests_deferred"] == 0
    assert after["n_tokens_max"] >= out["tokens_evaluated"] + 6
    # OpenAI's routes count too
    usage = post(server, "/v1/completions", {"prompt": "Also me", "max_tokens": 4, "logit_bias": {"2": -100}})
    last, _ = metrics(server)
    assert last["tokens_predicted_total"] - after["tokens_predicted_total"] == usage.json()["usage"]["completion_tokens"]


def test_metrics_need_the_flag_and_routes_need_the_key(keyed_server):
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.get(keyed_server.url + "/metrics", headers=auth, timeout=60)
    assert r.status_code == 501 and "--metrics" in r.json()["error"]["message"]
    for method, path, body in (("GET", "/props", None), ("GET", "/slots", None), ("GET", "/metrics", None),
                               ("POST", "/completion", {"prompt": "x", "n_predict": 1}),
                               ("POST", "/infill", {"input_prefix": "a", "input_suffix": "b"})):
        r = httpx.request(method, keyed_server.url + path, json=body, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
    ok = httpx.post(keyed_server.url + "/completion", json={"prompt": "x", "n_predict": 1}, headers=auth, timeout=60)
    assert ok.status_code == 200 and ok.json()["stop"] is True
    assert httpx.get(keyed_server.url + "/props", headers=auth, timeout=60).json()["endpoint_metrics"] is False


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("path,body,param", [
    ("/completion", {"prompt": "x", "bogus": 1}, None),
    ("/completion", {"prompt": "x", "n_predict": "many"}, "n_predict"),
    ("/completion", {"prompt": "x", "n_predict": 0}, "n_predict"),
    ("/completion", {"prompt": "x", "n_predict": -2}, "n_predict"),
    ("/completion", {"prompt": "x", "dry_multiplier": 0.8}, "dry_multiplier"),
    ("/completion", {"prompt": "x", "post_sampling_probs": True}, "post_sampling_probs"),
    ("/completion", {"prompt": "x", "samplers": ["temperature", "top_k"]}, "samplers"),
    ("/completion", {"prompt": "x", "repeat_penalty": 1.1, "repeat_last_n": 16}, "repeat_last_n"),
    ("/completion", {"prompt": [["a"], ["b"]]}, "prompt"),
    ("/completion", {"prompt": ""}, "prompt"),
    ("/completion", {"prompt": [1, 99999]}, "prompt"),
    ("/completion", {}, "prompt"),
    ("/completion", {"prompt": "x", "logit_bias": [[1, True]]}, "logit_bias"),
    ("/completion", {"prompt": "x", "logit_bias": [[99999, -1]]}, "logit_bias"),
    ("/completion", {"prompt": "x", "id_slot": 7}, "id_slot"),
    ("/completion", {"prompt": "x", "grammar": "root ::= ("}, None),
    ("/infill", {"input_prefix": "a"}, "input_suffix"),
    ("/infill", {"input_prefix": "a", "input_suffix": "b", "input_extra": [{"name": "a"}]}, None),
])
def test_bad_input_is_a_400_with_a_json_body(server, path, body, param):
    r = post(server, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param:
        assert error["param"] == param or error["message"].startswith(param)
