"""VMAs of one address space, and the vm_flags rules mmap and mprotect give them.

The VMA bookkeeping (mm/mmap.c, mm/mprotect.c: `find_vma`, `split_vma`, `vma_merge`,
`mprotect_fixup`, the top-down `get_unmapped_area`) runs in C: `VMA`, `VMAList` and the
merge predicates live in mmucore.vma, whose module docstring states the merge rule, and
are re-exported here.  This module keeps the flag helpers (calc_vm_prot_bits,
mmap_vm_flags, mprotect_newflags, mprotect_flags_permitted) and hands mmucore.vma pysim's
error classes, so its misuse errors are PysimError and its failing syscalls SyscallError.
"""
from __future__ import annotations

from mmucore.vma import (VMA, VMAList, anon_vma_compatible, is_mergeable_anon_vma,
                         set_errors, vmas_mergeable)

from ..constants import (
    MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE, MAP_TYPE, MAP_PRIVATE, PROT_EXEC, PROT_READ,
    PROT_WRITE, VM_ACCESS_FLAGS, VM_ACCOUNT, VM_EXEC, VM_GROWSDOWN, VM_LOCKED, VM_MAYEXEC,
    VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_NORESERVE, VM_PKEY_MASK, VM_PKEY_SHIFT,
    VM_READ, VM_SHARED, VM_WRITE,
)
from ..errors import PysimError, SyscallError

__all__ = [
    "VMA", "VMAList", "vmas_mergeable", "is_mergeable_anon_vma", "anon_vma_compatible",
    "calc_vm_prot_bits", "mmap_vm_flags", "mprotect_newflags", "mprotect_flags_permitted",
]


assert (PROT_READ, PROT_WRITE, PROT_EXEC) == (VM_READ, VM_WRITE, VM_EXEC)
_PROT_RWX = PROT_READ | PROT_WRITE | PROT_EXEC


# mmucore.vma cannot import pysim: it raises the classes it is handed here
set_errors(PysimError, SyscallError)


# --- flag helpers (mm/mmap.c, mm/mprotect.c, include/linux/mman.h) ----------------------

def calc_vm_prot_bits(prot: int, pkey: int = 0) -> int:
    """PROT_* bits (and an x86 protection key) as VM_READ/WRITE/EXEC (+ VM_PKEY_*) bits."""
    # PROT_READ/WRITE/EXEC and VM_READ/WRITE/EXEC share bit values (1, 2, 4), so the
    # kernel's _calc_vm_trans() is a mask here
    return (prot & _PROT_RWX) | ((pkey << VM_PKEY_SHIFT) & VM_PKEY_MASK)


def mmap_vm_flags(prot: int, flags: int, pkey: int = 0) -> int:
    """vm_flags do_mmap + mmap_region give a new mapping (file-mode checks not modelled).

    Private writable mappings without MAP_NORESERVE are charged and get VM_ACCOUNT
    (accountable_mapping()), which later decides what mprotect can merge.
    """
    vm = calc_vm_prot_bits(prot, pkey) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if flags & MAP_GROWSDOWN:
        vm |= VM_GROWSDOWN
    if flags & MAP_LOCKED:
        vm |= VM_LOCKED
    if (flags & MAP_TYPE) != MAP_PRIVATE:          # MAP_SHARED or MAP_SHARED_VALIDATE
        vm |= VM_SHARED | VM_MAYSHARE
    if flags & MAP_NORESERVE:                       # honoured in overcommit mode 0 and 1
        vm |= VM_NORESERVE
    if vm & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE:
        vm |= VM_ACCOUNT
    return vm


def mprotect_newflags(oldflags: int, prot: int, pkey: int = -1) -> int:
    """newflags do_mprotect_pkey computes for one VMA: new R/W/X, other bits kept.

    pkey -1 (plain mprotect) keeps the VMA's protection key, as x86's
    arch_override_mprotect_pkey does outside the execute-only special case.
    """
    if pkey < 0:                     # the key stays: only the R/W/X bits change
        return (oldflags & ~VM_ACCESS_FLAGS) | (prot & _PROT_RWX)
    kept = oldflags & ~(VM_ACCESS_FLAGS | VM_PKEY_MASK)
    return calc_vm_prot_bits(prot, pkey) | kept


def mprotect_flags_permitted(newflags: int) -> bool:
    """False if newflags asks for R/W/X whose VM_MAY* bit is clear (mprotect's EACCES)."""
    return (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS == 0
