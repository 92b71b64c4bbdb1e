"""x86 TLB shootdown machinery (arch/x86/mm/tlb.c): flush_tlb_mm_range, flush_tlb_func,
ASID slots with lazy invalidation of other ASIDs, lazy-TLB CPUs, IPIs, PTI user PCIDs.

Three generations decide what a CPU does (see kernel-semantics.md 7.4): the mm's
`tlb_gen` (bumped once per flush request), the CPU's slot generation (what it is known
clean up to) and the request's new generation.  A CPU that is exactly one generation
behind does the requested partial flush; one that missed more does a full flush.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .constants import PAGE_SHIFT, TLB_FLUSH_ALL

if TYPE_CHECKING:                                   # pragma: no cover
    from .machine import CPU, MM

USER_PCID_BIT = 1 << 11         # PTI: the user copy of an ASID uses kPCID | bit 11


@dataclass
class FlushInfo:
    """struct flush_tlb_info: one flush request as every target sees it."""

    mm: "MM"
    start: int
    end: int
    stride_shift: int
    freed_tables: bool
    new_tlb_gen: int
    initiator: int

    @property
    def full(self) -> bool:
        return self.end == TLB_FLUSH_ALL

    @property
    def nr_pages(self) -> int:
        return 0 if self.full else (self.end - self.start) >> self.stride_shift


def kern_pcid(asid: int) -> int:
    """The hardware PCID of a kernel ASID (ASID + 1: PCID 0 is never a dynamic one)."""
    return asid + 1


def user_pcid(asid: int) -> int:
    return kern_pcid(asid) | USER_PCID_BIT


# ----------------------------------------------------------------- context switching
def choose_new_asid(cpu: "CPU", mm: "MM") -> tuple[int, bool]:
    """choose_new_asid(): reuse mm's slot (flush iff its generation is stale) or take the
    next slot round-robin (always flush)."""
    prof = cpu.machine.profile
    if not prof.pcid:
        return 0, True
    for asid, (ctx_id, gen) in enumerate(cpu.asids):
        if ctx_id == mm.ctx_id:
            return asid, gen < mm.tlb_gen
    asid = cpu.next_asid
    cpu.next_asid = (cpu.next_asid + 1) % prof.nr_dyn_asids
    return asid, True


def load_cr3(cpu: "CPU", asid: int, flush: bool) -> None:
    """Write CR3 for asid, with or without NOFLUSH; with PTI the user PCID is flushed
    later, on the way back to user space."""
    op = cpu.machine.current_op
    cpu.tlb.switch_pcid(kern_pcid(asid), flush)
    if flush and cpu.machine.profile.pti:
        cpu.user_flush_pending.add(asid)
    if op is not None and flush:
        op.count(cpu, "tlb_flush_on_switch")


def switch_mm_irqs_off(cpu: "CPU", mm: Optional["MM"]) -> None:
    """Make cpu run mm (None = init_mm, a kernel thread): cpumask, ASID choice, CR3."""
    prev = cpu.loaded_mm
    op = cpu.machine.current_op
    if mm is prev:
        if mm is not None and cpu.is_lazy:
            # leaving lazy mode: catch up if a flush skipped us meanwhile
            cpu.is_lazy = False
            ctx_id, gen = cpu.asids[cpu.loaded_asid]
            if gen < mm.tlb_gen:
                cpu.asids[cpu.loaded_asid] = [mm.ctx_id, mm.tlb_gen]
                load_cr3(cpu, cpu.loaded_asid, True)
        return
    if op is not None:
        op.count(cpu, "context_switches")
        op.charge(cpu, "context_switch", cpu.machine.cost("context_switch"))
    if prev is not None:
        prev.cpumask.discard(cpu.id)          # 5.17: cleared when switching to another mm
    cpu.is_lazy = False
    if mm is None:
        cpu.loaded_mm = None
        cpu.tlb.switch_pcid(0, False)         # init_mm: kernel mappings only
        return
    mm.cpumask.add(cpu.id)
    asid, need_flush = choose_new_asid(cpu, mm)
    cpu.asids[asid] = [mm.ctx_id, mm.tlb_gen]
    cpu.loaded_mm = mm
    cpu.loaded_asid = asid
    load_cr3(cpu, asid, need_flush)


def enter_lazy_tlb(cpu: "CPU") -> None:
    """A kernel thread borrows the mm: keep CR3 and the cpumask bit, mark the CPU lazy."""
    if cpu.loaded_mm is not None and cpu.machine.profile.lazy_tlb:
        cpu.is_lazy = True
    elif cpu.loaded_mm is not None:
        switch_mm_irqs_off(cpu, None)


def return_to_user(cpu: "CPU") -> None:
    """The exit-to-user path: with PTI, do the deferred user-PCID flush (CR3 write)."""
    if cpu.user_flush_pending and cpu.loaded_mm is not None:
        asid = cpu.loaded_asid
        if asid in cpu.user_flush_pending:
            cpu.tlb.flush_pcid(user_pcid(asid))
            op = cpu.machine.current_op
            if op is not None:
                op.count(cpu, "user_pcid_flush")
        cpu.user_flush_pending.clear()


# ----------------------------------------------------------------- the flush itself
def flush_tlb_one_user(cpu: "CPU", addr: int) -> None:
    """INVLPG addr in the kernel PCID; with PTI also the user PCID (INVPCID if the CPU
    has it, else the whole user ASID is marked for a flush on return to user)."""
    cpu.tlb.invlpg(addr)
    if cpu.machine.profile.pti:
        if cpu.machine.profile.invpcid:
            cpu.tlb.invpcid_single(addr, user_pcid(cpu.loaded_asid))
        else:
            cpu.user_flush_pending.add(cpu.loaded_asid)


def flush_tlb_local(cpu: "CPU") -> None:
    """Full flush of the loaded ASID's non-global entries (CR3 reload)."""
    cpu.tlb.flush_pcid(kern_pcid(cpu.loaded_asid))
    if cpu.machine.profile.pti:
        cpu.user_flush_pending.add(cpu.loaded_asid)


def flush_tlb_func(cpu: "CPU", f: FlushInfo, local: bool) -> float:
    """flush_tlb_func() on one target; returns the kernel cycles it spent (the hardware
    invalidation cycles land on the CPU's TLB counters)."""
    m = cpu.machine
    op = m.current_op
    if not local:
        op.count(cpu, "nr_tlb_remote_flush_received")
    if f.mm is not cpu.loaded_mm:
        return 0.0
    if cpu.is_lazy:
        switch_mm_irqs_off(cpu, None)        # lazy CPU reached (tables freed): leave the mm
        return 0.0
    slot = cpu.asids[cpu.loaded_asid]
    local_gen, mm_gen = slot[1], f.mm.tlb_gen
    if m.profile.flush_func_early_exit and f.new_tlb_gen <= local_gen:
        return 0.0
    if local_gen == mm_gen:
        return 0.0
    partial = (not f.full and f.new_tlb_gen == local_gen + 1 and f.new_tlb_gen == mm_gen)
    cycles = 0.0
    if partial:
        n = f.nr_pages
        for i in range(n):
            flush_tlb_one_user(cpu, f.start + (i << f.stride_shift))
        cycles += n * m.cost("flush_per_page")
        op.count(cpu, "nr_tlb_local_flush_one" if local else "remote_flush_one", n)
    else:
        flush_tlb_local(cpu)
        op.count(cpu, "nr_tlb_local_flush_all" if local else "remote_flush_all")
    slot[1] = mm_gen
    return cycles


def flush_tlb_mm_range(cpu: "CPU", mm: "MM", start: int, end: int, stride_shift: int,
                       freed_tables: bool) -> FlushInfo:
    """flush_tlb_mm_range(): ceiling rule, tlb_gen bump, local flush and IPIs to every
    other non-lazy CPU of mm_cpumask (lazy ones too when page tables were freed)."""
    m = cpu.machine
    op = m.current_op
    if end != TLB_FLUSH_ALL and \
            (end - start) >> stride_shift > m.profile.tlb_single_page_flush_ceiling:
        start, end = 0, TLB_FLUSH_ALL
    mm.tlb_gen += 1
    f = FlushInfo(mm, start, end, stride_shift, freed_tables, mm.tlb_gen, cpu.id)
    op.count(cpu, "flush_tlb_mm_range")
    op.charge(cpu, "flush", m.cost("flush_base"))
    others = [m.cpus[c] for c in sorted(mm.cpumask) if c != cpu.id]
    remote = [c for c in others if freed_tables or not c.is_lazy]
    run_local = cpu.loaded_mm is mm
    hw0 = cpu.tlb.cycles.sum()
    kernel = flush_tlb_func(cpu, f, local=True) if run_local else 0.0
    op.charge(cpu, "flush", kernel)
    local_cycles = kernel + (cpu.tlb.cycles.sum() - hw0)  # + the INVLPGs / CR3 write
    if others:
        # native_flush_tlb_multi counts before lazy CPUs are filtered out
        op.count(cpu, "nr_tlb_remote_flush")
    if remote:
        op.count(cpu, "ipi_sent", len(remote))
        rtt = 0.0
        for c in remote:
            hw = c.tlb.cycles.sum()
            kernel = m.cost("ipi_handler") + flush_tlb_func(c, f, local=False)
            if c.running_user:
                return_to_user(c)            # the busy thread goes back to user space
            op.charge(c, "ipi_handler", kernel)
            work = kernel + (c.tlb.cycles.sum() - hw)
            rtt = max(rtt, m.cost("ipi_deliver") + work + m.cost("ipi_ack"))
        send = m.cost("ipi_send") + m.cost("ipi_extra_target") * (len(remote) - 1)
        op.charge(cpu, "ipi", send + max(0.0, rtt - local_cycles))
    return f


def flush_tlb_range(cpu: "CPU", mm: "MM", start: int, end: int, hugetlb: bool = False) -> None:
    """flush_tlb_range(vma, start, end): stride 4K unless the VMA is hugetlb."""
    flush_tlb_mm_range(cpu, mm, start, end, 21 if hugetlb else PAGE_SHIFT,
                       cpu.machine.profile.flush_tlb_range_freed_tables)
