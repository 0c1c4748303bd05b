"""Which Self-Extend setting a Llama runs with, and where it came from: explicit
(group_size/neighbor_window given), tuned (remembered by `selfextend-gguf tune` for this
model file and a target length >= n_ctx), measured (shipped with the package for this
model file: measured.py) or eq. 5; None where n_ctx fits the trained context."""

from __future__ import annotations

from typing import NamedTuple, Optional

from . import measured as measured_settings
from . import self_extend as se
from . import tuned as tuned_settings


class Choice(NamedTuple):
    setting: Optional[se.SelfExtend]   # None: vanilla attention
    origin: Optional[str]              # "explicit", "tuned", "measured" or "eq. 5" (None: vanilla)
    why: str                           # one line for the log (empty where there is nothing to say)


def choose(model_path: str, n_ctx: int, n_ctx_train: int, group_size: Optional[int],
           neighbor_window: Optional[int], use_tuned_setting: bool = True) -> Choice:
    explicit = group_size is not None or neighbor_window is not None
    tuned = measured = None
    if use_tuned_setting and not explicit and n_ctx > n_ctx_train:
        tuned = tuned_settings.lookup(model_path, n_ctx)
    if tuned is None:
        measured = measured_settings.instead_of_eq5(model_path, n_ctx, n_ctx_train, group_size, neighbor_window)
    chosen = tuned or measured
    if chosen is not None:
        group_size, neighbor_window = chosen.group_size, chosen.neighbor_window
    setting = se.resolve(n_ctx, n_ctx_train, group_size, neighbor_window)
    if setting is None:
        return Choice(None, None, "")
    head = f"n_ctx={n_ctx} exceeds the trained context {n_ctx_train}: Self-Extend on with"
    g_w = f"group_size={setting.group_size}, neighbor_window={setting.neighbor_window}"
    if tuned is not None:
        return Choice(setting, "tuned", f"{head} the tuned setting {g_w} (from `selfextend-gguf tune` at length "
                                        f"{tuned.length} on {tuned.tuned_at}; `selfextend-gguf tune --forget` "
                                        f"clears it)")
    if measured is not None:
        return Choice(setting, "measured", f"{head} {g_w}, measured on this model for n_ctx "
                                           f"{measured.n_ctx_above + 1}-{measured.n_ctx_up_to} ({measured.evidence})")
    if explicit:
        return Choice(setting, "explicit", "")
    return Choice(setting, "eq. 5", f"{head} {g_w} (eq. 5: W + (N - W)/G < L/2)")
