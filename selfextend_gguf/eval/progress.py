"""A progress display on stderr for long prefills: silent for the first seconds, then a
bar redrawn in place on a terminal, or a line every few seconds in a log."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class ProgressBar:
    def __init__(self, label: str = "prefill", delay_s: float = 2.0, stream: Optional[TextIO] = None,
                 log_every_s: float = 15.0, unit: str = "tokens"):
        self.label = label
        self.unit = unit
        self.delay_s = delay_s
        self.stream = stream if stream is not None else sys.stderr
        self.log_every_s = log_every_s
        self.start = time.monotonic()
        self._last_log = 0.0
        self._drawn = False
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed < self.delay_s and done < total:
            return
        if not self._drawn and done >= total:
            return  # finished before it was worth showing
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / max(total, 1))
        rate_unit = "tok" if self.unit == "tokens" else self.unit
        line = (f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit} "
                f"{rate:6.1f} {rate_unit}/s  eta {eta:5.0f}s")
        if self._tty:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
            self.stream.flush()
        elif done >= total or now - self._last_log >= self.log_every_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_log = now
        self._drawn = True
