"""The simulated machine: CPUs with their TLBs and ASID slots, processes and threads, the
clock, and the per-operation accounting every kernel path reports into.

    m = pysim.Machine(cpus=2, preset="skylake", profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0); t1 = proc.thread(cpu=1); t1.busy()
    p = t0.mmap(4096, PROT_READ | PROT_WRITE)
    t0.write(p); r = t0.mprotect(p, 4096, PROT_READ)
    r.cycles, r.events, m.counters()
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

import mmucore

from . import tlbflush
from .checker import Checker
from .errors import ConfigError, PysimError
from .presets import Preset, get_preset
from .profiles import Profile, get_profile

KERNEL_COUNTERS = (
    "syscalls", "nr_tlb_local_flush_one", "nr_tlb_local_flush_all", "nr_tlb_remote_flush",
    "nr_tlb_remote_flush_received", "remote_flush_one", "remote_flush_all", "ipi_sent",
    "flush_tlb_mm_range", "tlb_flush_on_switch", "user_pcid_flush", "context_switches",
    "fault_anon", "fault_zero_page", "fault_thp", "fault_wp_reuse", "fault_cow",
    "fault_spurious", "sigsegv", "vma_split", "vma_merge",
)
BREAKDOWN = ("syscall", "pte", "flush", "invalidate", "ipi", "ipi_handler", "fault",
             "walks", "context_switch", "vma")
ZERO_PFN = 0x100            # the shared zero page's frame


@dataclass
class OpResult:
    """What one operation cost: the initiating CPU's cycles, by category, and the events
    every CPU saw (kernel counters plus the core's TLB counters)."""

    op: str
    cpu: int
    value: Any = None
    cycles: float = 0.0
    breakdown: Dict[str, float] = field(default_factory=dict)
    events: Dict[str, int] = field(default_factory=dict)
    cpu_events: Dict[int, Dict[str, int]] = field(default_factory=dict)
    cpu_cycles: Dict[int, float] = field(default_factory=dict)
    faults: List[tuple] = field(default_factory=list)

    def __repr__(self) -> str:
        ev = {k: v for k, v in self.events.items() if v}
        return f"OpResult({self.op} on cpu{self.cpu}: {self.cycles:.0f} cycles, {ev})"


class Op:
    """Accounting for one operation in flight (Machine.current_op while it runs)."""

    def __init__(self, machine: "Machine", cpu: "CPU", name: str):
        self.machine, self.cpu, self.name = machine, cpu, name
        self.counts: Dict[int, Counter] = {c.id: Counter() for c in machine.cpus}
        self.kernel: Dict[int, Counter] = {c.id: Counter() for c in machine.cpus}
        self.hw0 = {c.id: (c.tlb.counters, c.tlb.cycles) for c in machine.cpus}
        self.faults: List[tuple] = []

    def count(self, cpu: "CPU", name: str, n: int = 1) -> None:
        self.counts[cpu.id][name] += n

    def charge(self, cpu: "CPU", category: str, cycles: float) -> None:
        """Kernel-path cycles spent by cpu (hardware cycles come from its TLB)."""
        if cycles:
            self.kernel[cpu.id][category] += cycles
            cpu.kernel_cycles += cycles

    def finish(self, value: Any) -> OpResult:
        res = OpResult(self.name, self.cpu.id, value, faults=self.faults)
        total: Counter = Counter()
        for c in self.machine.cpus:
            c0, y0 = self.hw0[c.id]
            dc = c.tlb.counters - c0
            dy = c.tlb.cycles - y0
            ev = dict(self.counts[c.id])
            ev.update({n: int(v) for n, v in zip(mmucore.COUNTER_NAMES, dc) if v})
            res.cpu_events[c.id] = ev
            total.update(ev)
            bd = dict(self.kernel[c.id])
            for name, v in zip(mmucore.CYCLE_NAMES, dy):
                if v:
                    key = {"tlb_hit": "walks", "walk": "walks", "invalidate": "invalidate",
                           "fault_hw": "fault"}[name]
                    bd[key] = bd.get(key, 0.0) + float(v)
            res.cpu_cycles[c.id] = float(sum(bd.values()))
            if c is self.cpu:
                res.breakdown = bd
        res.cycles = res.cpu_cycles[self.cpu.id]
        res.events = {k: int(v) for k, v in total.items()}
        for name in KERNEL_COUNTERS:
            res.events.setdefault(name, 0)
        return res


class KernelFootprint:
    """The kernel memory a syscall touches, run through the TLB model in kernel mode.

    Kernel text and the direct map use 2 MiB pages, the kernel stack 4K pages; all are
    global unless PTI is on (PTI keeps kernel mappings out of the user PCID and drops
    _PAGE_GLOBAL).  The page counts are workload structure, not costs: each access is a
    TLB event like any other, so flushes and lost PSC entries show up as walks.
    """

    TEXT = 0xFFFFFFFF81000000        # __START_KERNEL_map + 16 MiB
    DIRECT = 0xFFFF888100000000      # direct map (slab objects, page tables, mm, VMAs)
    STACK = 0xFFFFC90000000000       # vmalloc'd kernel stacks

    def __init__(self, machine: "Machine", text_pages: int = 3, data_pages: int = 4,
                 stack_pages: int = 2):
        for name, v in (("text_pages", text_pages), ("data_pages", data_pages),
                        ("stack_pages", stack_pages)):
            if not isinstance(v, int) or not 0 <= v <= 512:
                raise ConfigError(f"kernel_footprint {name} must be 0..512, got {v!r}",
                                  field=f"kernel_footprint.{name}")
        self.machine = machine
        self.text, self.data, self.stack = text_pages, data_pages, stack_pages
        self.text_pfn = machine.alloc_pfns(512 * max(1, text_pages), align=512)
        self.data_pfn = machine.alloc_pfns(512 * max(1, data_pages), align=512)
        self.stack_pfn = machine.alloc_pfns(max(1, stack_pages))
        vas, kinds = [], []
        for i in range(text_pages):
            vas.append(self.TEXT + i * (1 << 21) + 0x40 * i)
            kinds.append(mmucore.FETCH)
        for i in range(data_pages):
            vas.append(self.DIRECT + i * (1 << 21) + 0x1000 * i)
            kinds.append(mmucore.WRITE if i % 2 else mmucore.READ)
        for i in range(stack_pages):
            vas.append(self.STACK + i * 4096)
            kinds.append(mmucore.WRITE)
        self.vas = np.array(vas, dtype=np.uint64)
        self.kinds = np.array(kinds, dtype=np.uint8)

    def map_into(self, pt: "mmucore.PageTable") -> None:
        """Map the footprint into an mm's page table (the shared kernel half)."""
        g = 0 if self.machine.profile.pti else mmucore.PTE_G
        rw_nx = mmucore.PTE_RW | mmucore.PTE_A | mmucore.PTE_D | mmucore.PTE_NX | g
        if self.text:
            pt.map(self.TEXT, 512 * self.text, mmucore.PTE_A | g, pfn=self.text_pfn, huge=True)
        if self.data:
            pt.map(self.DIRECT, 512 * self.data, rw_nx, pfn=self.data_pfn, huge=True)
        if self.stack:
            pt.map(self.STACK, self.stack, rw_nx, pfn=self.stack_pfn)

    def touch(self, cpu: "CPU", mm: "MM") -> None:
        """The syscall's kernel-mode accesses on cpu (kernel PCID)."""
        if self.vas.size:
            r = mmucore.access_stream(mm.pt, cpu.tlb, self.vas, self.kinds, user=False)
            if r.faults:
                raise PysimError(f"kernel footprint access 0x{r.fault_va:x} faulted")


class CPU:
    """One CPU: its TLB, loaded mm and ASID, lazy flag, ASID slots and counters."""

    def __init__(self, machine: "Machine", cpu_id: int):
        self.machine = machine
        self.id = cpu_id
        costs = mmucore.CostModel(**machine.preset.hw)
        self.tlb = mmucore.TLB(mmucore.geometry(machine.preset.geometry), costs)
        self.loaded_mm: Optional[MM] = None
        self.loaded_asid = 0
        self.is_lazy = False
        self.asids: List[List[int]] = [[-1, 0] for _ in range(machine.profile.nr_dyn_asids)]
        self.next_asid = 0
        self.user_flush_pending: set = set()
        self.kernel_cycles = 0.0
        self.kernel_counts: Counter = Counter()
        self.current: Optional["Thread"] = None     # the thread running here, if any
        self.running_user = False                   # a busy thread spins in user mode

    @property
    def clock(self) -> float:
        """Cycles this CPU has spent: kernel work charged to it plus its TLB's."""
        return self.kernel_cycles + float(self.tlb.cycles.sum())

    @property
    def user_pcid(self) -> int:
        """The PCID user-mode accesses run under (the user copy with PTI)."""
        if self.machine.profile.pti:
            return tlbflush.user_pcid(self.loaded_asid)
        return tlbflush.kern_pcid(self.loaded_asid)

    def __repr__(self) -> str:
        mm = f"mm{self.loaded_mm.ctx_id}" if self.loaded_mm else "init_mm"
        return f"CPU({self.id}, {mm}{' lazy' if self.is_lazy else ''})"


class Machine:
    """CPUs, processes, a frame allocator, the kernel profile and the hardware preset."""

    def __init__(self, cpus: int = 1, preset: Any = "skylake", profile: Any = "patched",
                 checker: Any = True, seed: int = 0, kernel_footprint: Any = False,
                 **profile_overrides: Any):
        if not isinstance(cpus, int) or not 1 <= cpus <= 4096:
            raise ConfigError(f"cpus must be an integer 1..4096, got {cpus!r}", field="cpus")
        self.preset: Preset = get_preset(preset)
        self.profile: Profile = get_profile(profile, **profile_overrides)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.cpus = [CPU(self, i) for i in range(cpus)]
        self.mms: List[MM] = []
        self._ctx_ids = itertools.count(1)
        self.next_pfn = 0x1000
        self.next_file_pfn = mmucore.FILE_PFN_BASE
        self.zero_pfn = ZERO_PFN
        self.current_op: Optional[Op] = None
        self.checker = Checker(self, checker)
        self.history: List[OpResult] = []
        self.keep_history = False
        if kernel_footprint is True:
            kernel_footprint = {}
        self.kernel = (KernelFootprint(self, **kernel_footprint)
                       if isinstance(kernel_footprint, dict) else None)

    # -------------------------------------------------------------- resources
    def cost(self, key: str) -> float:
        """A kernel-path cost from the preset (hardware costs live in the TLBs)."""
        return self.preset.kernel[key]

    def alloc_pfns(self, n: int, align: int = 1) -> int:
        """n consecutive fresh anonymous frames (aligned to `align` frames)."""
        pfn = -(-self.next_pfn // align) * align
        if pfn + n > mmucore.FILE_PFN_BASE:
            raise PysimError("out of simulated anonymous frames (PFNs below 2^39)")
        self.next_pfn = pfn + n
        return pfn

    def alloc_file_pfns(self, n: int) -> int:
        """n consecutive fresh page-cache frames (file or shmem pages): the model keeps
        them at and above mmucore.FILE_PFN_BASE, which is how the core tells PageAnon."""
        pfn = self.next_file_pfn
        if pfn + n > 1 << 40:
            raise PysimError("out of simulated page-cache frames (40-bit PFN space)")
        self.next_file_pfn = pfn + n
        return pfn

    def is_anon_pfn(self, pfn: int) -> bool:
        """PageAnon(pfn_to_page(pfn)) in the model: an anonymous frame, not the zero page."""
        return pfn < mmucore.FILE_PFN_BASE and pfn != self.zero_pfn

    def process(self, **kw: Any) -> "Process":
        """A new address space (an mm) with no threads yet."""
        from .mm import MM
        mm = MM(self, next(self._ctx_ids), **kw)
        self.mms.append(mm)
        return Process(self, mm)

    def cpu(self, cpu_id: int) -> CPU:
        if not isinstance(cpu_id, int) or not 0 <= cpu_id < len(self.cpus):
            raise ConfigError(f"cpu {cpu_id!r} out of range 0..{len(self.cpus) - 1}",
                              field="cpu")
        return self.cpus[cpu_id]

    # -------------------------------------------------------------- operations
    def begin(self, cpu: CPU, name: str) -> Op:
        if self.current_op is not None:
            raise PysimError(f"{name} started while {self.current_op.name} is running")
        self.current_op = Op(self, cpu, name)
        return self.current_op

    def end(self, op: Op, value: Any = None, check: bool = True) -> OpResult:
        try:
            if op.cpu.current is not None and op.cpu.loaded_mm is not None:
                tlbflush.return_to_user(op.cpu)
            res = op.finish(value)
            for c in self.cpus:
                c.kernel_counts.update(op.counts[c.id])
        finally:
            self.current_op = None
        if self.keep_history:
            self.history.append(res)
        if check:
            self.checker.after(op.name, res)
        return res

    def abort(self, op: Op) -> None:
        """End an operation that raised (a syscall error): keep its counts, skip the check."""
        for c in self.cpus:
            c.kernel_counts.update(op.counts[c.id])
        self.current_op = None

    # -------------------------------------------------------------- reporting
    def counter_array(self) -> Dict[str, np.ndarray]:
        """Per-CPU counters as numpy columns (index = CPU id)."""
        cols: Dict[str, np.ndarray] = {}
        for name in KERNEL_COUNTERS:
            cols[name] = np.array([c.kernel_counts[name] for c in self.cpus], dtype=np.int64)
        hw = np.stack([c.tlb.counters for c in self.cpus]).astype(np.int64)
        for i, name in enumerate(mmucore.COUNTER_NAMES):
            cols[name] = hw[:, i]
        cols["cycles"] = np.array([c.clock for c in self.cpus])
        return cols

    def counters(self):
        """Per-CPU counters as a pandas DataFrame (one row per CPU)."""
        import pandas as pd
        df = pd.DataFrame(self.counter_array())
        df.index.name = "cpu"
        return df

    def check(self) -> list:
        """Run the safety checker now; returns the violations (empty when safe)."""
        return self.checker.scan("explicit check")

    def __repr__(self) -> str:
        return (f"Machine({len(self.cpus)} cpus, preset={self.preset.name}, "
                f"profile={self.profile.name})")


class Process:
    """A process: one mm and the threads that share it."""

    def __init__(self, machine: Machine, mm: "MM"):
        self.machine = machine
        self.mm = mm
        self.threads: List[Thread] = []

    def thread(self, cpu: int = 0) -> "Thread":
        """A thread of this process pinned to `cpu`; it starts running there."""
        t = Thread(self, self.machine.cpu(cpu))
        self.threads.append(t)
        t.run()
        return t

    def __getattr__(self, name: str):
        # proc.vmas, proc.pt ... come from the mm
        if name in ("vmas", "pt"):
            return getattr(self.mm, name)
        raise AttributeError(name)


class Thread:
    """A thread pinned to one CPU; its methods are the syscalls and memory accesses."""

    def __init__(self, proc: Process, cpu: CPU):
        self.proc = proc
        self.machine = proc.machine
        self.cpu = cpu
        self.mm = proc.mm

    # -------------------------------------------------------------- scheduling
    def run(self) -> None:
        """Schedule this thread on its CPU (context switch to its mm if needed)."""
        cpu = self.cpu
        if cpu.current is self and cpu.loaded_mm is self.mm and not cpu.is_lazy:
            return
        op = self.machine.current_op
        own = op is None
        if own:
            op = self.machine.begin(cpu, "schedule")
        try:
            if cpu.current is not None and cpu.current is not self:
                cpu.running_user = False
            cpu.current = self
            tlbflush.switch_mm_irqs_off(cpu, self.mm)
        finally:
            if own:
                self.machine.end(op, check=False)

    def busy(self) -> "Thread":
        """Spin in user space on this CPU: the mm stays loaded and the CPU non-lazy."""
        self.run()
        self.cpu.running_user = True
        return self

    def sleep(self) -> "Thread":
        """Block: the CPU goes idle in lazy-TLB mode, keeping the mm loaded."""
        cpu = self.cpu
        if cpu.current is self:
            cpu.current = None
            cpu.running_user = False
            tlbflush.enter_lazy_tlb(cpu)
        return self

    # -------------------------------------------------------------- syscalls
    def _syscall(self, name: str, fn, *args, **kw) -> OpResult:
        self.run()
        m = self.machine
        op = m.begin(self.cpu, name)
        op.count(self.cpu, "syscalls")
        op.charge(self.cpu, "syscall", m.cost("syscall")
                  + (m.cost("pti_cr3_switch") if m.profile.pti else 0.0))
        self.cpu.running_user = False
        try:
            if m.kernel is not None:
                m.kernel.touch(self.cpu, self.mm)
            value = fn(self.cpu, *args, **kw)
        except BaseException:
            m.abort(op)
            raise
        return m.end(op, value)

    def mmap(self, length: int, prot: int, flags: Optional[int] = None, addr: int = 0,
             **kw: Any) -> int:
        """mmap(): returns the address (anonymous private unless flags say otherwise).
        The OpResult of the call is in `self.last`."""
        self.last = self._syscall("mmap", self.mm.do_mmap, addr, length, prot, flags, **kw)
        return self.last.value

    def munmap(self, addr: int, length: int) -> OpResult:
        return self._syscall("munmap", self.mm.do_munmap, addr, length)

    def mprotect(self, addr: int, length: int, prot: int, pkey: int = -1) -> OpResult:
        return self._syscall("mprotect", self.mm.do_mprotect_pkey, addr, length, prot, pkey)

    def madvise(self, addr: int, length: int, advice: int) -> OpResult:
        return self._syscall("madvise", self.mm.do_madvise, addr, length, advice)

    # -------------------------------------------------------------- accesses
    def access(self, vas, kinds) -> OpResult:
        """A batch of user accesses (numpy uint64 addresses, uint8 kinds 0/1/2) run in C;
        faults are handled by the kernel model and the faulting access retried."""
        self.run()
        m = self.machine
        op = m.begin(self.cpu, "access")
        try:
            n = self.mm.run_accesses(self.cpu, vas, kinds)
        except BaseException:
            m.abort(op)
            raise
        return m.end(op, n)

    def _one(self, va: int, kind: int) -> OpResult:
        return self.access(np.array([va], dtype=np.uint64), np.array([kind], dtype=np.uint8))

    def read(self, va: int) -> OpResult:
        return self._one(va, mmucore.READ)

    def write(self, va: int) -> OpResult:
        return self._one(va, mmucore.WRITE)

    def fetch(self, va: int) -> OpResult:
        return self._one(va, mmucore.FETCH)

    def __repr__(self) -> str:
        return f"Thread(mm{self.mm.ctx_id} on cpu{self.cpu.id})"


from .mm import MM  # noqa: E402  (MM needs Machine's names at import time)
