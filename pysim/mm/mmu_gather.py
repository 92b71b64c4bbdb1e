"""The mmu_gather API (include/asm-generic/tlb.h, mm/mmu_gather.c) for kernel paths.

The ordering rule: a path first changes or clears page-table entries, recording each in
the gather (tlb_flush_pte_range / tlb_flush_pmd_range, or the core's range loops that
record as they go), and only then flushes: the TLB may keep the old translations until
tlb_flush_mmu(), so nothing freed may be reused before it.  A batch flushes once, at
tlb_finish_mmu(), or at every tlb_end_vma() on architectures that do not merge VMAs.
The flush itself is the architecture's hook, `cpu.arch.tlb_flush(tlb)` (x86: one
flush_tlb_mm_range over [start, end) at the finest cleared level's stride); the rest is
generic.

A zap also flushes in the middle when one of the gather's two batches fills (the pages
it may free only after the flush, and the page tables it frees): mmucore's zap loop
stops there, tlb_flush_mmu() flushes the range gathered so far, resets it and empties
the page batch, and the zap goes on (pysim.mm.memory.unmap_page_range; the batch
mechanics and the kernel's constants are explained in mmucore/gather.pxd).

The built-in paths use exactly this API, so a user can write a new one:

    with tlb_gather_mmu(cpu, mm) as tlb:
        tlb_start_vma(tlb, vma)
        ... change entries, tlb_flush_pte_range(tlb, addr, PAGE_SIZE) ...
        tlb_end_vma(tlb, vma)
    # tlb_finish_mmu() ran on exit: one flush_tlb_mm_range() if anything was recorded
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import mmucore

from ..errors import ArgumentError, PysimError
from ..results import OpResult

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM
    from .vma import VMA


class MMUGather:
    """struct mmu_gather: the core's range/level state plus the mm and the CPU flushing."""

    __slots__ = ("cpu", "mm", "state", "flushes", "finished", "own_window", "result")

    def __init__(self, cpu: "CPU", mm: "MM", fullmm: bool = False, batch_reserve: int = 0):
        self.cpu = cpu
        self.mm = mm
        self.state = mmucore.Gather(fullmm, batch_reserve)
        self.flushes: list = []      # the FlushInfo of every flush the batch made
        self.finished = False
        self.own_window = False      # the batch opened the CPU's accounting window itself
        self.result: Optional[OpResult] = None   # then its OpResult, once finished

    # context-manager form of tlb_gather_mmu ... tlb_finish_mmu
    def __enter__(self) -> "MMUGather":
        return self

    def __exit__(self, *exc) -> None:
        if not self.finished:
            tlb_finish_mmu(self)

    def __repr__(self) -> str:
        return f"MMUGather({self.state!r}, {len(self.flushes)} flushes)"


def gather_batch_reserve(profile) -> int:
    """Entries each page batch keeps free: 0 for kernels up to 6.8 (full when nr == max),
    1 from 6.9 (nr >= max - 1, room for a (page, nr_pages) pair): the profile's
    `mmu_gather_batch_reserve` (1 in v6.14 and later built-ins)."""
    return int(profile.mmu_gather_batch_reserve)


def tlb_gather_mmu(cpu: "CPU", mm: "MM", fullmm: bool = False) -> MMUGather:
    """Start a batch on mm; mm.tlb_flush_pending counts it until tlb_finish_mmu()."""
    try:
        acct = cpu.stats.acct
        mm.tlb_flush_pending
    except AttributeError:
        bad = "cpu" if not hasattr(cpu, "stats") else "mm"
        raise ArgumentError(f"tlb_gather_mmu(cpu, mm) needs a CPU (thread.cpu) and an mm "
                            f"(thread.mm), got {type(cpu).__name__} and "
                            f"{type(mm).__name__}", field=bad) from None
    # gather_batch_reserve(cpu.cfg.profile), decided once per CPU
    tlb = MMUGather(cpu, mm, fullmm, cpu.gather_batch_reserve)
    if not acct.active:
        # a user's kernel path run on its own: account it as one operation on cpu
        # (tlb.result); the machine's checker does not run for it (call m.check())
        acct.begin(cpu.stats)
        cpu.faults = []
        tlb.own_window = True
    mm.tlb_flush_pending += 1
    return tlb


def tlb_start_vma(tlb: MMUGather, vma: "VMA") -> None:
    """Nothing to do on x86 (flush_cache_range is a no-op)."""


def tlb_end_vma(tlb: MMUGather, vma: "VMA") -> None:
    """Flush now unless the architecture merges VMAs in one gather (x86 does, arm64
    does not) and the profile keeps MMU_GATHER_MERGE_VMAS."""
    if tlb.state.fullmm:
        return
    if not tlb.cpu.gather_merges_vmas:      # the profile's and the arch's, decided once
        tlb_flush_mmu_tlbonly(tlb)


def tlb_flush_pte_range(tlb: MMUGather, addr: int, size: int) -> None:
    tlb.state.flush_pte_range(addr, size)


def tlb_flush_pmd_range(tlb: MMUGather, addr: int, size: int) -> None:
    tlb.state.flush_pmd_range(addr, size)


def tlb_flush_pud_range(tlb: MMUGather, addr: int, size: int) -> None:
    tlb.state.flush_pud_range(addr, size)


def tlb_flush(tlb: MMUGather):
    """The architecture's tlb_flush() over what the batch recorded."""
    f = tlb.cpu.arch.tlb_flush(tlb)
    if f is not None:                # (arm64: a full-mm teardown may need no flush)
        tlb.flushes.append(f)
    return f


def tlb_flush_mmu_tlbonly(tlb: MMUGather) -> None:
    """Flush what was recorded (if anything) and reset the range."""
    if not tlb.state.needs_flush:
        return
    tlb_flush(tlb)
    tlb.state.reset_range()


def tlb_table_flush(tlb: MMUGather) -> None:
    """tlb_table_flush(): the table batch is full (or the gather ends): flush the TLB
    over what was recorded (tlb_table_invalidate), then the tables go to RCU."""
    tlb_flush_mmu_tlbonly(tlb)
    tlb.state.table_flush()


def tlb_flush_mmu(tlb: MMUGather) -> None:
    """tlb_flush_mmu(): flush, then free what the batches hold (tlb_flush_mmu_free: the
    table batch, then the queued pages; the model frees no memory, it empties them).
    tlb_flush_mmu_tlbonly() and tlb_table_flush() written out: the second tlbonly, in
    tlb_table_flush, finds the range just reset and does nothing."""
    g = tlb.state
    if g.needs_flush:                       # tlb_flush_mmu_tlbonly()
        tlb_flush(tlb)
        g.reset_range()
    g.table_flush()                         # tlb_table_flush()
    lru = tlb.mm.frames.lruvec
    if lru.timed:                           # free_zapped() does nothing untimed
        lru.free_zapped(tlb.cpu, g.nr_pages)
    g.batch_pages_flush()


def tlb_finish_mmu(tlb: MMUGather) -> None:
    """End the batch: nested batchers on the mm force a full flush that also reaches
    lazy CPUs; then the final flush and tlb_flush_pending--."""
    if tlb.finished:
        raise PysimError("tlb_finish_mmu called twice on one gather")
    tlb.finished = True
    mm, g = tlb.mm, tlb.state
    try:
        if mm.tlb_flush_pending > 1:
            g.fullmm = True
            g.reset_range()
            g.freed_tables = True
        tlb_flush_mmu(tlb)           # flushes only if something was recorded
    except BaseException:
        if tlb.own_window:
            tlb.cpu.stats.acct.abort()
        raise
    finally:
        mm.tlb_flush_pending -= 1
    if tlb.own_window:
        cpu = tlb.cpu
        tlb.result = cpu.stats.acct.close(OpResult, "mmu_gather", cpu.id, tlb.flushes,
                                          cpu.faults)
