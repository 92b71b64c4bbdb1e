"""The LRU lists' lock (lruvec->lru_lock), as CPUs running at once see it.

Every anonymous page a fault allocates goes to its CPU's lru_add folio batch;
lru_add_drain() (zap_page_range_single() and unmap_region() call it before they zap)
moves the batch onto the node's LRU lists under lruvec->lru_lock, and freeing the
zapped pages after the flush (free_pages_and_swap_cache() -> folios_put_refs()) takes
them off again under the same lock.  So each batch of freed pages costs two
acquisitions of one spinlock that every CPU of the node shares: with many CPUs zapping
at once it is a point where they queue (the INVLPGB series' 36-core Milan measured
527k -> 731k will-it-scale loops/s from removing lru_add_drain alone).

Only the timeline makes it cost anything: a CPU that finds the lock busy waits, and
the lock word's cache line moves between CPUs (mmucore.calendar).  It is a queued
spinlock: each waiter spins on its own MCS node and a release hands the lock to the
next one with one line transfer, however many wait, so the hand-over does not slow
with the queue's length (cacheline_per_writer is for plain atomics).  The holder's own
work is part of the zap's per-page costs, so one CPU alone sees no change.  The model
has one lruvec (one node, no memory cgroups), and it assumes the freed pages were
faulted on the freeing CPU, as in a loop that touches and drops its own pages.
"""
from __future__ import annotations

from typing import Any

from mmucore.calendar import Calendar
from mmucore.stats import B_LOCK

FOLIO_BATCH_SIZE = 31           # include/linux/pagevec.h: PAGEVEC_SIZE / a folio_batch


class LruVec:
    """One node's LRU lists: the lock's bookings on the timeline."""

    __slots__ = ("timed", "lock", "inactive")

    def __init__(self) -> None:
        self.timed = False
        self.lock = Calendar()
        self.inactive: list = []        # (weakref to mm, va) MADV_COLD deactivated

    def __getstate__(self):
        return self.timed

    def __setstate__(self, timed) -> None:
        self.timed = timed
        self.lock = Calendar()
        self.inactive = []

    def reset(self) -> None:
        """Nobody holds or waits for the lock."""
        self.lock.reset()

    def free_zapped(self, cpu: Any, nr_pages: int) -> None:
        """Freeing nr_pages zapped pages: lru_add_drain() put them on the LRU and
        folios_put_refs() takes them off, each one acquisition per folio batch; the
        model books them as one stretch of the lock (one line transfer) at the flush."""
        if not self.timed or nr_pages <= 0:
            return
        cost = cpu.cfg.cost
        held = 2 * (-(-nr_pages // FOLIO_BATCH_SIZE)) * cost.lru_lock_hold
        cpu.stats.charge(B_LOCK, self.lock.write(cpu.id, cpu.tlbstate.now,
                                                 cost.cacheline_transfer, 0.0, held,
                                                 cpu.llc, cost.cacheline_remote))
