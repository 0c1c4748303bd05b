"""`tune`: score candidate (G, W) settings for a target length on the user's own model,
recommend one and remember it for that model file."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from ..settings import self_extend as se
from ..settings import tuned as tuned_settings
from ..llama import Llama
from ..eval.progress import ProgressBar
from ..eval.texts import default_text
from . import needles
from .candidates import Candidate, candidates as default_candidates
from .scoring import SettingScore, score_setting


@dataclass
class CandidateResult:
    candidate: Candidate
    score: SettingScore
    seconds: float

    @property
    def rank_key(self) -> Tuple[int, float]:
        """Needles retrieved first, then how sure the model was of the right answers."""
        return (self.score.found, self.score.mean_log_prob)


@dataclass
class TuneResult:
    model_path: str
    length: int
    n_ctx_train: int
    text_name: str
    n_needles: int
    results: List[CandidateResult]
    seconds: float
    remembered: bool = False
    notes: List[str] = field(default_factory=list)

    @property
    def best(self) -> CandidateResult:
        return max(self.results, key=lambda r: r.rank_key)

    @property
    def best_text_prediction(self) -> Optional[CandidateResult]:
        """The candidate with the lowest perplexity among those that found as many needles
        as the recommendation, when it is not the recommendation: the two rankings often
        disagree (a larger G answers more surely, a smaller one predicts text better)."""
        best = self.best
        peers = [r for r in self.results if r.score.found == best.score.found]
        lowest = min(peers, key=lambda r: r.score.perplexity)
        return None if lowest is best or lowest.score.perplexity >= best.score.perplexity else lowest

    def command(self, model_arg: str = "MODEL") -> str:
        best = self.best.candidate
        return (f"selfextend-gguf complete --model {model_arg} --n-ctx {self.length} "
                f"--group-size {best.group_size} --neighbor-window {best.neighbor_window}")

    def table(self) -> str:
        lines = [f"| G | W | candidate | needles found (of {self.n_needles}) | mean answer log-prob | "
                 f"perplexity | seconds |", "|---|---|---|---|---|---|---|"]
        best = self.best
        for r in self.results:
            mark = " **best**" if r is best else ""
            lines.append(f"| {r.candidate.group_size} | {r.candidate.neighbor_window} | {r.candidate.why}{mark} | "
                         f"{r.score.found} | {r.score.mean_log_prob:.3f} | {r.score.perplexity:.3f} | "
                         f"{r.seconds:.0f} |")
        return "\n".join(lines)


def _step_reporter(label: str, stream) -> Callable[[str, int, int], None]:
    bars = {}

    def step(name: str, done: int, total: int) -> None:
        if name not in bars:
            bars[name] = ProgressBar(f"{label} {name}", stream=stream,
                                     unit="tokens" if name == "prefill" else name)
        bars[name](done, total)
    return step


def tune(model_path: Optional[str] = None, length: int = 16384, *,
         candidates: Optional[Sequence[Tuple[int, int]]] = None, n_needles: int = 6,
         text: Optional[str] = None, text_name: Optional[str] = None, seed: int = 0,
         n_threads: Optional[int] = None, flash_attn: bool = True, n_ubatch: int = 512,
         n_gpu_layers: int = 0, remember: bool = True, progress: bool = True) -> TuneResult:
    """Score (G, W) candidates for contexts of `length` tokens on a model (a GGUF path, a
    packaged model's name, or None for the default model) and remember the best for that
    model file, so that `Llama(model_path, n_ctx=n)` with n <= length uses it.

    candidates: (G, W) pairs to score instead of the default set (see tuning.candidates).
    text: the long natural text to hide the needles in (default: selfextend_gguf.eval.texts).
    n_gpu_layers: layers offloaded to a GPU while scoring (-1: all), as Llama's.
    Progress goes to stderr."""
    started = time.monotonic()
    stream = sys.stderr if progress else None
    probe = Llama(model_path, n_ctx=64, group_size=1, n_threads=n_threads)
    model_path, n_ctx_train = probe.model_path, probe.n_ctx_train()
    if candidates is None:
        chosen = default_candidates(n_ctx_train, length, model_path)
    else:
        chosen = []
        for group_size, window in candidates:
            s = se.resolve(length, n_ctx_train, int(group_size), int(window))   # raises on eq. 4
            if s is None:
                raise ValueError("group_size 1 is vanilla attention, not a Self-Extend candidate")
            chosen.append(Candidate(s.group_size, s.neighbor_window, "given"))
    if text is None:
        text_name, text = default_text()
    document = needles.build(text, length, lambda t, bos: probe.tokenize(t, add_bos=bos),
                             lambda token: probe.token_bytes(token).endswith(b"\n"),
                             n_needles=n_needles, seed=seed)
    del probe
    result = TuneResult(model_path, length, n_ctx_train, text_name or "text", n_needles, [], 0.0)
    if document.text_repeats > 1:
        result.notes.append(f"the text was repeated {document.text_repeats} times to fill {length} tokens, "
                            f"so perplexity partly measures copying")

    for i, candidate in enumerate(chosen, 1):
        label = f"[{i}/{len(chosen)}] G={candidate.group_size} W={candidate.neighbor_window}"
        began = time.monotonic()
        llm = Llama(model_path, n_ctx=length, group_size=candidate.group_size,
                    neighbor_window=candidate.neighbor_window, n_threads=n_threads, flash_attn=flash_attn,
                    n_batch=max(512, n_ubatch), n_ubatch=n_ubatch, n_gpu_layers=n_gpu_layers)
        score = score_setting(llm, document, _step_reporter(label, stream) if stream else None)
        del llm
        done = CandidateResult(candidate, score, time.monotonic() - began)
        result.results.append(done)
        if stream:
            print(f"{label} ({candidate.why}): {score.found}/{n_needles} needles, mean answer log-prob "
                  f"{score.mean_log_prob:.3f}, perplexity {score.perplexity:.3f} ({done.seconds:.0f} s)",
                  file=stream, flush=True)

    result.seconds = time.monotonic() - started
    if remember and length > n_ctx_train:   # within the trained context Llama needs no setting
        best = result.best.candidate
        tuned_settings.remember(model_path, length, best.group_size, best.neighbor_window)
        result.remembered = True
    return result
