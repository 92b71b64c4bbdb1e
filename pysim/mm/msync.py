"""msync (mm/msync.c) and mincore (mm/mincore.c): the two calls that ask the kernel
about the pages behind a range rather than change its mappings.

msync checks its flags and range and walks the VMAs as the kernel does: EINVAL for
unknown or contradictory flags and an unaligned start, ENOMEM for a range that wraps
or meets unmapped memory (a hole is skipped and reported at the end, except that plain
MS_ASYNC stops at it), EBUSY for MS_INVALIDATE over a VM_LOCKED VMA.  Its effect on
Linux is vfs_fsync_range() for MS_SYNC over shared file mappings: writeback, whose
folio_mkclean() write-protects and cleans the written PTEs with a flush each.  The
model does not do that writeback (shared file mappings are not write-notified in it
either), so msync changes no PTE here.

mincore reports, one byte a page, whether each page of a mapped range is resident: a
present entry (a huge one included) is, an empty one is not (the model keeps no page
cache apart from the page tables, so a file page no PTE maps counts as not resident).
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import numpy as np

import mmucore

from ..constants import MS_ASYNC, MS_INVALIDATE, MS_SYNC, PAGE_SIZE, TASK_SIZE, VM_LOCKED
from ..errors import SyscallError
from .args import page_range_end, syscall_ints

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

__all__ = ["do_msync", "do_mincore"]

_ULONG = 1 << 64


def do_msync(mm: "MM", cpu: "CPU", start: int, length: int, flags: int) -> int:
    """sys_msync: 0, or SyscallError with the errno of the kernel's walk."""
    start, length, flags = syscall_ints("msync", ("start", "len", "flags"), start, length,
                                        flags)
    start, length = start % _ULONG, length % _ULONG
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        raise SyscallError(errno.EINVAL, f"msync: unknown flags 0x{flags:x}")
    if start % PAGE_SIZE:
        raise SyscallError(errno.EINVAL, f"msync: start 0x{start:x} is not page aligned")
    if flags & MS_ASYNC and flags & MS_SYNC:
        raise SyscallError(errno.EINVAL, "msync: MS_ASYNC and MS_SYNC together")
    end = page_range_end(start, length)
    if end is None:
        raise SyscallError(errno.ENOMEM, "msync: the range wraps around")
    if end == start:
        return 0
    unmapped = False
    vma = mm.vmas.find_vma(start)
    while True:
        if vma is None:
            raise SyscallError(errno.ENOMEM, f"msync: nothing is mapped from 0x{start:x}")
        if start < vma.start:
            if flags == MS_ASYNC:
                raise SyscallError(errno.ENOMEM, f"msync: 0x{start:x} is not mapped")
            start = vma.start
            if start >= end:
                raise SyscallError(errno.ENOMEM, "msync: the range's end is not mapped")
            unmapped = True
        if flags & MS_INVALIDATE and vma.flags & VM_LOCKED:
            raise SyscallError(errno.EBUSY, f"msync: MS_INVALIDATE over locked {vma!r}")
        start = vma.end
        if start >= end:
            break
        vma = mm.vmas.find_vma(start)
    if unmapped:
        raise SyscallError(errno.ENOMEM, "msync: part of the range is not mapped")
    return 0


def do_mincore(mm: "MM", cpu: "CPU", start: int, length: int, vec: Any = None) -> int:
    """sys_mincore: 0 with one residency byte per page put into vec when it is a list
    (an int is the buffer's address, anything else a buffer the model does not hold);
    EINVAL for an unaligned start, ENOMEM for a range past user space or one meeting
    unmapped memory (the pages before the hole are reported first, as do_mincore's loop
    leaves them), EFAULT for a buffer address below mmap_min_addr, where nothing is
    ever mapped (copy_to_user faults; an unmapped buffer elsewhere is not checked: a
    replay's address space may lack the program's stack)."""
    start, length = syscall_ints("mincore", ("start", "len"), start, length)
    start, length = start % _ULONG, length % _ULONG
    if start % PAGE_SIZE:
        raise SyscallError(errno.EINVAL, f"mincore: start 0x{start:x} is not page aligned")
    # x86 __access_ok(): the start (a size up to a page) or start + len (larger, and
    # not wrapping) at most USER_PTR_MAX, TASK_SIZE_MAX - 1
    last = start if length <= PAGE_SIZE else start + length
    if last > TASK_SIZE - 1:
        raise SyscallError(errno.ENOMEM, "mincore: the range is not in user space")
    pages = -(-length // PAGE_SIZE)
    out = []
    addr, left = start, pages
    try:
        while left:
            vma = mm.vmas.vma_lookup(addr)
            if vma is None:
                raise SyscallError(errno.ENOMEM, f"mincore: 0x{addr:x} is not mapped")
            n = min(left, (vma.end - addr) // PAGE_SIZE)
            ptes = np.asarray(mm.pt.read_range(addr, n), dtype=np.uint64)
            resident = (ptes & np.uint64(mmucore.PTE_P | mmucore.PTE_PROTNONE)) != 0
            out.extend(resident.astype(np.uint8).tolist())
            addr += n * PAGE_SIZE
            left -= n
    finally:
        if isinstance(vec, list):
            vec[:] = out
    if type(vec) is int and pages and vec < mm.vmas.mmap_min_addr:
        raise SyscallError(errno.EFAULT, f"mincore: the vector at 0x{vec:x} is not mapped")
    return 0
