"""Reclaim's unmap with a batched TLB flush (mm/rmap.c, mm/vmscan.c).

try_to_unmap(folio, TTU_BATCH_FLUSH) clears each PTE that maps the folio; when
should_defer_flush() says so (x86: another CPU is in mm_cpumask), it does not flush
there and then but records the page in the reclaiming task's tlbflush_unmap_batch
(set_tlb_ubc_flush_pending()): the architecture adds the mm to its half of the batch
(x86: tlb_gen bumped, mm_cpumask ORed into the batch cpumask; 6.15 with INVLPGB: an
asynchronous INVLPGB for a global-ASID mm instead), flush_required is set, the PTE's
dirty bit makes the batch `writable`, and mm->tlb_flush_batched counts one more pending
batch.  try_to_unmap_flush() then flushes once (arch_tlbbatch_flush()), before the
pages are freed; try_to_unmap_flush_dirty() flushes only a `writable` batch, before a
dirty folio is written out (shrink_folio_list(), so that no CPU writes the page through
a stale writable TLB entry while it is under I/O).  Without deferral the PTE goes by
ptep_clear_flush(): a flush of that page at once.

Until the batch is flushed a PTE is already none while TLBs may still map the page, so
a path that finds none and concludes "nothing to flush" would be wrong: mprotect and
munmap (change_pte_range, zap_pte_range) call flush_tlb_batched_pending(mm) first, which
flushes the whole mm (arch_flush_tlb_batched_pending(); x86 flush_tlb_mm) when the mm's
pending count differs from its flushed count, and records them equal.  Nothing else
records them equal, so the first mprotect or munmap after any batched reclaim of the mm
pays one flush_tlb_mm, as in the kernel.

The model's reclaim (reclaim_pages / shrink_folio_list): the folios come from
MADV_PAGEOUT (madvise_cold_or_pageout_pte_range(): one reclaim_pages() per page table)
or from the inactive list MADV_COLD filled (shrink_inactive_list(), reclaiming the cold
pages still unreferenced).  Anonymous pages are assumed to have swap; a page whose PTE
was dirty is written out (try_to_unmap_flush_dirty() before its pageout), a clean one
is freed at the end (try_to_unmap_flush()).  Folios mapped by more than one process
(after fork) and the zero page are skipped, as madvise_pageout() and the mapcount rules
skip them; one try_to_unmap() covers the one mapping the model knows.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Iterable, List, Tuple

import mmucore

from ..constants import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

TTU_BATCH_FLUSH = 0x20                      # enum ttu_flags (include/linux/rmap.h)
# mm->tlb_flush_batched: pending batches in the low bits, flushed ones above
TLB_FLUSH_BATCH_FLUSHED_SHIFT = 16
TLB_FLUSH_BATCH_PENDING_MASK = (1 << TLB_FLUSH_BATCH_FLUSHED_SHIFT) - 1
TLB_FLUSH_BATCH_PENDING_LARGE = TLB_FLUSH_BATCH_PENDING_MASK // 2


class TlbUnmapBatch:
    """struct tlbflush_unmap_batch (current->tlb_ubc): the arch's half (x86: the
    cpumask), whether a flush is needed, and whether a writable entry may be cached."""

    __slots__ = ("arch", "flush_required", "writable")

    def __init__(self, arch_batch: Any):
        self.arch = arch_batch
        self.flush_required = False
        self.writable = False

    def __repr__(self) -> str:
        return (f"TlbUnmapBatch(flush_required={self.flush_required}, "
                f"writable={self.writable})")


def tlb_ubc(cpu: "CPU") -> TlbUnmapBatch:
    """The batch of the task reclaiming on cpu (the model keeps one per CPU)."""
    b = cpu.tlb_ubc
    if b is None:
        b = cpu.tlb_ubc = TlbUnmapBatch(cpu.arch.new_tlbbatch())
    return b


def should_defer_flush(cpu: "CPU", mm: "MM", flags: int) -> bool:
    """should_defer_flush(): only with TTU_BATCH_FLUSH, and then as the arch says
    (arch_tlbbatch_should_defer())."""
    if not flags & TTU_BATCH_FLUSH:
        return False
    return cpu.arch.arch_tlbbatch_should_defer(cpu, mm)


def set_tlb_ubc_flush_pending(cpu: "CPU", mm: "MM", pteval: int, uaddr: int) -> None:
    """set_tlb_ubc_flush_pending(): add the cleared PTE's page to the batch (nothing for
    an entry no TLB can hold, !pte_accessible), count a pending batch on the mm."""
    if not pteval & mmucore.PTE_P:
        return
    b = tlb_ubc(cpu)
    cpu.arch.arch_tlbbatch_add_pending(cpu, b.arch, mm, uaddr)
    b.flush_required = True
    batch = mm.tlb_flush_batched
    if (batch & TLB_FLUSH_BATCH_PENDING_MASK) > TLB_FLUSH_BATCH_PENDING_LARGE:
        mm.tlb_flush_batched = 1            # reset pending/flushed to 1/0 before overflow
    else:
        mm.tlb_flush_batched = batch + 1
    if pteval & mmucore.PTE_D:
        b.writable = True


def try_to_unmap_one(cpu: "CPU", mm: "MM", va: int, flags: int) -> int:
    """try_to_unmap_one() for the 4K PTE at va: clear it, deferring the flush to the
    batch or flushing the page at once (ptep_clear_flush(): only if the entry was
    accessible); returns the old PTE (0: nothing was mapped)."""
    pteval, shift = mm.pt.get(va)
    if shift != PAGE_SHIFT or not pteval & mmucore.PTE_P:
        return 0
    mm.pt.set_pte(va, 0)
    if should_defer_flush(cpu, mm, flags):
        set_tlb_ubc_flush_pending(cpu, mm, pteval, va)
    else:
        cpu.arch.flush_tlb_mm_range(cpu, mm, va, va + PAGE_SIZE, PAGE_SHIFT, False)
    return pteval


def try_to_unmap_flush(cpu: "CPU") -> None:
    """try_to_unmap_flush(): flush the batch if it holds anything, and empty it."""
    b = tlb_ubc(cpu)
    if not b.flush_required:
        return
    cpu.arch.arch_tlbbatch_flush(cpu, b.arch)
    b.flush_required = False
    b.writable = False


def try_to_unmap_flush_dirty(cpu: "CPU") -> None:
    """try_to_unmap_flush_dirty(): flush only if a writable entry may be cached (a
    dirty folio is about to be written out)."""
    if tlb_ubc(cpu).writable:
        try_to_unmap_flush(cpu)


def flush_tlb_batched_pending(cpu: "CPU", mm: "MM") -> None:
    """flush_tlb_batched_pending(): if reclaim batched unmaps of mm since the last
    call, flush the whole mm (the arch's arch_flush_tlb_batched_pending()) and record
    the pending count as flushed."""
    batch = getattr(mm, "tlb_flush_batched", 0)
    pending = batch & TLB_FLUSH_BATCH_PENDING_MASK
    flushed = batch >> TLB_FLUSH_BATCH_FLUSHED_SHIFT
    if pending != flushed:
        cpu.arch.arch_flush_tlb_batched_pending(cpu, mm)
        mm.tlb_flush_batched = pending | (pending << TLB_FLUSH_BATCH_FLUSHED_SHIFT)


def reclaimable(mm: "MM", va: int, pteval: int) -> bool:
    """The page at va (PTE pteval) is one reclaim may take here: present, a normal page
    (not the zero page) and mapped by this process only."""
    if not pteval & mmucore.PTE_P:
        return False
    pfn = mmucore.pte_pfn(pteval)
    return pfn != mm.frames.zero_pfn and pfn not in mm.frames.shared


def shrink_folio_list(cpu: "CPU", folios: Iterable[Tuple["MM", int]]) -> int:
    """shrink_folio_list() over (mm, va) pages: each is unmapped with TTU_BATCH_FLUSH;
    an anonymous page whose PTE was dirty is written to swap, after
    try_to_unmap_flush_dirty(); the batch is flushed once at the end
    (try_to_unmap_flush()) before the pages are freed.  Returns the pages reclaimed."""
    done = 0
    for mm, va in folios:
        pteval = try_to_unmap_one(cpu, mm, va, TTU_BATCH_FLUSH)
        if not pteval:
            continue
        done += 1
        if pteval & mmucore.PTE_D and mm.frames.is_anon(mmucore.pte_pfn(pteval)):
            try_to_unmap_flush_dirty(cpu)   # before pageout() starts the swap write
    try_to_unmap_flush(cpu)
    return done


def deactivate(mm: "MM", vas: Iterable[int]) -> None:
    """MADV_COLD's folio_deactivate(): the pages go to the inactive list, where
    shrink_inactive_list() finds them."""
    inactive = mm.frames.lruvec.inactive
    ref = weakref.ref(mm)
    for va in vas:
        inactive.append((ref, va))


def shrink_inactive_list(cpu: "CPU", lruvec: Any, nr_to_scan: int = -1) -> int:
    """Reclaim from the inactive list (kswapd or direct reclaim on cpu): up to
    nr_to_scan pages (-1: all) still mapped as they were deactivated and not referenced
    since (PTE young again: folio_referenced() keeps it); one shrink_folio_list() batch.
    Returns the pages reclaimed."""
    taken: List[Tuple[Any, int]] = []
    while lruvec.inactive and (nr_to_scan < 0 or len(taken) < nr_to_scan):
        ref, va = lruvec.inactive.pop(0)
        mm = ref()
        if mm is None or mm.dead:
            continue
        pteval, shift = mm.pt.get(va)
        if shift != PAGE_SHIFT or not reclaimable(mm, va, pteval):
            continue
        if pteval & mmucore.PTE_A:
            continue                        # referenced again: activated, not reclaimed
        taken.append((mm, va))
    return shrink_folio_list(cpu, taken)
