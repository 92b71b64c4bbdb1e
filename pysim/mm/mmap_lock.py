"""mmap_lock: the mm's reader-writer semaphore, as CPUs running at once see it.

Which syscalls take it how (Linux 6.x): mmap, munmap, mprotect and brk take it for
writing (munmap downgrades it to reading before it zaps); madvise takes it for reading
for the advices that only zap or read page tables (madvise_need_mmap_write() in
mm/madvise.c) and for writing otherwise.  Page faults take the per-VMA lock since 6.4
and are not modelled as lock holders here.

The lock only costs something on the timeline, where several CPUs run at once; one
operation at a time never waits.  A request runs whole at its start time, so a holder's
release time is known the moment its request runs; what the holders do meanwhile is
the rwsem of kernel/locking/rwsem.c:

- The count word, the owner field and wait_lock share one cache line.  Every atomic
  on it (the fast-path add or cmpxchg, the release, the slow path's list update under
  wait_lock) is a write to that line (mmucore.calendar's line_write): a CPU that did
  not write it last pays one transfer, at the line's first free gap.
- down_read() succeeds at once unless a writer holds the lock or anyone waits in the
  queue (RWSEM_READ_FAILED_MASK: WRITER_LOCKED or FLAG_WAITERS); otherwise the reader
  takes wait_lock, joins the queue and sleeps (readers stopped spinning in 5.12).
- down_write() succeeds at once on a free lock with nobody queued.  Otherwise it spins
  (rwsem_optimistic_spin) while a writer owner runs, or for at most
  rwsem_rspin_threshold() on a reader-owned lock ((10 + readers/2) us, at most 25 us),
  and takes the lock if it is released in that time; else it joins the queue and
  sleeps.  A queued waiter makes every later reader queue too: that is how one writer
  waiting behind a stream of readers puts every other CPU to sleep.
- The release that leaves the lock free with a queue wakes it (rwsem_wake,
  rwsem_mark_wake): a writer at the head gets the lock alone; a reader at the head
  gets it together with every reader queued (the phase-fair wake of up to
  MAX_READERS_WAKEUP), writers keeping their places.  The waker pays `ttwu` per task
  it wakes, one after another (wake_up_q), and the k-th wakee runs k such steps
  later, plus `lock_handoff` to be scheduled and its idle state's exit latency.
  Simplifications: the lock is handed to the woken writer (as RWSEM_FLAG_HANDOFF does
  once a writer has waited 4 ms; before that a reader could steal it), and a writer
  spinning on a reader-owned lock does not see readers that come during its spin.
- With `steal` (MmapLock.steal) the first simplification goes: the lock is not handed
  over.  A woken writer stays at the queue's head and tries for the lock when its CPU
  runs again (rwsem_try_write_lock); meanwhile a reader that finds no writer holding
  it and no other reader (rcnt == 1 in rwsem_down_read_slowpath) steals it, with a
  queue or not, and wakes the queued readers if one heads the queue; a writer's
  optimistic spin may take a free lock past the queue too.  A writer that finds its
  lock stolen sleeps again at the head; once it has waited RWSEM_WAIT_TIMEOUT
  (DIV_ROUND_UP(HZ, 250) jiffies: 4 ms at HZ=1000) it sets RWSEM_FLAG_HANDOFF and
  nobody may steal until it has the lock.
  A reader at the head that has waited as long, finding a writer in at its wake, sets
  it too, and writers stop stealing until the readers have had the lock.  The second
  simplification goes too: a writer that finds readers owning the lock and nobody
  queued spins without setting FLAG_WAITERS, so readers that come meanwhile still take
  the fast path and lengthen the readers' hold; the spin succeeds only if the last
  reader lets go within rwsem_rspin_threshold(), else the writer joins the queue's
  tail then (rwsem_down_write_slowpath) and every later reader queues behind it.  The
  timeline decides at the spin's end what the writer's admit() could not know (the
  writer's CPU spins meanwhile: not idle, not lazy, taking its IPIs).  A second writer
  coming during the spin joins the queue (the osq it would spin in is not modelled).
- With `vma_fallback` (MmapLock.vma_fallback), page faults are not always free of the
  lock: a writer's vma_start_write() marks the VMAs it splits, merges or removes
  until mmap_write_unlock() or mmap_write_downgrade() (vma_end_write_all), and a
  fault in such a VMA finds lock_vma_under_rcu() failing and takes mmap_lock for
  reading instead (lock_mm_and_find_vma), waiting behind the writer like any reader.
  Which VMAs a writer write-locked is read off the mm's VMAs themselves: those whose
  bounds or flags differ between its lock() and its unlock() or downgrade(), so every
  writing call counts, whatever it is.

The timeline that runs CPUs at once asks admit() before a request that takes the
lock; a task that must wait sleeps until check() hands it the lock.  Code that calls
the syscalls itself on the timeline (the timed trace replay) takes the lock inline:
lock() then charges the wait until the known holders are done as time spent waiting.
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

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
INF = float("inf")
MAX_READERS_WAKEUP = 0x100          # rwsem_mark_wake() grants at most this many readers
RSPIN_BASE_US, RSPIN_MAX_READERS = 10.0, 30     # rwsem_rspin_threshold()


def madvise_lock_mode(advice: Any) -> str:
    """"r" if madvise(advice) holds mmap_lock for reading, "w" if for writing."""
    return "r" if advice in _MADV_READ_LOCKED else "w"


def rspin_threshold_us(readers: int) -> float:
    """rwsem_rspin_threshold(): how long a writer spins on a lock `readers` readers own
    before it sleeps, (20 + readers) / 2 us with readers capped at 30."""
    return RSPIN_BASE_US + min(readers, RSPIN_MAX_READERS) / 2.0


class MmapLock:
    """mm->mmap_lock on the timeline: its holders' release times, its wait queue and
    the cache line of its count word (see the module comment)."""

    __slots__ = ("timed", "line", "writer_until", "readers_until", "downgraded",
                 "waiters", "holding", "granted", "granted_writer", "reader_ends",
                 "post", "check_at", "releaser", "woken", "slept", "us", "steal",
                 "handoff", "writer_woken", "queued_at", "stolen", "vma_fallback",
                 "vmas", "vmas_before", "vma_locks", "vma_locks_until", "fallbacks",
                 "spinner", "spin_until", "spin_failed", "spun")

    def __init__(self, vmas: Any = None) -> None:
        self.timed = False          # only the timeline makes holders wait
        self.vmas = vmas            # the mm's VMAList (what vma_fallback reads)
        self.line = Calendar()      # the count word's cache line
        self.post: Optional[Callable[["MmapLock", float], None]] = None
        self.us = 0.0               # cycles per microsecond (set by attach)
        self.steal = False          # lock stealing, no hand-over (module comment)
        self.vma_fallback = False   # faults in write-locked VMAs take the lock
        self.reset()

    def attach(self, post: Optional[Callable[["MmapLock", float], None]],
               ghz: float = 0.0) -> None:
        """Let a timeline run the wake checks: post(lock, t) must call check(t) at t
        (None detaches: waits are then inline, see lock())."""
        self.post = post
        self.us = ghz * 1e3

    def reset(self) -> None:
        """Nobody holds or waits for the lock; nobody owns its cache line."""
        self.writer_until = 0.0     # when the last writer released it
        self.readers_until = 0.0    # when the last reader so far releases it
        self.reader_ends: List[float] = []      # release times of readers, a heap
        self.line.reset()
        self.downgraded = -1        # the CPU whose write hold became a read hold
        self.woken = 0              # tasks woken from the queue (results)
        self.slept = 0              # tasks that joined the queue
        self.stolen = 0             # locks taken past a queue (steal mode)
        self.fallbacks = 0          # faults that took the lock (vma_fallback)
        self.spun = 0               # writers whose spin on readers got the lock (steal)
        self.vmas_before: Optional[frozenset] = None   # the VMAs at the writer's lock()
        self.vma_locks: List[Tuple[int, int]] = []     # [start, end) write-locked VMAs
        self.vma_locks_until = 0.0                      # ... until that writer let go
        self.drop_waiters()

    def drop_waiters(self) -> None:
        """Nobody queued or woken (at a run's end: the counters stay)."""
        self.waiters: Deque[Tuple[Any, Any, str]] = deque()   # (task, cpu, mode)
        self.spinner: Optional[Tuple[Any, Any]] = None  # (task, cpu) spinning on readers
        self.spin_until = 0.0       # ... until then (steal mode)
        self.spin_failed: List[Tuple[Any, float]] = []  # spinners that queued: (task, t)
        self.holding: Dict[int, str] = {}   # CPU -> "a" admitted or "g" woken, + mode
        self.granted = 0            # woken with the lock, their request not yet run
        self.granted_writer = False
        self.check_at = INF         # when the posted wake check runs
        self.releaser: Any = None   # the CPU of the last release (it runs rwsem_wake)
        self.handoff = False        # RWSEM_FLAG_HANDOFF (steal mode)
        self.writer_woken = False   # the head writer is woken, not yet run (steal mode)
        self.queued_at: Dict[int, float] = {}   # CPU -> when its task joined the queue

    # ------------------------------------------------------------- cache line
    def _atomic(self, cpu: Any, now: float, hold: float = 0.0) -> float:
        """One atomic on the count word's line at now (holding it `hold` cycles, as
        wait_lock's critical section does); the cycles it takes cpu."""
        cost = cpu.cfg.cost
        return self.line.write(cpu.id, now, cost.cacheline_transfer,
                               cost.cacheline_per_writer, hold, cpu.llc,
                               cost.cacheline_remote)

    def _readers_at(self, t: float) -> int:
        """Readers whose hold is not over at t."""
        ends = self.reader_ends
        while ends and ends[0] <= t:
            heapq.heappop(ends)
        return len(ends)

    # ---------------------------------------------------------- the timeline
    def admit(self, task: Any, cpu: Any, mode: str) -> bool:
        """down_read() (mode "r") or down_write() ("w") by task on cpu before its
        request runs: True if it holds the lock now (its spin, if any, charged as lock
        wait), False if it joined the queue and must sleep until check() wakes it."""
        now = cpu.tlbstate.now
        if mode == "r":
            if not self.granted_writer and self.writer_until <= now and (
                    not self.waiters or self._may_steal_read(now)):
                cpu.stats.charge(B_LOCK, self._atomic(cpu, now))
                self.holding[cpu.id] = "a" + mode
                if self.waiters:
                    self.stolen += 1
                    if self.waiters[0][2] == "r":       # rwsem_mark_wake(READ_OWNED)
                        self.releaser = cpu
                        self._post_check(now)
                return True
        else:
            spent = self._atomic(cpu, now)
            free = self._holders_until("w")
            if not self.granted and self.spinner is None and (
                    not self.waiters or (self.steal and not self.handoff)):
                if free <= now + spent:
                    cpu.stats.charge(B_LOCK, spent)
                    self.holding[cpu.id] = "a" + mode
                    return True
                if self.writer_until > now:         # a running writer owns it: spin
                    limit = INF
                else:
                    limit = rspin_threshold_us(self._readers_at(now)) * self.us
                    if self.steal and not self.waiters:
                        return self._spin_on_readers(task, cpu, now + spent, limit)
                if free - now <= limit:
                    cpu.stats.charge(B_LOCK, free - now + self._atomic(cpu, free))
                    self.holding[cpu.id] = "a" + mode
                    return True
                cpu.stats.charge(B_LOCK, limit)     # spun, then gives up
                now += limit
            else:
                cpu.stats.charge(B_LOCK, spent)
                now += spent
        self._join_queue(task, cpu, mode, now)
        self._post_check(self._free_for(mode))
        return False

    def _join_queue(self, task: Any, cpu: Any, mode: str, now: float) -> None:
        """rwsem_down_*_slowpath(): wait_lock, join the queue's tail, FLAG_WAITERS."""
        cpu.stats.charge(B_LOCK, self._atomic(cpu, now, cpu.cfg.cost.cacheline_transfer))
        self.waiters.append((task, cpu, mode))
        self.queued_at[cpu.id] = now
        self.slept += 1

    def _spin_on_readers(self, task: Any, cpu: Any, now: float, limit: float) -> bool:
        """Steal mode: rwsem_optimistic_spin() on a reader-owned lock from now for at
        most `limit` cycles; check() ends it (False: the timeline lets the CPU spin)."""
        cpu.stats.charge(B_LOCK, self._atomic(cpu, now))
        self.spinner = (task, cpu)
        self.spin_until = now + limit
        self._post_check(min(self._holders_until("w"), self.spin_until))
        return False

    def _end_spin(self, t: float) -> List[Tuple[Any, float]]:
        """check()'s step for the spinning writer at t: the lock if the readers have
        all let go and nobody else was given it ([(task, t)]), the queue's tail once
        the spin is over (in spin_failed, for the timeline to put its CPU to sleep),
        else another check when the known readers are done or the spin ends."""
        task, cpu = self.spinner
        if not self.granted and not self.handoff and self._holders_until("w") <= t:
            self.spinner = None
            self.spun += 1
            self.granted += 1
            self.granted_writer = True
            self.holding[cpu.id] = "gw"
            return [(task, t)]
        if t >= self.spin_until:
            self.spinner = None
            self._join_queue(task, cpu, "w", t)
            self.spin_failed.append((task, t))
            return []
        nxt = min(self._holders_until("w"), self.spin_until)
        self._post_check(nxt if nxt > t else self.spin_until)   # (every check looks)
        return []

    def _vma_state(self) -> frozenset:
        """The mm's VMAs as (start, end, flags): what a writer's vma_start_write()s
        show as changed."""
        return frozenset((v.start, v.end, v.flags) for v in self.vmas.vmas())

    def _end_vma_writes(self, until: float) -> None:
        """vma_end_write_all() at `until`: the VMAs the writer changed (split, merged,
        modified or removed since its lock()) were write-locked until then."""
        before = self.vmas_before
        if before is None:
            return
        self.vmas_before = None
        self.vma_locks = sorted((a, b) for a, b, _ in before ^ self._vma_state())
        self.vma_locks_until = until

    def fault_takes_lock(self, pt: Any, va: int, now: float) -> bool:
        """vma_fallback: whether a user access at va at `now` faults in a VMA a writer
        holds write-locked (its page is not present and lock_vma_under_rcu() fails),
        so that the fault takes mmap_lock for reading (counted in fallbacks)."""
        if not self.vma_fallback or self.post is None or now >= self.vma_locks_until:
            return False
        for a, b in self.vma_locks:
            if a <= va < b:
                if pt.get(va)[0] & 1:
                    return False            # present: no fault
                self.fallbacks += 1
                return True
        return False

    def _wait_timeout(self, cpu: Any) -> float:
        """RWSEM_WAIT_TIMEOUT in cycles: DIV_ROUND_UP(HZ, 250) jiffies at the profile's
        HZ (4 ms at HZ=1000 or 250, 10 ms at 100)."""
        hz = cpu.cfg.profile.hz
        return -(-hz // 250) / hz * 1e6 * self.us

    def _may_steal_read(self, now: float) -> bool:
        """rwsem_down_read_slowpath()'s reader optimistic lock stealing (steal mode): no
        handoff pending and no other reader holding it (a writer woken for the lock but
        not yet running does not hold it: that is the window stealing uses)."""
        return (self.steal and not self.handoff and self.granted == 0
                and self._readers_at(now) == 0)

    def retry(self, task: Any, cpu: Any) -> bool:
        """Steal mode: the woken head writer, running again, tries for the lock
        (rwsem_try_write_lock): True with it; False when someone took it meanwhile,
        and the writer sleeps again at the head (setting RWSEM_FLAG_HANDOFF once it
        has waited RWSEM_WAIT_TIMEOUT) until the next wake check."""
        if self.holding.get(cpu.id) == "gw":
            return True                     # its spin got the lock (check, _end_spin)
        now = cpu.tlbstate.now
        self.writer_woken = False
        if self.granted == 0 and self._holders_until("w") <= now:
            head = self.waiters.popleft()
            assert head[0] is task
            self.queued_at.pop(cpu.id, None)
            self.handoff = False
            self.granted += 1
            self.granted_writer = True
            self.holding[cpu.id] = "gw"
            return True
        waited = now - self.queued_at.get(cpu.id, now)
        if waited >= self._wait_timeout(cpu):
            self.handoff = True
        self.slept += 1
        self._post_check(self._free_for("w"))
        return False

    def _holders_until(self, mode: str) -> float:
        """When the holders whose release is known let one of mode in: a reader waits
        for the last writer, a writer for the last writer and every reader."""
        if mode == "r" or self.writer_until > self.readers_until:
            return self.writer_until
        return self.readers_until

    def _free_for(self, mode: str) -> float:
        """_holders_until(mode) for a waiter of the queue (inf while a woken holder's
        request has not run yet: its release is not known)."""
        return INF if self.granted > 0 else self._holders_until(mode)

    def _post_check(self, t: float) -> None:
        """Have the timeline run check() at t (once: the earliest time asked for)."""
        if t < self.check_at and self.post is not None and t < INF:
            self.check_at = t
            self.post(self, t)

    def check(self, t: float) -> List[Tuple[Any, float]]:
        """rwsem_wake() at t if the lock is free for the queue's head: the tasks it
        wakes with the lock, each with the time its CPU is told (the waker's wake_up_q
        one `ttwu` after another, charged to the waker)."""
        if t != self.check_at:
            return []                       # superseded by an earlier check
        self.check_at = INF
        spun = self._end_spin(t) if self.spinner is not None else []
        return spun + self._wake_queue(t)

    def _wake_queue(self, t: float) -> List[Tuple[Any, float]]:
        """check()'s rwsem_wake() of the queue (see check)."""
        if not self.waiters:
            return []
        head_mode = self.waiters[0][2]
        free = self._free_for(head_mode)
        if free > t:
            head_cpu = self.waiters[0][1]
            if self.steal and head_mode == "r" and self.writer_until > t and \
                    t - self.queued_at.get(head_cpu.id, t) >= self._wait_timeout(head_cpu):
                # rwsem_mark_wake(): the readers' wake found a writer in, and the head
                # reader has waited RWSEM_WAIT_TIMEOUT: RWSEM_FLAG_HANDOFF
                self.handoff = True
            self._post_check(free)
            return []
        if head_mode == "r" and self.steal:
            self.handoff = False            # the readers get it: the handoff is spent
        if head_mode == "w" and self.steal:
            if self.writer_woken:
                return []                   # already on its way (retry() decides)
            self.writer_woken = True
            task, cpu, _ = self.waiters[0]
            self.woken += 1
            waker = self.releaser if self.releaser is not None else cpu
            waker.stats.charge(B_LOCK, waker.cfg.cost.ttwu)
            return [(task, t + waker.cfg.cost.ttwu)]
        if head_mode == "w":
            woken = [self.waiters.popleft()]
            self.granted_writer = True
        else:
            woken, keep = [], deque()
            for w in self.waiters:
                if w[2] == "r" and len(woken) < MAX_READERS_WAKEUP:
                    woken.append(w)
                else:
                    keep.append(w)
            self.waiters = keep
        self.granted += len(woken)
        self.woken += len(woken)
        out = []
        waker = self.releaser if self.releaser is not None else woken[0][1]
        ttwu = waker.cfg.cost.ttwu
        for k, (task, cpu, mode) in enumerate(woken, 1):
            self.holding[cpu.id] = "g" + mode
            self.queued_at.pop(cpu.id, None)
            out.append((task, t + k * ttwu))
        waker.stats.charge(B_LOCK, len(woken) * ttwu)
        return out

    # ------------------------------------------------------ the syscall path
    def lock(self, cpu: Any, mode: str) -> None:
        """mmap_read_lock() / mmap_write_lock() inside the syscall: nothing more for a
        CPU the timeline admitted or woke with the lock (a woken writer still does its
        cmpxchg); otherwise the inline wait for the known holders."""
        if not self.timed:
            return
        if mode == "w" and self.vma_fallback and self.vmas is not None:
            self.vmas_before = self._vma_state()
        how = self.holding.get(cpu.id)
        now = cpu.tlbstate.now
        if how is not None:
            if how == "gw":
                cpu.stats.charge(B_LOCK, self._atomic(cpu, now))
            return
        spent = self._atomic(cpu, now)
        ready = self._holders_until(mode)
        if ready > now + spent:
            spent = ready - now + cpu.cfg.cost.lock_handoff
        cpu.stats.charge(B_LOCK, spent)

    def downgrade(self, cpu: Any) -> None:
        """mmap_write_downgrade(): the writer on cpu lets readers in now (waking the
        readers queued, rwsem_downgrade_wake) and holds the lock for reading until its
        unlock."""
        if not self.timed:
            return
        now = cpu.tlbstate.now
        self.writer_until = now
        self._end_vma_writes(now)
        self.downgraded = cpu.id
        if self.holding.get(cpu.id) == "gw":
            self.holding[cpu.id] = "gr"
            self.granted_writer = False
        if self.waiters:
            self.releaser = cpu
            self._post_check(now)

    def unlock(self, cpu: Any, mode: str) -> None:
        """mmap_read_unlock() / mmap_write_unlock(): the holder's release time; a
        queue waiting for it gets a wake check then."""
        if not self.timed:
            return
        if self.downgraded == cpu.id:
            self.downgraded, mode = -1, "r"
        now = cpu.tlbstate.now
        spent = self._atomic(cpu, now)
        cpu.stats.charge(B_LOCK, spent)
        end = now + spent
        if mode == "r":
            if end > self.readers_until:
                self.readers_until = end
            ends = self.reader_ends
            while ends and ends[0] <= now:      # readers already gone
                heapq.heappop(ends)
            heapq.heappush(ends, end)
        else:
            self.writer_until = end
            self._end_vma_writes(end)
        how = self.holding.pop(cpu.id, None)
        if how is not None and how[0] == "g":
            self.granted -= 1
            if how == "gw":
                self.granted_writer = False
        self.releaser = cpu
        if self.waiters:
            self._post_check(self._free_for(self.waiters[0][2]))

    def done(self, cpu: Any) -> None:
        """After an admitted request: a hold its call never took (it failed before
        the syscall body) is released now."""
        how = self.holding.get(cpu.id)
        if how is not None:
            self.unlock(cpu, how[1])

