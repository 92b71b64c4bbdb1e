"""Progress of a sweep on stderr, shaped by where stderr goes.

On a terminal: a tqdm bar when tqdm is installed, otherwise one line redrawn in place
("points done / total (rate)").  Anywhere else (a log file, a CI job, a pipe): no
carriage returns at all, but a plain line each time another tenth of the points is
done.  Either way nothing appears until the sweep has run for DELAY seconds, so short
sweeps stay quiet.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

__all__ = ["Progress", "DELAY"]

DELAY = 1.0                  # seconds before anything is shown


def _isatty(stream: TextIO) -> bool:
    """Whether stream is a terminal (False for anything without a working isatty)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _tqdm_bar(total: int, initial: int, desc: str, stream: TextIO) -> Optional[Any]:
    """A tqdm bar without its monitor thread (pools fork), or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    class _Bar(tqdm):
        monitor_interval = 0

    return _Bar(total=total, initial=initial, desc=desc, unit="pt", delay=DELAY,
                file=stream, dynamic_ncols=True, smoothing=0.1)


class Progress:
    """Counts finished points out of total, starting at initial (the stored ones);
    shows nothing at all unless enabled.  stream defaults to sys.stderr at creation."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str,
                 stream: Optional[TextIO] = None):
        self.total, self.n, self.enabled = total, initial, enabled
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.tty = _isatty(self.stream)
        self.t0 = self.last = time.monotonic()
        self.shown = False
        self.tenth = self._tenth(initial)      # the last tenth a plain line reported
        self.bar = _tqdm_bar(total, initial, desc, self.stream) \
            if enabled and self.tty else None

    def _tenth(self, n: int) -> int:
        """How many whole tenths of total n points are."""
        return (10 * n) // self.total if self.total else 10

    def _line(self, now: float) -> str:
        """The text of a progress line: points done, percent and rate."""
        rate = self.n / max(now - self.t0, 1e-9)
        pct = 100 * self.n // self.total if self.total else 100
        return f"{self.desc}: {self.n}/{self.total} points ({pct}%, {rate:.1f}/s)"

    def update(self, k: int = 1) -> None:
        """Count k more finished points and show them as the stream allows: the tqdm
        bar, the redrawn line (at most twice a second), or a line per tenth."""
        self.n += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.t0 < DELAY:
            return
        if self.tty:
            if now - self.last >= 0.5 or self.n == self.total:
                self.stream.write("\r" + self._line(now))
                self.stream.flush()
                self.last, self.shown = now, True
            return
        tenth = self._tenth(self.n)
        if tenth > self.tenth:
            self.tenth = tenth
            self.stream.write(self._line(now) + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the display: close the bar, or end the redrawn line if one was drawn."""
        if self.bar is not None:
            self.bar.close()
        elif self.shown:
            self.stream.write("\n")
            self.stream.flush()
