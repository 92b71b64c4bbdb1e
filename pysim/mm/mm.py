"""An address space (struct mm_struct): VMAs, the page table, the flush context
(mm->context: ctx_id, tlb_gen, mm_cpumask, kept in C by the architecture) and the
pending-flush count.  The syscalls that act on it live beside it: pysim.mm.mmap,
.madvise, .mprotect, and .memory (faults, populate, user accesses)."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

import mmucore

from ..constants import (DEFAULT_RLIMIT_MEMLOCK, DEFAULT_RLIMIT_STACK, DEFAULT_START_BRK,
                         VM_LOCKED)
from .mmap_lock import MmapLock
from .vma import VMA, VMAList

if TYPE_CHECKING:                                   # pragma: no cover
    from .frames import Frames
    from .footprint import KernelFootprint


class File:
    """A file-like backing object, the model's open file description: identity for VMA
    merging, its open mode (FMODE_READ / FMODE_WRITE: a shared writable mapping of a file
    not open for writing is EACCES, any mapping of one not open for reading too; a
    shared mapping of a read-only file lacks VM_MAYWRITE), and its size in bytes (None:
    unbounded; an access to a page wholly past EOF is SIGBUS, as filemap_fault() says)."""

    def __init__(self, name: str = "file", writable: bool = True,
                 size: Optional[int] = None, readable: bool = True):
        if size is not None and (not isinstance(size, int) or size < 0):
            raise ValueError(f"File size must be None or an int >= 0, got {size!r}")
        self.name, self.writable, self.size, self.readable = name, writable, size, readable
        self.mmap_supported_flags = 0     # f_op->mmap_supported_flags (MAP_SYNC: DAX only)

    def pages(self) -> Optional[int]:
        """Pages of the file that hold data (DIV_ROUND_UP(i_size, PAGE_SIZE)); None if
        the file is unbounded."""
        return None if self.size is None else -(-self.size // 4096)

    def __repr__(self) -> str:
        mode = ("" if self.writable else ", read-only") + ("" if self.readable else ", write-only")
        size = "" if self.size is None else f", size={self.size}"
        return f"File({self.name!r}{mode}{size})"


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
        self.tlb_flush_batched = 0      # reclaim's batches: pending | flushed << 16 (rmap)
        self.mmap_lock = MmapLock(self.vmas)
        # the heap (mm->start_brk, mm->brk); an exec image moves them
        self.start_brk = self.brk = DEFAULT_START_BRK
        self.def_flags = 0               # mm->def_flags: VM_LOCKED after mlockall(MCL_FUTURE)
        self.pkey_allocation_map = 1     # mm->context.pkey_allocation_map: key 0 is taken
        self.guard_pages: set = set()    # page addresses holding a PTE_MARKER_GUARD
        self.cow_shared = False          # fork left pages shared copy-on-write in this mm
        self.privileged = False          # CAP_SYS_RAWIO / IPC_LOCK / SYS_NICE (mmap_min_addr,
        #                                  mlock, mbind's MPOL_MF_MOVE_ALL)
        self.mems_allowed = 1            # the memory nodes tasks may use (a bitmask): node 0
        self.rlimit_stack = DEFAULT_RLIMIT_STACK
        self.rlimit_memlock = DEFAULT_RLIMIT_MEMLOCK
        self.dead = False                # exit_mmap() ran: nothing may use the mm again

    def __getstate__(self):
        return self.__dict__

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self.context.owner = weakref.ref(self)

    def locked_vm(self) -> int:
        """mm->locked_vm in pages: the VM_LOCKED VMAs' size."""
        return sum(v.pages for v in self.vmas if v.flags & VM_LOCKED)

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
