"""Soft-dirty tracking and /proc/PID/clear_refs (fs/proc/task_mmu.c, x86 pgtable.h).

The soft-dirty bit (_PAGE_SOFT_DIRTY, x86 _PAGE_BIT_SOFTW3 = bit 11) is set by software
only: pte_mkdirty() sets it beside _PAGE_DIRTY, so every entry a fault path makes dirty
(a first write, a write-protect reuse or copy, a GUP write) is soft-dirty, while the
CPU's own D-bit updates on a writable entry never touch it.  New mappings (mmap, brk)
carry VM_SOFTDIRTY, which marks the whole VMA dirty until clear_refs clears it.

Writing "4" (CLEAR_REFS_SOFT_DIRTY) to clear_refs, as clear_refs_write() does under
mmap_write_lock: VM_SOFTDIRTY is cleared on every VMA (vma_set_page_prot() after it),
then clear_refs_pte_range() runs clear_soft_dirty() on every present PTE and
clear_soft_dirty_pmd() on every huge PMD (write-protect, clear the bit; no flush per
entry), and one flush_tlb_mm() of the whole mm ends the walk.  The next write to such a
page faults (do_wp_page: an exclusive anonymous page is reused, which sets the bit
again).  Values 1-3 (CLEAR_REFS_ALL, _ANON, _MAPPED) clear the accessed bit of the
chosen pages with no flush (ptep_test_and_clear_young(), as the kernel does for them);
5 (CLEAR_REFS_MM_HIWATER_RSS) resets a peak the model does not keep.

Not modelled: pinned pages (pte_is_pinned() keeps them writable), swap entries, the
user shadow stack's SAVED_DIRTY move in pte_wrprotect(), and write-notify for shared
writable mappings (as in mprotect, the model keeps their page protection).
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np

import mmucore
from mmucore.stats import B_PTE

from ..constants import (CLEAR_REFS_ALL, CLEAR_REFS_ANON, CLEAR_REFS_MAPPED,
                         CLEAR_REFS_MM_HIWATER_RSS, CLEAR_REFS_SOFT_DIRTY, PAGE_SHIFT,
                         PAGE_SIZE, PMD_SIZE, TLB_FLUSH_ALL, VM_PFNMAP, VM_SOFTDIRTY)
from ..errors import SyscallError

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM
    from .vma import VMA

__all__ = ["clear_refs_write", "SOFT_DIRTY"]

SOFT_DIRTY = mmucore.PTE_SOFT_DIRTY
_PRESENT = mmucore.PTE_P | mmucore.PTE_PROTNONE


def clear_refs_write(mm: "MM", cpu: "CPU", value: int) -> int:
    """clear_refs_write(): the effect of writing `value` to /proc/PID/clear_refs;
    returns 0.  EINVAL for a value outside CLEAR_REFS_ALL..CLEAR_REFS_MM_HIWATER_RSS."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not CLEAR_REFS_ALL <= value <= CLEAR_REFS_MM_HIWATER_RSS:
        raise SyscallError(errno.EINVAL, f"clear_refs: {value!r} is not a clear_refs type "
                                         f"({CLEAR_REFS_ALL}..{CLEAR_REFS_MM_HIWATER_RSS})")
    if value == CLEAR_REFS_MM_HIWATER_RSS:
        return 0                                    # reset_mm_hiwater_rss(): no RSS peak
    soft_dirty = value == CLEAR_REFS_SOFT_DIRTY
    if soft_dirty:
        for vma in mm.vmas:
            if vma.flags & VM_SOFTDIRTY:
                vma.flags &= ~VM_SOFTDIRTY
                vma.page_prot = mm.vmas.page_prot_fn(vma)     # vma_set_page_prot()
    cost = cpu.cfg.cost
    nent = ntables = 0
    for vma in mm.vmas.vmas():
        if vma.flags & VM_PFNMAP:                   # clear_refs_test_walk()
            continue
        if value == CLEAR_REFS_ANON and not vma.anon or \
                value == CLEAR_REFS_MAPPED and vma.anon:
            continue
        a, b = _walk_vma(mm, vma, soft_dirty)
        nent += a
        ntables += b
    cpu.stats.charge(B_PTE, nent * cost.per_pte + ntables * cost.per_pmd_table)
    if soft_dirty:
        # flush_tlb_mm(mm): flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, 0, true)
        cpu.arch.flush_tlb_mm_range(cpu, mm, 0, TLB_FLUSH_ALL, PAGE_SHIFT, True)
    return 0


def _walk_vma(mm: "MM", vma: "VMA", soft_dirty: bool) -> tuple:
    """clear_refs_pte_range() over one VMA: each huge PMD and each present PTE
    write-protected with its soft-dirty bit cleared (soft_dirty), or made old.
    Returns (entries visited, page tables locked)."""
    pt = mm.pt
    clear = (mmucore.PTE_RW | SOFT_DIRTY) if soft_dirty else mmucore.PTE_A
    nent = ntables = 0
    h = vma.start & ~(PMD_SIZE - 1)
    while h < vma.end:
        s, e = max(h, vma.start), min(h + PMD_SIZE, vma.end)
        h += PMD_SIZE
        if pt.upper_entries(s)[2] == 0:
            continue                                # no PMD entry: nothing mapped here
        ntables += 1
        entry, shift = pt.get(s)
        if shift == 21:
            if entry & _PRESENT:                    # clear_soft_dirty_pmd()
                pt.set_pmd(s & ~(PMD_SIZE - 1), entry & ~clear)
                nent += 1
            continue
        n = (e - s) // PAGE_SIZE
        entries = pt.read_range(s, n)
        idx = np.nonzero((entries & np.uint64(_PRESENT)) != 0)[0]
        nent += idx.size
        for i in idx[(entries[idx] & np.uint64(clear)) != 0].tolist():
            pt.set_pte(s + i * PAGE_SIZE, int(entries[i]) & ~clear)   # clear_soft_dirty()
    return nent, ntables
