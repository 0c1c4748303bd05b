"""Settings measured for packaged models: used after a tuned setting and before eq. 5,
only for their own file and length range, and named as the setting's origin."""

import os

import pytest

from selfextend_gguf import Llama, measured_settings, tuned_settings
from selfextend_gguf import self_extend as se
from selfextend_gguf.eval.methods import plan
from selfextend_gguf.model_path import default_model_path


@pytest.fixture
def measured_tiny(tiny_llama_512, monkeypatch, tmp_path):
    """A measured G=4, W=64 for the tiny model (L = 512) for 1024 < n_ctx <= 1600, where
    eq. 5 picks another G; no tuned settings."""
    monkeypatch.setenv("SELFEXTEND_GGUF_TUNED", str(tmp_path / "tuned.json"))
    path = str(tiny_llama_512.path)
    key = (os.path.basename(path), os.path.getsize(path))
    setting = measured_settings.MeasuredSetting(4, 64, 1024, 1600, "a test")
    monkeypatch.setitem(measured_settings.MEASURED, key, (setting,))
    assert se.choose(1600, 512) != (4, 64)
    return path


def test_a_measured_setting_comes_before_eq5_in_its_range(measured_tiny, caplog):
    caplog.set_level("INFO", logger="selfextend_gguf")
    llm = Llama(measured_tiny, n_ctx=1600)
    assert tuple(llm.self_extend) == (4, 64) and llm.self_extend_origin == "measured"
    assert "measured for this packaged model" in caplog.text and "a test" in caplog.text
    for n_ctx in (1024, 1601):                        # outside the range: eq. 5
        other = Llama(measured_tiny, n_ctx=n_ctx)
        assert other.self_extend == se.choose(n_ctx, 512) and other.self_extend_origin == "eq. 5"


def test_explicit_and_tuned_settings_win_over_a_measured_one(measured_tiny):
    assert Llama(measured_tiny, n_ctx=1600, group_size=5).self_extend_origin == "explicit"
    tuned_settings.remember(measured_tiny, 1600, 5, 32)
    tuned = Llama(measured_tiny, n_ctx=1600)
    assert tuple(tuned.self_extend) == (5, 32) and tuned.self_extend_origin == "tuned"
    # the eval's self-extend skips tuned settings but takes the measured one, as its own variant
    skipped = Llama(measured_tiny, n_ctx=1600, use_tuned_setting=False)
    assert tuple(skipped.self_extend) == (4, 64) and skipped.self_extend_origin == "measured"
    planned = plan("self-extend", measured_tiny, 1600 - 128, 512)
    assert planned.settings == {"group_size": 4, "neighbor_window": 64} and planned.variant == "measured"


def test_another_file_of_another_size_gets_eq5(measured_tiny, tmp_path):
    copy = tmp_path / os.path.basename(measured_tiny)
    copy.write_bytes(open(measured_tiny, "rb").read() + b"\0" * 32)   # same name, other size
    assert measured_settings.lookup(str(copy), 1600) is None
    assert measured_settings.lookup(measured_tiny, 1600) is not None


@pytest.mark.real_model
def test_the_default_model_entry_names_the_packaged_file():
    """The table's key is the packaged default model's name and size: a new model file
    must not silently lose (or wrongly keep) its measured setting."""
    path = default_model_path()
    entries = measured_settings.MEASURED[(os.path.basename(path), os.path.getsize(path))]
    for entry in entries:
        assert measured_settings.lookup(path, entry.up_to_ctx) == entry
        assert se.max_context(8192, entry.group_size, entry.neighbor_window) >= entry.up_to_ctx
