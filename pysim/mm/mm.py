"""An address space (struct mm_struct): VMAs, the page table, the flush context
(mm->context: ctx_id, tlb_gen, mm_cpumask, kept in C by the architecture) and the
pending-flush count.  The syscalls that act on it live beside it: pysim.mm.mmap,
.madvise, .mprotect, and .memory (faults, populate, user accesses)."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

import mmucore

from .mmap_lock import MmapLock
from .vma import VMA, VMAList

if TYPE_CHECKING:                                   # pragma: no cover
    from .frames import Frames
    from .footprint import KernelFootprint


class File:
    """A file-like backing object: identity for VMA merging, and whether it was opened
    for writing (a shared mapping of a read-only file lacks VM_MAYWRITE)."""

    def __init__(self, name: str = "file", writable: bool = True):
        self.name, self.writable = name, writable

    def __repr__(self) -> str:
        return f"File({self.name!r}{'' if self.writable else ', read-only'})"


class MM:
    """struct mm_struct: VMAs, page table, the flush context and the frame allocator
    its faults draw from."""

    def __init__(self, ctx_id: int, context: Any, frames: "Frames",
                 page_prot: Callable[[VMA], int],
                 footprint: Optional["KernelFootprint"] = None,
                 mmap_base: Optional[int] = None):
        self.ctx_id = ctx_id
        self.context = context
        context.owner = weakref.ref(self)
        self.frames = frames
        kw: dict[str, Any] = {"page_prot_fn": page_prot}     # the arch's protection map
        if mmap_base is not None:
            kw["mmap_base"] = mmap_base
        self.vmas = VMAList(**kw)
        self.pt = mmucore.PageTable()
        if footprint is not None:
            footprint.map_into(self.pt)
        self.tlb_flush_pending = 0
        self.mmap_lock = MmapLock()

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self.context.owner = weakref.ref(self)

    @property
    def tlb_gen(self) -> int:
        """mm->context.tlb_gen: bumped once per flush request."""
        return self.context.tlb_gen

    @tlb_gen.setter
    def tlb_gen(self, value: int) -> None:
        self.context.tlb_gen = value

    @property
    def cpumask(self) -> frozenset:
        """mm_cpumask(mm): the CPUs that may hold the mm's translations."""
        return self.context.cpumask

    def __repr__(self) -> str:
        return f"MM(ctx {self.ctx_id}, {self.vmas.map_count} vmas, gen {self.tlb_gen})"
