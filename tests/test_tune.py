"""`tune` on tiny models: the candidates, exact branching from the cached document, the
remembered choice and its overrides, the command line. (The ranking of a good setting
above a wrong one needs a model that can retrieve: tests/test_tune_default_model.py.)"""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from selfextend_gguf import Llama, tune
from selfextend_gguf.settings import self_extend as se
from selfextend_gguf.settings import tuned as tuned_settings
from selfextend_gguf.eval.perplexity import nll
from selfextend_gguf.eval.texts import default_text, package_license_text
from selfextend_gguf.tuning import needles
from selfextend_gguf.tuning.candidates import candidates
from selfextend_gguf.tuning.scoring import score_setting

LENGTH = 1200   # the tiny model's trained context is 512


@pytest.fixture
def tuned_file(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    monkeypatch.setenv("SELFEXTEND_GGUF_TUNED", str(path))
    return path


@pytest.mark.parametrize("n_ctx_train", [64, 512, 2048, 4096, 8192, 32768, 131072])
@pytest.mark.parametrize("factor", [1.01, 1.5, 2, 3, 8])
def test_candidates_reach_the_length(n_ctx_train, factor):
    length = int(n_ctx_train * factor) + 1
    found = candidates(n_ctx_train, length)
    pairs = [(c.group_size, c.neighbor_window) for c in found]
    assert len(set(pairs)) == len(pairs) >= 4
    for c in found:
        assert c.group_size >= 2 and 0 < c.neighbor_window < n_ctx_train
        assert se.max_context(n_ctx_train, c.group_size, c.neighbor_window) >= length   # eq. 4
    assert found[0].why == "eq. 5" and pairs[0] == tuple(se.choose(length, n_ctx_train))
    windows = [w for _, w in pairs]
    assert min(windows) <= max(1, n_ctx_train // 32) and max(windows) == n_ctx_train // 4
    eq5_group = found[0].group_size
    assert any(g > eq5_group and w == found[0].neighbor_window for g, w in pairs)


def test_candidates_refuse_lengths_within_the_trained_context():
    with pytest.raises(ValueError, match="beyond the model's trained context"):
        candidates(8192, 8192)


def test_package_licenses_are_a_long_text():
    # the fallback for machines without /usr/share/common-licenses (macOS, Windows)
    text = package_license_text()
    assert text is not None and len(text) > 20_000


def _document(llm, length=LENGTH, n_needles=4):
    _, text = default_text()
    return needles.build(text, length, lambda t, bos: llm.tokenize(t, add_bos=bos),
                         lambda token: llm.token_bytes(token).endswith(b"\n"), n_needles=n_needles)


def _result(*rows):
    """A TuneResult from (G, needles found, mean log-prob, perplexity) rows."""
    from selfextend_gguf.tuning.candidates import Candidate
    from selfextend_gguf.tuning.scoring import AnswerScore, SettingScore
    from selfextend_gguf.tuning.tune import CandidateResult, TuneResult
    results = [CandidateResult(Candidate(g, 1024, "test"),
                               SettingScore([AnswerScore(log_prob, i < found) for i in range(6)], perplexity), 1.0)
               for g, found, log_prob, perplexity in rows]
    return TuneResult("model.gguf", 32768, 8192, "text", 6, results, 1.0)


def test_the_lowest_perplexity_is_named_only_among_candidates_that_found_as_much():
    from selfextend_gguf.tuning.cli import _report
    # the 32k run of bench/results/grid-4x/tune-32k.md, in short: G=22 answers surest, G=6 predicts best
    result = _result((6, 4, -3.3, 7.7), (11, 4, -1.7, 7.8), (22, 4, -1.5, 8.6), (5, 3, -1.0, 7.0))
    assert result.best.candidate.group_size == 22
    assert result.best_text_prediction.candidate.group_size == 6     # G=5 found fewer: never offered
    report = "\n".join(_report(result, "MODEL", "tune"))
    assert "group_size=6, neighbor_window=1024 found as many needles with the lowest perplexity (7.700 against " \
           "8.600)" in report
    # when the recommendation also predicts best, nothing more is said
    same = _result((6, 4, -3.3, 8.7), (22, 4, -1.5, 7.6))
    assert same.best_text_prediction is None
    assert "predicting text" not in "\n".join(_report(same, "MODEL", "tune"))


def test_needle_document_fits_and_holds_each_fact(tiny_llama_512):
    llm = Llama(str(tiny_llama_512.path), n_ctx=64, group_size=1)
    doc = _document(llm, n_needles=6)
    assert len(doc.tokens) + doc.longest_question <= LENGTH
    # the tiny byte vocabulary spells spaces as SentencePiece's U+2581
    words = lambda tokens: llm.detokenize(tokens).decode("utf-8", errors="replace").replace("\u2581", " ")  # noqa: E731
    text = words(doc.tokens)
    depths = [n.depth for n in doc.needles]
    assert depths == sorted(depths) and depths[0] > 0.02 and depths[-1] < doc.perplexity_from / LENGTH
    for needle in doc.needles:
        assert needle.fact in text
        answer = words(needle.answer).strip()
        assert f" {answer}" in needle.fact and answer not in words(needle.question)


def test_branched_questions_equal_a_full_evaluation(tiny_llama_512):
    """Each question is asked after rewinding to the cached document: its scores must equal
    those of evaluating document + question + answer from an empty cache."""
    opts = dict(n_ctx=LENGTH, group_size=4, neighbor_window=64, type_k="f32", type_v="f32", n_batch=256,
                n_ubatch=256)
    llm = Llama(str(tiny_llama_512.path), **opts)
    doc = _document(llm)
    scored = score_setting(llm, doc)
    assert llm.n_tokens == len(doc.tokens)    # rewound to the document after the last question

    fresh = Llama(str(tiny_llama_512.path), **opts)
    for needle, answer in zip(doc.needles, scored.answers):
        fresh.reset()
        logits = fresh.eval_logits(doc.tokens + needle.question + needle.answer)
        first = len(doc.tokens) + len(needle.question) - 1
        rows = logits[first:first + len(needle.answer)]
        expected = -nll(rows, np.asarray(needle.answer)).sum()
        assert abs(answer.log_prob - expected) < 1e-3 * len(needle.answer)
        assert answer.retrieved == bool((rows.argmax(axis=1) == needle.answer).all())
    start = doc.perplexity_from
    fresh.reset()
    logits = fresh.eval_logits(doc.tokens)
    expected_ppl = np.exp(nll(logits[start:-1], np.asarray(doc.tokens[start + 1:])).mean())
    assert abs(scored.perplexity - expected_ppl) < 1e-4 * expected_ppl


def test_tune_remembers_and_llama_uses_it(tiny_llama_512, tuned_file, caplog):
    path = str(tiny_llama_512.path)
    result = tune(path, LENGTH, candidates=[(3, 64), (6, 32)], n_needles=3, progress=False)
    assert [(r.candidate.group_size, r.candidate.neighbor_window) for r in result.results] == [(3, 64), (6, 32)]
    best = result.best.candidate
    assert result.remembered and json.loads(tuned_file.read_text())
    assert "| G | W |" in result.table() and "**best**" in result.table()

    caplog.set_level("INFO", logger="selfextend_gguf")
    llm = Llama(path, n_ctx=LENGTH - 100)
    assert tuple(llm.self_extend) == (best.group_size, best.neighbor_window)
    assert llm.self_extend_origin == "tuned"
    assert "tuned setting" in caplog.text and "--forget" in caplog.text

    # explicit values win, the tuned setting can be skipped, and it serves only up to its length
    assert Llama(path, n_ctx=LENGTH, group_size=5).self_extend.group_size == 5
    assert Llama(path, n_ctx=LENGTH, neighbor_window=100).self_extend.neighbor_window == 100
    skipped = Llama(path, n_ctx=LENGTH, use_tuned_setting=False)
    assert skipped.self_extend == se.choose(LENGTH, 512) and skipped.self_extend_origin == "eq. 5"
    assert Llama(path, n_ctx=LENGTH + 1).self_extend == se.choose(LENGTH + 1, 512)
    assert Llama(path, n_ctx=400).self_extend is None   # within the trained context: vanilla

    # a replaced model file is not the tuned one
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert Llama(path, n_ctx=LENGTH).self_extend_origin == "eq. 5"
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert Llama(path, n_ctx=LENGTH).self_extend_origin == "tuned"

    assert tuned_settings.forget(path) == 1
    assert Llama(path, n_ctx=LENGTH).self_extend_origin == "eq. 5"


def test_tune_offloads_as_asked(tiny_llama_512, tuned_file, monkeypatch):
    """n_gpu_layers reaches every candidate's model (on a CPU build -1 offloads nothing)."""
    tune_module = importlib.import_module("selfextend_gguf.tuning.tune")   # the package exports the function
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("n_gpu_layers"))
        return Llama(*args, **kwargs)

    monkeypatch.setattr(tune_module, "Llama", spy)
    tune(str(tiny_llama_512.path), LENGTH, candidates=[(3, 64), (6, 32)], n_needles=2, n_gpu_layers=-1,
         remember=False, progress=False)
    assert seen[1:] == [-1, -1]      # the first is the tokenizing probe


def test_a_damaged_settings_file_is_ignored(tiny_llama_512, tuned_file):
    tuned_file.write_text("{not json")
    llm = Llama(str(tiny_llama_512.path), n_ctx=LENGTH)
    assert llm.self_extend == se.choose(LENGTH, 512)
    tuned_settings.remember(str(tiny_llama_512.path), LENGTH, 3, 64)   # rewrites it
    assert Llama(str(tiny_llama_512.path), n_ctx=LENGTH).self_extend == (3, 64)


def test_tune_refuses_candidates_that_cannot_reach_the_length(tiny_llama_512, tuned_file):
    with pytest.raises(ValueError, match="eq. 4"):
        tune(str(tiny_llama_512.path), LENGTH, candidates=[(2, 64)], progress=False)
    with pytest.raises(ValueError, match="beyond the model's trained context"):
        tune(str(tiny_llama_512.path), 500, progress=False)
    assert not tuned_file.exists()


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "selfextend_gguf", *args], capture_output=True, text=True,
                          env=env)


def test_tune_command_line(tiny_llama_512, tmp_path):
    env = dict(os.environ, SELFEXTEND_GGUF_TUNED=str(tmp_path / "tuned.json"))
    path = str(tiny_llama_512.path)
    out = tmp_path / "tune.md"
    done = _cli("tune", "--model", path, "--length", "1200", "--needles", "3", "--out", str(out), "-ngl", "0",
                env=env)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(candidates(512, 1200))
    assert "Recommended: group_size=" in done.stdout and "--group-size" in done.stdout
    assert out.read_text().strip() == done.stdout.strip()
    # one line per candidate on stderr, saying which candidate it was
    assert f"[{len(rows)}/{len(rows)}] G=" in done.stderr

    complete = _cli("complete", "--model", path, "-c", "1200", "-p", "hi", "-n", "2", env=env)
    assert "(tuned)" in complete.stderr, complete.stderr
    forget = _cli("tune", "--model", path, "--forget", env=env)
    assert forget.returncode == 0 and "forgot 1" in forget.stdout
    complete = _cli("complete", "--model", path, "-c", "1200", "-p", "hi", "-n", "2", env=env)
    assert "(eq. 5)" in complete.stderr

    bad = _cli("tune", "--model", path, "--length", "1200", "--candidates", "2:64", env=env)
    assert bad.returncode == 2 and "eq. 4" in bad.stderr and "Traceback" not in bad.stderr
    missing = _cli("tune", "--model", path, env=env)
    assert missing.returncode == 2 and "--length" in missing.stderr
