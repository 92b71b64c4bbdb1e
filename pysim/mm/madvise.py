"""madvise and process_madvise (mm/madvise.c): DONTNEED, DONTNEED_LOCKED and REMOVE
(zap), FREE and COLD (A/D clears), PAGEOUT (reclaim), WILLNEED (no page-table effect),
the vm_flags advice (NORMAL, RANDOM, SEQUENTIAL, DONTFORK/DOFORK, WIPEONFORK/KEEPONFORK,
DONTDUMP/DODUMP, MERGEABLE/UNMERGEABLE with KSM, HUGEPAGE/NOHUGEPAGE) with VMA split
and merge, GUARD_INSTALL/GUARD_REMOVE, POPULATE_READ and POPULATE_WRITE."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

from mmucore.stats import B_PTE

import numpy as np

import mmucore

from ..constants import (
    MADV_COLD, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK, MADV_DONTNEED,
    MADV_DONTNEED_LOCKED, MADV_FREE, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_HUGEPAGE,
    MADV_KEEPONFORK, MADV_MERGEABLE, MADV_NOHUGEPAGE, MADV_NORMAL, MADV_PAGEOUT,
    MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_RANDOM, MADV_REMOVE, MADV_SEQUENTIAL,
    MADV_UNMERGEABLE, MADV_WILLNEED, MADV_WIPEONFORK, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, TLB_FLUSH_ALL,
    UIO_MAXIOV, VM_DONTCOPY, VM_DONTDUMP, VM_DROPPABLE, VM_HUGEPAGE, VM_HUGETLB, VM_IO,
    VM_LOCKED, VM_MAYSHARE, VM_MAYWRITE, VM_MERGEABLE, VM_NOHUGEPAGE, VM_PFNMAP,
    VM_RAND_READ, VM_READ, VM_SEALED, VM_SEQ_READ, VM_SHARED, VM_SPECIAL, VM_WIPEONFORK,
    VM_WRITE)
from ..arch.tlbflush import flush_tlb_range
from ..errors import SyscallError
from .args import syscall_ints
from .memory import file_eof, populate, unmap_page_range
from .mmu_gather import MMUGather, tlb_finish_mmu, tlb_gather_mmu
from .rmap import deactivate, reclaimable, shrink_folio_list

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

def madvise_populate(mm: "MM", cpu: "CPU", start: int, end: int, pieces: list,
                     write: bool) -> None:
    """madvise_populate(): fault the range in, in address order, and stop at the first
    problem with what it found there: a hole (or the end of the mappings before `end`)
    is ENOMEM ("no VMA"), a VMA without the permission the access needs is EINVAL
    (check_vma_flags() without FOLL_FORCE wants VM_WRITE for a write and VM_READ for a
    read), and a guard page or a page past a file's end is EFAULT (VM_FAULT_SIGSEGV /
    VM_FAULT_SIGBUS).  What lies before it stays populated."""
    addr = start
    for s, e, v in pieces:
        if s > addr:
            raise SyscallError(errno.ENOMEM, f"madvise: no mapping at 0x{addr:x}")
        if v.flags & (VM_IO | VM_PFNMAP) or not v.flags & (VM_WRITE if write else VM_READ):
            raise SyscallError(errno.EINVAL, f"madvise: {v!r} does not permit "
                                             f"{'writes' if write else 'reads'}")
        stop = min(e, file_eof(v))
        if mm.guard_pages:
            g = [a for a in mm.guard_pages if s <= a < stop]
            if g:
                stop = min(g)
        populate(mm, cpu, s, stop, write=write)
        if stop < e:
            raise SyscallError(errno.EFAULT, f"madvise: 0x{stop:x} is a guard page or past "
                                             f"the end of the file")
        addr = e
    if addr < end:
        raise SyscallError(errno.ENOMEM, f"madvise: no mapping at 0x{addr:x}")


_MADV_KNOWN = frozenset({
    MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED, MADV_FREE,
    MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_MERGEABLE, MADV_UNMERGEABLE,
    MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTDUMP, MADV_DODUMP, MADV_WIPEONFORK,
    MADV_KEEPONFORK, MADV_COLD, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
    MADV_DONTNEED_LOCKED, MADV_GUARD_INSTALL, MADV_GUARD_REMOVE})
# is_madv_discard(): the advice a sealed read-only anonymous VMA refuses (EPERM)
_MADV_DISCARD = frozenset({MADV_FREE, MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_REMOVE,
                           MADV_DONTFORK, MADV_WIPEONFORK, MADV_GUARD_INSTALL})
_MADV_FLAG_ADVICE = frozenset({MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTFORK,
                               MADV_DOFORK, MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTDUMP,
                               MADV_DODUMP, MADV_MERGEABLE, MADV_UNMERGEABLE,
                               MADV_HUGEPAGE, MADV_NOHUGEPAGE})


def do_madvise(mm: "MM", cpu: "CPU", start: int, length: int, advice: int) -> int:
    """madvise() (mm/madvise.c do_madvise): validate, then apply the advice to every
    mapped part of the range in address order (madvise_walk_vmas).  A hole is skipped
    and reported as ENOMEM at the end, after the rest was advised; an error a VMA
    gives stops the walk there, keeping what was done before.  There is no TASK_SIZE
    check: a range past it is a hole like any other."""
    if type(start) is not int or type(length) is not int or type(advice) is not int:
        start, length, advice = syscall_ints("madvise", ("start", "length", "advice"),
                                             start, length, advice)
    end = madvise_range(start, length, advice)
    if end == start:
        return 0
    cpu.stats.charge(B_PTE, cpu.cfg.cost.madvise_base)
    madvise_do_behavior(mm, cpu, start, end, advice)
    return 0


def madvise_range(start: int, length: int, advice: int) -> int:
    """is_valid_madvise() and the length rounding of do_madvise(): the range's end,
    or SyscallError(EINVAL) for an unknown advice, an unaligned start or a range that
    wraps around the 64-bit address space."""
    if advice not in _MADV_KNOWN:
        raise SyscallError(errno.EINVAL, f"madvise: advice {advice} is unknown or not "
                                         f"modelled")
    if start % PAGE_SIZE or start < 0:
        raise SyscallError(errno.EINVAL, f"madvise: 0x{start:x} is not page aligned")
    if length < 0:
        raise SyscallError(errno.EINVAL, "madvise: negative length")
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    end = start + length
    if end >= 1 << 64:
        raise SyscallError(errno.EINVAL, "madvise: the range wraps around")
    return end


def madvise_do_behavior(mm: "MM", cpu: "CPU", start: int, end: int, advice: int,
                        tlb: Optional[MMUGather] = None) -> None:
    """madvise_do_behavior(): populate on its own path, every other advice through the
    VMA walk.  `tlb`, if given, is the one gather process_madvise() shares across its
    iovec; plain madvise gathers per VMA, as every built-in profile's kernel does."""
    if advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        pieces = [(max(v.start, start), min(v.end, end), v)
                  for v in mm.vmas.vmas_in(start, end)]
        madvise_populate(mm, cpu, start, end, pieces, advice == MADV_POPULATE_WRITE)
        return
    hole = None
    addr = start
    while addr < end:
        v = mm.vmas.find_vma(addr)
        if v is None or v.start >= end:
            hole = addr if hole is None else hole
            break
        if v.start > addr:
            hole = addr if hole is None else hole
            addr = v.start
        e = v.end if v.end < end else end                 # min(v.end, end)
        after = madvise_vma_behavior(mm, cpu, v, addr, e, advice, tlb)
        addr = e if e >= after else after                 # max(e, after)
    if hole is not None:
        raise SyscallError(errno.ENOMEM, f"madvise: [0x{start:x}, 0x{end:x}) has a hole "
                                         f"at 0x{hole:x}")


def _is_ro_anon(vma: "VMA") -> bool:
    """is_ro_anon() (mm/mseal.c): private anonymous memory that is not writable."""
    return vma.file is None and not vma.shared and not vma.flags & VM_WRITE


def madvise_vma_behavior(mm: "MM", cpu: "CPU", vma: "VMA", s: int, e: int, advice: int,
                         tlb: Optional[MMUGather]) -> int:
    """madvise_vma_behavior() on [s, e) of vma; returns the end of the VMA now covering
    the range (a merge may take it past e)."""
    if vma.flags & VM_SEALED and advice in _MADV_DISCARD and _is_ro_anon(vma):
        raise SyscallError(errno.EPERM, f"madvise: {vma!r} is sealed")
    if advice in _MADV_FLAG_ADVICE:
        return _madvise_update_flags(mm, vma, s, e, advice)
    if advice == MADV_WILLNEED:
        return e                     # readahead / swap-in: no page-table change
    if advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_FREE):
        forbidden = VM_PFNMAP | (0 if advice == MADV_DONTNEED_LOCKED else VM_LOCKED)
        if vma.flags & forbidden:
            raise SyscallError(errno.EINVAL, f"madvise: {vma!r} is locked or PFN-mapped")
        if advice == MADV_FREE and (not vma.anon or vma.shared or vma.flags & VM_HUGETLB):
            raise SyscallError(errno.EINVAL, "madvise: MADV_FREE needs private anonymous "
                               "memory")
    elif advice in (MADV_COLD, MADV_PAGEOUT):
        if vma.flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):       # can_madv_lru_vma()
            raise SyscallError(errno.EINVAL, f"madvise: {vma!r} is locked, PFN-mapped or "
                                             f"hugetlb")
    elif advice == MADV_REMOVE:
        if vma.flags & VM_LOCKED:
            raise SyscallError(errno.EINVAL, "madvise: MADV_REMOVE on locked memory")
        if vma.file is None and not vma.shared:
            raise SyscallError(errno.EINVAL, "madvise: MADV_REMOVE needs a file or shmem")
        if vma.flags & (VM_SHARED | VM_MAYWRITE) != VM_SHARED | VM_MAYWRITE:
            raise SyscallError(errno.EACCES, "madvise: MADV_REMOVE needs a shared "
                                             "writable mapping")
    elif advice == MADV_GUARD_INSTALL:
        return madvise_guard_install(mm, cpu, vma, s, e)
    elif advice == MADV_GUARD_REMOVE:
        return madvise_guard_remove(mm, vma, s, e)
    own = tlb is None
    g = tlb_gather_mmu(cpu, mm) if own else tlb
    try:
        if advice in (MADV_DONTNEED, MADV_DONTNEED_LOCKED, MADV_REMOVE):
            unmap_page_range(g, s, e)
        elif advice == MADV_PAGEOUT:
            madvise_pageout(mm, cpu, s, e)
        else:
            _, _, splits = mm.pt.clear_young_dirty(s, (e - s) // PAGE_SIZE, g.state,
                                                   advice == MADV_FREE)
            for a in splits:
                flush_tlb_range(cpu, mm, a, a + PMD_SIZE)
            if advice == MADV_COLD:
                _deactivate_range(mm, s, e)
    finally:
        if own:
            tlb_finish_mmu(g)
    return e


def _madvise_update_flags(mm: "MM", vma: "VMA", s: int, e: int, advice: int) -> int:
    """The vm_flags advice: the new flags, then madvise_update_vma() (merge with a
    neighbour when the flags become equal, else split at the range ends; a split
    refused for map_count is EAGAIN, as madvise reports ENOMEM from here)."""
    f = vma.flags
    if advice == MADV_NORMAL:
        new = f & ~(VM_RAND_READ | VM_SEQ_READ)
    elif advice == MADV_RANDOM:
        new = (f & ~VM_SEQ_READ) | VM_RAND_READ
    elif advice == MADV_SEQUENTIAL:
        new = (f & ~VM_RAND_READ) | VM_SEQ_READ
    elif advice == MADV_DONTFORK:
        new = f | VM_DONTCOPY
    elif advice == MADV_DOFORK:
        if f & VM_IO:
            raise SyscallError(errno.EINVAL, "madvise: MADV_DOFORK on VM_IO memory")
        new = f & ~VM_DONTCOPY
    elif advice == MADV_WIPEONFORK:
        if vma.file is not None or vma.shared:
            raise SyscallError(errno.EINVAL, "madvise: MADV_WIPEONFORK needs private "
                                             "anonymous memory")
        new = f | VM_WIPEONFORK
    elif advice == MADV_KEEPONFORK:
        if f & VM_DROPPABLE:
            raise SyscallError(errno.EINVAL, "madvise: MADV_KEEPONFORK on droppable memory")
        new = f & ~VM_WIPEONFORK
    elif advice == MADV_DONTDUMP:
        new = f | VM_DONTDUMP
    elif advice == MADV_DODUMP:
        if (not f & VM_HUGETLB and f & VM_SPECIAL) or f & VM_DROPPABLE:
            raise SyscallError(errno.EINVAL, "madvise: MADV_DODUMP on special memory")
        new = f & ~VM_DONTDUMP
    elif advice == MADV_MERGEABLE:
        # ksm_madvise(): memory KSM cannot merge keeps its flags, without an error
        if f & (VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_SPECIAL | VM_HUGETLB
                | VM_DROPPABLE):
            return e
        new = f | VM_MERGEABLE
    elif advice == MADV_UNMERGEABLE:
        new = f & ~VM_MERGEABLE
    elif advice == MADV_HUGEPAGE:
        new = (f | VM_HUGEPAGE) & ~VM_NOHUGEPAGE
    else:                                               # MADV_NOHUGEPAGE
        new = (f | VM_NOHUGEPAGE) & ~VM_HUGEPAGE
    if new == f:
        return e
    prev = vma if s > vma.start else mm.vmas.find_vma_prev(s)[1]
    try:
        vma = mm.vmas.vma_modify_flags(vma, prev, s, e, new)
    except SyscallError as err:
        if err.errno == errno.ENOMEM:
            raise SyscallError(errno.EAGAIN, f"madvise: {err.strerror}") from None
        raise
    return vma.end


def _deactivate_range(mm: "MM", s: int, e: int) -> None:
    """MADV_COLD's deactivation: the 4K pages of [s, e) reclaim could take go to the
    inactive list (pysim.mm.rmap.shrink_inactive_list reclaims them later)."""
    entries = mm.pt.read_range(s, (e - s) // PAGE_SIZE)
    vas = [s + i * PAGE_SIZE
           for i in np.nonzero(entries & np.uint64(mmucore.PTE_P))[0].tolist()
           if reclaimable(mm, s + i * PAGE_SIZE, int(entries[i]))]
    if vas:
        deactivate(mm, vas)


def madvise_pageout(mm: "MM", cpu: "CPU", s: int, e: int) -> None:
    """madvise_pageout() -> reclaim_pages(): per page table (one call of
    madvise_cold_or_pageout_pte_range()) the pages mapped only here go through
    shrink_folio_list(): try_to_unmap with TTU_BATCH_FLUSH, then one batched flush
    (pysim.mm.rmap: arch_tlbbatch_flush(), or a flush per page when no other CPU is in
    mm_cpumask; a dirty anonymous page flushes the batch before its swap write).  The
    zero page and pages another process still shares after fork stay; a THP the range
    cuts is split first (its flush as __split_huge_pmd's), one it covers goes whole
    with one flush_tlb_mm_range (the model does not split it for try_to_unmap)."""
    pt, frames = mm.pt, mm.frames
    for chunk in range(s & ~(PMD_SIZE - 1), e, PMD_SIZE):
        cs, ce = max(chunk, s), min(chunk + PMD_SIZE, e)
        entry, shift = pt.get(cs)
        cleared = False
        if shift == 21:
            if cs == chunk and ce == chunk + PMD_SIZE:
                if mmucore.pmd_pfn(entry) not in frames.shared:
                    pt.set_pmd(chunk, 0)
                    cleared = True
                if cleared:
                    cpu.arch.flush_tlb_mm_range(cpu, mm, 0, TLB_FLUSH_ALL, PAGE_SHIFT, False)
                continue
            pt.split_huge_pmd(chunk)
            flush_tlb_range(cpu, mm, chunk, chunk + PMD_SIZE)
        n = (ce - cs) // PAGE_SIZE
        entries = pt.read_range(cs, n)
        folios = [(mm, cs + i * PAGE_SIZE)
                  for i in np.nonzero(entries & np.uint64(mmucore.PTE_P))[0].tolist()
                  if reclaimable(mm, cs + i * PAGE_SIZE, int(entries[i]))]
        if folios:
            shrink_folio_list(cpu, folios)


def madvise_guard_install(mm: "MM", cpu: "CPU", vma: "VMA", s: int, e: int) -> int:
    """madvise_guard_install() (6.13): PTE_MARKER_GUARD in every page of [s, e) of a
    writable-capable anonymous VMA that is not locked, special or hugetlb (else EINVAL);
    present pages are zapped first (zap_page_range_single(), its own gather and flush).
    An access to a guard page is a SIGSEGV; munmap removes the markers."""
    if vma.file is not None or vma.shared or \
            vma.flags & (VM_MAYWRITE | VM_SPECIAL | VM_HUGETLB | VM_LOCKED) != VM_MAYWRITE:
        raise SyscallError(errno.EINVAL, f"madvise: no guard pages in {vma!r}")
    n = (e - s) // PAGE_SIZE
    entries = mm.pt.read_range(s, n)
    if np.any(entries & np.uint64(mmucore.PTE_P | mmucore.PTE_PROTNONE)):
        with tlb_gather_mmu(cpu, mm) as g:
            unmap_page_range(g, s, e)
    mm.guard_pages.update(range(s, e, PAGE_SIZE))
    return e


def madvise_guard_remove(mm: "MM", vma: "VMA", s: int, e: int) -> int:
    """madvise_guard_remove(): clear the guard markers in [s, e) (locked VMAs too)."""
    if vma.file is not None or vma.shared or vma.flags & (VM_SPECIAL | VM_HUGETLB):
        raise SyscallError(errno.EINVAL, f"madvise: no guard pages in {vma!r}")
    if mm.guard_pages:
        mm.guard_pages.difference_update(range(s, e, PAGE_SIZE))
    return e


def do_process_madvise(mm: "MM", cpu: "CPU", iovec: list, advice: int,
                       flags: int = 0) -> int:
    """process_madvise() on the caller's own mm (vector_madvise(), 6.13+: any advice):
    each (addr, len) in order under one mmap_lock and one mmu_gather; returns the
    bytes advised, or the first element's error if none was.  An element that fails
    stops the loop; what the earlier ones did stays."""
    (flags,) = syscall_ints("process_madvise", ("flags",), flags)
    if flags:
        raise SyscallError(errno.EINVAL, f"process_madvise: flags 0x{flags:x} must be 0")
    if not isinstance(iovec, (list, tuple)) or len(iovec) > UIO_MAXIOV:
        raise SyscallError(errno.EINVAL, "process_madvise: iovec must be a list of at most "
                                         f"{UIO_MAXIOV} (addr, len) pairs")
    vec = []
    for el in iovec:
        if not isinstance(el, (list, tuple)) or len(el) != 2:
            raise SyscallError(errno.EFAULT, f"process_madvise: bad iovec element {el!r}")
        vec.append(syscall_ints("process_madvise", ("iov_base", "iov_len"), *el))
    (advice,) = syscall_ints("process_madvise", ("advice",), advice)
    if advice not in _MADV_KNOWN:
        raise SyscallError(errno.EINVAL, f"process_madvise: advice {advice} is unknown")
    cpu.stats.charge(B_PTE, cpu.cfg.cost.madvise_base)
    done = 0
    error: Optional[SyscallError] = None
    with tlb_gather_mmu(cpu, mm) as tlb:
        for start, length in vec:
            try:
                end = madvise_range(start, length, advice)
                if end > start:
                    madvise_do_behavior(mm, cpu, start, end, advice, tlb)
            except SyscallError as e:
                error = e
                break
            done += length
    if done == 0 and error is not None:
        raise error
    return done
