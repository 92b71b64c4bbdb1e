"""arm64 behind the Arch seam: ASID-tagged TLBs, broadcast TLBI in the inner-shareable
domain completed by DSB ISH on the issuing CPU, range TLBI, and the MAX_DVM_OPS ceiling
(arch/arm64/include/asm/tlbflush.h, arch/arm64/mm/context.c, asm/tlb.h).

The mechanism, as the kernel has it and the model follows it:

* No IPIs.  ``flush_tlb_mm()`` is ``dsb(ishst); TLBI ASIDE1IS, asid; dsb(ish)`` and
  ``__flush_tlb_range()`` is ``dsb(ishst)``, one ``TLBI VAE1IS``/``VALE1IS`` per stride
  (or range TLBIs with FEAT_TLBIRANGE), then ``dsb(ish)``.  The interconnect delivers
  each TLBI to every CPU of the inner-shareable domain; the issuer pays a cost per
  receiving CPU (``dvm_per_cpu``, the DVM fan-out its DSB waits for).  Receivers run
  nothing, so their clocks are not charged; only CPUs that ever ran the ASID can hold
  its entries, so only their TLBs are touched (the cost still counts every CPU).
* Completion.  A TLBI is *issued* when the instruction runs and *effective* only when
  the issuing CPU's ``DSB ISH`` completes.  Until then its entries are still in every
  TLB: the model keeps issued TLBIs in ``cpu.tlbstate.pending`` and applies them at that
  CPU's DSB.  A DSB on another CPU completes nothing of this CPU's (Ryan Roberts,
  20250530152445.2430295-1), which is why a broken policy that relies on one is caught
  by the checker: it reports the stale entries and names the pending TLBI.
* Ceiling.  ``__flush_tlb_range_nosync()`` turns a range into ``flush_tlb_mm()`` when
  the CPU lacks FEAT_TLBIRANGE and the range spans MAX_DVM_OPS (PTRS_PER_PTE = 512)
  strides or more, or when it exceeds MAX_TLBI_RANGE_PAGES; the kernel comment says this
  avoids soft lock-ups, not that it is faster.
* Range TLBI (FEAT_TLBIRANGE, ``__flush_tlb_range_op``): a range of ``pages`` is
  covered by range TLBIs of (num + 1) << (5 * scale + 1) pages, scale 0..3, and one
  plain TLBI for an odd last page.
* ASIDs (context.c): one machine-wide allocator of 8- or 16-bit ASIDs with a
  generation; a rollover bumps the generation, keeps every CPU's active ASID reserved
  and marks every CPU for a local_flush_tlb_all at its next context switch.  A CPU runs
  user code under its mm's ASID (TTBR0.ASID), so an mm's TLB entries carry the same tag
  on every CPU and a broadcast TLBI reaches them all; nothing flushes at a switch.
  KPTI is off: the presets' cores are not affected by Meltdown.
* mmu_gather: arm64 does not select MMU_GATHER_MERGE_VMAS (a flush at every
  tlb_end_vma), and its tlb_flush() does nothing for a full-mm teardown that freed no
  page tables (the ASID is not reused without a full invalidation), flush_tlb_mm() if
  it freed some, and otherwise __flush_tlb_range() at the finest cleared level's
  stride, last-level only unless tables were freed.

* Who pays the per-CPU part.  The interconnect forwards each TLBI (a DVM operation) to
  every CPU and does not make the issuer wait; the issuer's DSB ISH sends a DVM Sync
  that each CPU answers only after it has done every DVM operation it received before
  it, and the DSB retires when the last answer is in.  So the wait that grows with the
  CPUs of the domain is paid once per DSB, however many TLBIs it completes: a DSB is
  charged ``dsb_ish + dvm_per_cpu * CPUs`` and each TLBI only ``tlbi``.  That is the
  saving the batched unmap flush below is built on.

Reclaim's batched unmap flush (43b3dfdd0455, 6.6; profile field
``arm64_batched_unmap_flush``).  Without it try_to_unmap_one() clears each PTE by
ptep_clear_flush(): flush_tlb_page(), one TLBI VALE1IS and one DSB ISH per page.  With
it:

* ``arch_tlbbatch_should_defer()`` is true (the kernel's only exception, CPUs with the
  ARM64_WORKAROUND_REPEAT_TLBI erratum, is not modelled; earlier postings of the
  series refused to defer on 4 or fewer online CPUs, the merged one has no such
  test);
* ``arch_tlbbatch_add_pending()`` is ``__flush_tlb_page_nosync()``: dsb(ishst) and the
  page's TLBI, issued at once and left pending (struct arch_tlbflush_unmap_batch is
  empty on arm64: the pending TLBIs are the CPU's own state);
* ``arch_tlbbatch_flush()`` is one ``dsb(ish)`` on the reclaiming CPU, which completes
  every TLBI it issued for the batch;
* ``arch_flush_tlb_batched_pending()``, called by mprotect/munmap on whatever CPU they
  run, is a full ``flush_tlb_mm()``: a DSB there would complete only that CPU's own
  TLBIs, not the reclaiming CPU's (Ryan Roberts, 20250530152445.2430295-1; from 6.6
  until that fix the kernel had the DSB there).  Every profile here uses the fixed
  form, v6.14 and v6.15 included, whose kernels still had the DSB.

Debug switches for the checker tests: ``skip_batch_dsb`` (arch_tlbbatch_flush issues no
DSB) and ``batched_pending_dsb`` (the pre-fix arch_flush_tlb_batched_pending: a DSB on
the calling CPU).  ``tlbi_range_nosync`` / ``tlbi_asid_nosync`` issue TLBIs without
the DSB and ``dsb_ish`` completes what a CPU issued.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import mmucore
from mmucore import pte_arm64, stats as _stats

from .. import Arch, register
from ...constants import PAGE_SHIFT, TLB_FLUSH_ALL, VM_PKEY_MASK
from ...errors import ConfigError, PysimError

MAX_DVM_OPS = 512                       # PTRS_PER_PTE with 4K pages
MAX_TLBI_RANGE_PAGES = 32 << 16         # __TLBI_RANGE_PAGES(31, 3)
TLBI_RANGE_SCALES = 4                   # scale 0..3
_K_TLBI = _stats.KERNEL_COUNTER_INDEX["tlbi"]
_K_TLBI_RECEIVED = _stats.KERNEL_COUNTER_INDEX["tlbi_received"]
_K_DSB = _stats.KERNEL_COUNTER_INDEX["dsb"]
_K_FLUSH = _stats.KERNEL_COUNTER_INDEX["flush_tlb_mm_range"]
_K_SWITCH = _stats.KERNEL_COUNTER_INDEX["context_switches"]
_K_SWITCH_FLUSH = _stats.KERNEL_COUNTER_INDEX["tlb_flush_on_switch"]
_K_BATCH_FLUSH = _stats.KERNEL_COUNTER_INDEX["tlbbatch_flush"]
_B_FLUSH = _stats.BREAKDOWN_INDEX["flush"]
_B_INVALIDATE = _stats.BREAKDOWN_INDEX["invalidate"]
_B_SWITCH = _stats.BREAKDOWN_INDEX["context_switch"]


class ArchLimitError(PysimError):
    """The model cannot represent a state the hardware could reach (a tag too wide)."""


def tlbi_range_ops(pages: int, tlbi_range: bool) -> int:
    """TLBI instructions __flush_tlb_range_op() issues for `pages` strides: one per
    stride without FEAT_TLBIRANGE; with it, one range TLBI per non-zero 5-bit chunk of
    pages >> 1 (scale 0..3) and one plain TLBI for an odd remainder."""
    if not tlbi_range or pages <= 1:
        return pages
    ops = pages & 1
    rest = pages >> 1
    for _scale in range(TLBI_RANGE_SCALES):
        if rest & 0x1F:
            ops += 1
        rest >>= 5
    return ops


class Arm64Context:
    """mm->context on arm64: the ASID with its generation (context.id), tlb_gen (the
    generic flush-request count pysim reports), and the CPUs that ran the mm since it
    got its ASID (simulator bookkeeping: arm64 keeps no mm_cpumask for flushing)."""

    __slots__ = ("ctx_id", "id", "tlb_gen", "cpus", "owner", "pid", "next_trim_cpumask",
                 "global_asid", "__weakref__")

    def __init__(self, ctx_id: int):
        self.ctx_id = ctx_id
        self.id = 0                  # generation | asid; 0: none yet
        self.tlb_gen = 0
        self.cpus: set = set()
        self.owner = None
        self.pid = ctx_id
        self.next_trim_cpumask = 0   # x86 6.14's field: settable by tools, unused here
        self.global_asid = 0         # x86 6.15's field: arm64 ASIDs are all machine-wide

    @property
    def cpumask(self) -> frozenset:
        """The CPUs that ran the mm under its current ASID."""
        return frozenset(self.cpus)

    def __contains__(self, cpu: int) -> bool:
        return cpu in self.cpus

    def reset_time(self) -> None:
        """Start a timeline: no state to reset (no shared tlb_gen line is modelled)."""

    def __getstate__(self):
        return (self.ctx_id, self.id, self.tlb_gen, set(self.cpus), self.pid)

    def __setstate__(self, state) -> None:
        self.ctx_id, self.id, self.tlb_gen, self.cpus, self.pid = state
        self.owner = None


class Arm64CpuState:
    """One CPU's arm64 TLB state: the loaded mm and its ASID (TTBR0), the active ASID
    the allocator sees, the TLBIs issued here and not yet completed by a DSB, and
    whether a rollover flush is due at the next switch (tlb_flush_pending)."""

    def __init__(self, cpu: int, tlb: Any, stats: Any):
        self.cpu = cpu
        self.tlb = tlb
        self.stats = stats
        self.loaded_mm: Optional[Arm64Context] = None
        self.loaded_mm_asid = 0
        self.is_lazy = False
        self.running_user = False
        self.active_asid = 0         # per_cpu(active_asids): generation | asid, 0: none
        self.reserved_asid = 0       # per_cpu(reserved_asids)
        self.rollover_flush = False  # this CPU is in tlb_flush_pending
        self.pending: List[tuple] = []   # (kind, asid, start, nr, stride_shift, targets)
        self.t_off = 0.0
        self.idle_until = 0.0        # asleep in an idle state until then (timeline)
        self.llc = 0                 # its last-level cache (set by the machine)

    @property
    def now(self) -> float:
        """The CPU's simulated time in cycles: t_off plus every cycle charged to it."""
        return self.t_off + self.stats.clock

    def reset_time(self, t_off: float) -> None:
        """Start a timeline at t_off."""
        self.t_off = t_off
        self.idle_until = 0.0

    def idle_from_now(self, exit_latency: float = -1.0) -> None:
        """The CPU idles until wake() (a sleep whose end is not known yet).  Broadcast
        TLBIs need no handler on it, so the exit latency matters to nothing here."""
        self.idle_until = float("inf")

    def wake(self, t: float) -> None:
        """The idle CPU runs again from t (its time jumps to t if that is later)."""
        now = self.now
        if t > now:
            self.t_off += t - now
        self.idle_until = t

    @property
    def asids(self) -> list:
        """The loaded mm's [ctx_id, tlb_gen] (arm64 has no per-CPU ASID slots)."""
        ctx = self.loaded_mm
        return [[ctx.ctx_id, ctx.tlb_gen]] if ctx is not None else []

    @property
    def user_flush_pending(self) -> set:
        """No PTI on arm64 here: nothing is deferred to the exit to user."""
        return set()

    def user_flush_is_pending(self, asid: int) -> bool:
        """Never: no deferred user-ASID flush without KPTI."""
        return False

    @property
    def pending_tlbi(self) -> list:
        """The issued, not yet completed TLBIs as (kind, asid, start, nr, stride_shift)."""
        return [p[:5] for p in self.pending]


@register
class Arm64(Arch):
    """arm64 with broadcast TLBI; a preset with arch "arm64" selects it."""

    name = "arm64"
    merges_vmas_in_gather = False       # arm64 does not select MMU_GATHER_MERGE_VMAS
    # arch/arm64/include/asm/pgtable.h defines pmdp_establish() but not
    # __HAVE_ARCH_PMDP_INVALIDATE_AD: change_huge_pmd()'s pmdp_invalidate_ad() is the
    # generic one, i.e. pmdp_invalidate(), which flushes the PMD at once
    has_pmdp_invalidate_ad = False

    def __init__(self, cfg, tlbs: list, cpu_stats: list):
        super().__init__(cfg, tlbs, cpu_stats)
        p = cfg.preset
        self.asid_bits = p.asid_bits
        self.tlbi_range = bool(p.features.get("tlbi_range", False))
        self.ncpus = len(tlbs)
        self.states = [Arm64CpuState(i, t, cpu_stats[i]) for i, t in enumerate(tlbs)]
        c = cfg.cost
        self.c_flush_base, self.c_per_page = c.flush_base, c.flush_per_page
        self.c_tlbi, self.c_dsb, self.c_dvm = c.tlbi, c.dsb_ish, c.dvm_per_cpu
        self.c_switch = c.context_switch
        # context.c's allocator
        self.generation = 1 << self.asid_bits       # ASID_FIRST_VERSION
        self.asid_map: set = set()
        self.cur_idx = 1
        # debug switches for the checker tests: a policy that forgets the DSB, or takes
        # a DSB on another CPU (the next one) as completing the issuer's TLBIs
        self.skip_dsb = False
        self.remote_dsb = False
        self.skip_batch_dsb = False         # arch_tlbbatch_flush without its DSB
        self.batched_pending_dsb = False    # 6.6..6.15's arch_flush_tlb_batched_pending
        self.batched_unmap = bool(getattr(cfg.profile, "arm64_batched_unmap_flush", False))
        self.timeline = False

    # --- the seam's bookkeeping --------------------------------------------------------
    def cpu_state(self, cpu_id: int) -> Arm64CpuState:
        return self.states[cpu_id]

    def new_context(self, ctx_id: int) -> Arm64Context:
        """init_new_context(): no ASID until the first switch to the mm."""
        return Arm64Context(ctx_id)

    def set_timeline(self, on: bool) -> None:
        """Broadcast TLBIs queue no handlers: the timeline changes nothing here."""
        self.timeline = on

    def kernel_entry(self, cpu: Any) -> None:
        """Nothing to do on entry (no KPTI)."""

    def return_to_user(self, cpu: Any) -> None:
        """Nothing deferred to the exit (no KPTI)."""

    def syscall_enter(self, cpu: Any, ctx: Any, pid: int, cost: float,
                      cycles_per_jiffy: float) -> None:
        """Arch.syscall_enter without the hooks that do nothing here (jiffies, which no
        arm64 rule samples, and kernel_entry)."""
        st = cpu.stats
        st.acct.begin_entry(st, _stats.K_SYSCALLS, _stats.B_SYSCALL, cost)
        ctx.pid = pid
        cpu.tlbstate.running_user = False

    def syscall_exit(self, cpu: Any, to_user: bool, cls: type, name: str, value: Any,
                     faults: list) -> Any:
        """Arch.syscall_exit without return_to_user, which does nothing here."""
        return cpu.stats.acct.close(cls, name, cpu.id, value, faults)

    def user_pcid(self, cpu: Any) -> int:
        """The TLB tag user accesses run under: the loaded mm's ASID (TTBR0.ASID)."""
        return cpu.tlbstate.loaded_mm_asid

    def change_needed_mode(self, profile: Any) -> int:
        """change_protection's per-entry rule with pte_needs_flush: the 2025 arm64 rule
        with `arm64_pte_needs_flush`, else the generic one (always flush)."""
        if getattr(profile, "arm64_pte_needs_flush", False):
            return mmucore.CP_RECORD_NEEDED_ARM64
        return mmucore.CP_RECORD_ALL

    def vm_page_prot(self, vm_flags: int) -> int:
        """arm64 vm_get_page_prot(): protection_map[] (descriptor bits), as the
        canonical entry the page table stores; protection keys are not modelled."""
        if vm_flags & VM_PKEY_MASK:
            raise ConfigError("protection keys are x86-only in the model (arm64 POE is "
                              "not modelled)", field="pkey")
        return pte_arm64.vm_get_page_prot_canon(vm_flags & 0xF)

    # --- ASIDs (arch/arm64/mm/context.c) ----------------------------------------------
    def _asid_mask(self) -> int:
        return (1 << self.asid_bits) - 1

    def _gen_match(self, asid: int) -> bool:
        return (asid & ~self._asid_mask()) == self.generation

    def _flush_context(self) -> None:
        """flush_context(): a new generation; every CPU keeps its active ASID reserved
        and flushes its whole TLB at its next switch (tlb_flush_pending)."""
        mask = self._asid_mask()
        self.asid_map = set()
        for s in self.states:
            asid, s.active_asid = s.active_asid, 0
            if asid == 0:
                asid = s.reserved_asid
            if asid & mask:
                self.asid_map.add(asid & mask)
            s.reserved_asid = asid
            s.rollover_flush = True

    def _new_context(self, ctx: Arm64Context) -> int:
        """new_context(): keep the mm's ASID number in the new generation if it is
        free or reserved, else take the next free one, rolling over when none is."""
        mask = self._asid_mask()
        asid = ctx.id
        if asid != 0:
            newasid = self.generation | (asid & mask)
            hit = False                          # check_update_reserved_asid()
            for st in self.states:
                if st.reserved_asid == asid:
                    st.reserved_asid = newasid
                    hit = True
            if hit:
                return newasid
            if (asid & mask) not in self.asid_map:
                self.asid_map.add(asid & mask)
                return newasid
        nr = 1 << self.asid_bits
        idx = next((i for i in range(self.cur_idx, nr) if i not in self.asid_map), None)
        if idx is None:
            self.generation += 1 << self.asid_bits
            self._flush_context()
            idx = next((i for i in range(1, nr) if i not in self.asid_map), None)
            if idx is None:
                raise ArchLimitError(f"no free ASID after a rollover ({self.ncpus} CPUs "
                                     f"hold {nr - 1} reserved ASIDs)")
        if idx > mmucore.PCID_MAX:
            raise ArchLimitError(f"ASID {idx} exceeds the TLB model's {mmucore.PCID_MAX} "
                                 f"tags (16-bit ASIDs beyond 4095 live mms)")
        self.asid_map.add(idx)
        self.cur_idx = idx
        return self.generation | idx

    def switch_mm(self, cpu: Any, mm: Optional[Any]) -> None:
        """switch_mm() -> check_and_switch_context(): a fresh ASID if the mm's is of an
        old generation, the rollover's local_flush_tlb_all if due, TTBR0 := ASID.
        Switching to no user mm (init_mm) installs the reserved TTBR0 and keeps the
        TLB; nothing is flushed at a switch otherwise."""
        s = cpu.tlbstate
        ctx = mm.context if mm is not None else None
        if ctx is s.loaded_mm:
            s.is_lazy = False
            return
        cpu.stats.count(_K_SWITCH)
        cpu.stats.charge(_B_SWITCH, self.c_switch)
        if ctx is None:
            s.loaded_mm = None
            s.loaded_mm_asid = 0
            s.is_lazy = False
            cpu.tlb.pcid = 0
            return
        if not (s.active_asid and self._gen_match(ctx.id)):
            if not self._gen_match(ctx.id):
                ctx.id = self._new_context(ctx)
                ctx.cpus = set()
            if s.rollover_flush:
                s.rollover_flush = False
                cpu.tlb.flush_all(False)             # local_flush_tlb_all()
                cpu.stats.count(_K_SWITCH_FLUSH)
        s.active_asid = ctx.id
        s.loaded_mm = ctx
        s.loaded_mm_asid = ctx.id & self._asid_mask()
        s.is_lazy = False
        ctx.cpus.add(cpu.id)
        cpu.tlb.pcid = s.loaded_mm_asid

    def enter_lazy_tlb(self, cpu: Any) -> None:
        """arm64 enter_lazy_tlb() does nothing: TTBR0 and the ASID stay."""
        cpu.tlbstate.is_lazy = True

    # --- TLBI and DSB -----------------------------------------------------------------
    def _issue(self, cpu: Any, ctx: Arm64Context, kind: str, start: int, nr: int,
               stride_shift: int, ops: int) -> None:
        """Issue `ops` broadcast TLBI instructions on cpu naming ctx's ASID: counted and
        charged now, pending until cpu's DSB."""
        asid = ctx.id & self._asid_mask()
        cpu.tlbstate.pending.append((kind, asid, start, nr, stride_shift,
                                     tuple(ctx.cpus)))
        cpu.stats.count(_K_TLBI, ops)
        cpu.stats.count(_K_TLBI_RECEIVED, ops * self.ncpus)
        cpu.stats.charge(_B_INVALIDATE, ops * self.c_tlbi)

    def tlbi_range_nosync(self, cpu: Any, mm: Any, start: int, end: int,
                          stride_shift: int = PAGE_SHIFT) -> None:
        """The TLBIs of __flush_tlb_range_nosync() (range TLBIs with FEAT_TLBIRANGE)
        over [start, end), without the DSB: the hook arch_tlbbatch_add_pending uses."""
        stride = 1 << stride_shift
        start &= ~(stride - 1)
        end = (end + stride - 1) & ~(stride - 1)
        nr = (end - start) >> stride_shift
        if nr <= 0:
            return
        self._issue(cpu, mm.context, "va", start, nr, stride_shift,
                    self._tlbi_ops(nr, stride_shift))

    def _tlbi_ops(self, nr: int, stride_shift: int) -> int:
        """TLBIs __flush_tlb_range_op() issues for nr strides of 1 << stride_shift: one
        per stride without FEAT_TLBIRANGE; with it the range encoding counts 4K pages
        (a 2 MiB stride is 512 of them), so the ops follow the page count."""
        if not self.tlbi_range:
            return nr
        return tlbi_range_ops(nr << (stride_shift - PAGE_SHIFT), True)

    def tlbi_asid_nosync(self, cpu: Any, mm: Any) -> None:
        """TLBI ASIDE1IS for mm, without the DSB."""
        self._issue(cpu, mm.context, "asid", 0, 0, 0, 1)

    def dsb_ish(self, cpu: Any) -> int:
        """DSB ISH on cpu: every TLBI cpu issued is now done on every CPU's TLB (and
        nothing another CPU issued).  Charged dsb_ish plus dvm_per_cpu per CPU of the
        domain if anything was pending.  Returns the TLBIs it completed."""
        s = cpu.tlbstate
        if not s.pending:
            return 0
        states = self.states
        for kind, asid, start, nr, shift, targets in s.pending:
            for t in targets:
                tlb = states[t].tlb
                if kind == "asid":
                    tlb.tlbi_asid(asid)
                else:
                    tlb.tlbi_va(start, nr, shift, asid)
        n = len(s.pending)
        s.pending = []
        cpu.stats.count(_K_DSB)
        cpu.stats.charge(_B_INVALIDATE, self.c_dsb + self.c_dvm * self.ncpus)
        return n

    def _sync(self, cpu: Any) -> None:
        """The dsb(ish) that ends a flush, or the broken variants the tests use."""
        if self.skip_dsb:
            return
        if self.remote_dsb and self.ncpus > 1:
            self.dsb_ish(self.cpus_other(cpu))
            return
        self.dsb_ish(cpu)

    def cpus_other(self, cpu: Any) -> Any:
        """A CPU other than cpu (the next one), for the remote-DSB broken policy."""
        return _Shim(self.states[(cpu.id + 1) % self.ncpus])

    # --- flush entry points -----------------------------------------------------------
    def flush_tlb_mm(self, cpu: Any, mm: Any) -> "Arm64Flush":
        """flush_tlb_mm(): dsb(ishst); TLBI ASIDE1IS; dsb(ish)."""
        ctx = mm.context
        ctx.tlb_gen += 1
        cpu.stats.count(_K_FLUSH)
        cpu.stats.charge(_B_FLUSH, self.c_flush_base)
        self.tlbi_asid_nosync(cpu, mm)
        self._sync(cpu)
        return Arm64Flush(0, TLB_FLUSH_ALL, PAGE_SHIFT, True, ctx.tlb_gen, cpu.id, 1)

    def _flush_tlb_range(self, cpu: Any, mm: Any, start: int, end: int,
                          stride_shift: int, last_level: bool) -> "Arm64Flush":
        """__flush_tlb_range(): the MAX_DVM_OPS / MAX_TLBI_RANGE_PAGES ceiling, else
        per-stride (or range) TLBIs and one dsb(ish)."""
        stride = 1 << stride_shift
        start &= ~(stride - 1)
        end = (end + stride - 1) & ~(stride - 1)
        pages = (end - start) >> PAGE_SHIFT
        if (not self.tlbi_range and end - start >= MAX_DVM_OPS * stride) \
                or pages > MAX_TLBI_RANGE_PAGES:
            return self.flush_tlb_mm(cpu, mm)
        ctx = mm.context
        ctx.tlb_gen += 1
        nr = (end - start) >> stride_shift
        ops = self._tlbi_ops(nr, stride_shift)
        cpu.stats.count(_K_FLUSH)
        cpu.stats.charge(_B_FLUSH, self.c_flush_base + self.c_per_page * ops)
        if nr > 0:
            self._issue(cpu, ctx, "va", start, nr, stride_shift, ops)
        self._sync(cpu)
        return Arm64Flush(start, end, stride_shift, not last_level, ctx.tlb_gen, cpu.id,
                          ops)

    def flush_tlb_mm_range(self, cpu: Any, mm: Any, start: int, end: int,
                           stride_shift: int, freed_tables: bool) -> "Arm64Flush":
        """The generic request: flush_tlb_mm() for TLB_FLUSH_ALL, else
        __flush_tlb_range() at the stride (last level unless tables were freed)."""
        if end == TLB_FLUSH_ALL:
            return self.flush_tlb_mm(cpu, mm)
        return self._flush_tlb_range(cpu, mm, start, end, stride_shift, not freed_tables)

    def flush_tlb_range(self, cpu: Any, mm: Any, start: int, end: int,
                        hugetlb: bool = False) -> "Arm64Flush":
        """flush_tlb_range(vma, start, end): __flush_tlb_range at PAGE_SIZE (PMD_SIZE
        for hugetlb), not last-level only."""
        return self._flush_tlb_range(cpu, mm, start, end, 21 if hugetlb else PAGE_SHIFT,
                                      False)

    def flush_pmd_tlb_range(self, cpu: Any, mm: Any, start: int, end: int) -> "Arm64Flush":
        """flush_pmd_tlb_range(vma, addr, end) (asm/pgtable.h, with THP):
        __flush_tlb_range(vma, addr, end, PMD_SIZE, false, 2), one TLBI VAE1IS per
        2 MiB stride (not last-level only), the ceiling then at 512 strides (1 GiB)."""
        return self._flush_tlb_range(cpu, mm, start, end, 21, False)

    def tlb_flush(self, tlb: Any) -> Optional["Arm64Flush"]:
        """arm64 tlb_flush() (asm/tlb.h): fullmm flushes only if tables were freed;
        otherwise __flush_tlb_range over the gathered range at tlb_get_unmap_size()."""
        g = tlb.state
        if g.fullmm or g.need_flush_all:
            if g.fullmm and not g.freed_tables:
                return None
            return self.flush_tlb_mm(tlb.cpu, tlb.mm)
        return self._flush_tlb_range(tlb.cpu, tlb.mm, g.start, g.end, g.stride_shift,
                                      not g.freed_tables)

    # --- reclaim's batched unmap flush (see the module comment) -------------------------
    def new_tlbbatch(self) -> "Arm64TlbBatch":
        """struct arch_tlbflush_unmap_batch: empty on arm64."""
        return Arm64TlbBatch()

    def arch_tlbbatch_should_defer(self, cpu: Any, mm: Any) -> bool:
        """arch_tlbbatch_should_defer(): true from 6.6 (no CPU-count test; the
        REPEAT_TLBI erratum is not modelled); before 6.6 arm64 has no batching."""
        return self.batched_unmap

    def arch_tlbbatch_add_pending(self, cpu: Any, batch: "Arm64TlbBatch", mm: Any,
                                  uaddr: int) -> None:
        """__flush_tlb_page_nosync(mm, uaddr): the page's TLBI VALE1IS, no DSB."""
        start = uaddr & ~((1 << PAGE_SHIFT) - 1)
        self.tlbi_range_nosync(cpu, mm, start, start + (1 << PAGE_SHIFT))
        batch.pages += 1

    def arch_tlbbatch_flush(self, cpu: Any, batch: "Arm64TlbBatch") -> None:
        """dsb(ish) on the reclaiming CPU: every TLBI add_pending issued is done."""
        cpu.stats.count(_K_BATCH_FLUSH)
        batch.pages = 0
        if not self.skip_batch_dsb:
            self.dsb_ish(cpu)

    def arch_flush_tlb_batched_pending(self, cpu: Any, mm: Any) -> None:
        """flush_tlb_mm(mm) from the CPU meeting the pending batch (with
        batched_pending_dsb, the pre-fix dsb(ish), which leaves the reclaiming CPU's
        TLBIs pending)."""
        if self.batched_pending_dsb:
            self.dsb_ish(cpu)
            return
        self.flush_tlb_mm(cpu, mm)

    # --- what the checker reads -------------------------------------------------------
    def slots_caching(self, mm: Any) -> List[tuple]:
        """(cpu, asid, generation) for every CPU that ran mm under its current ASID."""
        ctx = mm.context
        if not self._gen_match(ctx.id):
            return []
        asid = ctx.id & self._asid_mask()
        return [(c, asid, ctx.tlb_gen) for c in sorted(ctx.cpus)]

    def cpu_slots(self, cpu: Any) -> List[tuple]:
        """(asid, ctx_id, generation) of the mm loaded on cpu."""
        ctx = cpu.tlbstate.loaded_mm
        if ctx is None:
            return []
        return [(ctx.id & self._asid_mask(), ctx.ctx_id, ctx.tlb_gen)]

    def live_tags(self, cpu: Any, asid: int, loaded: bool) -> List[int]:
        """The ASID's entries are live on every CPU that ran it (a broadcast TLBI is
        the only thing that removes them), except on a CPU due for its rollover flush,
        where only the ASID it runs survives (the flush comes before any other)."""
        s = cpu.tlbstate
        if s.rollover_flush and s.loaded_mm_asid != asid:
            return []
        return [asid]

    def pending_note(self, tag: int, va: int) -> str:
        """A note naming an issued, uncompleted TLBI covering (asid tag, va)."""
        for s in self.states:
            for kind, asid, start, nr, shift, _t in s.pending:
                if asid == tag and (kind == "asid" or start <= va < start + (nr << shift)):
                    return f"; TLBI issued on cpu {s.cpu} not completed (no DSB on cpu {s.cpu})"
        return ""


class Arm64TlbBatch:
    """arm64's struct arch_tlbflush_unmap_batch holds nothing (the TLBIs are already
    issued); `pages` counts the pages added since the last flush, for inspection."""

    __slots__ = ("pages",)

    def __init__(self):
        self.pages = 0

    def __repr__(self) -> str:
        return f"Arm64TlbBatch(pages={self.pages})"


class _Shim:
    """The smallest CPU-like object dsb_ish needs (tlbstate, stats), for the
    remote-DSB broken policy."""

    __slots__ = ("tlbstate", "stats", "id")

    def __init__(self, state: Arm64CpuState):
        self.tlbstate = state
        self.stats = state.stats
        self.id = state.cpu


class Arm64Flush:
    """One arm64 flush request: range, stride, whether walk caches were named (not
    last-level), the mm's tlb_gen after it, the issuing CPU and its TLBI count."""

    __slots__ = ("start", "end", "stride_shift", "freed_tables", "new_tlb_gen",
                 "initiator", "tlbi_ops")

    def __init__(self, start, end, stride_shift, freed_tables, new_tlb_gen, initiator,
                 tlbi_ops):
        self.start, self.end, self.stride_shift = start, end, stride_shift
        self.freed_tables, self.new_tlb_gen = freed_tables, new_tlb_gen
        self.initiator, self.tlbi_ops = initiator, tlbi_ops

    def __repr__(self) -> str:
        return (f"Arm64Flush([{self.start:#x}, {self.end:#x}), stride {self.stride_shift}, "
                f"{self.tlbi_ops} TLBIs, gen {self.new_tlb_gen})")
