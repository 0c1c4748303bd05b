"""Turning generated token bytes into text, with stop strings.

Bytes of one UTF-8 character can span tokens, and a stop string can span pieces, so
text is released only when it can no longer be part of either."""

from __future__ import annotations

import codecs
from typing import List, Sequence, Tuple


class TextStream:
    def __init__(self, stop: Sequence[str] = ()):
        self.stop = [s for s in stop if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # decoded text not yet released (could start a stop string)
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Add a token's bytes; return the text that is now safe to emit."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(piece)
        return self._release(final=False)

    def finish(self) -> str:
        """Flush what is left at the end of generation."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        cut, hit = self._first_stop()
        if hit:
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        if final:
            out, self._pending = self._pending, ""
            return out
        keep = self._longest_stop_prefix_suffix()
        out = self._pending[:len(self._pending) - keep]
        self._pending = self._pending[len(out):]
        return out

    def _first_stop(self) -> Tuple[int, bool]:
        positions: List[int] = [self._pending.find(s) for s in self.stop]
        positions = [p for p in positions if p >= 0]
        return (min(positions), True) if positions else (0, False)

    def _longest_stop_prefix_suffix(self) -> int:
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self._pending)), 0, -1):
                if self._pending.endswith(s[:n]):
                    best = max(best, n)
                    break
        return best
