"""Settings measured on a packaged model and shipped (settings/measured.py): used instead
of eq. 5 in their range of n_ctx, after a tuned or explicit setting; eval's automatic
choice and tune's candidates follow them; reports name rows by the setting that ran."""

import os
import shutil

import pytest

from selfextend_gguf import Llama
from selfextend_gguf.settings import measured as measured_settings
from selfextend_gguf.settings import tuned as tuned_settings
from selfextend_gguf.settings import self_extend as se
from selfextend_gguf.eval import passkey_eval
from selfextend_gguf.eval.methods import automatic_choice, build_runner, planned_settings
from selfextend_gguf.models.model_path import _sha256
from selfextend_gguf.tuning.candidates import candidates

# the tiny model is trained on 512 tokens; eval at length 1100 runs n_ctx 1228
SHIPPED = measured_settings.MeasuredSetting(5, 32, 1000, 1300, "a test measurement")


@pytest.fixture
def shipped(tiny_llama_512, monkeypatch):
    """The tiny model as if a setting had been measured on it and shipped."""
    path = str(tiny_llama_512.path)
    monkeypatch.setattr(measured_settings, "MEASURED",
                        {(os.path.getsize(path), _sha256(tiny_llama_512.path)): (SHIPPED,)})
    return path


def test_used_in_its_range_instead_of_eq5(shipped):
    llm = Llama(shipped, n_ctx=1228)
    assert tuple(llm.self_extend) == (5, 32) and llm.self_extend_origin == "measured"
    for n_ctx in (1000, 1400):   # outside (1000, 1300]: eq. 5
        llm = Llama(shipped, n_ctx=n_ctx)
        assert tuple(llm.self_extend) == tuple(se.choose(n_ctx, 512)) != (5, 32), n_ctx
        assert llm.self_extend_origin == "eq. 5"


def test_tuned_and_explicit_settings_come_first(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFEXTEND_GGUF_TUNED", str(tmp_path / "tuned.json"))
    tuned_settings.remember(shipped, 1300, 3, 64)
    llm = Llama(shipped, n_ctx=1228)
    assert tuple(llm.self_extend) == (3, 64) and llm.self_extend_origin == "tuned"
    llm = Llama(shipped, n_ctx=1228, use_tuned_setting=False)
    assert tuple(llm.self_extend) == (5, 32) and llm.self_extend_origin == "measured"
    llm = Llama(shipped, n_ctx=1228, group_size=4)
    assert llm.self_extend.group_size == 4 and llm.self_extend_origin == "explicit"


def test_another_file_of_the_same_size_is_not_recognised(shipped, tmp_path):
    other = tmp_path / "other.gguf"
    shutil.copyfile(shipped, other)
    assert measured_settings.lookup(str(other), 1228) == SHIPPED      # a copy counts
    data = bytearray(other.read_bytes())
    data[-1] ^= 0xFF                                                   # same size, other bytes
    other.write_bytes(bytes(data))
    assert measured_settings.lookup(str(other), 1228) is None
    assert measured_settings.lookup(None, 1228) is None


def test_eval_and_tune_take_it_as_the_automatic_choice(shipped):
    assert planned_settings("self-extend", 1100, 512, model_file=shipped) == {"group_size": 5, "neighbor_window": 32}
    runner = build_runner("self-extend", shipped, 1100, 512)
    assert runner.settings == {"group_size": 5, "neighbor_window": 32}
    del runner
    found = candidates(512, 1228, shipped)
    assert (found[0].group_size, found[0].neighbor_window, found[0].why) == (5, 32, "measured, shipped")
    assert (found[1].group_size, found[1].neighbor_window) == tuple(se.choose(1228, 512))


def test_a_report_names_rows_by_the_setting_that_ran(tiny_llama_512, tmp_path, monkeypatch):
    """Cells run by eq. 5 before a setting was shipped leave the bare method's row for
    the shipped setting's cells, also those run when it was asked for explicitly."""
    path = str(tiny_llama_512.path)
    monkeypatch.setattr(measured_settings, "MEASURED", {})
    quiet = dict(progress=lambda m: None)
    passkey_eval.run_grid(path, ["self-extend"], [1100], [0.5], 1, tmp_path, **quiet)
    passkey_eval.run_grid(path, ["self-extend"], [1100], [0.5], 1, tmp_path, group_size=5, neighbor_window=32,
                          **quiet)
    eq5 = planned_settings("self-extend", 1100, 512, model_file=path)
    before = passkey_eval.write_report(passkey_eval.run_grid(path, ["self-extend"], [1100], [0.5], 1, tmp_path,
                                                             **quiet),
                                       tmp_path, "passkey", False, "test", automatic_choice(path)).read_text()
    assert "| self-extend | 1/1 | 1/1 |" in before or "| self-extend | 0/1 | 0/1 |" in before
    assert "| self-extend (G=5, W=32) |" in before
    assert f"Settings by length: 1100: group_size={eq5['group_size']}" in before.split("## self-extend\n")[1]

    monkeypatch.setattr(measured_settings, "MEASURED",
                        {(os.path.getsize(path), _sha256(tiny_llama_512.path)): (SHIPPED,)})
    log = passkey_eval.run_grid(path, ["self-extend"], [1100], [0.5], 1, tmp_path, **quiet)
    assert len(log.records) == 2          # the explicit G=5, W=32 cell is the shipped choice's
    after = passkey_eval.write_report(log, tmp_path, "passkey", False, "test", automatic_choice(path)).read_text()
    own = after.split("## self-extend\n")[1].split("##")[0]
    assert "Settings by length: 1100: group_size=5, neighbor_window=32" in own
    assert f"| self-extend (G={eq5['group_size']}, W={eq5['neighbor_window']}) |" in after


@pytest.mark.real_model
def test_the_shipped_entry_is_the_default_model():
    from selfextend_gguf import default_model_path
    path = default_model_path()
    assert measured_settings.lookup(path, 32768 + 128) == measured_settings.lookup(path, 32768)
    assert tuple(measured_settings.lookup(path, 32768)[:2]) == (22, 1024)
    for n_ctx in (16384 + 128, 24576 + 128, 40000):   # eq. 5 there (10/10 at 16k and 24k)
        assert measured_settings.lookup(path, n_ctx) is None
