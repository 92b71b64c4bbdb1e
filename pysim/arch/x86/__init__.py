"""x86-64: 4-level page tables with the real bit layout, PCID-tagged TLBs, PTI, and
the shootdown machinery of arch/x86/mm/tlb.c (state and loops in mmucore.tlbstate)."""
from __future__ import annotations

import functools
from typing import Any, List, Optional

import mmucore
from mmucore import tlbstate

from .. import Arch, register
from ...constants import PAGE_SHIFT, TLB_FLUSH_ALL, VM_PKEY_MASK, VM_PKEY_SHIFT

USER_PCID_BIT = tlbstate.USER_PCID_BIT
_PROT_FLAGS = 0xF | VM_PKEY_MASK         # VM_READ|WRITE|EXEC|SHARED and the key
_PAGE_PROT: dict = {}                    # those flags -> pgprot, memoised


def kern_pcid(asid: int) -> int:
    """The hardware PCID of a kernel ASID (ASID + 1: PCID 0 is never a dynamic one)."""
    return asid + 1


def user_pcid(asid: int) -> int:
    """The PCID of an ASID's user copy under PTI (kernel PCID | bit 11)."""
    return kern_pcid(asid) | USER_PCID_BIT


@register
class X86(Arch):
    """x86-64 behind the Arch seam; flush_tlb_multi backend "ipi" (native); with a 6.15+
    profile on a preset with invlpgb, mms with a global ASID flush by INVLPGB."""

    name = "x86"

    def __init__(self, cfg, tlbs: list, cpu_stats: list, backend: Optional[str] = None):
        super().__init__(cfg, tlbs, cpu_stats)
        prof = cfg.profile
        states = [tlbstate.CpuTlbState(i, t, cpu_stats[i], prof.nr_dyn_asids)
                  for i, t in enumerate(tlbs)]
        params = dict(pcid=cfg.pcid, invpcid=cfg.invpcid, pti=prof.pti,
                      lazy_tlb=prof.lazy_tlb, early_exit=prof.flush_func_early_exit,
                      ceiling=prof.tlb_single_page_flush_ceiling, nr_asids=prof.nr_dyn_asids,
                      lazy_cpumask=prof.lazy_cpumask, trim_cpumask=prof.trim_cpumask,
                      hz=prof.hz, invlpgb=self.uses_invlpgb(cfg),
                      invlpgb_count_max=cfg.preset.invlpgb_count_max,
                      max_asid_available=tlbstate.MAX_ASID_AVAILABLE,
                      rar=self.uses_rar(cfg))
        if backend is None:
            backend = "rar" if params["rar"] else "ipi"
        costs = {k: getattr(cfg.cost, k) for k in tlbstate.COST_FIELDS}
        self.flush = tlbstate.X86Flush(states, params, costs, backend)
        self.ncpus = len(tlbs)
        # the hooks every syscall calls, bound straight to C (one call, not two):
        # set_jiffies(j) is setattr(flush, "jiffies", j), as the method below says
        self.kernel_entry = self.flush.kernel_entry_of
        self.return_to_user = self.flush.return_to_user_of
        self.set_jiffies = functools.partial(setattr, self.flush, "jiffies")
        # and a syscall's whole entry and exit, each one C call (Arch.syscall_enter and
        # Arch.syscall_exit say what they do)
        self.syscall_enter = self.flush.syscall_enter_from_user_mode
        self.syscall_exit = self.flush.syscall_exit_to_user_mode
        self.pti = prof.pti
        self.freed_tables_on_range = prof.flush_tlb_range_freed_tables

    def set_timeline(self, on: bool) -> None:
        self.flush.timeline = on

    @staticmethod
    def uses_invlpgb(cfg) -> bool:
        """Whether the kernel flushes by INVLPGB broadcast: a 6.15+ profile on a CPU with
        INVLPGB (and PCIDs: a global ASID is a PCID; a CPU without PCIDs runs ASID 0)."""
        return bool(cfg.profile.broadcast_tlb_flush and cfg.invlpgb and cfg.pcid)

    def set_kvm_pv_flush(self, chance: float, seed: int) -> None:
        """KVM's paravirtual TLB flush for this guest (X86Flush.set_kvm_pv_flush)."""
        self.flush.set_kvm_pv_flush(chance, seed)

    @staticmethod
    def uses_rar(cfg) -> bool:
        """Whether the kernel flushes global-ASID mms by Intel RAR: the rar-rfc profile
        (rar_tlb_flush) on a CPU with RAR and PCIDs, and without INVLPGB (which the RFC
        prefers when both exist)."""
        return bool(getattr(cfg.profile, "rar_tlb_flush", False) and cfg.rar and cfg.pcid
                    and not X86.uses_invlpgb(cfg))

    def set_jiffies(self, jiffies: int) -> None:
        """Set the jiffies the C rules sample (X86Flush.jiffies)."""
        self.flush.jiffies = jiffies

    def cpu_state(self, cpu_id: int) -> tlbstate.CpuTlbState:
        return self.flush.cpu(cpu_id)

    def new_context(self, ctx_id: int) -> tlbstate.MMContext:
        """init_new_context(): a fresh mm context; next_trim_cpumask = jiffies + HZ."""
        ctx = tlbstate.MMContext(ctx_id, self.ncpus)
        ctx.next_trim_cpumask = self.flush.jiffies + self.cfg.profile.hz
        return ctx

    def switch_mm(self, cpu: Any, mm: Optional[Any]) -> None:
        self.flush.switch_mm(cpu.tlbstate, mm.context if mm is not None else None)

    def enter_lazy_tlb(self, cpu: Any) -> None:
        self.flush.enter_lazy_tlb(cpu.tlbstate)

    def leave_mm(self, cpu: Any) -> None:
        self.flush.leave_mm(cpu.tlbstate)

    def flush_tlb_mm_range(self, cpu: Any, mm: Any, start: int, end: int,
                           stride_shift: int, freed_tables: bool) -> tlbstate.FlushInfo:
        return self.flush.flush_tlb_mm_range(cpu.tlbstate, mm.context, start, end,
                                             stride_shift, freed_tables)

    def flush_tlb_range(self, cpu: Any, mm: Any, start: int, end: int,
                        hugetlb: bool = False) -> tlbstate.FlushInfo:
        """flush_tlb_range(vma, start, end): stride 4K unless the VMA is hugetlb."""
        return self.flush.flush_tlb_mm_range(cpu.tlbstate, mm.context, start, end,
                                             21 if hugetlb else PAGE_SHIFT,
                                             self.freed_tables_on_range)

    def tlb_flush(self, tlb: Any) -> tlbstate.FlushInfo:
        """x86 tlb_flush(): one flush_tlb_mm_range over the recorded range and stride."""
        g = tlb.state
        if g.fullmm or g.need_flush_all:
            start, end = 0, TLB_FLUSH_ALL
        else:
            start, end = g.start, g.end
        return self.flush.flush_tlb_mm_range(tlb.cpu.tlbstate, tlb.mm.context, start, end,
                                             g.stride_shift, g.freed_tables)

    # reclaim's batched unmap flush: arch/x86/include/asm/tlbflush.h and mm/tlb.c; the
    # batch is a cpumask (uint64 words), the rules are in mmucore.tlbstate's batch block
    def new_tlbbatch(self):
        """struct arch_tlbflush_unmap_batch: an empty cpumask."""
        return self.flush.new_tlbbatch_mask()

    def arch_tlbbatch_should_defer(self, cpu: Any, mm: Any) -> bool:
        """arch_tlbbatch_should_defer(): batch when another CPU is in mm_cpumask."""
        return any(c != cpu.id for c in mm.context.cpumask)

    def arch_tlbbatch_add_pending(self, cpu: Any, batch: Any, mm: Any, uaddr: int) -> None:
        """arch_tlbbatch_add_pending(): tlb_gen and cpumask, or (6.15) a targeted INVLPGB."""
        self.flush.arch_tlbbatch_add_pending(cpu.tlbstate, mm.context, uaddr, batch)

    def arch_tlbbatch_flush(self, cpu: Any, batch: Any) -> None:
        """arch_tlbbatch_flush(): IPIs (or RAR) to the cpumask, then TLBSYNC if needed."""
        self.flush.arch_tlbbatch_flush(cpu.tlbstate, batch)

    def arch_flush_tlb_batched_pending(self, cpu: Any, mm: Any) -> None:
        """flush_tlb_mm(mm): flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, 0, true) (the
        kernel's stride 0 is moot for a full flush; 12 here)."""
        self.flush.flush_tlb_mm_range(cpu.tlbstate, mm.context, 0, TLB_FLUSH_ALL,
                                      PAGE_SHIFT, True)

    def vm_page_prot(self, vm_flags: int) -> int:
        """vm_get_page_prot() plus the protection-key bits (arch_vm_get_page_prot)."""
        key = vm_flags & _PROT_FLAGS
        prot = _PAGE_PROT.get(key)
        if prot is None:
            pkey = (key & VM_PKEY_MASK) >> VM_PKEY_SHIFT
            prot = _PAGE_PROT[key] = mmucore.vm_get_page_prot(key & 0xF) | (pkey << 59)
        return prot

    def vma_page_prot(self, vma: Any) -> int:
        """vma_set_page_prot(): the page protection of a VMA (vm_page_prot's memo read
        here first: every mmap, split and flag change asks)."""
        prot = _PAGE_PROT.get(vma.flags & _PROT_FLAGS)
        return prot if prot is not None else self.vm_page_prot(vma.flags)

    def user_pcid(self, cpu: Any) -> int:
        """The PCID user-mode accesses run under (the user copy with PTI)."""
        s = cpu.tlbstate
        return user_pcid(s.loaded_mm_asid) if self.pti else kern_pcid(s.loaded_mm_asid)

    def slots_caching(self, mm: Any) -> List[tuple]:
        """mm's per-CPU ASID slots, and its global ASID on every CPU if it has one."""
        ctx = mm.context
        return self.flush.slots_caching(ctx) + self.flush.global_slots(ctx)

    def global_slots(self, mm: Any) -> List[tuple]:
        return self.flush.global_slots(mm.context)

    def live_tags(self, cpu: Any, asid: int, loaded: bool) -> List[int]:
        """PCIDs of one ASID slot whose entries could still be used: the kernel PCID,
        and with PTI the user PCID unless its flush is pending (SWITCH_TO_USER_CR3 will
        flush it before user code runs with this ASID again).  Without PCIDs every
        switch flushes, so only the loaded mm's entries survive (lazy or not), under
        ASID 0's two tags.  A global ASID (6.15) has the same two tags on every CPU and
        no deferred user flush."""
        if not self.cfg.pcid and not loaded:
            return []
        tags = [kern_pcid(asid)]
        if self.pti and not cpu.tlbstate.user_flush_is_pending(asid):
            tags.append(user_pcid(asid))
        return tags
