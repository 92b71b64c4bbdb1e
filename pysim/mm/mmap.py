"""mmap and munmap (mm/mmap.c, mm/vma.c): validation, placement, VMA insertion with
merging, MAP_FIXED replacement, and unmap_region's zap, table freeing and flush."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import numpy as np

from mmucore.stats import B_VMA

from ..constants import (MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_NORESERVE,
                         MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE,
                         MAP_STACK, MAP_TYPE, PAGE_SIZE, PMD_SIZE, PROT_EXEC, PROT_READ,
                         PROT_SEM, PROT_WRITE, TASK_SIZE, VM_HUGEPAGE, VM_MAYWRITE,
                         VM_SHARED, VM_WRITE)
from ..errors import SyscallError
from .args import syscall_ints
from .memory import free_pgtables, populate, unmap_page_range
from .mm import File
from .mmu_gather import tlb_gather_mmu
from .vma import VMA, mmap_vm_flags

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

_MAP_KNOWN = (MAP_TYPE | MAP_FIXED | MAP_ANONYMOUS | MAP_POPULATE | MAP_NORESERVE
              | MAP_FIXED_NOREPLACE | MAP_STACK)
_PROT_KNOWN = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM


def do_mmap(mm: "MM", cpu: "CPU", addr: int, length: int, prot: int,
            flags: Optional[int] = None, file: Optional[File] = None,
            huge: bool = False, pgoff: int = 0) -> int:
    """mmap(): anonymous private by default; MAP_FIXED, MAP_FIXED_NOREPLACE,
    MAP_POPULATE; huge=True also does madvise(MADV_HUGEPAGE) on a 2 MiB-aligned area."""
    cost = cpu.cfg.cost
    if flags is None:
        flags = MAP_PRIVATE | (MAP_ANONYMOUS if file is None else 0)
    addr, length, prot, flags = syscall_ints("mmap", ("addr", "length", "prot", "flags"),
                                             addr, length, prot, flags)
    if flags & ~_MAP_KNOWN:
        raise SyscallError(errno.EINVAL, f"mmap: unknown or unmodelled flags "
                                         f"0x{flags & ~_MAP_KNOWN:x}")
    if prot & ~_PROT_KNOWN:
        raise SyscallError(errno.EINVAL, f"mmap: unknown prot bits 0x{prot & ~_PROT_KNOWN:x}")
    if flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(errno.EINVAL, "mmap: flags need exactly one of MAP_SHARED "
                                         "or MAP_PRIVATE")
    if length == 0:
        raise SyscallError(errno.EINVAL, "mmap: length 0")
    if length < 0:
        # len is a size_t: a negative one is a huge length (do_mmap: > TASK_SIZE)
        raise SyscallError(errno.ENOMEM, f"mmap: length {length} is beyond TASK_SIZE as "
                                         f"an unsigned length")
    if (flags & MAP_ANONYMOUS) and file is not None:
        raise SyscallError(errno.EINVAL, "mmap: MAP_ANONYMOUS with a file")
    if not (flags & MAP_ANONYMOUS) and file is None:
        raise SyscallError(errno.EBADF, "mmap: a file mapping needs file=File(...)")
    if file is not None and not isinstance(file, File):
        raise SyscallError(errno.EBADF, f"mmap: file must be a pysim.File (the model's "
                                        f"open file), got {type(file).__name__}")
    if type(pgoff) is not int and not isinstance(pgoff, np.integer) or pgoff < 0:
        raise SyscallError(errno.EINVAL, f"mmap: pgoff {pgoff!r} must be a page count >= 0")
    pgoff = int(pgoff)
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    if length > TASK_SIZE:
        raise SyscallError(errno.ENOMEM, f"mmap: length 0x{length:x} exceeds TASK_SIZE")
    shared = flags & MAP_TYPE != MAP_PRIVATE
    vm_flags = mmap_vm_flags(prot, flags)
    if file is not None and shared and not file.writable:
        if prot & PROT_WRITE:
            raise SyscallError(errno.EACCES, "mmap: PROT_WRITE shared mapping of a "
                                             "read-only file")
        vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
    if huge:
        vm_flags |= VM_HUGEPAGE
    cpu.stats.charge(B_VMA, cost.mmap_base)
    if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        if addr % PAGE_SIZE:
            raise SyscallError(errno.EINVAL, f"mmap: fixed address 0x{addr:x} is not "
                                             f"page aligned")
        if addr + length > TASK_SIZE or addr < 0:
            raise SyscallError(errno.ENOMEM, f"mmap: fixed range [0x{addr:x}, "
                                             f"+0x{length:x}) is outside user space")
        if flags & MAP_FIXED_NOREPLACE and \
                mm.vmas.find_vma_intersection(addr, addr + length) is not None:
            raise SyscallError(errno.EEXIST, f"mmap: [0x{addr:x}, +0x{length:x}) "
                                             f"overlaps an existing mapping")
        if flags & MAP_FIXED:
            unmap_region(mm, cpu, addr, addr + length)
        start = addr
    else:
        align = PMD_SIZE if (huge or length >= PMD_SIZE) else PAGE_SIZE
        start = mm.vmas.get_unmapped_area(length, align=align,
                                            hint=addr if addr else None)
    vma = VMA(start, start + length, vm_flags, anon=file is None, shared=shared,
              file=file, pgoff=(start >> 12) if file is None else pgoff)
    vma.page_prot = mm.vmas.page_prot_fn(vma)
    mm.vmas.insert_merging(vma)
    if flags & MAP_POPULATE:
        populate(mm, cpu, start, start + length, write=bool(vm_flags & VM_WRITE)
                      and not shared)
    return start


def do_munmap(mm: "MM", cpu: "CPU", addr: int, length: int) -> int:
    """munmap(): remove the VMAs, zap their entries, free page tables, flush."""
    addr, length = syscall_ints("munmap", ("addr", "length"), addr, length)
    if addr % PAGE_SIZE:
        raise SyscallError(errno.EINVAL, f"munmap: 0x{addr:x} is not page aligned")
    if length <= 0:
        raise SyscallError(errno.EINVAL, f"munmap: length {length} must be positive")
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    if addr < 0 or addr + length > TASK_SIZE:
        raise SyscallError(errno.EINVAL, f"munmap: [0x{addr:x}, +0x{length:x}) is "
                                         f"outside user space")
    cpu.stats.charge(B_VMA, cpu.cfg.cost.munmap_base)
    unmap_region(mm, cpu, addr, addr + length, downgrade=True)
    return 0

def unmap_region(mm: "MM", cpu: "CPU", start: int, end: int,
                 downgrade: bool = False) -> None:
    """unmap_region(): one gather for the whole call: zap the removed VMAs' entries
    (unmap_vmas; the gather's batches may flush in the middle), then free the page
    tables no remaining VMA can use (free_pgtables over the gap [floor, ceiling)
    between the neighbours), then tlb_finish_mmu()'s final flush.  With downgrade
    (munmap) the VMAs are detached under the write lock and the zap runs under the
    read lock (vms_complete_munmap_vmas: mmap_write_downgrade)."""
    removed = mm.vmas.remove_range(start, end)
    if downgrade:
        mm.mmap_lock.downgrade(cpu)
    if not removed:
        return
    prev, nxt = mm.vmas.find_vma_prev(start)[1], mm.vmas.find_vma(start)
    floor = prev.end if prev is not None else 0
    ceiling = nxt.start if nxt is not None else TASK_SIZE
    with tlb_gather_mmu(cpu, mm) as tlb:
        for vma in removed:
            unmap_page_range(tlb, vma.start, vma.end)
        free_pgtables(tlb, floor, ceiling)
