"""The kernel memory a syscall touches, run through the TLB model in kernel mode.

Kernel text and the direct map use 2 MiB pages, the kernel stack 4K pages; all are
global unless PTI is on (PTI keeps kernel mappings out of the user PCID and drops
_PAGE_GLOBAL).  The page counts are workload structure, not costs: each access is a
TLB event like any other, so flushes and lost PSC entries show up as walks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import mmucore

from ..errors import ConfigError, PysimError

if TYPE_CHECKING:                                   # pragma: no cover
    from .frames import Frames
    from .mm import MM

_FIELDS = ("text_pages", "data_pages", "stack_pages")


class KernelFootprint:
    """Kernel text, direct-map data and stack pages every syscall touches."""

    TEXT = 0xFFFFFFFF81000000        # __START_KERNEL_map + 16 MiB
    DIRECT = 0xFFFF888100000000      # direct map (slab objects, page tables, mm, VMAs)
    STACK = 0xFFFFC90000000000       # vmalloc'd kernel stacks

    def __init__(self, frames: "Frames", pti: bool, **pages: int):
        unknown = sorted(set(pages) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"kernel_footprint field {unknown[0]!r} unknown; allowed: "
                              f"{', '.join(_FIELDS)}", field=f"kernel_footprint.{unknown[0]}",
                              allowed=_FIELDS)
        text = pages.get("text_pages", 3)
        data = pages.get("data_pages", 4)
        stack = pages.get("stack_pages", 2)
        for name, v in (("text_pages", text), ("data_pages", data), ("stack_pages", stack)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) \
                    or not 0 <= v <= 512:
                raise ConfigError(f"kernel_footprint {name} must be 0..512, got {v!r}",
                                  field=f"kernel_footprint.{name}")
        self.text, self.data, self.stack = int(text), int(data), int(stack)
        self.pti = pti
        self.text_pfn = frames.alloc(512 * max(1, self.text), align=512)
        self.data_pfn = frames.alloc(512 * max(1, self.data), align=512)
        self.stack_pfn = frames.alloc(max(1, self.stack))
        vas, kinds = [], []
        for i in range(self.text):
            vas.append(self.TEXT + i * (1 << 21) + 0x40 * i)
            kinds.append(mmucore.FETCH)
        for i in range(self.data):
            vas.append(self.DIRECT + i * (1 << 21) + 0x1000 * i)
            kinds.append(mmucore.WRITE if i % 2 else mmucore.READ)
        for i in range(self.stack):
            vas.append(self.STACK + i * 4096)
            kinds.append(mmucore.WRITE)
        self.vas = np.array(vas, dtype=np.uint64)
        self.kinds = np.array(kinds, dtype=np.uint8)

    def map_into(self, pt: "mmucore.PageTable") -> None:
        """Map the footprint into an mm's page table (the shared kernel half)."""
        g = 0 if self.pti else mmucore.PTE_G
        rw_nx = mmucore.PTE_RW | mmucore.PTE_A | mmucore.PTE_D | mmucore.PTE_NX | g
        if self.text:
            pt.map(self.TEXT, 512 * self.text, mmucore.PTE_A | g, pfn=self.text_pfn, huge=True)
        if self.data:
            pt.map(self.DIRECT, 512 * self.data, rw_nx, pfn=self.data_pfn, huge=True)
        if self.stack:
            pt.map(self.STACK, self.stack, rw_nx, pfn=self.stack_pfn)

    def touch(self, cpu, mm: "MM") -> None:
        """The syscall's kernel-mode accesses on cpu (kernel PCID)."""
        if self.vas.size:
            r = mmucore.access_stream(mm.pt, cpu.tlb, self.vas, self.kinds, user=False)
            if r.faults:
                raise PysimError(f"kernel footprint access 0x{r.fault_va:x} faulted")
