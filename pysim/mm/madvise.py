"""madvise (mm/madvise.c): DONTNEED (zap), FREE and COLD (A/D clears), HUGEPAGE and
NOHUGEPAGE (VMA flags with split and merge), POPULATE_READ and POPULATE_WRITE."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mmucore.stats import B_PTE

from ..constants import (MADV_COLD, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
                         MADV_NOHUGEPAGE, MADV_NORMAL, MADV_POPULATE_READ,
                         MADV_POPULATE_WRITE, PAGE_SIZE, PMD_SIZE, TASK_SIZE, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_READ, VM_WRITE)
from ..arch.tlbflush import flush_tlb_range
from ..errors import SyscallError
from .args import syscall_ints
from .memory import populate, unmap_page_range
from .mmu_gather import tlb_gather_mmu

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

def madvise_populate(mm: "MM", cpu: "CPU", start: int, pieces: list, write: bool) -> None:
    """madvise_populate(): fault the range in, in address order, and stop at the first
    problem with what it found there: a hole is ENOMEM ("no VMA"), a VMA without the
    permission the access needs is EINVAL (check_vma_flags() without FOLL_FORCE wants
    VM_WRITE for a write and VM_READ for a read).  What lies before it stays populated."""
    addr = start
    for s, e, v in pieces:
        if s > addr:
            raise SyscallError(errno.ENOMEM, f"madvise: no mapping at 0x{addr:x}")
        if not v.flags & (VM_WRITE if write else VM_READ):
            raise SyscallError(errno.EINVAL, f"madvise: {v!r} does not permit "
                                             f"{'writes' if write else 'reads'}")
        populate(mm, cpu, s, e, write=write)
        addr = e


_MADV_KNOWN = {MADV_NORMAL, MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_HUGEPAGE,
               MADV_NOHUGEPAGE, MADV_POPULATE_READ, MADV_POPULATE_WRITE}


def do_madvise(mm: "MM", cpu: "CPU", start: int, length: int, advice: int) -> int:
    """madvise(): DONTNEED, FREE, COLD, HUGEPAGE/NOHUGEPAGE, POPULATE_READ/WRITE."""
    start, length, advice = syscall_ints("madvise", ("start", "length", "advice"),
                                         start, length, advice)
    if advice not in _MADV_KNOWN:
        raise SyscallError(errno.EINVAL, f"madvise: advice {advice} is unknown or not "
                                         f"modelled")
    if start % PAGE_SIZE:
        raise SyscallError(errno.EINVAL, f"madvise: 0x{start:x} is not page aligned")
    if length < 0:
        raise SyscallError(errno.EINVAL, "madvise: negative length")
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    end = start + length
    if end > TASK_SIZE:
        raise SyscallError(errno.EINVAL, "madvise: range beyond the user address space")
    if length == 0:
        return 0
    cpu.stats.charge(B_PTE, cpu.cfg.cost.madvise_base)
    pieces = [(max(v.start, start), min(v.end, end), v) for v in mm.vmas.vmas_in(start, end)]
    hole = mm.vmas.first_hole(start, end)
    if advice in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
        for s, e, v in pieces:
            cur = mm.vmas.find_vma(s)
            newflags = (cur.flags | VM_HUGEPAGE) & ~VM_NOHUGEPAGE if advice == MADV_HUGEPAGE \
                else (cur.flags | VM_NOHUGEPAGE) & ~VM_HUGEPAGE
            if newflags != cur.flags:
                prev = cur if s > cur.start else mm.vmas.find_vma_prev(s)[1]
                mm.vmas.vma_modify_flags(cur, prev, s, e, newflags)
    elif advice in (MADV_DONTNEED, MADV_FREE, MADV_COLD):
        if advice == MADV_FREE and any(not v.anon or v.shared for _, _, v in pieces):
            raise SyscallError(errno.EINVAL, "madvise: MADV_FREE needs private anonymous "
                                             "memory")
        # one gather per VMA, as every built-in profile's kernel does (5.17-6.15:
        # zap_page_range[_single](), madvise_free_single_vma() and madvise_cold() each
        # open and finish their own; 6.16 moved DONTNEED and FREE to one per call)
        for s, e, v in pieces:
            with tlb_gather_mmu(cpu, mm) as tlb:
                if advice == MADV_DONTNEED:
                    unmap_page_range(tlb, s, e)
                    continue
                _, _, splits = mm.pt.clear_young_dirty(s, (e - s) // PAGE_SIZE, tlb.state,
                                                       advice == MADV_FREE)
                for a in splits:
                    flush_tlb_range(cpu, mm, a, a + PMD_SIZE)
    elif advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        madvise_populate(mm, cpu, start, pieces, advice == MADV_POPULATE_WRITE)
    if hole is not None:
        raise SyscallError(errno.ENOMEM, f"madvise: [0x{start:x}, 0x{end:x}) has a hole "
                                         f"at 0x{hole:x}")
    return 0

