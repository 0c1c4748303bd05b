"""Self-Extend settings measured on the packaged models, for the lengths where eq. 5's
choice measurably loses retrieval.

`Llama` uses one when G and W are not given and `tune` remembered nothing for the file:
after a tuned setting, before eq. 5, and names it as the setting's origin ("measured").
A model file is recognised by its name and size (the packaged files'): any other file,
or a packaged one outside a measured range, gets eq. 5 as before.
"""

from __future__ import annotations

import os
from typing import Dict, NamedTuple, Optional, Tuple

from .model_path import DEFAULT_MODEL_NAME


class MeasuredSetting(NamedTuple):
    group_size: int
    neighbor_window: int
    above_ctx: int    # used for above_ctx < n_ctx <= up_to_ctx
    up_to_ctx: int
    evidence: str     # where the measurement is, for the log line


# n_ctx of the eval's passkey runs: the prompt length + 128 tokens of answer room
_N_CTX_24K, _N_CTX_32K = 24576 + 128, 32768 + 128

MEASURED: Dict[Tuple[str, int], Tuple[MeasuredSetting, ...]] = {
    # the default model (SmolLM2-135M-Instruct Q4_1, L = 8192): at 4x eq. 5's G = 11 and
    # the rule f = 0.75's G = 7 both miss the key at depth 0.5; eq. 4's smallest G finds it
    (DEFAULT_MODEL_NAME, 98362432): (
        MeasuredSetting(5, 1024, _N_CTX_24K, _N_CTX_32K, "passkey at 32k, bench/results/grid-4x"),
    ),
}


def lookup(model_path: str, n_ctx: int) -> Optional[MeasuredSetting]:
    """The measured setting of this model file for contexts of n_ctx cells, if any."""
    try:
        size = os.path.getsize(model_path)
    except OSError:
        return None
    for setting in MEASURED.get((os.path.basename(model_path), size), ()):
        if setting.above_ctx < n_ctx <= setting.up_to_ctx:
            return setting
    return None
