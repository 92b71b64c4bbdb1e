"""The architecture seam: what differs per architecture, behind one interface.

Generic kernel paths (pysim.mm) call these hooks through `cpu.arch`, never an
architecture's module: flushing a gather, flush_tlb_mm_range, switch_mm, the exit to
user space, the VMA protection map, and which PCIDs of a CPU hold live translations.
The preset chooses the architecture (`preset.arch`): x86, with its flush_tlb_multi
backends in C (mmucore.tlbstate), or arm64 (pysim.arch.arm64: broadcast TLBI and DSB).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Type

from mmucore import CP_RECORD_NEEDED
from mmucore.stats import B_SYSCALL, K_SYSCALLS

from ..errors import ConfigError

if TYPE_CHECKING:                                   # pragma: no cover
    from ..config import KernelConfig


class CPU(Protocol):
    """What a kernel path is handed as its CPU (the machine layer's CPU class is the
    one implementation): counters, TLB state, frozen config and the arch hooks."""

    id: int
    tlb: Any            # mmucore.TLB
    stats: Any          # mmucore.stats.CpuStats: count() / charge() by enum
    tlbstate: Any       # the arch's per-CPU TLB state (x86: mmucore.tlbstate.CpuTlbState)
    cfg: "KernelConfig"
    arch: "Arch"
    faults: list        # (index, va, kind, outcome) of the operation in flight
    # the profile's per-call decisions, made once (see the CPU class of the machine layer)
    cp_gather_mode: int
    cp_writable_mode: int
    gather_merges_vmas: bool
    gather_batch_reserve: int


class Arch:
    """Hooks an architecture provides; each raises until an implementation overrides it."""

    name = "none"
    # MMU_GATHER_MERGE_VMAS: one flush per gather across VMAs (x86 selects it)
    merges_vmas_in_gather = True
    # __HAVE_ARCH_PMDP_INVALIDATE_AD: the arch's pmdp_invalidate_ad() leaves the flush to
    # the mmu_gather (x86 defines it); without it the generic one in mm/pgtable-generic.c
    # is pmdp_invalidate(), which flushes at once (arm64), so patch 3 of the mprotect
    # series (profile huge_pmd_ad_no_flush) changes nothing there
    has_pmdp_invalidate_ad = True

    def __init__(self, cfg: "KernelConfig", tlbs: list, cpu_stats: list):
        self.cfg = cfg

    def cpu_state(self, cpu_id: int) -> Any:
        """The per-CPU TLB state object of cpu_id (its tlbstate)."""
        raise NotImplementedError

    def new_context(self, ctx_id: int) -> Any:
        """A new mm's flush context (ctx_id, tlb_gen, cpumask)."""
        raise NotImplementedError

    def switch_mm(self, cpu: Any, mm: Optional[Any]) -> None:
        """switch_mm_irqs_off(): make cpu run mm (None: no user mm)."""
        raise NotImplementedError

    def enter_lazy_tlb(self, cpu: Any) -> None:
        """cpu goes idle and may keep its mm loaded."""
        raise NotImplementedError

    def leave_mm(self, cpu: Any) -> None:
        """The idle CPU enters a state that loses its TLB (CPUIDLE_FLAG_TLB_FLUSHED):
        x86's leave_mm() switches it to init_mm; an arch without that hook does
        nothing."""

    def syscall_enter(self, cpu: Any, ctx: Any, pid: int, cost: float,
                      cycles_per_jiffy: float) -> None:
        """syscall_enter_from_user_mode() on cpu: the accounting window opened with the
        syscall counted and `cost` charged, jiffies from cpu's clock, ctx's current->pid
        (flush rules sample it), then the entry from user mode."""
        st = cpu.stats
        st.acct.begin_entry(st, K_SYSCALLS, B_SYSCALL, cost)
        self.set_jiffies(int(cpu.tlbstate.now // cycles_per_jiffy))
        ctx.pid = pid
        cpu.tlbstate.running_user = False
        self.kernel_entry(cpu)

    def syscall_exit(self, cpu: Any, to_user: bool, cls: type, name: str, value: Any,
                     faults: list) -> Any:
        """syscall_exit_to_user_mode() on cpu: the exit to user space when a thread runs
        there, then the accounting window closed into a new cls record."""
        if to_user:
            self.return_to_user(cpu)
        return cpu.stats.acct.close(cls, name, cpu.id, value, faults)

    def return_to_user(self, cpu: Any) -> None:
        """The exit to user space on cpu (deferred invalidations happen here)."""
        raise NotImplementedError

    def kernel_entry(self, cpu: Any) -> None:
        """An entry from user mode on cpu: a syscall or a page fault."""
        raise NotImplementedError

    def flush_tlb_mm_range(self, cpu: Any, mm: Any, start: int, end: int,
                           stride_shift: int, freed_tables: bool) -> Any:
        """Invalidate [start, end) of mm everywhere it may be cached."""
        raise NotImplementedError

    def flush_tlb_range(self, cpu: Any, mm: Any, start: int, end: int,
                        hugetlb: bool = False) -> Any:
        """flush_tlb_range(vma, start, end): the arch's stride and freed-tables choice."""
        raise NotImplementedError

    def flush_pmd_tlb_range(self, cpu: Any, mm: Any, start: int, end: int) -> Any:
        """flush_pmd_tlb_range(vma, start, end), pmdp_invalidate()'s flush: the generic
        macro of include/linux/pgtable.h is flush_tlb_range() (x86 keeps it); an arch
        with __HAVE_ARCH_FLUSH_PMD_TLB_RANGE overrides this."""
        return self.flush_tlb_range(cpu, mm, start, end)

    def tlb_flush(self, tlb: Any) -> Any:
        """Flush what an mmu_gather recorded (the arch's tlb_flush())."""
        raise NotImplementedError

    def vm_page_prot(self, vm_flags: int) -> int:
        """The page protection (PTE bits) of a VMA's flags."""
        raise NotImplementedError

    def vma_page_prot(self, vma: Any) -> int:
        """vma_set_page_prot(): vm_page_prot of a VMA (its flags through the map)."""
        return self.vm_page_prot(vma.flags)

    def user_pcid(self, cpu: Any) -> int:
        """The PCID / ASID tag user-mode accesses run under on cpu."""
        raise NotImplementedError

    def slots_caching(self, mm: Any) -> List[tuple]:
        """(cpu id, asid, slot generation) of every ASID slot on any CPU caching mm."""
        raise NotImplementedError

    def live_tags(self, cpu: Any, asid: int, loaded: bool) -> List[int]:
        """Tags of cpu's ASID slot whose cached entries may still be used (loaded: the
        slot is the CPU's loaded mm and ASID, lazy or not)."""
        raise NotImplementedError

    def set_timeline(self, on: bool) -> None:
        """CPUs run at once (the timeline) or one operation at a time: on the
        timeline the flush path queues IPI handlers and contends for shared lines."""
        raise NotImplementedError

    def global_slots(self, mm: Any) -> List[tuple]:
        """(cpu id, asid, generation) of ASIDs mm holds on every CPU at once (x86 global
        ASIDs), which no per-CPU slot lists; none by default."""
        return []

    # reclaim's batched unmap flush (pysim.mm.rmap; the kernel's arch_tlbbatch_* API)
    def new_tlbbatch(self) -> Any:
        """An empty struct arch_tlbflush_unmap_batch."""
        raise NotImplementedError

    def arch_tlbbatch_should_defer(self, cpu: Any, mm: Any) -> bool:
        """Whether try_to_unmap() on cpu should batch mm's flush rather than flush now."""
        raise NotImplementedError

    def arch_tlbbatch_add_pending(self, cpu: Any, batch: Any, mm: Any, uaddr: int) -> None:
        """Record in batch that mm's page uaddr was unmapped and needs a flush (an arch
        may start the invalidation here, asynchronously)."""
        raise NotImplementedError

    def arch_tlbbatch_flush(self, cpu: Any, batch: Any) -> None:
        """Flush everything batch recorded, from cpu, and empty it."""
        raise NotImplementedError

    def arch_flush_tlb_batched_pending(self, cpu: Any, mm: Any) -> None:
        """flush_tlb_batched_pending()'s flush: mm had batched unmaps whose flush another
        path may not have seen completed (x86 and arm64: flush_tlb_mm)."""
        raise NotImplementedError

    def change_needed_mode(self, profile: Any) -> int:
        """The change_protection mode bit of the arch's pte_needs_flush() (x86's rule
        by default; arm64 picks its own)."""
        return CP_RECORD_NEEDED

    def cpu_slots(self, cpu: Any) -> List[tuple]:
        """(asid, ctx_id, generation) of every ASID slot of cpu (x86: its dynamic
        ASIDs, by index)."""
        return [(asid, ctx_id, gen)
                for asid, (ctx_id, gen) in enumerate(cpu.tlbstate.asids)]

    def pending_note(self, tag: int, va: int) -> str:
        """A note for a violation at (tag, va) naming an issued broadcast invalidation
        not yet completed; none by default."""
        return ""

    def set_jiffies(self, jiffies: int) -> None:
        """The kernel's tick count for rules that sample time (x86: trimming the
        cpumask, choosing mms for global ASIDs); ignored by default."""


ARCHES: Dict[str, Type[Arch]] = {}


def register(cls: Type[Arch]) -> Type[Arch]:
    """Class decorator: make an Arch implementation selectable by preset.arch."""
    ARCHES[cls.name] = cls
    return cls


def get_arch(cfg: "KernelConfig", tlbs: list, cpu_stats: list) -> Arch:
    """The preset's architecture, built over the machine's TLBs and CPU counters."""
    from . import arm64, x86  # noqa: F401  (register themselves)
    try:
        cls = ARCHES[cfg.preset.arch]
    except KeyError:
        raise ConfigError(f"arch {cfg.preset.arch!r} unknown; allowed: "
                          f"{', '.join(ARCHES)}", field="arch", allowed=tuple(ARCHES))
    return cls(cfg, tlbs, cpu_stats)
