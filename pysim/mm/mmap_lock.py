"""mmap_lock: the mm's reader-writer semaphore, as CPUs running at once see it.

Which syscalls take it how (Linux 6.x): mmap, munmap, mprotect and brk take it for
writing (munmap downgrades it to reading before it zaps); madvise takes it for reading for the advices that only zap or read page
tables (madvise_need_mmap_write() in mm/madvise.c) and for writing otherwise.  Page
faults take the per-VMA lock since 6.4 and are not modelled as lock holders here.

The lock only costs something on the timeline (the machine's Timeline), where several
CPUs run at once; one operation at a time never waits.  Time on the timeline is each
CPU's own clock, and operations run whole in the order they start, so the lock is a
pair of release times: a reader waits for the last writer, a writer for the last
writer and every reader that came before it.  The count word is a cache line every
acquire and release writes: a CPU that did not write it last pays one transfer, at
the line's first free gap (mmucore.calendar).  A waiter that had to sleep pays `lock_handoff` to be woken
and scheduled after the release.
"""
from __future__ import annotations

from typing import Any

from mmucore.calendar import Calendar
from mmucore.stats import B_LOCK

from ..constants import (MADV_COLD, MADV_COLLAPSE, MADV_DONTNEED, MADV_DONTNEED_LOCKED,
                         MADV_FREE, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
                         MADV_REMOVE, MADV_WILLNEED)

# madvise_need_mmap_write(): these advices run under the read lock, every other one
# under the write lock.
_MADV_READ_LOCKED = frozenset({MADV_REMOVE, MADV_WILLNEED, MADV_DONTNEED,
                               MADV_DONTNEED_LOCKED, MADV_COLD, MADV_PAGEOUT, MADV_FREE,
                               MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_COLLAPSE})


def madvise_lock_mode(advice: Any) -> str:
    """"r" if madvise(advice) holds mmap_lock for reading, "w" if for writing."""
    return "r" if advice in _MADV_READ_LOCKED else "w"


class MmapLock:
    """mm->mmap_lock on the timeline: release times and the count word's cache line."""

    __slots__ = ("timed", "writer_until", "readers_until", "line", "downgraded")

    def __init__(self) -> None:
        self.timed = False          # only the timeline makes holders wait
        self.line = Calendar()      # the count word's cache line
        self.reset()

    def reset(self) -> None:
        """Nobody holds or waits for the lock; nobody owns its cache line."""
        self.writer_until = 0.0     # when the last writer released it
        self.readers_until = 0.0    # when the last of the readers so far released it
        self.line.reset()
        self.downgraded = -1        # the CPU whose write hold became a read hold

    def _touch_line(self, cpu: Any, now: float) -> float:
        """One atomic on the count word at `now`; the cycles it takes cpu."""
        cost = cpu.cfg.cost
        return self.line.write(cpu.id, now, cost.cacheline_transfer, cost.cacheline_per_writer)

    def lock(self, cpu: Any, mode: str) -> None:
        """mmap_read_lock() (mode "r") or mmap_write_lock() ("w") on cpu: charge the
        wait, if any, to cpu's lock category."""
        if not self.timed:
            return
        now = cpu.tlbstate.now
        spent = self._touch_line(cpu, now)
        ready = self.writer_until if mode == "r" else max(self.writer_until,
                                                          self.readers_until)
        if ready > now + spent:
            spent = ready - now + cpu.cfg.cost.lock_handoff
        cpu.stats.charge(B_LOCK, spent)

    def downgrade(self, cpu: Any) -> None:
        """mmap_write_downgrade(): the writer on cpu lets readers in now and holds the
        lock for reading until its unlock."""
        if not self.timed:
            return
        self.writer_until = cpu.tlbstate.now
        self.downgraded = cpu.id

    def unlock(self, cpu: Any, mode: str) -> None:
        """mmap_read_unlock() / mmap_write_unlock(): the holder's release time."""
        if not self.timed:
            return
        if self.downgraded == cpu.id:
            self.downgraded, mode = -1, "r"
        now = cpu.tlbstate.now
        spent = self._touch_line(cpu, now)
        cpu.stats.charge(B_LOCK, spent)
        if mode == "r":
            if now + spent > self.readers_until:
                self.readers_until = now + spent
        else:
            self.writer_until = now + spent
