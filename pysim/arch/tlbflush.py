"""The TLB-flush entry points under their kernel names, for kernel paths written in
Python (the built-in ones and a user's): each hands a CPU and an mm to the CPU's
architecture.  On x86 the state and the rules (flush_tlb_func's three generations, ASID
choice, lazy TLB, PTI's deferred user-PCID flush, the IPI loop) live in C, in
mmucore.tlbstate, whose module comment explains them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:                                   # pragma: no cover
    from ..mm.mm import MM
    from . import CPU

FlushInfo = Any       # the architecture's request record (x86: mmucore.tlbstate.FlushInfo)


def flush_tlb_mm_range(cpu: "CPU", mm: "MM", start: int, end: int, stride_shift: int,
                       freed_tables: bool) -> FlushInfo:
    """flush_tlb_mm_range(): ceiling rule, tlb_gen bump, the local flush and IPIs to
    every other non-lazy CPU of mm_cpumask (lazy ones too when page tables were freed;
    6.14: CPUs that left the mm only when the mask is trimmed), or on x86 6.15+ with
    INVLPGB an INVLPGB broadcast for an mm with a global ASID."""
    return cpu.arch.flush_tlb_mm_range(cpu, mm, start, end, stride_shift, freed_tables)


def flush_tlb_range(cpu: "CPU", mm: "MM", start: int, end: int,
                    hugetlb: bool = False) -> FlushInfo:
    """flush_tlb_range(vma, start, end): stride 4K unless the VMA is hugetlb."""
    return cpu.arch.flush_tlb_range(cpu, mm, start, end, hugetlb)


def switch_mm_irqs_off(cpu: "CPU", mm: Optional["MM"]) -> None:
    """Make cpu run mm (None: init_mm): cpumask, ASID choice, CR3."""
    cpu.arch.switch_mm(cpu, mm)


def enter_lazy_tlb(cpu: "CPU") -> None:
    """A kernel thread borrows the mm: keep CR3 and the cpumask bit, mark the CPU lazy."""
    cpu.arch.enter_lazy_tlb(cpu)


def return_to_user(cpu: "CPU") -> None:
    """The exit-to-user path: with PTI, the deferred flush of the loaded ASID's user PCID."""
    cpu.arch.return_to_user(cpu)
