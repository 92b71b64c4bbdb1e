"""mlock, mlock2, munlock, mlockall and munlockall (mm/mlock.c), mseal (mm/mseal.c),
and pkey_alloc / pkey_free (mm/mprotect.c, arch/x86/include/asm/pkeys.h).

Locking sets VM_LOCKED (VM_LOCKONFAULT too for MLOCK_ONFAULT / MCL_ONFAULT) with the
VMA split and merge every flag change does, then faults the range in, ignoring errors
(__mm_populate(ignore_errors)): a private writable mapping is written (COW broken), any
other read.  Locked pages are not modelled as unevictable beyond what the flag refuses
(MADV_DONTNEED, COLD, PAGEOUT: EINVAL).
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mmucore.stats import B_VMA

from ..constants import (ARCH_MAX_PKEY, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT,
                         PAGE_SIZE, PKEY_ACCESS_MASK, TASK_SIZE, VM_HUGETLB,
                         VM_LOCKED, VM_LOCKED_MASK, VM_LOCKONFAULT, VM_SEALED, VM_SHARED,
                         VM_SPECIAL, VM_WRITE)
from ..errors import SyscallError
from .args import syscall_ints
from .memory import populate

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM
    from .vma import VMA


def _set_flags(mm: "MM", vma: "VMA", s: int, e: int, newflags: int) -> "VMA":
    """vma_modify_flags() over [s, e) of vma; returns the VMA now covering it."""
    if newflags == vma.flags:
        return vma
    prev = vma if s > vma.start else mm.vmas.find_vma_prev(s)[1]
    return mm.vmas.vma_modify_flags(vma, prev, s, e, newflags)


def mlock_fixup(mm: "MM", vma: "VMA", s: int, e: int, newflags: int) -> "VMA":
    """mlock_fixup(): special, hugetlb VMAs keep their flags (and are not counted)."""
    if vma.flags & (VM_SPECIAL | VM_HUGETLB):
        return vma
    return _set_flags(mm, vma, s, e, newflags)


def _mm_populate(mm: "MM", cpu: "CPU", start: int, end: int) -> None:
    """__mm_populate(ignore_errors=1): fault in every locked, not on-fault VMA part."""
    for v in mm.vmas.vmas_in(start, end):
        if v.flags & VM_LOCKED and not v.flags & VM_LOCKONFAULT \
                and not v.flags & (VM_SPECIAL | VM_HUGETLB):
            populate(mm, cpu, max(v.start, start), min(v.end, end),
                     write=v.flags & (VM_WRITE | VM_SHARED) == VM_WRITE)


def apply_vma_lock_flags(mm: "MM", start: int, end: int, flags: int) -> None:
    """apply_vma_lock_flags(): give every VMA of [start, end) the lock flags `flags`,
    in address order; a hole is ENOMEM after the part before it changed."""
    vma = mm.vmas.find_vma(start)
    if vma is None or vma.start > start:
        raise SyscallError(errno.ENOMEM, f"mlock: 0x{start:x} is not mapped")
    nstart = start
    while True:
        newflags = (vma.flags & ~VM_LOCKED_MASK) | flags
        tmp = min(vma.end, end)
        vma = mlock_fixup(mm, vma, nstart, tmp, newflags)
        nstart = max(tmp, vma.end)       # a merge may have covered more
        if nstart >= end:
            return
        vma = mm.vmas.find_vma(nstart)
        if vma is None or vma.start != nstart:
            raise SyscallError(errno.ENOMEM, f"mlock: [0x{start:x}, 0x{end:x}) has a hole "
                                             f"at 0x{nstart:x}")


def _lock_range(start: int, length: int, call: str) -> tuple:
    """do_mlock()'s rounding: the start rounds down, the length up over it."""
    if length < 0 or start < 0:
        raise SyscallError(errno.EINVAL, f"{call}: negative start or length")
    length = -(-(length + (start & (PAGE_SIZE - 1))) // PAGE_SIZE) * PAGE_SIZE
    start &= ~(PAGE_SIZE - 1)
    if start + length >= 1 << 64:
        raise SyscallError(errno.EINVAL, f"{call}: the range wraps around")
    return start, start + length


def do_mlock(mm: "MM", cpu: "CPU", start: int, length: int, flags: int = 0) -> int:
    """mlock() / mlock2(): lock [start, start + len) (start need not be aligned), then
    populate it unless MLOCK_ONFAULT; ENOMEM over RLIMIT_MEMLOCK without CAP_IPC_LOCK,
    or for a hole (what came before it stays locked)."""
    start, length, flags = syscall_ints("mlock", ("start", "len", "flags"),
                                        start, length, flags)
    if flags & ~MLOCK_ONFAULT:
        raise SyscallError(errno.EINVAL, f"mlock2: unknown flags 0x{flags:x}")
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mprotect_base)
    if mm.rlimit_memlock == 0 and not mm.privileged:
        raise SyscallError(errno.EPERM, "mlock: RLIMIT_MEMLOCK is 0")   # can_do_mlock()
    start, end = _lock_range(start, length, "mlock")
    if end == start:
        return 0
    if not mm.privileged:
        already = sum(min(v.end, end) - max(v.start, start)
                      for v in mm.vmas.vmas_in(start, end) if v.flags & VM_LOCKED)
        if mm.locked_vm() * PAGE_SIZE + (end - start) - already > mm.rlimit_memlock:
            raise SyscallError(errno.ENOMEM, "mlock: over RLIMIT_MEMLOCK")
    vm = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
    apply_vma_lock_flags(mm, start, end, vm)
    _mm_populate(mm, cpu, start, end)
    return 0


def do_munlock(mm: "MM", cpu: "CPU", start: int, length: int) -> int:
    """munlock(): clear VM_LOCKED / VM_LOCKONFAULT over the range (ENOMEM at a hole)."""
    start, length = syscall_ints("munlock", ("start", "len"), start, length)
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mprotect_base)
    start, end = _lock_range(start, length, "munlock")
    if end == start:
        return 0
    apply_vma_lock_flags(mm, start, end, 0)
    return 0


def do_mlockall(mm: "MM", cpu: "CPU", flags: int) -> int:
    """mlockall(): MCL_FUTURE sets mm->def_flags for later mappings, MCL_CURRENT locks
    (and populates, unless MCL_ONFAULT) every VMA now; EINVAL for no flag, an unknown
    one or MCL_ONFAULT alone; ENOMEM when the mm is larger than RLIMIT_MEMLOCK."""
    (flags,) = syscall_ints("mlockall", ("flags",), flags)
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        raise SyscallError(errno.EINVAL, f"mlockall: bad flags 0x{flags:x}")
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mprotect_base)
    if mm.rlimit_memlock == 0 and not mm.privileged:
        raise SyscallError(errno.EPERM, "mlockall: RLIMIT_MEMLOCK is 0")
    if flags & MCL_CURRENT and not mm.privileged and \
            sum(v.pages for v in mm.vmas) * PAGE_SIZE > mm.rlimit_memlock:
        raise SyscallError(errno.ENOMEM, "mlockall: the mm is larger than RLIMIT_MEMLOCK")
    onfault = VM_LOCKONFAULT if flags & MCL_ONFAULT else 0
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & MCL_FUTURE:
        mm.def_flags |= VM_LOCKED | onfault
    if flags & MCL_CURRENT:
        for v in mm.vmas:
            mlock_fixup(mm, v, v.start, v.end, (v.flags & ~VM_LOCKED_MASK) | VM_LOCKED | onfault)
        _mm_populate(mm, cpu, 0, TASK_SIZE)
    return 0


def do_munlockall(mm: "MM", cpu: "CPU") -> int:
    """munlockall(): clear the lock flags of every VMA and of mm->def_flags."""
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mprotect_base)
    mm.def_flags &= ~VM_LOCKED_MASK
    for v in mm.vmas:
        mlock_fixup(mm, v, v.start, v.end, v.flags & ~VM_LOCKED_MASK)
    return 0


def do_mseal(mm: "MM", cpu: "CPU", start: int, length: int, flags: int = 0) -> int:
    """mseal() (6.10): set VM_SEALED on every VMA of the range, splitting at its ends.
    The whole range must be mapped first (check_mm_seal(): ENOMEM, nothing sealed).
    A sealed VMA then refuses munmap, mremap, mprotect, MAP_FIXED over it and the
    discarding madvise advice on read-only anonymous memory (EPERM)."""
    start, length, flags = syscall_ints("mseal", ("start", "len", "flags"),
                                        start, length, flags)
    if flags:
        raise SyscallError(errno.EINVAL, f"mseal: flags 0x{flags:x} must be 0")
    if start % PAGE_SIZE or start < 0:
        raise SyscallError(errno.EINVAL, f"mseal: 0x{start:x} is not page aligned")
    if length < 0:
        raise SyscallError(errno.EINVAL, "mseal: negative length")
    length = -(-length // PAGE_SIZE) * PAGE_SIZE
    end = start + length
    if end >= 1 << 64:
        raise SyscallError(errno.EINVAL, "mseal: the range wraps around")
    if end == start:
        return 0
    cpu.stats.charge(B_VMA, cpu.cfg.cost.mprotect_base)
    hole = mm.vmas.first_hole(start, end)
    if hole is not None:
        raise SyscallError(errno.ENOMEM, f"mseal: [0x{start:x}, 0x{end:x}) has a hole at "
                                         f"0x{hole:x}")
    addr = start
    while addr < end:
        v = mm.vmas.find_vma(addr)
        e = min(v.end, end)
        v = _set_flags(mm, v, addr, e, v.flags | VM_SEALED)
        addr = max(e, v.end)
    return 0


def do_pkey_alloc(mm: "MM", cpu: "CPU", flags: int = 0, access_rights: int = 0) -> int:
    """pkey_alloc(): the lowest free protection key (mm_pkey_alloc()); EINVAL for
    flags or unknown access rights, ENOSPC when all 16 are taken."""
    flags, access_rights = syscall_ints("pkey_alloc", ("flags", "init_val"),
                                        flags, access_rights)
    if flags or access_rights & ~PKEY_ACCESS_MASK:
        raise SyscallError(errno.EINVAL, f"pkey_alloc: flags 0x{flags:x} or rights "
                                         f"0x{access_rights:x} invalid")
    for key in range(ARCH_MAX_PKEY):
        if not mm.pkey_allocation_map >> key & 1:
            mm.pkey_allocation_map |= 1 << key
            return key
    raise SyscallError(errno.ENOSPC, "pkey_alloc: all protection keys are allocated")


def do_pkey_free(mm: "MM", cpu: "CPU", pkey: int) -> int:
    """pkey_free(): give an allocated key back (EINVAL if it is not allocated).  VMAs
    still tagged with it keep the tag, as in Linux."""
    (pkey,) = syscall_ints("pkey_free", ("pkey",), pkey)
    if not (0 <= pkey < ARCH_MAX_PKEY and mm.pkey_allocation_map >> pkey & 1):
        raise SyscallError(errno.EINVAL, f"pkey_free: pkey {pkey} is not allocated")
    mm.pkey_allocation_map &= ~(1 << pkey)
    return 0
