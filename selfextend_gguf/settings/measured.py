"""Self-Extend settings measured on the packaged models, shipped with the package.

eq. 5 is a rule of thumb. Where a packaged model was measured to do better with another
setting over some range of n_ctx, that setting is used for the model in that range
instead of eq. 5; outside it eq. 5 still decides. A setting the user tuned with
`selfextend-gguf tune` comes first, an explicit group_size/neighbor_window before all.
Each entry names the measurement behind it (bench/results/).

A model file is recognised by its size and sha256 (the sha256 only for a file of a
listed size, and once per file per process), so a copy of the same GGUF anywhere counts.
"""

from __future__ import annotations

import os
from typing import Dict, NamedTuple, Optional, Tuple

from ..models.model_path import DEFAULT_MODEL_SHA256, file_sha256


class MeasuredSetting(NamedTuple):
    group_size: int
    neighbor_window: int
    n_ctx_above: int     # used for n_ctx_above < n_ctx <= n_ctx_up_to
    n_ctx_up_to: int
    evidence: str


# (file size, sha256) -> the measured settings of that file
MEASURED: Dict[Tuple[int, str], Tuple[MeasuredSetting, ...]] = {
    (98362432, DEFAULT_MODEL_SHA256): (
        # 24704 and 32896 are the n_ctx of the 24k and 32k evaluations (prompt + 128 tokens
        # of room): at 24k eq. 5's G=8 found 10/10, so the range starts above it
        # G=22 is what `tune --length 32k` recommended; it was then run on the passkey grid
        # once (G=6 before it was the sixth setting tried on those prompts, 9/10)
        MeasuredSetting(22, 1024, 24704, 32896,
                        "`tune --length 32k`'s recommendation, then passkey at 32k, 5 depths x 2 "
                        "trials: 10/10, against 8/10 for eq. 5's G=11 and 7/10 for YaRN on the "
                        "same prompts (bench/results/grid-4x)"),
    ),
}


def lookup(model_path: Optional[str], n_ctx: int) -> Optional[MeasuredSetting]:
    """The measured setting for this model file at n_ctx, if one was shipped."""
    if not model_path:
        return None
    try:
        st = os.stat(model_path)
    except OSError:
        return None
    sizes = {size for size, _ in MEASURED}
    if st.st_size not in sizes:
        return None
    digest = file_sha256(model_path)
    for setting in MEASURED.get((st.st_size, digest), ()):
        if setting.n_ctx_above < n_ctx <= setting.n_ctx_up_to:
            return setting
    return None


def instead_of_eq5(model_path: Optional[str], n_ctx: int, n_ctx_train: int,
                   group_size: Optional[int], neighbor_window: Optional[int]) -> Optional[MeasuredSetting]:
    """The measured setting that replaces eq. 5 for this run, if any: only when neither G
    nor W was given and n_ctx is beyond the trained context. `Llama` and eval's
    planned settings both ask here, so they cannot disagree on when it applies."""
    if group_size is not None or neighbor_window is not None or n_ctx <= n_ctx_train:
        return None
    return lookup(model_path, n_ctx)
