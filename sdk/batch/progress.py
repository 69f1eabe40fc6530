"""A progress bar on standard error: scans done of total, rate, time left, errors so far.

    " 37/120  31% |#########-------------------|  1.82 scans/s  ETA 0:00:45  1 error"

On a terminal it is redrawn in place; on anything else (a log file, a pipe) it is written as a
line every ``LOG_INTERVAL_S`` and once at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

BAR_CHARS = 28
REDRAW_S = 0.2
LOG_INTERVAL_S = 10.0


class Progress:
    """Counts scans as they finish and shows the bar.

    total : scans in the run (those skipped as already done count as done when they come by).
    stream : where the bar goes (default standard error); shown : False counts without showing.
    The rate counts only scans scored in this run, over the time since the bar started.
    """

    def __init__(self, total: int, stream=None, shown: bool = True):
        self.total = total
        self.shown = shown
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.scored = self.errors = 0
        self.start = self._shown = time.monotonic()
        self._terminal = bool(getattr(self.stream, "isatty", lambda: False)())

    def advance(self, *, scored: bool, error: bool = False) -> None:
        """One more scan done: scored in this run (or skipped), an error line or not."""
        self.done += 1
        self.scored += scored
        self.errors += error
        now = time.monotonic()
        if now - self._shown >= (REDRAW_S if self._terminal else LOG_INTERVAL_S):
            self._show(now)

    def close(self) -> None:
        self._show(time.monotonic(), end="\n")

    @property
    def rate_per_s(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.scored / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = round(BAR_CHARS * fraction)
        rate = self.rate_per_s
        left = self.total - self.done
        eta = str(timedelta(seconds=round(left / rate))) if rate > 0 else "0:00:00" if not left else "?"
        errors = f"  {self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else ""
        bar = "#" * filled + "-" * (BAR_CHARS - filled)
        count = f"{self.done:>{len(str(self.total))}}/{self.total}"
        return f"{count} {100 * fraction:3.0f}% |{bar}| {rate:5.2f} scans/s  ETA {eta}{errors}"

    def _show(self, now: float, end: str = "") -> None:
        self._shown = now
        if not self.shown:
            return
        text = self.text()
        try:
            if self._terminal:
                self.stream.write(f"\r{text}{end}")
            else:
                self.stream.write(f"{text}\n")
            self.stream.flush()
        except (AttributeError, OSError, ValueError):
            pass  # standard error closed: the bar is only a courtesy
