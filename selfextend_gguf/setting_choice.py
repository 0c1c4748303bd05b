"""Which Self-Extend setting a context gets, and where it came from. In order: explicit
G and W; a setting `tune` remembered for the model file (tuned_settings); one measured
for a packaged model (measured_settings); eq. 5 (self_extend.choose)."""

from __future__ import annotations

from typing import NamedTuple, Optional

from . import measured_settings, tuned_settings
from . import self_extend as se


class SettingChoice(NamedTuple):
    setting: Optional[se.SelfExtend]   # None: vanilla attention
    origin: Optional[str]              # "explicit", "tuned", "measured" or "eq. 5"; None with no setting
    note: Optional[str]                # what to log about an automatic choice


def choose(model_path: str, n_ctx: int, n_ctx_train: int, group_size: Optional[int],
           neighbor_window: Optional[int], use_tuned_setting: bool = True) -> SettingChoice:
    """Raises ValueError (from self_extend.resolve) for explicit values that break eq. 4."""
    explicit = group_size is not None or neighbor_window is not None
    automatic = not explicit and n_ctx > n_ctx_train
    tuned = tuned_settings.lookup(model_path, n_ctx) if automatic and use_tuned_setting else None
    measured = measured_settings.lookup(model_path, n_ctx) if automatic and tuned is None else None
    picked = tuned or measured
    if picked is not None:
        group_size, neighbor_window = picked.group_size, picked.neighbor_window
    setting = se.resolve(n_ctx, n_ctx_train, group_size, neighbor_window)
    if setting is None:
        return SettingChoice(None, None, None)
    if explicit:
        return SettingChoice(setting, "explicit", None)
    head = (f"n_ctx={n_ctx} exceeds the trained context {n_ctx_train}: Self-Extend on with "
            f"group_size={setting.group_size}, neighbor_window={setting.neighbor_window}")
    if tuned is not None:
        return SettingChoice(setting, "tuned", f"{head}, the tuned setting (from `selfextend-gguf tune` at "
                                               f"length {tuned.length} on {tuned.tuned_at}; "
                                               f"`selfextend-gguf tune --forget` clears it)")
    if measured is not None:
        return SettingChoice(setting, "measured", f"{head}, the setting measured for this packaged model at "
                                                  f"this length ({measured.evidence}; eq. 5 would pick "
                                                  f"G={se.choose(n_ctx, n_ctx_train).group_size})")
    return SettingChoice(setting, "eq. 5", f"{head} (eq. 5: W + (N - W)/G < L/2)")
