"""mprotect (mm/mprotect.c) before and after "mm/mprotect: avoid unnecessary TLB flushes".

Before (5.17, profile "mmots"): every VMA portion flushes its whole range if it holds a
present entry, changed or not, and each THP change flushes at once in pmdp_invalidate().
After (5.19, "patched"): one mmu_gather per syscall; patch 1 records every present entry,
patch 2 only those pte_needs_flush() flags, patch 3 drops the immediate THP flush; x86
flushes once at tlb_finish_mmu() over [lowest, highest) across all VMAs.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import numpy as np

import mmucore
from mmucore.stats import B_PTE, B_VMA, K_VMA_MERGE, K_VMA_SPLIT

from ..constants import (ARCH_MAX_PKEY, PAGE_SIZE, PMD_SIZE, PROT_EXEC, PROT_GROWSDOWN,
                         PROT_GROWSUP, PROT_READ, PROT_SEM, PROT_WRITE, TASK_SIZE,
                         VM_ACCESS_FLAGS, VM_HUGETLB, VM_SEALED, VM_SHARED, VM_SOFTDIRTY,
                         VM_WRITE)
from ..errors import SyscallError
from .args import syscall_ints
from ..arch.tlbflush import flush_tlb_range
from .mmu_gather import MMUGather, tlb_end_vma, tlb_finish_mmu, tlb_gather_mmu
from .rmap import flush_tlb_batched_pending
from .vma import mprotect_newflags

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM
    from .vma import VMA

_PROT_KNOWN = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM
_SCANNED = np.zeros(2, dtype=np.uint64)    # change_range's empty-slot and write-check counts


def change_mode(cpu: "CPU", vma: "VMA", gathering: bool) -> int:
    """The per-entry rule the profile's change_pte_range applies (mmucore CP_* bits):
    under a gather, the profile's flush rule (cpu.cp_gather_mode: the arch's
    pte_needs_flush mode with patch 2, else every present entry), and the profile's
    write-upgrade bits (cpu.cp_writable_mode) for a VMA that takes them."""
    mode = cpu.cp_gather_mode if gathering else 0
    # vma_wants_manual_pte_write_upgrade(): a private writable VMA, anonymous or file;
    # the per-entry test (can_change_pte_writable) then takes only anonymous frames.
    # Shared VMAs would need write-notify, which the model does not do.  After
    # clear_refs (VM_SOFTDIRTY clear) can_change_pte_writable() refuses entries that
    # are not soft-dirty; the model, without that per-entry test, upgrades none there
    # (a later write faults and reuses the page: a fault more, never a missed bit).
    if cpu.cp_writable_mode and \
            vma.flags & (VM_WRITE | VM_SHARED | VM_SOFTDIRTY) == VM_WRITE | VM_SOFTDIRTY:
        mode |= cpu.cp_writable_mode
    return mode


def change_cost(cpu: "CPU", pages: int, nthp: int, tables: int, nnone: int = 0,
                nwrcheck: int = 0, first: bool = True) -> float:
    """Kernel cycles of one change_protection() portion: the VMA setup (per_vma for the
    call's first VMA, per_extra_vma for each further one), each PTE table's lock/map
    section, each present 4K entry, each empty slot the loop scans, each write-upgrade
    check (can_change_pte_writable, 6.0+), and each huge PMD (change_huge_pmd: the PMD
    lock, pmdp_invalidate_ad's exchange and the new entry; one entry, not 512)."""
    c = cpu.cfg.cost
    n4k = pages - 512 * nthp
    return ((c.per_vma if first else c.per_extra_vma) + n4k * c.per_pte
            + tables * c.per_pmd_table + nthp * c.change_huge_pmd
            + nnone * c.per_pte_none + nwrcheck * c.can_change_pte_writable)


def change_protection(cpu: "CPU", mm: "MM", vma: "VMA", start: int, end: int,
                      newprot: int, tlb: Optional[MMUGather], extra_mode: int = 0,
                      first: bool = True) -> int:
    """change_protection() over [start, end) of vma; returns the kernel's `pages`.

    With tlb (patched) entries are recorded in the gather; without it (mmots) the
    portion flushes itself.  Split and (unless patch 3) THP changes flush at once.
    `first` says whether this is the call's first VMA (its setup cost is per_vma,
    a further VMA's per_extra_vma).
    """
    npages = (end - start) // PAGE_SIZE
    if mm.tlb_flush_batched:
        # change_pte_range(): a PTE reclaim cleared may still be cached (pysim.mm.rmap);
        # the kernel checks per PTE table, the first check settles the count
        flush_tlb_batched_pending(cpu, mm)
    mode = change_mode(cpu, vma, tlb is not None) | extra_mode
    if mm.cow_shared:
        # After fork the core cannot tell which anonymous frames are exclusive again
        # (PageAnonExclusive): it upgrades none of this mm's entries rather than one
        # still shared with another mm (which would let both write the same frame).
        mode &= ~(mmucore.CP_TRY_WRITABLE | mmucore.CP_WRITABLE_NEEDS_DIRTY)
    # (tlb_start_vma(tlb, vma) would go here: it does nothing, flush_cache_range being a
    # no-op on x86 and arm64)
    scanned = _SCANNED              # (the model is single-threaded: one buffer serves)
    pages, changed, flagged, thps, splits, tables = mm.pt.change_range(
        start, npages, newprot, mode, tlb.state if tlb is not None else None,
        mm.frames.zero_pfn, scanned)
    nthp = len(thps)
    # change_cost(cpu, pages, nthp, tables, scanned[0], scanned[1], first), inline
    nnone, nwrcheck = scanned.tolist()
    c = cpu.cfg.cost
    cpu.stats.charge(B_PTE, (c.per_vma if first else c.per_extra_vma)
                     + (pages - 512 * nthp) * c.per_pte + tables * c.per_pmd_table
                     + nthp * c.change_huge_pmd + nnone * c.per_pte_none
                     + nwrcheck * c.can_change_pte_writable)
    arch = cpu.arch
    if len(splits):              # (iterating an empty numpy array is not free)
        for addr in splits.tolist():
            # __split_huge_pmd -> pmdp_invalidate(): flush_pmd_tlb_range() at once
            arch.flush_pmd_tlb_range(cpu, mm, addr, addr + PMD_SIZE)
    # change_huge_pmd(): 5.17's pmdp_invalidate() flushes at once; from 5.19 (patch 3)
    # pmdp_invalidate_ad(), which does not on an arch defining it (x86) and is
    # pmdp_invalidate() on one that does not (arm64)
    if nthp and (tlb is None or not (cpu.cfg.profile.huge_pmd_ad_no_flush
                                     and arch.has_pmdp_invalidate_ad)):
        for addr in thps.tolist():
            arch.flush_pmd_tlb_range(cpu, mm, addr, addr + PMD_SIZE)
    if tlb is None:
        if pages:
            flush_tlb_range(cpu, mm, start, end)
    else:
        tlb_end_vma(tlb, vma)
    return pages


def do_mprotect_pkey(mm: "MM", cpu: "CPU", start: int, length: int, prot: int,
                     pkey: int = -1) -> int:
    """sys_mprotect / sys_pkey_mprotect; returns 0 or raises SyscallError (EINVAL, ENOMEM,
    EACCES) after keeping whatever it changed before the error, as the kernel does."""
    if type(start) is not int or type(length) is not int or type(prot) is not int \
            or type(pkey) is not int:
        start, length, prot, pkey = syscall_ints("mprotect", ("start", "length", "prot",
                                                              "pkey"), start, length, prot, pkey)
    if start & (PAGE_SIZE - 1) or start < 0 or length <= 0 or prot & ~_PROT_KNOWN \
            or start + length > TASK_SIZE:
        # not the plain case: check in the kernel's order, for its errno
        grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
        prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
        if grows == (PROT_GROWSDOWN | PROT_GROWSUP):
            raise SyscallError(errno.EINVAL,
                               "mprotect: PROT_GROWSDOWN and PROT_GROWSUP together")
        if start % PAGE_SIZE:
            raise SyscallError(errno.EINVAL,
                               f"mprotect: start 0x{start:x} is not page aligned")
        if start < 0 or length < 0:
            raise SyscallError(errno.EINVAL if start < 0 else errno.ENOMEM,
                               f"mprotect: negative {'start' if start < 0 else 'length'}")
        if length == 0:
            return 0
        length = -(-length // PAGE_SIZE) * PAGE_SIZE
        if start + length >= 1 << 64:
            raise SyscallError(errno.ENOMEM, "mprotect: the range wraps around")
        if prot & ~_PROT_KNOWN:
            raise SyscallError(errno.EINVAL,
                               f"mprotect: unknown prot bits 0x{prot & ~_PROT_KNOWN:x}")
        if grows:
            raise SyscallError(errno.EINVAL, "mprotect: PROT_GROWSDOWN/UP need a stack VMA "
                                             "(not modelled)")
        # past TASK_SIZE there is no VMA: the mapped part changes, then ENOMEM at the
        # hole, as do_mprotect_pkey()'s walk leaves it (it has no TASK_SIZE check)
    if pkey != -1 and not (0 <= pkey < ARCH_MAX_PKEY and mm.pkey_allocation_map >> pkey & 1):
        # mm_pkey_is_allocated(): a key outside the 16 x86 has, or one never allocated
        raise SyscallError(errno.EINVAL, f"pkey_mprotect: pkey {pkey} is not allocated")
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    end = start + length
    cpu.stats.charge(B_PTE, cpu.cfg.cost.mprotect_base)
    vma = mm.vmas.find_vma(start)
    if vma is None or vma.start > start:
        raise SyscallError(errno.ENOMEM, f"mprotect: 0x{start:x} is not mapped")
    # vma_merge() finds the neighbours from the list; prev is only its parity check
    prev = vma if start > vma.start else None
    tlb = tlb_gather_mmu(cpu, mm) if cpu.cfg.profile.use_mmu_gather else None
    error: Optional[SyscallError] = None
    nstart = start
    first = True                 # no VMA changed yet (per_vma, then per_extra_vma)
    try:
        while True:
            newflags = mprotect_newflags(vma.flags, prot, pkey)
            # VM_MAY* are VM_* << 4: asking for a permission the mapping may never have
            if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
                error = SyscallError(errno.EACCES,
                                     f"mprotect: {vma!r} may not get prot 0x{prot:x}")
                break
            if vma.flags & VM_SEALED and newflags != vma.flags:
                error = SyscallError(errno.EPERM, f"mprotect: {vma!r} is sealed")
                break
            tmp = vma.end if vma.end < end else end         # min(vma.end, end)
            if vma.flags & VM_HUGETLB and newflags != vma.flags and \
                    ((nstart > vma.start and nstart % PMD_SIZE)
                     or (tmp < vma.end and tmp % PMD_SIZE)):
                error = SyscallError(errno.EINVAL, f"mprotect: splits hugetlb {vma!r} off "
                                                   f"a 2 MiB boundary")
                break
            changes = newflags != vma.flags
            prev = mprotect_fixup(mm, cpu, tlb, vma, prev, nstart, tmp, newflags, first)
            first = first and not changes
            nstart = tmp
            if nstart < prev.end:
                nstart = prev.end
            if nstart >= end:
                break
            vma = mm.vmas.find_vma(nstart)
            if vma is None or vma.start != nstart:
                error = SyscallError(errno.ENOMEM,
                                     f"mprotect: range [0x{start:x}, 0x{end:x}) has a hole "
                                     f"at 0x{nstart:x}")
                break
    finally:
        if tlb is not None:
            tlb_finish_mmu(tlb)
    if error is not None:
        raise error
    return 0


def mprotect_fixup(mm: "MM", cpu: "CPU", tlb: Optional[MMUGather], vma: "VMA",
                   prev: Optional["VMA"], start: int, end: int, newflags: int,
                   first: bool = True) -> "VMA":
    """mprotect_fixup(): merge or split (metadata only), then change_protection when the
    flags really changed (`first`: no VMA of this call changed before).  Returns the
    VMA now covering [start, end)."""
    if newflags == vma.flags:
        return vma
    vmas = mm.vmas
    count0 = vmas.map_count
    vma = vmas.mprotect_fixup(vma, prev, start, end, newflags)
    delta = vmas.map_count - count0
    if delta > 0:
        cpu.stats.count(K_VMA_SPLIT, delta)
        cpu.stats.charge(B_VMA, delta * cpu.cfg.cost.vma_split)
    elif delta < 0:
        cpu.stats.count(K_VMA_MERGE, -delta)
        cpu.stats.charge(B_VMA, -delta * cpu.cfg.cost.vma_merge)
    change_protection(cpu, mm, vma, start, end, vma.page_prot, tlb, 0, first)
    return vma
