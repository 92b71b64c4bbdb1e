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

The gather and these calls run in C (mmucore.mmu_gather, whose docstring says what it
reads of the CPU and the mm): this module re-exports them, keeps gather_batch_reserve,
and hands mmucore pysim's OpResult, ArgumentError and PysimError.  Every flush is the
architecture's hook, `cpu.arch.tlb_flush(tlb)`: replace that to change or drop flushes.
Outside an operation a batch opens the CPU's accounting window itself (tlb.own_window)
and tlb_finish_mmu() closes it into tlb.result, an OpResult.
"""
from mmucore.mmu_gather import (MMUGather, set_pysim, tlb_end_vma, tlb_finish_mmu,
                                tlb_flush, tlb_flush_mmu, tlb_flush_mmu_tlbonly,
                                tlb_flush_pmd_range, tlb_flush_pte_range, tlb_flush_pud_range,
                                tlb_gather_mmu, tlb_start_vma, tlb_table_flush)

from ..errors import ArgumentError, PysimError
from ..results import OpResult

__all__ = [
    "MMUGather", "gather_batch_reserve", "tlb_gather_mmu", "tlb_start_vma", "tlb_end_vma",
    "tlb_flush_pte_range", "tlb_flush_pmd_range", "tlb_flush_pud_range", "tlb_flush",
    "tlb_flush_mmu_tlbonly", "tlb_table_flush", "tlb_flush_mmu", "tlb_finish_mmu",
]


def gather_batch_reserve(profile) -> int:
    """Entries each page batch keeps free: 0 for kernels up to 6.8 (full when nr == max),
    1 from 6.9 (nr >= max - 1, room for a (page, nr_pages) pair): the profile's
    `mmu_gather_batch_reserve` (1 in v6.14 and later built-ins)."""
    return int(profile.mmu_gather_batch_reserve)


# mmucore.mmu_gather cannot import pysim: it is handed the classes it makes and raises
set_pysim(OpResult, ArgumentError, PysimError)
