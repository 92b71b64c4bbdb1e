"""mremap (mm/mremap.c): shrink in place, grow in place, or move (MREMAP_MAYMOVE,
MREMAP_FIXED, MREMAP_DONTUNMAP) with the page tables' entries.

A move copies the VMA to its new place (copy_vma), moves every entry in extents that
end at the next PMD boundary of either side (move_page_tables), and flushes the old
range of each extent that held a present entry before its page-table lock drops
(move_ptes: flush_tlb_range over the extent; move_huge_pmd: flush_pmd_tlb_range over
2 MiB); then the old range is unmapped (its tables freed with the usual flush) unless
MREMAP_DONTUNMAP keeps the VMA, empty.  A THP the extent cuts is split first, with
__split_huge_pmd's flush.  Not modelled: move_normal_pmd's table move (entries move one
by one; counts differ only by the aligned-2M-extent flush it does unconditionally),
accounting and the uffd events.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import numpy as np

import mmucore
from mmucore.stats import B_VMA

from ..arch.tlbflush import flush_tlb_range
from ..constants import (MAP_SHARED, MREMAP_DONTUNMAP, MREMAP_FIXED,
                         MREMAP_MAYMOVE, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, TASK_SIZE,
                         VM_DONTEXPAND, VM_HUGETLB, VM_LOCKED, VM_LOCKED_MASK,
                         VM_LOCKONFAULT, VM_MAYSHARE, VM_PFNMAP, VM_SEALED, VM_SHARED,
                         VM_WRITE)
from ..errors import SyscallError
from .args import syscall_ints
from .memory import populate
from .mmap import (check_hugetlb_split, check_sealed_range, mlock_future_check,
                   unmap_region, unmapped_area)
from .vma import VMA

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

_MREMAP_KNOWN = MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP
_PRESENT = np.uint64(mmucore.PTE_P | mmucore.PTE_PROTNONE)


def _align(n: int) -> int:
    """PAGE_ALIGN()."""
    return -(-n // PAGE_SIZE) * PAGE_SIZE


def do_mremap(mm: "MM", cpu: "CPU", addr: int, old_len: int, new_len: int,
              flags: int = 0, new_addr: int = 0) -> int:
    """sys_mremap(): returns the (possibly new) address of the mapping; SyscallError
    with the kernel's errno otherwise, keeping what it did before failing (an unmap of
    the destination or of a shrunk tail stays done)."""
    addr, old_len, new_len, flags, new_addr = syscall_ints(
        "mremap", ("addr", "old_len", "new_len", "flags", "new_addr"),
        addr, old_len, new_len, flags, new_addr)
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mmap_base)
    if flags & ~_MREMAP_KNOWN:
        raise SyscallError(errno.EINVAL, f"mremap: unknown flags 0x{flags & ~_MREMAP_KNOWN:x}")
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        raise SyscallError(errno.EINVAL, "mremap: MREMAP_FIXED needs MREMAP_MAYMOVE")
    if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len):
        raise SyscallError(errno.EINVAL, "mremap: MREMAP_DONTUNMAP needs MREMAP_MAYMOVE and "
                                         "equal lengths")
    if addr % PAGE_SIZE or addr < 0:
        raise SyscallError(errno.EINVAL, f"mremap: 0x{addr:x} is not page aligned")
    if old_len < 0 or new_len < 0:
        raise SyscallError(errno.EINVAL, "mremap: negative length")
    old_len, new_len = _align(old_len), _align(new_len)
    if new_len == 0:
        raise SyscallError(errno.EINVAL, "mremap: new_len 0")
    vma = mm.vmas.vma_lookup(addr)
    if vma is None:
        raise SyscallError(errno.EFAULT, f"mremap: 0x{addr:x} is not mapped")
    if vma.flags & VM_SEALED:
        raise SyscallError(errno.EPERM, f"mremap: {vma!r} is sealed")
    if vma.flags & VM_HUGETLB:
        if addr % PMD_SIZE or old_len % PMD_SIZE or new_len % PMD_SIZE \
                or new_addr % PMD_SIZE:
            raise SyscallError(errno.EINVAL, "mremap: hugetlb ranges must be 2 MiB aligned")
        if new_len > old_len:
            raise SyscallError(errno.EINVAL, "mremap: a hugetlb mapping cannot grow")
    if flags & (MREMAP_FIXED | MREMAP_DONTUNMAP):
        return mremap_to(mm, cpu, addr, old_len, new_addr, new_len, flags)
    if old_len >= new_len:                           # always allow a shrinking remap
        if old_len > new_len:
            _munmap(mm, cpu, addr + new_len, old_len - new_len)
        return addr
    vma = vma_to_resize(mm, addr, old_len, new_len, flags)
    if old_len == vma.end - addr and _expandable(mm, vma, new_len - old_len):
        ext = VMA(vma.end, vma.end + new_len - old_len, vma.flags, vma.anon, vma.shared,
                  vma.pgoff_at(vma.end), vma.file, vma.anon_vma, vma.name,
                  policy=vma.policy)
        ext.page_prot = mm.vmas.page_prot_fn(ext)
        mm.vmas.insert_merging(ext)
        if vma.flags & VM_LOCKED and not vma.flags & VM_LOCKONFAULT:
            populate(mm, cpu, addr + old_len, addr + new_len,
                     write=vma.flags & (VM_WRITE | VM_SHARED) == VM_WRITE)
        return addr
    if not flags & MREMAP_MAYMOVE:
        raise SyscallError(errno.ENOMEM, f"mremap: cannot grow 0x{addr:x} in place")
    dest = unmapped_area(mm, 0, new_len, MAP_SHARED if vma.flags & VM_MAYSHARE else 0,
                         new_len >= PMD_SIZE)
    return move_vma(mm, cpu, vma, addr, old_len, new_len, dest, flags)


def _munmap(mm: "MM", cpu: "CPU", start: int, length: int) -> None:
    """do_vmi_munmap() as mremap calls it: the seal and hugetlb checks, then unmap."""
    check_hugetlb_split(mm, start, start + length, "mremap")
    check_sealed_range(mm, start, start + length, "mremap")
    unmap_region(mm, cpu, start, start + length)


def _expandable(mm: "MM", vma: VMA, delta: int) -> bool:
    """vma_expandable(): nothing mapped in [vma.end, vma.end + delta) and it fits."""
    end = vma.end + delta
    return end <= TASK_SIZE and mm.vmas.find_vma_intersection(vma.end, end) is None


def vma_to_resize(mm: "MM", addr: int, old_len: int, new_len: int, flags: int) -> VMA:
    """vma_to_resize(): the VMA at addr, if [addr, addr + old_len) lies in it and it may
    take the new size (EFAULT across VMAs or for a VM_DONTEXPAND/VM_PFNMAP one that
    would grow; EINVAL for old_len 0 on private memory; EAGAIN over RLIMIT_MEMLOCK)."""
    vma = mm.vmas.vma_lookup(addr)
    if vma is None:
        raise SyscallError(errno.EFAULT, f"mremap: 0x{addr:x} is not mapped")
    if old_len == 0 and not vma.flags & (VM_SHARED | VM_MAYSHARE):
        raise SyscallError(errno.EINVAL, "mremap: old_len 0 duplicates only shared memory")
    if flags & MREMAP_DONTUNMAP and vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise SyscallError(errno.EINVAL, "mremap: MREMAP_DONTUNMAP on a special mapping")
    if old_len > vma.end - addr:
        raise SyscallError(errno.EFAULT, f"mremap: [0x{addr:x}, +0x{old_len:x}) spans more "
                                         f"than {vma!r}")
    if new_len == old_len:
        return vma
    if vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise SyscallError(errno.EFAULT, f"mremap: {vma!r} cannot be expanded")
    if vma.flags & VM_LOCKED:
        mlock_future_check(mm, new_len - old_len, "mremap")
    return vma


def mremap_to(mm: "MM", cpu: "CPU", addr: int, old_len: int, new_addr: int, new_len: int,
              flags: int) -> int:
    """mremap_to(): MREMAP_FIXED (unmap the destination first) or MREMAP_DONTUNMAP (the
    destination a hint); the tail of a shrink goes first; then move_vma()."""
    if new_addr % PAGE_SIZE or new_addr < 0:
        raise SyscallError(errno.EINVAL, f"mremap: new_addr 0x{new_addr:x} is not aligned")
    if new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len:
        raise SyscallError(errno.EINVAL, "mremap: the destination is outside user space")
    if addr + old_len > new_addr and new_addr + new_len > addr:
        raise SyscallError(errno.EINVAL, "mremap: the old and new ranges overlap")
    if flags & MREMAP_FIXED:
        if new_addr < mm.vmas.mmap_min_addr and not mm.privileged:
            raise SyscallError(errno.EPERM, f"mremap: 0x{new_addr:x} is below mmap_min_addr")
        _munmap(mm, cpu, new_addr, new_len)
    if old_len > new_len:
        _munmap(mm, cpu, addr + new_len, old_len - new_len)
        old_len = new_len
    vma = vma_to_resize(mm, addr, old_len, new_len, flags)
    if flags & MREMAP_FIXED:
        dest = new_addr
    else:
        dest = unmapped_area(mm, new_addr, new_len,
                             MAP_SHARED if vma.flags & VM_MAYSHARE else 0, False)
    return move_vma(mm, cpu, vma, addr, old_len, new_len, dest, flags)


def move_vma(mm: "MM", cpu: "CPU", vma: VMA, old_addr: int, old_len: int, new_len: int,
             new_addr: int, flags: int) -> int:
    """move_vma(): copy_vma() to new_addr (merging there when the rules allow), move the
    entries with their flushes, then unmap the old range (or, MREMAP_DONTUNMAP, keep it
    empty and unlocked); a locked mapping that grew is populated."""
    if mm.vmas.map_count >= mm.vmas.max_map_count - 3:
        raise SyscallError(errno.ENOMEM, "mremap: too many mappings to move one")
    check_hugetlb_split(mm, old_addr, old_addr + old_len, "mremap")
    new = VMA(new_addr, new_addr + new_len, vma.flags, vma.anon, vma.shared,
              vma.pgoff_at(old_addr), vma.file, vma.anon_vma, vma.name,
              policy=vma.policy)                   # copy_vma(): vma_dup_policy()
    new.page_prot = mm.vmas.page_prot_fn(new)
    mm.vmas.insert_merging(new)
    if old_len:
        move_page_tables(mm, cpu, old_addr, new_addr, old_len)
    if flags & MREMAP_DONTUNMAP:
        old = mm.vmas.vma_lookup(old_addr)
        if old is not None and old.flags & VM_LOCKED_MASK:
            prev = old if old_addr > old.start else mm.vmas.find_vma_prev(old_addr)[1]
            mm.vmas.vma_modify_flags(old, prev, old_addr, min(old.end, old_addr + old_len),
                                     old.flags & ~VM_LOCKED_MASK)
    elif old_len:
        unmap_region(mm, cpu, old_addr, old_addr + old_len)
    if vma.flags & VM_LOCKED and not vma.flags & VM_LOCKONFAULT and new_len > old_len:
        populate(mm, cpu, new_addr + old_len, new_addr + new_len,
                 write=vma.flags & (VM_WRITE | VM_SHARED) == VM_WRITE)
    return new_addr


def move_page_tables(mm: "MM", cpu: "CPU", old_addr: int, new_addr: int, length: int) -> None:
    """move_page_tables(): extent by extent (to the next PMD boundary of old or new),
    move the entries and flush the old extent if one of them was present; a huge PMD
    moves whole when the extent is its 2 MiB on both sides, else is split first.
    Guard markers move with their pages."""
    pt = mm.pt
    old_end = old_addr + length
    while old_addr < old_end:
        extent = min(PMD_SIZE - (old_addr & (PMD_SIZE - 1)),
                     PMD_SIZE - (new_addr & (PMD_SIZE - 1)), old_end - old_addr)
        if pt.upper_entries(old_addr)[2] != 0:
            entry, shift = pt.get(old_addr)
            if shift == 21 and extent == PMD_SIZE:
                pt.set_pmd(new_addr, entry)                  # move_huge_pmd()
                pt.set_pmd(old_addr, 0)
                if entry & (mmucore.PTE_P | mmucore.PTE_PROTNONE):
                    cpu.arch.flush_tlb_mm_range(cpu, mm, old_addr, old_addr + PMD_SIZE,
                                                21, False)
            else:
                if shift == 21:
                    chunk = old_addr & ~(PMD_SIZE - 1)
                    pt.split_huge_pmd(chunk)
                    flush_tlb_range(cpu, mm, chunk, chunk + PMD_SIZE)
                _move_ptes(mm, cpu, old_addr, new_addr, extent)
        old_addr += extent
        new_addr += extent
    if mm.guard_pages:
        moved = [a for a in mm.guard_pages if old_end - length <= a < old_end]
        mm.guard_pages.difference_update(moved)
        mm.guard_pages.update(a - (old_end - length) + (new_addr - length) for a in moved)


def _move_ptes(mm: "MM", cpu: "CPU", old_addr: int, new_addr: int, extent: int) -> None:
    """move_ptes(): every non-empty 4K entry of the extent to its new place; the old
    extent flushed once if any entry was present (pte_present: P or PROTNONE)."""
    pt = mm.pt
    n = extent >> PAGE_SHIFT
    entries = pt.read_range(old_addr, n)
    idx = np.nonzero(entries)[0]
    if not idx.size:
        return
    for i in idx.tolist():
        e = int(entries[i])
        if e & (mmucore.PTE_P | mmucore.PTE_PROTNONE):
            e |= mmucore.PTE_SOFT_DIRTY          # move_soft_dirty_pte()
        pt.set_pte(new_addr + i * PAGE_SIZE, e)
        pt.set_pte(old_addr + i * PAGE_SIZE, 0)
    if np.any(entries[idx] & _PRESENT):
        flush_tlb_range(cpu, mm, old_addr, old_addr + extent)
