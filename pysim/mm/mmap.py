"""mmap, munmap and brk (mm/mmap.c, mm/vma.c): validation, placement, VMA insertion
with merging, MAP_FIXED replacement, unmap_region's zap, table freeing and flush, and
the heap."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Optional

import numpy as np

from mmucore.stats import B_VMA

from ..constants import (
    LEGACY_MAP_MASK, MAP_32BIT, MAP_32BIT_BASE, MAP_32BIT_END, MAP_ANONYMOUS, MAP_FIXED,
    MAP_FIXED_NOREPLACE, MAP_HUGE_MASK, MAP_HUGE_SHIFT, MAP_HUGETLB, MAP_NONBLOCK,
    MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, MAP_STACK,
    MAP_TYPE, PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE, PROT_EXEC, PROT_READ, PROT_SEM,
    PROT_WRITE,
    STACK_GUARD_GAP, TASK_SIZE, VM_ACCOUNT, VM_DONTEXPAND, VM_GROWSDOWN, VM_HUGEPAGE,
    VM_HUGETLB, VM_LOCKED, VM_LOCKONFAULT, VM_MAYSHARE, VM_MAYWRITE, VM_NOHUGEPAGE,
    VM_MAYEXEC, VM_MAYREAD, VM_NORESERVE, VM_READ, VM_SEALED, VM_SHARED, VM_SOFTDIRTY,
    VM_WRITE)
from ..errors import ConfigError, SyscallError
from .args import syscall_ints
from .memory import free_pgtables, populate, unmap_page_range
from .mm import File
from .mmu_gather import tlb_gather_mmu
from .vma import VMA, mmap_vm_flags

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

_PROT_KNOWN = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM


def do_mmap(mm: "MM", cpu: "CPU", addr: int, length: int, prot: int,
            flags: Optional[int] = None, file: Optional[File] = None,
            huge: bool = False, pgoff: int = 0) -> int:
    """mmap() as ksys_mmap_pgoff() -> do_mmap() -> mmap_region() check and build it:
    anonymous private by default; legacy and unknown flags are ignored (for a file they
    are checked only under MAP_SHARED_VALIDATE: EOPNOTSUPP), anonymous MAP_SHARED_VALIDATE
    is EINVAL, MAP_FIXED below mmap_min_addr is EPERM for an unprivileged process;
    MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE, MAP_STACK (VM_NOHUGEPAGE, 6.7+),
    MAP_HUGETLB (a 2 MiB hugetlb VMA), MAP_32BIT, MAP_POPULATE.  huge=True also does
    madvise(MADV_HUGEPAGE) on a 2 MiB-aligned area (a pysim convenience)."""
    cost = cpu.cfg.cost
    if flags is None:
        flags = MAP_PRIVATE | (MAP_ANONYMOUS if file is None else 0)
    if type(addr) is not int or type(length) is not int or type(prot) is not int \
            or type(flags) is not int:
        addr, length, prot, flags = syscall_ints("mmap", ("addr", "length", "prot", "flags"),
                                                 addr, length, prot, flags)
    # ksys_mmap_pgoff(): the fd, and MAP_HUGETLB's hugetlbfs file
    if (flags & MAP_ANONYMOUS) and file is not None:
        raise SyscallError(errno.EINVAL, "mmap: MAP_ANONYMOUS with a file")
    if not (flags & MAP_ANONYMOUS) and file is None:
        raise SyscallError(errno.EBADF, "mmap: a file mapping needs file=File(...)")
    if file is not None and not isinstance(file, File):
        raise SyscallError(errno.EBADF, f"mmap: file must be a pysim.File (the model's "
                                        f"open file), got {type(file).__name__}")
    hugetlb = False
    if flags & MAP_HUGETLB:
        if file is not None:
            raise SyscallError(errno.EINVAL, "mmap: MAP_HUGETLB needs an anonymous mapping "
                                             "(a pysim File is never on hugetlbfs)")
        # hstate_sizelog(): 0 is the default huge page size; the model has 2 MiB pages
        if (flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK not in (0, PMD_SHIFT):
            raise SyscallError(errno.EINVAL, f"mmap: no huge page size 2^"
                                             f"{(flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK}")
        hugetlb = True
        if length > 0:
            length = -(-length // PMD_SIZE) * PMD_SIZE
    if type(pgoff) is not int:
        if not isinstance(pgoff, np.integer) or pgoff < 0:
            raise SyscallError(errno.EINVAL, f"mmap: pgoff {pgoff!r} must be a page count >= 0")
        pgoff = int(pgoff)
    elif pgoff < 0:
        raise SyscallError(errno.EINVAL, f"mmap: pgoff {pgoff!r} must be a page count >= 0")
    if huge is not False and huge is not True and not isinstance(huge, np.bool_):
        raise ConfigError(f"mmap: huge must be True or False, got {huge!r}", field="huge")
    # do_mmap(): prot bits the kernel does not know are ignored (calc_vm_prot_bits)
    prot &= _PROT_KNOWN
    if length == 0:
        raise SyscallError(errno.EINVAL, "mmap: length 0")
    if length < 0:
        # len is a size_t: a negative one is a huge length (do_mmap: > TASK_SIZE)
        raise SyscallError(errno.ENOMEM, f"mmap: length {length} is beyond TASK_SIZE as "
                                         f"an unsigned length")
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    if not flags & MAP_FIXED and addr:
        addr = max(addr, -(-mm.vmas.mmap_min_addr // PAGE_SIZE) * PAGE_SIZE)  # round_hint_to_min
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    if length < 1 << 64 and pgoff + (length >> PAGE_SHIFT) >= 1 << 64:
        # do_mmap(): "offset overflow?" -- pgoff + pages wraps an unsigned long
        raise SyscallError(errno.EOVERFLOW, f"mmap: pgoff 0x{pgoff:x} plus the length "
                                            f"overflows")
    if length > TASK_SIZE:
        raise SyscallError(errno.ENOMEM, f"mmap: length 0x{length:x} exceeds TASK_SIZE")
    if mm.vmas.map_count > mm.vmas.max_map_count:
        raise SyscallError(errno.ENOMEM, f"mmap: map_count {mm.vmas.map_count} exceeds "
                                         f"max_map_count {mm.vmas.max_map_count}")
    vm_flags = mmap_vm_flags(prot, flags & ~MAP_NORESERVE) | mm.def_flags
    if flags & MAP_STACK:
        vm_flags |= VM_NOHUGEPAGE          # calc_vm_flag_bits(): 6.7+, with THP
    typ = flags & MAP_TYPE
    vm_flags &= ~(VM_SHARED | VM_MAYSHARE)
    if file is not None:
        if typ == MAP_SHARED:
            flags &= LEGACY_MAP_MASK       # MAP_SHARED silently drops newer flags
        if typ in (MAP_SHARED, MAP_SHARED_VALIDATE):
            if flags & ~(LEGACY_MAP_MASK | file.mmap_supported_flags):
                raise SyscallError(errno.EOPNOTSUPP, f"mmap: MAP_SHARED_VALIDATE with flags "
                                   f"0x{flags & ~LEGACY_MAP_MASK:x} the file does not support")
            if prot & PROT_WRITE and not file.writable:
                raise SyscallError(errno.EACCES, "mmap: PROT_WRITE shared mapping of a "
                                                 "file not open for writing")
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not file.writable:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        elif typ != MAP_PRIVATE:
            raise SyscallError(errno.EINVAL, "mmap: flags need exactly one of MAP_SHARED, "
                                             "MAP_SHARED_VALIDATE or MAP_PRIVATE")
        if not file.readable:
            raise SyscallError(errno.EACCES, "mmap: the file is not open for reading")
    else:
        if typ == MAP_SHARED:
            if vm_flags & VM_GROWSDOWN:
                raise SyscallError(errno.EINVAL, "mmap: MAP_GROWSDOWN on shared memory")
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif typ != MAP_PRIVATE:
            # MAP_SHARED_VALIDATE (and anything else) is not a type anonymous memory takes
            raise SyscallError(errno.EINVAL, f"mmap: map type 0x{typ:x} is invalid for "
                                             f"anonymous memory")
    shared = typ != MAP_PRIVATE
    if flags & MAP_NORESERVE:              # honoured in overcommit modes 0 and 1
        vm_flags |= VM_NORESERVE
    # accountable_mapping(): only private writable memory without MAP_NORESERVE is charged
    if vm_flags & VM_NORESERVE or vm_flags & VM_SHARED or not vm_flags & VM_WRITE:
        vm_flags &= ~VM_ACCOUNT
    if hugetlb:
        vm_flags |= VM_HUGETLB | VM_DONTEXPAND     # hugetlbfs_file_mmap()
        vm_flags &= ~VM_ACCOUNT
    if huge:
        vm_flags |= VM_HUGEPAGE
        vm_flags &= ~VM_NOHUGEPAGE
    cpu.stats.charge(B_VMA, cost.mmap_base)
    if flags & MAP_FIXED:
        # __get_unmapped_area(): range, then alignment, then security_mmap_addr()
        if addr < 0 or addr > TASK_SIZE - length:
            raise SyscallError(errno.ENOMEM, f"mmap: fixed range [0x{addr:x}, "
                                             f"+0x{length:x}) is outside user space")
        if addr % (PMD_SIZE if hugetlb else PAGE_SIZE):
            raise SyscallError(errno.EINVAL, f"mmap: fixed address 0x{addr:x} is not "
                                             f"{'huge ' if hugetlb else ''}page aligned")
        if addr < mm.vmas.mmap_min_addr and not mm.privileged:
            raise SyscallError(errno.EPERM, f"mmap: 0x{addr:x} is below mmap_min_addr "
                                            f"0x{mm.vmas.mmap_min_addr:x}")
        if flags & MAP_FIXED_NOREPLACE and \
                mm.vmas.find_vma_intersection(addr, addr + length) is not None:
            raise SyscallError(errno.EEXIST, f"mmap: [0x{addr:x}, +0x{length:x}) "
                                             f"overlaps an existing mapping")
        start = addr
    else:
        start = unmapped_area(mm, addr, length, flags, huge or hugetlb
                              or (length >= PMD_SIZE and not flags & MAP_32BIT))
    if vm_flags & VM_LOCKED:
        mlock_future_check(mm, length, "mmap")
    if flags & MAP_FIXED:
        if mm.vmas.any_flags(start, start + length, VM_SEALED):
            check_sealed_range(mm, start, start + length, "mmap")
        unmap_region(mm, cpu, start, start + length)
    vma = VMA(start, start + length, vm_flags, file is None, shared,
              (start >> 12) if file is None else pgoff, file)
    vma.page_prot = mm.vmas.page_prot_fn(vma)
    # __mmap_complete(): the mapping (merged or new) is soft-dirty as a whole
    mm.vmas.insert_merging(vma).flags |= VM_SOFTDIRTY
    if vm_flags & VM_LOCKED and not vm_flags & VM_LOCKONFAULT \
            or flags & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE:
        populate(mm, cpu, start, start + length, write=bool(vm_flags & VM_WRITE)
                      and not shared)
    return start


def vm_start_gap(vma: "VMA") -> int:
    """vm_start_gap(): a stack VMA (VM_GROWSDOWN) keeps stack_guard_gap free below it."""
    if vma.flags & VM_GROWSDOWN:
        return max(vma.start - STACK_GUARD_GAP, 0)
    return vma.start


def unmapped_area(mm: "MM", hint: int, length: int, flags: int, pmd_align: bool) -> int:
    """get_unmapped_area() for a non-fixed mmap (x86 arch_get_unmapped_area_topdown):
    the hint if it is free up to the next VMA's vm_start_gap(); MAP_32BIT searches
    bottom-up in [1 GiB, 2 GiB) (find_start_end()); else the top-down search, PMD
    aligned for THP-sized and hugetlb requests."""
    vmas = mm.vmas
    if flags & MAP_32BIT:
        if hint:
            a = hint & ~(PAGE_SIZE - 1)
            nxt = vmas.find_vma(a)
            if MAP_32BIT_END - length >= a >= vmas.mmap_min_addr \
                    and (nxt is None or a + length <= vm_start_gap(nxt)):
                return a
        low = max(MAP_32BIT_BASE, vmas.mmap_min_addr)
        a = vmas._unmapped_area_bottomup(length, PAGE_SIZE, low, MAP_32BIT_END)
        if a is None or a + length > MAP_32BIT_END:
            raise SyscallError(errno.ENOMEM, f"mmap: no free range of 0x{length:x} bytes "
                                             f"below 2 GiB for MAP_32BIT")
        return a
    if hint:
        a = max(hint & ~(PAGE_SIZE - 1), vmas.mmap_min_addr)
        nxt = vmas.find_vma(a)
        if a <= TASK_SIZE - length and (nxt is None or a + length <= vm_start_gap(nxt)):
            if not (flags & MAP_HUGETLB and a % PMD_SIZE):
                return a
    return vmas.get_unmapped_area(length, align=PMD_SIZE if pmd_align else PAGE_SIZE)


def mlock_future_check(mm: "MM", length: int, call: str) -> None:
    """mlock_future_ok(): locking length more bytes must stay within RLIMIT_MEMLOCK
    unless the process has CAP_IPC_LOCK (EAGAIN, as mmap and brk report it)."""
    if mm.privileged:
        return
    if mm.locked_vm() * PAGE_SIZE + length > mm.rlimit_memlock:
        raise SyscallError(errno.EAGAIN, f"{call}: locking 0x{length:x} more bytes exceeds "
                                         f"RLIMIT_MEMLOCK 0x{mm.rlimit_memlock:x}")


def check_sealed_range(mm: "MM", start: int, end: int, call: str) -> None:
    """can_modify_vma() for every VMA an unmap would remove (vms_gather_munmap_vmas()
    checks them all before unmapping anything): EPERM if one is sealed."""
    for v in mm.vmas.vmas_in(start, end):
        if v.flags & VM_SEALED:
            raise SyscallError(errno.EPERM, f"{call}: {v!r} is sealed")


def do_munmap(mm: "MM", cpu: "CPU", addr: int, length: int) -> int:
    """munmap(): remove the VMAs, zap their entries, free page tables, flush."""
    if type(addr) is not int or type(length) is not int:
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
    if mm.vmas.any_flags(addr, addr + length, VM_HUGETLB | VM_SEALED):
        check_hugetlb_split(mm, addr, addr + length, "munmap")
        check_sealed_range(mm, addr, addr + length, "munmap")
    unmap_region(mm, cpu, addr, addr + length, True)           # downgrade
    return 0


def check_hugetlb_split(mm: "MM", start: int, end: int, call: str) -> None:
    """hugetlb_vm_op_split(): a hugetlb VMA splits only at a huge-page boundary (EINVAL)."""
    for a in (start, end):
        v = mm.vmas.vma_lookup(a)
        if v is not None and v.flags & VM_HUGETLB and v.start < a and a % PMD_SIZE:
            raise SyscallError(errno.EINVAL, f"{call}: 0x{a:x} splits hugetlb {v!r} off "
                                             f"a 2 MiB boundary")


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
    if mm.guard_pages:               # the guard markers go with the page tables
        mm.guard_pages.difference_update([a for a in mm.guard_pages if start <= a < end])
    nxt, prev = mm.vmas.find_vma_prev(start)      # (find_vma(start), the VMA before it)
    floor = prev.end if prev is not None else 0
    ceiling = nxt.start if nxt is not None else TASK_SIZE
    with tlb_gather_mmu(cpu, mm) as tlb:
        for vma in removed:
            unmap_page_range(tlb, vma.start, vma.end)
        free_pgtables(tlb, floor, ceiling)


def do_brk(mm: "MM", cpu: "CPU", brk: int) -> int:
    """sys_brk(): move the heap's end to brk and return the new break; on any failure
    (below start_brk, over a mapping or into a stack's guard gap, a shrink with no heap
    VMA there, a sealed VMA) return the old break, never an errno, as Linux does.
    Growing extends the heap VMA below (do_brk_flags() merges into it) or makes one;
    shrinking unmaps [PAGE_ALIGN(brk), PAGE_ALIGN(old brk)) with its zap and flush."""
    (brk,) = syscall_ints("brk", ("brk",), brk)
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mmap_base)
    origbrk = mm.brk
    if brk < mm.start_brk or brk > TASK_SIZE:
        return origbrk
    newbrk = -(-brk // PAGE_SIZE) * PAGE_SIZE
    oldbrk = -(-mm.brk // PAGE_SIZE) * PAGE_SIZE
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:                                   # always allow shrinking
        v = mm.vmas.find_vma(newbrk)
        if v is None or v.start >= oldbrk:
            return origbrk
        try:
            check_sealed_range(mm, newbrk, oldbrk, "brk")
        except SyscallError:
            return origbrk
        mm.brk = brk
        unmap_region(mm, cpu, newbrk, oldbrk)
        return brk
    # check_brk_limits(): the range must fit in user space; mlock_future_ok()
    if newbrk > TASK_SIZE or oldbrk < mm.vmas.mmap_min_addr and not mm.privileged:
        return origbrk
    if mm.def_flags & VM_LOCKED:
        try:
            mlock_future_check(mm, newbrk - oldbrk, "brk")
        except SyscallError:
            return origbrk
    nxt = mm.vmas.find_vma(oldbrk)
    if nxt is not None and newbrk + PAGE_SIZE > vm_start_gap(nxt):
        return origbrk
    flags = (VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
             | mm.def_flags)
    vma = VMA(oldbrk, newbrk, flags, anon=True, shared=False)
    vma.page_prot = mm.vmas.page_prot_fn(vma)
    # do_brk_flags(): expand brkvma (or link the new one), then VM_SOFTDIRTY on it
    mm.vmas.insert_merging(vma).flags |= VM_SOFTDIRTY
    mm.brk = brk
    if mm.def_flags & VM_LOCKED and not mm.def_flags & VM_LOCKONFAULT:
        populate(mm, cpu, oldbrk, newbrk, write=True)
    return brk
