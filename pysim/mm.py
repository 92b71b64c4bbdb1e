"""An address space (struct mm_struct): VMAs, the page table, tlb_gen and mm_cpumask,
and the syscalls and fault handling that act on them.

mprotect lives in pysim.mprotect, the page-fault handler in pysim.fault and the flush
machinery in pysim.tlbflush; this module holds the state and the remaining syscalls
(mmap, munmap, madvise) and runs user accesses through the core, handing faults over.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

import mmucore

from . import fault
from .constants import (MADV_COLD, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
                        MADV_NOHUGEPAGE, MADV_NORMAL, MADV_POPULATE_READ,
                        MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE,
                        MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED,
                        MAP_SHARED_VALIDATE, MAP_STACK, MAP_TYPE, PAGE_SIZE, PMD_SIZE,
                        PROT_EXEC, PROT_READ, PROT_SEM, PROT_WRITE, TASK_SIZE, VM_HUGEPAGE,
                        VM_MAYWRITE, VM_NOHUGEPAGE, VM_PKEY_MASK, VM_PKEY_SHIFT, VM_SHARED,
                        VM_WRITE, VM_READ, VM_EXEC, VM_MAYSHARE)
from .errors import SyscallError
from .gather import tlb_finish_mmu, tlb_gather_mmu
from .mprotect import do_mprotect_pkey
from .tlbflush import flush_tlb_range
from .vma import VMA, VMAList, mmap_vm_flags

if TYPE_CHECKING:                                   # pragma: no cover
    from .machine import CPU, Machine

_MAP_KNOWN = (MAP_TYPE | MAP_FIXED | MAP_ANONYMOUS | MAP_POPULATE | MAP_NORESERVE
              | MAP_FIXED_NOREPLACE | MAP_STACK)
_PROT_KNOWN = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM
_MADV_KNOWN = {MADV_NORMAL, MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_HUGEPAGE,
               MADV_NOHUGEPAGE, MADV_POPULATE_READ, MADV_POPULATE_WRITE}


class File:
    """A file-like backing object: identity for VMA merging, and whether it was opened
    for writing (a shared mapping of a read-only file lacks VM_MAYWRITE)."""

    def __init__(self, name: str = "file", writable: bool = True):
        self.name, self.writable = name, writable

    def __repr__(self) -> str:
        return f"File({self.name!r}{'' if self.writable else ', read-only'})"


def vma_page_prot(vma: VMA) -> int:
    """vm_get_page_prot() plus x86 protection-key bits (arch_vm_get_page_prot)."""
    pkey = (vma.flags & VM_PKEY_MASK) >> VM_PKEY_SHIFT
    return mmucore.vm_get_page_prot(vma.flags & 0xF) | (pkey << 59)


class MM:
    """struct mm_struct: VMAs, page table, TLB generation and the CPUs that may cache it."""

    def __init__(self, machine: "Machine", ctx_id: int, mmap_base: Optional[int] = None):
        self.machine = machine
        self.ctx_id = ctx_id
        kw: dict[str, Any] = {"page_prot_fn": vma_page_prot}
        if mmap_base is not None:
            kw["mmap_base"] = mmap_base
        self.vmas = VMAList(**kw)
        self.pt = mmucore.PageTable()
        if machine.kernel is not None:
            machine.kernel.map_into(self.pt)
        self.tlb_gen = 0
        self.cpumask: set[int] = set()
        self.tlb_flush_pending = 0

    def __repr__(self) -> str:
        return f"MM(ctx {self.ctx_id}, {self.vmas.map_count} vmas, gen {self.tlb_gen})"

    # -------------------------------------------------------------- mmap
    def do_mmap(self, cpu: "CPU", addr: int, length: int, prot: int,
                flags: Optional[int] = None, file: Optional[File] = None,
                huge: bool = False, pgoff: int = 0) -> int:
        """mmap(): anonymous private by default; MAP_FIXED, MAP_FIXED_NOREPLACE,
        MAP_POPULATE; huge=True also does madvise(MADV_HUGEPAGE) on a 2 MiB-aligned area."""
        m = self.machine
        op = m.current_op
        if flags is None:
            flags = MAP_PRIVATE | (MAP_ANONYMOUS if file is None else 0)
        for name, v in (("addr", addr), ("length", length), ("prot", prot), ("flags", flags)):
            if not isinstance(v, (int, np.integer)):
                raise SyscallError(errno.EINVAL, f"mmap: {name} must be an integer")
        if flags & ~_MAP_KNOWN:
            raise SyscallError(errno.EINVAL, f"mmap: unknown or unmodelled flags "
                                             f"0x{flags & ~_MAP_KNOWN:x}")
        if prot & ~_PROT_KNOWN:
            raise SyscallError(errno.EINVAL, f"mmap: unknown prot bits 0x{prot & ~_PROT_KNOWN:x}")
        if flags & MAP_TYPE not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
            raise SyscallError(errno.EINVAL, "mmap: flags need exactly one of MAP_SHARED "
                                             "or MAP_PRIVATE")
        if length <= 0:
            raise SyscallError(errno.EINVAL, f"mmap: length {length} must be positive")
        if (flags & MAP_ANONYMOUS) and file is not None:
            raise SyscallError(errno.EINVAL, "mmap: MAP_ANONYMOUS with a file")
        if not (flags & MAP_ANONYMOUS) and file is None:
            raise SyscallError(errno.EBADF, "mmap: a file mapping needs file=File(...)")
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
        op.charge(cpu, "vma", m.cost("mmap_base"))
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr % PAGE_SIZE:
                raise SyscallError(errno.EINVAL, f"mmap: fixed address 0x{addr:x} is not "
                                                 f"page aligned")
            if addr + length > TASK_SIZE or addr < 0:
                raise SyscallError(errno.ENOMEM, f"mmap: fixed range [0x{addr:x}, "
                                                 f"+0x{length:x}) is outside user space")
            if flags & MAP_FIXED_NOREPLACE and \
                    self.vmas.find_vma_intersection(addr, addr + length) is not None:
                raise SyscallError(errno.EEXIST, f"mmap: [0x{addr:x}, +0x{length:x}) "
                                                 f"overlaps an existing mapping")
            if flags & MAP_FIXED:
                self._unmap(cpu, addr, addr + length)
            start = addr
        else:
            align = PMD_SIZE if (huge or length >= PMD_SIZE) else PAGE_SIZE
            start = self.vmas.get_unmapped_area(length, align=align,
                                                hint=addr if addr else None)
        vma = VMA(start, start + length, vm_flags, anon=file is None, shared=shared,
                  file=file, pgoff=(start >> 12) if file is None else pgoff)
        vma.page_prot = vma_page_prot(vma)
        self.vmas.insert_merging(vma)
        if flags & MAP_POPULATE:
            self.populate(cpu, start, start + length, write=bool(vm_flags & VM_WRITE)
                          and not shared)
        return start

    # -------------------------------------------------------------- munmap
    def do_munmap(self, cpu: "CPU", addr: int, length: int) -> int:
        """munmap(): remove the VMAs, zap their entries, free page tables, flush."""
        for name, v in (("addr", addr), ("length", length)):
            if not isinstance(v, (int, np.integer)):
                raise SyscallError(errno.EINVAL, f"munmap: {name} must be an integer")
        if addr % PAGE_SIZE:
            raise SyscallError(errno.EINVAL, f"munmap: 0x{addr:x} is not page aligned")
        if length <= 0:
            raise SyscallError(errno.EINVAL, f"munmap: length {length} must be positive")
        length = -(-length // PAGE_SIZE) * PAGE_SIZE
        if addr < 0 or addr + length > TASK_SIZE:
            raise SyscallError(errno.EINVAL, f"munmap: [0x{addr:x}, +0x{length:x}) is "
                                             f"outside user space")
        self.machine.current_op.charge(cpu, "vma", self.machine.cost("munmap_base"))
        self._unmap(cpu, addr, addr + length)
        return 0

    def _unmap(self, cpu: "CPU", start: int, end: int) -> None:
        """unmap_region(): zap the removed VMAs' entries and free tables nothing else uses."""
        removed = self.vmas.remove_range(start, end)
        if not removed:
            return
        m = self.machine
        prev, nxt = self.vmas.find_vma_prev(start)[1], self.vmas.find_vma(start)
        floor = prev.end if prev is not None else 0
        ceiling = nxt.start if nxt is not None else TASK_SIZE
        with tlb_gather_mmu(cpu, self) as tlb:
            zapped = 0
            for i, vma in enumerate(removed):
                last = i == len(removed) - 1
                # free_pgtables once, after the last zap: every table in the gap
                # [floor, ceiling) that no remaining VMA can use goes
                n4k, nhuge, splits = self.pt.zap_range(
                    vma.start, (vma.end - vma.start) // PAGE_SIZE, tlb.state,
                    floor if last else 0, ceiling if last else 0)
                for a in splits:
                    flush_tlb_range(cpu, self, a, a + PMD_SIZE)
                zapped += n4k + 512 * nhuge
            m.current_op.charge(cpu, "pte", zapped * m.cost("per_page_zap"))

    # -------------------------------------------------------------- madvise
    def do_madvise(self, cpu: "CPU", start: int, length: int, advice: int) -> int:
        """madvise(): DONTNEED, FREE, COLD, HUGEPAGE/NOHUGEPAGE, POPULATE_READ/WRITE."""
        m = self.machine
        for name, v in (("start", start), ("length", length), ("advice", advice)):
            if not isinstance(v, (int, np.integer)):
                raise SyscallError(errno.EINVAL, f"madvise: {name} must be an integer")
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
        m.current_op.charge(cpu, "pte", m.cost("madvise_base"))
        pieces = [(max(v.start, start), min(v.end, end), v) for v in self.vmas.vmas_in(start, end)]
        hole = self.vmas.first_hole(start, end)
        if advice in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
            for s, e, v in pieces:
                cur = self.vmas.find_vma(s)
                newflags = (cur.flags | VM_HUGEPAGE) & ~VM_NOHUGEPAGE if advice == MADV_HUGEPAGE \
                    else (cur.flags | VM_NOHUGEPAGE) & ~VM_HUGEPAGE
                if newflags != cur.flags:
                    prev = cur if s > cur.start else self.vmas.find_vma_prev(s)[1]
                    self.vmas.vma_modify_flags(cur, prev, s, e, newflags)
        elif advice in (MADV_DONTNEED, MADV_FREE, MADV_COLD):
            if advice == MADV_FREE and any(not v.anon or v.shared for _, _, v in pieces):
                raise SyscallError(errno.EINVAL, "madvise: MADV_FREE needs private anonymous "
                                                 "memory")
            with tlb_gather_mmu(cpu, self) as tlb:
                for s, e, v in pieces:
                    n = (e - s) // PAGE_SIZE
                    if advice == MADV_DONTNEED:
                        _, _, splits = self.pt.zap_range(s, n, tlb.state, 0, 0)
                    else:
                        _, _, splits = self.pt.clear_young_dirty(s, n, tlb.state,
                                                                 advice == MADV_FREE)
                    for a in splits:
                        flush_tlb_range(cpu, self, a, a + PMD_SIZE)
        elif advice in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
            if hole is not None:
                raise SyscallError(errno.ENOMEM, f"madvise: hole at 0x{hole:x}")
            write = advice == MADV_POPULATE_WRITE
            for s, e, v in pieces:
                if not v.flags & (VM_READ | VM_WRITE | VM_EXEC) or \
                        (write and not v.flags & VM_WRITE):
                    raise SyscallError(errno.EINVAL,
                                       f"madvise: {v!r} does not permit "
                                       f"{'writes' if write else 'reads'}")
            for s, e, v in pieces:
                self.populate(cpu, s, e, write=write)
        if hole is not None:
            raise SyscallError(errno.ENOMEM, f"madvise: [0x{start:x}, 0x{end:x}) has a hole "
                                             f"at 0x{hole:x}")
        return 0

    # -------------------------------------------------------------- mprotect
    def do_mprotect_pkey(self, cpu: "CPU", start: int, length: int, prot: int,
                         pkey: int = -1) -> int:
        return do_mprotect_pkey(self, cpu, start, length, prot, pkey)

    # -------------------------------------------------------------- populate and faults
    def populate(self, cpu: "CPU", start: int, end: int, write: bool) -> None:
        """Fault in [start, end) as GUP does (MAP_POPULATE, MADV_POPULATE_*), in C for the
        empty entries; present entries that a write must upgrade go through the fault path."""
        fault.populate(self, cpu, start, end, write)

    def run_accesses(self, cpu: "CPU", vas: np.ndarray, kinds: np.ndarray) -> int:
        """User accesses through the core; faults handled here and the access retried."""
        return fault.run_accesses(self, cpu, vas, kinds)
