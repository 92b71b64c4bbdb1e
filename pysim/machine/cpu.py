"""One simulated CPU as the kernel paths see it: its TLB, its counters (mmucore.stats),
its cpu_tlbstate (mmucore.tlbstate), the frozen config and the architecture hooks.

A CPU holds no reference to the machine; the thread running on it is held weakly, so a
dropped machine is freed by reference counting alone.
"""
from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Iterator, List, Optional

import mmucore
from mmucore import stats as _stats

# change_protection's write-upgrade mode bits per Profile.change_writable
_CP_WRITABLE = {"none": 0,
                "dirty": mmucore.CP_TRY_WRITABLE | mmucore.CP_WRITABLE_NEEDS_DIRTY,
                "exclusive": mmucore.CP_TRY_WRITABLE}


class KernelCounts(Mapping):
    """A CPU's kernel counters by name (live: reads the C array each time)."""

    __slots__ = ("_s",)

    def __init__(self, s: "_stats.CpuStats"):
        self._s = s

    def __getitem__(self, name: str) -> int:
        return self._s.kernel_count(_stats.KERNEL_COUNTER_INDEX[name])

    def __iter__(self) -> Iterator[str]:
        return iter(_stats.KERNEL_COUNTER_NAMES)

    def __len__(self) -> int:
        return len(_stats.KERNEL_COUNTER_NAMES)

    def __repr__(self) -> str:
        return repr({k: v for k, v in self.items() if v})


class CPU:
    """A CPU: id, TLB, counters, TLB state, and what runs on it."""

    __slots__ = ("id", "tlb", "stats", "tlbstate", "cfg", "arch", "faults", "_cur",
                 "tlb_ubc", "llc", "cp_gather_mode", "cp_writable_mode",
                 "gather_merges_vmas", "gather_batch_reserve", "__weakref__")

    def __init__(self, cpu_id: int, tlbstate: Any, cfg: Any, arch: Any):
        self.id = cpu_id
        self.tlbstate = tlbstate
        self.tlb = tlbstate.tlb
        self.stats = tlbstate.stats
        self.cfg = cfg
        self.arch = arch
        self.faults: List[tuple] = []      # (index, va, kind, outcome) of the op in flight
        self._cur: Optional[weakref.ref] = None
        self.tlb_ubc = None                 # reclaim's tlbflush_unmap_batch (pysim.mm.rmap)
        self.llc = 0                        # its last-level cache (set_llc)
        # What the frozen profile and the arch decide for every call, decided once:
        # change_protection's per-entry rule under a gather (the arch's pte_needs_flush
        # mode with patch 2, else record every present entry) and its write-upgrade bits
        # (pysim.mm.mprotect.change_mode), whether tlb_end_vma leaves the flush to
        # tlb_finish_mmu (MMU_GATHER_MERGE_VMAS), and the page batches' reserve
        # (gather_batch_reserve)
        prof = cfg.profile
        self.cp_gather_mode = (arch.change_needed_mode(prof) if prof.skip_unneeded_flush
                               else mmucore.CP_RECORD_ALL)
        self.cp_writable_mode = _CP_WRITABLE[prof.change_writable]
        self.gather_merges_vmas = bool(prof.merge_vmas_in_gather
                                       and arch.merges_vmas_in_gather)
        self.gather_batch_reserve = int(getattr(prof, "mmu_gather_batch_reserve", 0))

    def set_llc(self, llc: int) -> None:
        """Place the CPU in last-level cache llc (its TLB state keeps it too: the C
        paths read it there)."""
        self.llc = llc
        self.tlbstate.llc = llc

    def __getstate__(self):
        cur = self._cur() if self._cur is not None else None
        return (self.id, self.tlbstate, self.cfg, self.arch, cur, self.llc)

    def __setstate__(self, state) -> None:
        cpu_id, tlbstate, cfg, arch, cur, llc = state
        CPU.__init__(self, cpu_id, tlbstate, cfg, arch)
        self.set_llc(llc)
        if cur is not None:
            # (cur may not be unpickled yet; weakref.ref returns the one ref a plain
            # weak reference to it has, the same object as its _ref)
            self._cur = weakref.ref(cur)

    # the thread running here (weak: a thread keeps its machine alive, not the reverse)
    @property
    def current(self):
        return self._cur() if self._cur is not None else None

    @current.setter
    def current(self, thread) -> None:
        self._cur = thread._ref if thread is not None else None

    # cpu_tlbstate under its kernel names
    @property
    def loaded_mm(self):
        """The mm loaded here (None: init_mm)."""
        ctx = self.tlbstate.loaded_mm
        return ctx.owner() if ctx is not None else None

    @property
    def loaded_asid(self) -> int:
        return self.tlbstate.loaded_mm_asid

    @property
    def is_lazy(self) -> bool:
        return self.tlbstate.is_lazy

    @property
    def asids(self) -> list:
        """The ASID slots as [ctx_id, tlb_gen] (ctx_id -1: empty)."""
        return self.tlbstate.asids

    @property
    def user_flush_pending(self) -> set:
        """ASIDs whose user PCID is flushed on their next exit to user space (PTI)."""
        return self.tlbstate.user_flush_pending

    @property
    def running_user(self) -> bool:
        return self.tlbstate.running_user

    @running_user.setter
    def running_user(self, value: bool) -> None:
        self.tlbstate.running_user = value

    @property
    def user_pcid(self) -> int:
        return self.arch.user_pcid(self)

    # counters
    @property
    def kernel_counts(self) -> KernelCounts:
        return KernelCounts(self.stats)

    @property
    def clock(self) -> float:
        """Cycles this CPU has spent: kernel work charged to it plus its TLB's."""
        return self.stats.clock

    def __repr__(self) -> str:
        mm = self.loaded_mm
        name = f"mm{mm.ctx_id}" if mm is not None else "init_mm"
        return f"CPU({self.id}, {name}{' lazy' if self.is_lazy else ''})"


def smt_sibling(cpu_id: int, ncpus: int) -> int:
    """The other SMT thread of cpu_id's core: CPUs i and i + ncpus/2 share core i, as
    Linux numbers them on x86 servers (ncpus even)."""
    return (cpu_id + ncpus // 2) % ncpus


def llc_of(cpu_id: int, ncpus: int, cores_per_llc: int, smt: bool) -> int:
    """The last-level cache of CPU cpu_id on a machine of ncpus CPUs: cores_per_llc
    consecutive cores share one (0: all share one); with SMT, CPUs i and i + ncpus/2
    are the two threads of core i, as Linux numbers them on x86 servers."""
    if cores_per_llc <= 0:
        return 0
    cores = ncpus // 2 if smt and ncpus % 2 == 0 else ncpus
    return (cpu_id % cores) // cores_per_llc
