"""llama-server's Prometheus metrics (/metrics, on with --metrics), under its names.

Tokens and seconds are counted as each request finishes, from its RequestClock (which
the bridge feeds: the prompt's progress, then the result's token counts); decodes are
counted around the scheduler's one decode per step; the gauges of load are read when
scraped. The throughput gauges cover the time since the previous scrape, as
llama-server's do."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple


class RequestClock:
    """One request on a slot: when it was handed to the scheduler, when its prompt was
    read, how many prompt tokens were evaluated (the rest came from cached cells), and
    its token counts. The prompt time includes any wait for a slot."""

    def __init__(self) -> None:
        self.t_start = time.perf_counter()
        self.t_prompt: Optional[float] = None   # the prompt read: the first token can be drawn
        self.t_end: Optional[float] = None
        self.n_prompt_read = 0
        self.counts: Optional[Tuple[int, int]] = None   # (prompt tokens, generated tokens)

    def prompt_read(self, done: int, total: int) -> None:
        """A progress callback's (evaluated so far, to evaluate)."""
        self.n_prompt_read = total
        if done >= total:
            self.t_prompt = time.perf_counter()

    def saw(self, item: Any, usage: Optional[Dict[str, int]] = None) -> None:
        """A result or stream chunk: token counts from its usage (OpenAI's names, or the
        Responses and Anthropic APIs' input/output tokens, also inside a named event), or
        from llama-server's native fields (its last chunk: stop true)."""
        if not isinstance(item, dict):
            return
        usage = usage or _usage_in(item)
        if usage:
            predicted = usage.get("completion_tokens", usage.get("output_tokens"))
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            if isinstance(predicted, int):
                if not isinstance(prompt, int):
                    prompt = self.counts[0] if self.counts else self.n_prompt_read
                self.counts = (prompt, predicted)
        elif item.get("stop") is True and "tokens_predicted" in item:
            self.counts = (item["tokens_evaluated"], item["tokens_predicted"])

    def end(self) -> None:
        if self.t_end is None:
            self.t_end = time.perf_counter()

    @property
    def prompt_s(self) -> float:
        return (self.t_prompt - self.t_start) if self.t_prompt is not None else 0.0

    @property
    def predicted_s(self) -> float:
        if self.t_prompt is None:
            return 0.0
        return max(0.0, (self.t_end if self.t_end is not None else time.perf_counter()) - self.t_prompt)


def _usage_in(item: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    data = item.get("data")
    for holder in (item, data, data.get("response") if isinstance(data, dict) else None):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            return holder["usage"]
    return None


class _Rate:
    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds

    def per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class Metrics:
    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.t_start = int(time.time())
        self._lock = threading.Lock()
        self.prompt, self.predicted = _Rate(), _Rate()                 # since the start
        self.prompt_window, self.predicted_window = _Rate(), _Rate()   # since the last scrape
        self.n_prompt_cached = 0
        self.n_tokens_max = 0
        self.n_decode = 0
        self.n_busy_slots = 0
        scheduler.on_decode = self._counted

    def _counted(self, busy: int) -> None:
        """One decode and the slots busy in it (the scheduler's on_decode), as llama-server
        counts its llama_decode calls."""
        with self._lock:
            self.n_decode += 1
            self.n_busy_slots += busy

    def finished(self, clock: RequestClock) -> None:
        """Count a request that ran on a slot (one whose prompt was read)."""
        if clock.t_prompt is None:
            return
        clock.end()
        n_prompt, n_predicted = clock.counts or (clock.n_prompt_read, 0)
        with self._lock:
            for rate in (self.prompt, self.prompt_window):
                rate.add(clock.n_prompt_read, clock.prompt_s)
            for rate in (self.predicted, self.predicted_window):
                rate.add(n_predicted, clock.predicted_s)
            self.n_prompt_cached += max(0, n_prompt - clock.n_prompt_read)
            self.n_tokens_max = max(self.n_tokens_max, n_prompt + n_predicted)

    def render(self) -> str:
        """The Prometheus text: llama-server's HELP and TYPE lines, counters then gauges."""
        slots = self.scheduler.slots
        with self._lock:
            counters: List[Tuple[str, str, float]] = [
                ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens",
                 self.prompt.tokens),
                ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", self.n_prompt_cached),
                ("prompt_seconds_total", "Total time spent processing prompts", self.prompt.seconds),
                ("tokens_predicted_total", "Number of generation tokens processed", self.predicted.tokens),
                ("tokens_predicted_seconds_total", "Total time spent generating tokens", self.predicted.seconds),
                ("n_decode_total", "Total number of llama_decode() calls", self.n_decode),
                ("n_tokens_max", "Largest observed sequence length (prompt + generation)", self.n_tokens_max),
            ]
            gauges: List[Tuple[str, str, float]] = [
                ("prompt_tokens_seconds", "Average prompt throughput in tokens/s", self.prompt_window.per_second()),
                ("predicted_tokens_seconds", "Average generation throughput in tokens/s",
                 self.predicted_window.per_second()),
                ("requests_processing", "Number of requests processing", sum(s.job is not None for s in slots)),
                ("requests_deferred", "Number of requests deferred", self.scheduler.n_waiting),
                ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call",
                 self.n_busy_slots / max(self.n_decode, 1)),
            ]
            # the gauges average over the time between two scrapes
            self.prompt_window, self.predicted_window = _Rate(), _Rate()
        lines: List[str] = []
        for kind, items in (("counter", counters), ("gauge", gauges)):
            for name, help_, value in items:
                lines += [f"# HELP llamacpp:{name} {help_}", f"# TYPE llamacpp:{name} {kind}",
                          f"llamacpp:{name} {_number(value)}"]
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
