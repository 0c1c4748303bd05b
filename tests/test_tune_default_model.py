"""`tune`'s scoring on a model that can retrieve: the default model finds facts hidden in
natural text, so a sound setting must rank above an obviously wrong one."""

import pytest

from selfextend_gguf import tune

pytestmark = pytest.mark.real_model


def test_a_sound_setting_ranks_above_a_wrong_one():
    # at 2,000 tokens (within the trained 8k) G=2, W=1024 is close to vanilla; G=64 with
    # W=4 puts every token more than 4 back at one of 32 grouped positions
    result = tune(None, 2000, candidates=[(64, 4), (2, 1024)], n_needles=6, n_threads=2, progress=False)
    wrong, sound = result.results
    assert sound.score.found >= 4, [a.log_prob for a in sound.score.answers]
    assert wrong.score.found <= 1
    assert sound.score.mean_log_prob > wrong.score.mean_log_prob + 2
    assert sound.score.perplexity < wrong.score.perplexity
    assert result.best is sound and not result.remembered
