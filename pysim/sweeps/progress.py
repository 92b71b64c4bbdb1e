"""Progress of a sweep on stderr: a tqdm bar when tqdm is installed, otherwise a plain
"points done / total (rate)" line; either appears only once the sweep has run 1 s."""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

__all__ = ["Progress"]


def _tqdm_bar(total: int, initial: int, desc: str) -> Optional[Any]:
    """A tqdm bar without its monitor thread (pools fork), or None without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    class _Bar(tqdm):
        monitor_interval = 0

    return _Bar(total=total, initial=initial, desc=desc, unit="pt", delay=1.0,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)


class Progress:
    """Counts finished points out of total, starting at initial (the stored ones);
    shows nothing at all unless enabled."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.total, self.n, self.enabled = total, initial, enabled
        self.desc = desc
        self.t0 = self.last = time.monotonic()
        self.shown = False
        self.bar = _tqdm_bar(total, initial, desc) if enabled else None

    def update(self, k: int = 1) -> None:
        """Count k more finished points; the plain line is redrawn at most twice a
        second."""
        self.n += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.t0 >= 1.0 and (now - self.last >= 0.5 or self.n == self.total):
            rate = self.n / max(now - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total} points ({rate:.1f}/s)")
            sys.stderr.flush()
            self.last, self.shown = now, True

    def close(self) -> None:
        """End the display: close the bar, or end the plain line if one was drawn."""
        if self.bar is not None:
            self.bar.close()
        elif self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
