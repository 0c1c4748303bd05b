"""The evaluation harness on the tiny model: every method runs, results are appended
cell by cell and a rerun resumes instead of repeating, reports and heatmaps appear."""

import json

import numpy as np
import pytest

from selfextend_gguf import Llama
from selfextend_gguf.eval import passkey_eval, perplexity, speed
from selfextend_gguf.eval.grouped_cache import GroupedCache
from selfextend_gguf.eval.methods import METHODS, build_runner
from selfextend_gguf.eval.results import ResultLog


def test_every_method_runs_and_the_grid_resumes(tiny_llama_512, tmp_path):
    model = str(tiny_llama_512.path)
    log = passkey_eval.run_grid(model, METHODS, [700, 1100], [0.5], 1, tmp_path, progress=lambda m: None)
    assert len(log.records) == len(METHODS) * 2
    for r in log.records:
        assert set(r) >= {"method", "target_length", "depth", "trial", "expected", "got", "found", "settings"}
        assert r["found"] == (r["got"] == r["expected"])
    by_method = {r["method"]: r for r in log.records if r["target_length"] == 1100}
    assert by_method["self-extend"]["settings"]["group_size"] >= 2
    assert by_method["grouped-cache"]["settings"]["ga_w"] % by_method["grouped-cache"]["settings"]["ga_n"] == 0
    assert by_method["truncate"]["tokens"] <= 512
    lines_before = (tmp_path / "passkey-plain.jsonl").read_text().count("\n")

    again = passkey_eval.run_grid(model, METHODS, [700, 1100], [0.5], 1, tmp_path, progress=lambda m: None)
    assert (tmp_path / "passkey-plain.jsonl").read_text().count("\n") == lines_before   # nothing re-run
    assert len(again.records) == len(log.records)

    report = passkey_eval.write_report(again, tmp_path, "passkey", False, "test")
    text = report.read_text()
    assert "| self-extend |" in text and "![vanilla](passkey-plain-vanilla.png)" in text
    assert (tmp_path / "passkey-plain-self-extend.png").stat().st_size > 1000
    assert "![all methods](passkey-plain-all.png)" in text
    assert (tmp_path / "passkey-plain-all.png").stat().st_size > 1000
    # the automatic choice's row says what it chose at each length
    chosen = {r["target_length"]: r["settings"]["group_size"] for r in log.records if r["method"] == "self-extend"}
    assert (f"Settings by length: 700: group_size={chosen[700]}, neighbor_window="
            in text.split("## self-extend")[1]) and f"1100: group_size={chosen[1100]}" in text


def test_a_cell_run_with_one_setting_is_not_taken_for_another(tiny_llama_512, tmp_path):
    """Results are keyed by the settings that ran: an explicit G in the same results
    directory runs its own cells (it once reused eq. 5's) and gets a row of its own."""
    model = str(tiny_llama_512.path)
    auto = passkey_eval.run_grid(model, ["self-extend"], [1100], [0.5], 1, tmp_path, progress=lambda m: None)
    auto_g = auto.records[0]["settings"]["group_size"]
    other_g = auto_g + 2
    log = passkey_eval.run_grid(model, ["self-extend"], [1100], [0.5], 1, tmp_path, progress=lambda m: None,
                                group_size=other_g, neighbor_window=64)
    assert [r["settings"] for r in log.records] == [
        {"group_size": auto_g, "neighbor_window": auto.records[0]["settings"]["neighbor_window"]},
        {"group_size": other_g, "neighbor_window": 64}]
    assert "variant" not in log.records[0] and log.records[1]["variant"] == f"G={other_g}, W=64"
    # the same prompt, run once per setting
    assert log.records[1]["tokens"] == log.records[0]["tokens"]

    again = passkey_eval.run_grid(model, ["self-extend"], [1100], [0.5], 1, tmp_path, progress=lambda m: None,
                                  group_size=other_g, neighbor_window=64)
    assert len(again.records) == 2                     # resumed: nothing re-run

    text = passkey_eval.write_report(again, tmp_path, "passkey", False, "test").read_text()
    assert "| self-extend |" in text and f"| self-extend (G={other_g}, W=64) |" in text
    assert (tmp_path / f"passkey-plain-self-extend-G{other_g}-W64.png").stat().st_size > 1000


def test_planned_settings_are_what_the_runner_reports(tiny_llama_512):
    from selfextend_gguf.eval.methods import planned_settings
    for method in METHODS:
        runner = build_runner(method, str(tiny_llama_512.path), 1100, 512)
        assert runner.settings == planned_settings(method, 1100, 512), method
        del runner


def test_interrupted_line_is_ignored_on_resume(tiny_llama_512, tmp_path):
    model = str(tiny_llama_512.path)
    passkey_eval.run_grid(model, ["vanilla"], [700], [0.5], 1, tmp_path, progress=lambda m: None)
    path = tmp_path / "passkey-plain.jsonl"
    with open(path, "a") as f:
        f.write('{"method": "vanilla", "target_len')     # a record cut off mid-write
    log = passkey_eval.run_grid(model, ["vanilla"], [700], [0.5, 0.9], 1, tmp_path, progress=lambda m: None)
    assert sorted(r["depth"] for r in log.records) == [0.5, 0.9]


def test_chat_prompt_variant(tiny_llama_512, tmp_path):
    llm = Llama(str(tiny_llama_512.path), n_ctx=2048)
    tokens, built = passkey_eval.prompt_tokens(llm, 1000, 0.5, "12345", chat=True)
    text = llm.detokenize(tokens, special=True).decode().replace("\u2581", " ")  # the byte vocab spells spaces so
    assert "<|im_start|>user" in text and text.endswith("The pass key is")
    assert "12345" in text and len(tokens) <= 1000


def test_grouped_cache_compresses_positions(tiny_llama_512, random_tokens):
    llm = Llama(str(tiny_llama_512.path), n_ctx=2048, group_size=1, n_batch=128)
    cache = GroupedCache(llm, ga_n=4, ga_w=128)
    cache.feed(random_tokens(1000))
    # 1000 tokens, compressed by 4 beyond the window: the largest position is far below 1000
    assert llm.n_tokens == 1000
    assert llm.kv_pos_max() < 1000 // 2
    assert cache.n_past == llm.kv_pos_max() + 1


def test_perplexity_and_speed(tiny_llama_512, tmp_path):
    rng = np.random.default_rng(0)
    text = "".join(chr(c) for c in rng.integers(97, 123, 3000))
    methods = ["vanilla", "self-extend", "grouped-cache", "truncate"]
    log = perplexity.run(str(tiny_llama_512.path), methods, [300, 700], tmp_path, text=text, windows=1)
    assert {r["method"] for r in log.records} == set(methods)
    assert all(r["ppl"] > 1 and np.isfinite(r["ppl"]) for r in log.records)
    # every length scores the same tokens; within the trained window Self-Extend is off
    assert {r["scored_from"] for r in log.records} == {700}
    ppl = {(r["method"], r["length"]): r["ppl"] for r in log.records}
    assert ppl[("self-extend", 300)] == pytest.approx(ppl[("vanilla", 300)], rel=1e-6)
    assert ppl[("self-extend", 700)] != pytest.approx(ppl[("vanilla", 700)], rel=1e-3)
    assert "| vanilla |" in perplexity.write_report(log, tmp_path, "test").read_text()

    log = speed.run(str(tiny_llama_512.path), ["vanilla", "self-extend"], [600], tmp_path, n_decode=4,
                    flash=(False, True))
    assert {(r["method"], r["flash"]) for r in log.records} == {(m, f) for m in ("vanilla", "self-extend")
                                                                 for f in ("off", "on")}
    assert all(r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["kv_state_mib"] > 0 for r in log.records)
    # llama.cpp's own accounting: the KV cache holds at least what the state reports in use
    assert all(r["context"] >= r["kv_state_mib"] > 0 and r["compute"] > 0 and r["model"] > 0 for r in log.records)
    assert all(r["peak_rss_mib"] > r["model"] for r in log.records)
    # one K cache: Self-Extend's KV memory is vanilla's
    kv = {(r["method"], r["flash"]): r["context"] for r in log.records}
    assert kv[("self-extend", "off")] == pytest.approx(kv[("vanilla", "off")], abs=0.01)  # MiB, rounded
    ubatch = speed.compute_buffers_vs_ubatch(str(tiny_llama_512.path), ["vanilla", "self-extend"], 1200,
                                             [64, 128], tmp_path)
    assert len(ubatch.records) == 8 and all(r["compute"] > 0 for r in ubatch.records)
    report = speed.write_report(log, tmp_path, "test", ubatch).read_text()
    assert "Self-Extend over vanilla" in report and "| 128 | on |" in report

    # the decode timed several times after one prefill (rewound between): the best is what
    # the tables use
    timed = speed.run(str(tiny_llama_512.path), ["self-extend"], [600], tmp_path / "timed", n_decode=4,
                      decode_reps=3)
    (r,) = timed.records
    assert len(r["decode_runs_tok_s"]) == 3 and r["decode_tok_s"] == max(r["decode_runs_tok_s"])
    assert "best of 3 timings after each prefill" in speed.write_report(timed, tmp_path / "timed", "test").read_text()
    mixed = speed.run(str(tiny_llama_512.path), ["vanilla"], [600], tmp_path / "timed", n_decode=4)
    assert "best of 3 timings after the prefill in rows timed more than once (the others: one)" in \
        speed.write_report(mixed, tmp_path / "timed", "test").read_text()
    with pytest.raises(ValueError, match="decode_reps must be at least 1"):
        speed.run(str(tiny_llama_512.path), ["self-extend"], [600], tmp_path / "none", decode_reps=0)


def test_eval_cli_end_to_end(tiny_llama_512, tmp_path):
    from selfextend_gguf.cli.main import main
    assert main(["eval", "passkey", "--model", str(tiny_llama_512.path), "--methods", "vanilla,self-extend",
                 "--lengths", "700", "--depths", "0.5", "--trials", "1", "--out", str(tmp_path)]) == 0
    records = [json.loads(line) for line in (tmp_path / "passkey-plain.jsonl").read_text().splitlines()]
    assert [r["method"] for r in records] == ["vanilla", "self-extend"]
    with pytest.raises(SystemExit):
        main(["eval", "passkey", "--methods", "magic"])


def test_eval_speed_cli_keeps_the_memory_table_of_an_earlier_run(tiny_llama_512, tmp_path):
    from selfextend_gguf.cli.main import main
    model = ["--model", str(tiny_llama_512.path), "--threads", "2", "--decode", "2", "--out", str(tmp_path)]
    assert main(["eval", "speed", *model, "--depths", "600", "--ubatch-depth", "1200", "--ubatches", "64"]) == 0
    first = (tmp_path / "speed.md").read_text()
    assert "| 64 | off |" in first and "earlier" not in first
    # a second run at another depth, without --ubatch-depth, rewrites the report with both
    # depths and the memory table it did not measure, saying where that came from
    assert main(["eval", "speed", *model, "--depths", "700"]) == 0
    second = (tmp_path / "speed.md").read_text()
    assert "| vanilla | 700 |" in second and "| vanilla | 600 |" in second
    assert "| 64 | off |" in second and "(rows of an earlier `--ubatch-depth` run, in speed-ubatch.jsonl)" in second


def test_eval_cli_flash_attn_reaches_the_runner(tiny_llama_512, tmp_path, monkeypatch):
    from selfextend_gguf.cli.main import main
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("flash_attn"))
        return build_runner(*args, **kwargs)

    monkeypatch.setattr(passkey_eval, "build_runner", spy)
    assert main(["eval", "passkey", "--model", str(tiny_llama_512.path), "--methods", "self-extend",
                 "--lengths", "700", "--depths", "0.5", "--trials", "1", "--flash-attn", "--out", str(tmp_path)]) == 0
    assert seen == [True]
    record = json.loads((tmp_path / "passkey-plain.jsonl").read_text())
    assert record["flash_attn"] is True and record["tokens"] > 512


def test_grouped_cache_scores_like_vanilla_when_nothing_is_grouped(tiny_llama_512):
    """With ga_n = 1 the loop never moves a position, so its token-by-token logits must
    match one batched pass: checks that row i is the prediction after input i."""
    runner = build_runner("vanilla", str(tiny_llama_512.path), 400, 512)
    tokens = runner.llm.tokenize("the quick brown fox jumps over the lazy dog " * 12, add_bos=False)[:300]
    batched = runner.score(tokens[:280], tokens[280:])
    one_by_one = GroupedCache(runner.llm, 1, 64).score(tokens[:280], tokens[280:])
    assert batched.shape == one_by_one.shape == (20, runner.llm.n_vocab())
    np.testing.assert_allclose(one_by_one, batched, atol=2e-3)


def test_perplexity_rejects_windows_shorter_than_the_stride(tiny_llama_512, tmp_path):
    with pytest.raises(ValueError, match="longer than the stride"):
        perplexity.run(str(tiny_llama_512.path), ["vanilla"], [200], tmp_path, text="abc " * 500)
    with pytest.raises(ValueError, match="needed"):
        perplexity.run(str(tiny_llama_512.path), ["vanilla"], [300], tmp_path, text="abc " * 50)


def test_shifted_cache_positions_keep_relative_attention(tiny_llama_512, random_tokens):
    """grouped-cache rests on llama.cpp's K-shift: moving every cached position by a
    constant (seq_add) must leave the next token's logits as if the prompt had been
    evaluated at the shifted positions (RoPE depends only on relative positions)."""
    prompt, nxt = random_tokens(100, seed=4), random_tokens(5, seed=5)
    runs = []
    for shift_after_eval in (True, False):
        llm = Llama(str(tiny_llama_512.path), n_ctx=400, group_size=1, type_k="f32", type_v="f32",
                    flash_attn=False)
        if shift_after_eval:
            llm.eval_at(prompt, 0)
            llm.kv_seq_add(0, 100, 37)
        else:
            llm.eval_at(prompt, 37)
        runs.append(llm.eval_at(nxt, 137))
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-4)
    assert np.abs(runs[0]).max() > 0.1


def test_digits_report_shows_how_much_of_a_missed_key_was_copied(tmp_path):
    log = ResultLog(tmp_path / "digits-plain.jsonl", ("method", "n_digits"))
    for method, n_digits, expected, got in [("a", 8, "12345678", "12345678"), ("a", 16, "1234567890123456", "1234599"),
                                            ("b", 8, "12345678", ""), ("b", 16, "1234567890123456", "9234567890123456")]:
        log.append({"method": method, "n_digits": n_digits, "expected": expected, "got": got, "found": expected == got})
    text = passkey_eval.write_report(log, tmp_path, "digits", False, "test").read_text()
    assert "| a | 1/1 | 0/1 | 1/2 |" in text
    assert "| a | 8 | 5 |" in text     # the near miss: 5 leading digits right
    assert "| b | 0 | 0 |" in text     # no number, and a number wrong from its first digit
