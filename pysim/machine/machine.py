"""The simulated machine: CPUs, processes and threads, and the per-operation
accounting every kernel path reports into.

    m = pysim.Machine(cpus=2, preset="skylake", profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0); t1 = proc.thread(cpu=1); t1.busy()
    p = t0.mmap(4096, PROT_READ | PROT_WRITE)
    t0.write(p); r = t0.mprotect(p, 4096, PROT_READ)
    r.cycles, r.events, m.counters()

Ownership runs one way: a process holds its threads and its machine, a thread its
machine, CPU and mm (its process only weakly), the machine its CPUs and mms; nothing
below holds anything above (a CPU holds its thread weakly), so a dropped machine is
freed by reference counting alone, and a machine pickles whole with its threads.
"""
from __future__ import annotations

import weakref
from typing import Any, Dict, List, Optional

import numpy as np

import mmucore
from mmucore import stats as _stats

from ..arch import get_arch
from ..checker import Checker
from ..config import KernelConfig, resolve
from ..errors import ArgumentError, ConfigError, PysimError, no_unknown_keywords
from ..mm import madvise as mm_madvise, memory, mmap as mm_mmap
from ..mm.footprint import KernelFootprint
from ..mm.frames import Frames
from ..mm.mm import MM
from ..mm.mmap_lock import _MADV_READ_LOCKED, madvise_lock_mode
from ..mm import mlock as mm_mlock
from ..mm.fork import ExecImage, default_image, dup_mmap, exit_mmap, map_image
from ..mm.mempolicy import (do_get_mempolicy, do_mbind, do_set_mempolicy,
                            do_set_mempolicy_home_node)
from ..mm.mprotect import do_mprotect_pkey
from ..mm.msync import do_mincore, do_msync
from ..mm.mremap import do_mremap
from ..constants import PAGE_SIZE, TASK_SIZE
from ..mm.softdirty import clear_refs_write
from ..results import KERNEL_COUNTERS, OpResult
from .cpu import CPU, llc_of
from .timeline import Timeline

_ADDRESS_TOP = 1 << 64


def _count(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer option (numpy integers too) in [lo, hi], else a ConfigError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer {lo}..{hi}, got {value!r}", field=name)
    return int(value)


class Op(tuple):
    """The operation in flight (Machine.current_op while it runs): its name, the CPU
    that initiated it, and mm, the address space it works on when known (the checker
    then scans that mm's slots only).  A tuple, so that Thread._syscall makes one per
    call with a single C call (tuple.__new__(Op, ...))."""

    __slots__ = ()

    def __new__(cls, name: str, cpu: CPU, mm: Optional[MM] = None) -> "Op":
        """Op(name, cpu, mm)."""
        return tuple.__new__(cls, (name, cpu, mm))

    name = property(lambda self: self[0], doc="the operation's name")
    cpu = property(lambda self: self[1], doc="the initiating CPU")
    mm = property(lambda self: self[2], doc="the address space, or None")


_tuple_new = tuple.__new__


class Machine:
    """CPUs, processes, the frame allocator, the kernel profile and the hardware preset."""

    def __init__(self, cpus: int = 1, preset: Any = "skylake", profile: Any = "patched",
                 checker: Any = True, seed: int = 0, kernel_footprint: Any = False,
                 **overrides: Any):
        ncpus = _count(cpus, "cpus", 1, 4096)
        self.seed = _count(seed, "seed", 0, 2 ** 63 - 1)
        self.cfg: KernelConfig = resolve(profile, preset, **overrides)
        self.profile, self.preset = self.cfg.profile, self.cfg.preset
        self.rng = np.random.default_rng(self.seed)
        costs = mmucore.CostModel(**self.preset.hw)
        geo = mmucore.geometry(self.preset.geometry)
        tlbs = [mmucore.TLB(geo, costs) for _ in range(ncpus)]
        self.acct = _stats.OpAccount()
        cpu_stats = [_stats.CpuStats(i, t, self.acct) for i, t in enumerate(tlbs)]
        self.arch = get_arch(self.cfg, tlbs, cpu_stats)
        if self.preset.kvm_pv_preempt:
            # KVM's PV TLB flush: the draws come from the machine's seeded generator
            # (drawn only when the option is on, so other runs keep their sequence)
            self.arch.set_kvm_pv_flush(self.preset.kvm_pv_preempt,
                                       int(self.rng.integers(1, 2 ** 63)))
        self.cpus = [CPU(i, self.arch.cpu_state(i), self.cfg, self.arch)
                     for i in range(ncpus)]
        for c in self.cpus:
            c.set_llc(llc_of(c.id, ncpus, self.preset.cores_per_llc,
                             self.preset.smt_speed < 1.0))
        self.frames = Frames()
        self.mms: List[MM] = []
        self._next_ctx = 1                  # mm context ids are never reused
        self._next_tid = 1                  # thread ids (current->pid), never reused
        self.current_op: Optional[Op] = None
        self.checker = Checker(self.cfg, self.cpus, self.mms, checker)
        self.history: List[OpResult] = []
        self.keep_history = False
        if kernel_footprint is True:
            kernel_footprint = {}
        if not isinstance(kernel_footprint, (dict, bool)) and kernel_footprint is not None:
            raise ConfigError(f"kernel_footprint must be True/False or a dict of page "
                              f"counts, got {kernel_footprint!r}", field="kernel_footprint")
        if isinstance(kernel_footprint, dict):
            for k in kernel_footprint:
                if not isinstance(k, str):
                    raise ConfigError(f"kernel_footprint keys must be field names, got {k!r}",
                                      field="kernel_footprint")
        self.kernel = (KernelFootprint(self.frames, self.profile.pti, **kernel_footprint)
                       if isinstance(kernel_footprint, dict) else None)
        self._cycles_per_jiffy = self.preset.ghz * 1e9 / self.profile.hz
        self._syscall_cost = self.cfg.cost.syscall + (self.cfg.cost.pti_cr3_switch
                                                      if self.profile.pti else 0.0)

    def __getstate__(self):
        if self.current_op is not None:
            raise PysimError("cannot pickle a machine while an operation is running")
        return self.__dict__

    # -------------------------------------------------------------- resources
    def cost(self, key: str) -> float:
        """A kernel-path cost from the preset (hardware costs live in the TLBs)."""
        return self.preset.kernel[key]

    @property
    def zero_pfn(self) -> int:
        return self.frames.zero_pfn

    @property
    def next_pfn(self) -> int:
        return self.frames.next_pfn

    def is_anon_pfn(self, pfn: int) -> bool:
        return self.frames.is_anon(pfn)

    def process(self, mmap_base: Optional[int] = None, **unknown: Any) -> "Process":
        """A new address space (an mm) with no threads yet; mmap_base moves the top of
        the top-down mmap area (a page-aligned address in (0, TASK_SIZE])."""
        no_unknown_keywords("Machine.process", unknown, ("mmap_base",))
        if mmap_base is not None:
            if isinstance(mmap_base, (bool, np.bool_)) \
                    or not isinstance(mmap_base, (int, np.integer)) \
                    or not 0 < mmap_base <= TASK_SIZE or mmap_base % PAGE_SIZE:
                raise ConfigError(f"mmap_base must be a page-aligned address in (0, "
                                  f"0x{TASK_SIZE:x}], got {mmap_base!r}", field="mmap_base")
            mmap_base = int(mmap_base)
        ctx_id = self._next_ctx
        self._next_ctx += 1
        mm = MM(ctx_id, self.arch.new_context(ctx_id), self.frames, self.arch.vma_page_prot,
                self.kernel, mmap_base=mmap_base)
        self.mms.append(mm)
        return Process(self, mm)

    def cpu(self, cpu_id: int) -> CPU:
        if isinstance(cpu_id, (bool, np.bool_)) or not isinstance(cpu_id, (int, np.integer)):
            raise ConfigError(f"cpu must be an integer, got {cpu_id!r}", field="cpu")
        if not 0 <= cpu_id < len(self.cpus):
            raise ConfigError(f"cpu {cpu_id!r} out of range 0..{len(self.cpus) - 1}",
                              field="cpu")
        return self.cpus[int(cpu_id)]

    # -------------------------------------------------------------- operations
    def begin(self, cpu: CPU, name: str, mm: Optional[MM] = None) -> Op:
        """Open the accounting window of one operation initiated on cpu (on mm, if the
        operation touches only that address space's page tables)."""
        if self.current_op is not None:
            raise PysimError(f"{name} started while {self.current_op.name} is running")
        self.acct.begin(cpu.stats)
        # jiffies follow the initiating CPU's clock (its timeline time when CPUs run at once)
        self.arch.set_jiffies(int(cpu.tlbstate.now // self._cycles_per_jiffy))
        cpu.faults = []
        op = self.current_op = Op(name, cpu, mm)
        return op

    def end(self, op: Op, value: Any = None, check: bool = True) -> OpResult:
        """Close the window: the exit to user space, the result, the checker."""
        cpu = op.cpu
        try:
            # return_to_user when a thread goes back to user space, then acct.close
            res = self.arch.syscall_exit(cpu, cpu._cur is not None, OpResult, op.name,
                                         value, cpu.faults)
        finally:
            self.current_op = None
        if self.keep_history:
            self.history.append(res)
        if check and self.checker.mode != "off":
            self.checker.after(op.name, res, op.mm)
        return res

    def abort(self, op: Op) -> None:
        """End an operation that raised (a syscall error): keep its counts, skip the check."""
        self.acct.abort()
        self.current_op = None

    # -------------------------------------------------------------- reporting
    def reset_counters(self) -> None:
        """Zero every counter and cycle total (hardware and kernel) and the history;
        the machine's state (page tables, TLB contents, ASIDs) is untouched."""
        if self.current_op is not None:
            raise PysimError("cannot reset counters while an operation is running")
        for c in self.cpus:
            c.tlb.reset_counters()
            c.stats.reset()
        self.history.clear()

    def counter_array(self) -> Dict[str, np.ndarray]:
        """Per-CPU counters as numpy columns (index = CPU id)."""
        cols: Dict[str, np.ndarray] = {}
        k = np.stack([c.stats.kernel_counts_array() for c in self.cpus])
        for i, name in enumerate(KERNEL_COUNTERS):
            cols[name] = k[:, i]
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

    def trace(self):
        """The per-operation history (set keep_history = True first) as a pandas
        DataFrame: one row per operation, its name, CPU, cycles and every event count."""
        import pandas as pd
        cols = ["op", "cpu", "cycles"] + list(KERNEL_COUNTERS) + list(mmucore.COUNTER_NAMES)
        return pd.DataFrame([{"op": r.op, "cpu": r.cpu, "cycles": r.cycles, **r.events}
                             for r in self.history], columns=cols)

    def timeline(self, cpuidle: Optional[str] = None) -> "Timeline":
        """A timeline on this machine: spawn programs on threads, then run them at once;
        cpuidle names the idle-state table sleeping CPUs choose from (None: one state)."""
        return Timeline(self, cpuidle=cpuidle)

    def check(self) -> list:
        """Run the safety checker now; returns the violations (empty when safe)."""
        return self.checker.scan("explicit check")

    def __repr__(self) -> str:
        return (f"Machine({len(self.cpus)} cpus, preset={self.preset.name}, "
                f"profile={self.profile.name})")


class Process:
    """A process: one mm and the threads that share it."""

    def __init__(self, machine: Machine, mm: MM):
        self.machine = machine
        self.mm = mm
        self.threads: List[Thread] = []

    def thread(self, cpu: int = 0, **unknown: Any) -> "Thread":
        """A thread of this process pinned to `cpu`; it starts running there."""
        no_unknown_keywords("Process.thread", unknown, ("cpu",))
        t = Thread(self, self.machine.cpu(cpu))
        self.threads.append(t)
        t.run()
        return t

    def _live_thread(self, thread: Optional["Thread"] = None) -> "Thread":
        """The thread a process-wide call runs on: `thread` (one of this process's),
        else the first live one."""
        if thread is not None:
            if not isinstance(thread, Thread) or thread not in self.threads:
                raise ArgumentError(f"thread must be a Thread of this process, got "
                                    f"{thread!r}", field="thread")
            return thread
        for t in self.threads:
            if not t.__dict__.get("exited"):
                return t
        raise PysimError("the process has no live thread (create one with .thread())")

    def _stop_threads(self, keep: Optional["Thread"] = None) -> None:
        """Every thread but `keep` stops: its CPU, if running it, goes idle (lazy TLB)."""
        for t in self.threads:
            if t is keep or t.__dict__.get("exited"):
                continue
            t.sleep()
            t.exited = True

    def fork(self, thread: Optional["Thread"] = None, cpu: Optional[int] = None,
             **unknown: Any) -> "Process":
        """fork() from `thread` (default: the first live one): a child process whose mm
        is dup_mmap's copy (private anonymous pages write-protected in both, the
        parent's flush_tlb_mm), with one thread on `cpu` (default the forking thread's
        CPU), which then runs.  The syscall's OpResult is in thread.last."""
        no_unknown_keywords("Process.fork", unknown, ("thread", "cpu"))
        t = self._live_thread(thread)
        m = self.machine
        if cpu is not None:
            m.cpu(cpu)                           # checked before the fork runs
        box: list = []

        def _fork(mm, c):
            child = m.process(mmap_base=mm.vmas.mmap_base)
            dup_mmap(mm, child.mm, c)
            box.append(child)
            return child.mm.ctx_id

        t.last = t._syscall("fork", _fork, (), lock="w")
        child = box[0]
        child.thread(cpu=t.cpu.id if cpu is None else cpu)
        return child

    def execve(self, image: Any = None, thread: Optional["Thread"] = None,
               **unknown: Any) -> OpResult:
        """execve() on `thread` (default: the first live one): the other threads stop,
        the thread switches to a new mm holding `image` (pysim.mm.fork.ExecImage;
        default_image() if None), and the old mm is torn down with a fullmm gather."""
        no_unknown_keywords("Process.execve", unknown, ("image", "thread"))
        t = self._live_thread(thread)
        m = self.machine
        if image is not None and not isinstance(image, ExecImage):
            raise ArgumentError(f"image must be a pysim.mm.fork.ExecImage, got "
                                f"{type(image).__name__}", field="image")
        img = image if image is not None else default_image()

        def _exec(mm, c):
            new = m.process(mmap_base=mm.vmas.mmap_base).mm
            new.privileged, new.rlimit_stack = mm.privileged, mm.rlimit_stack
            new.rlimit_memlock = mm.rlimit_memlock
            self._stop_threads(keep=t)
            map_image(new, img)
            t.mm = self.mm = new
            m.arch.switch_mm(c, new)             # exec_mmap(): activate_mm()
            exit_mmap(mm, c)                     # mmput(old_mm)
            return 0

        return t._syscall("execve", _exec, (), lock="w")

    def exit(self, thread: Optional["Thread"] = None, **unknown: Any) -> OpResult:
        """exit_group(): every thread stops (its CPU lazy on the mm), then exit_mmap()
        on `thread`'s CPU tears the mm down with a fullmm gather."""
        no_unknown_keywords("Process.exit", unknown, ("thread",))
        t = self._live_thread(thread)
        m = self.machine

        def _exit(mm, c):
            self._stop_threads(keep=t)
            c._cur = None                        # exit_mm(): the task drops its mm
            c.tlbstate.running_user = False
            m.arch.enter_lazy_tlb(c)
            exit_mmap(mm, c)
            t.exited = True
            return 0

        return t._syscall("exit", _exit, (), lock="w")

    def clear_refs(self, value: int, thread: Optional["Thread"] = None) -> OpResult:
        """Write `value` to this process's /proc/PID/clear_refs, from `thread` (default:
        the first live one); Thread.clear_refs says what each value does."""
        return self._live_thread(thread).clear_refs(value)

    @property
    def vmas(self):
        return self.mm.vmas

    @property
    def pt(self):
        return self.mm.pt


class Thread:
    """A thread pinned to one CPU; its methods are the syscalls and memory accesses,
    each returning the OpResult of the operation (mmap's address is its .value)."""

    def __init__(self, proc: Process, cpu: CPU):
        self._proc = weakref.ref(proc)      # the process holds its threads, not the reverse
        self.machine = proc.machine
        self.cpu = cpu
        self.mm = proc.mm
        self._ref = weakref.ref(self)
        self.last: Optional[OpResult] = None
        self.mempolicy = None               # current->mempolicy (None: the default)
        self.il_prev = -1                   # current->il_prev (interleave's last node)
        m = proc.machine
        self.tid = m._next_tid              # current->pid of this thread
        m._next_tid += 1

    @property
    def proc(self) -> Optional[Process]:
        """The process this thread belongs to (None once nothing else holds it)."""
        return self._proc()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_proc"] = self._proc()
        del state["_ref"]
        return state

    def __setstate__(self, state) -> None:
        proc = state.pop("_proc")
        self.__dict__.update(state)
        self._proc = weakref.ref(proc) if proc is not None else (lambda: None)
        self._ref = weakref.ref(self)

    # -------------------------------------------------------------- scheduling
    def run(self) -> "Thread":
        """Schedule this thread on its CPU (context switch to its mm if needed)."""
        if self.__dict__.get("exited"):
            raise PysimError(f"{self!r} has exited (exit or another thread's execve)")
        cpu = self.cpu
        ts = cpu.tlbstate
        if cpu._cur is self._ref and ts.loaded_mm is self.mm.context and not ts.is_lazy:
            return self
        m = self.machine
        own = m.current_op is None
        op = m.begin(cpu, "schedule") if own else None
        try:
            if cpu._cur is not None and cpu._cur is not self._ref:
                ts.running_user = False
            cpu._cur = self._ref
            m.arch.switch_mm(cpu, self.mm)
        finally:
            if own:
                m.end(op, check=False)
        return self

    def busy(self) -> "Thread":
        """Spin in user space on this CPU: the mm stays loaded and the CPU non-lazy."""
        self.run()
        self.cpu.tlbstate.running_user = True
        return self

    def sleep(self) -> "Thread":
        """Block: the CPU goes idle in lazy-TLB mode, keeping the mm loaded."""
        cpu = self.cpu
        if cpu._cur is self._ref:
            cpu._cur = None
            cpu.tlbstate.running_user = False
            self.machine.arch.enter_lazy_tlb(cpu)
        return self

    # -------------------------------------------------------------- syscalls
    def _syscall(self, name: str, fn, args: tuple, kw: Optional[dict] = None,
                 lock: str = "w") -> OpResult:
        """One syscall on this thread's CPU: entry, fn(mm, cpu, *args, **kw) under
        mmap_lock (lock "r" or "w"), exit.  Machine.begin and Machine.end are inlined
        here (the same steps in the same order, the entry's and the exit's each one
        Arch call: Arch.syscall_enter, Arch.syscall_exit), and run() is called only
        when this thread is not already the one running on its CPU."""
        cpu = self.cpu
        mm = self.mm
        ts = cpu.tlbstate
        ctx = mm.context
        if cpu._cur is not self._ref or ts.loaded_mm is not ctx or ts.is_lazy \
                or self.__dict__.get("exited"):
            self.run()
            mm = self.mm
            ctx = mm.context
        m = self.machine
        # Machine.begin(cpu, name, mm)
        if m.current_op is not None:
            raise PysimError(f"{name} started while {m.current_op.name} is running")
        arch = m.arch
        # acct.begin(cpu.stats), the entry's count and cost, jiffies, current->pid (which
        # flush rules sample), running_user off and kernel_entry, in one call
        arch.syscall_enter(cpu, ctx, self.tid, m._syscall_cost, m._cycles_per_jiffy)
        cpu.faults = []
        op = m.current_op = _tuple_new(Op, (name, cpu, mm))      # Op(name, cpu, mm)
        lk = mm.mmap_lock
        # MmapLock.lock/unlock do nothing untimed; lock None: a call without mmap_lock
        timed = lk.timed and lock is not None
        if timed:
            lk.lock(cpu, lock)
        try:
            if m.kernel is not None:
                m.kernel.touch(cpu, mm)
            value = fn(mm, cpu, *args, **kw) if kw else fn(mm, cpu, *args)
        except BaseException:
            if timed:
                lk.unlock(cpu, lock)
            m.abort(op)
            raise
        if timed:
            lk.unlock(cpu, lock)
        # Machine.end(op, value)
        try:
            # return_to_user when a thread goes back to user space, then acct.close
            res = arch.syscall_exit(cpu, cpu._cur is not None, OpResult, name, value,
                                    cpu.faults)
        finally:
            m.current_op = None
        if m.keep_history:
            m.history.append(res)
        if m.checker.mode != "off":
            m.checker.after(name, res, mm)
        return res

    def mmap(self, length: int, prot: int, flags: Optional[int] = None, addr: int = 0,
             file: Any = None, huge: bool = False, pgoff: int = 0, **unknown: Any) -> int:
        """mmap(): returns the address (anonymous private unless flags say otherwise;
        file=pysim.File(...) for a file mapping at page offset pgoff, huge=True for a
        2 MiB-aligned THP region); the call's OpResult is in `self.last`."""
        if unknown:
            no_unknown_keywords("Thread.mmap", unknown,
                                ("flags", "addr", "file", "huge", "pgoff"))
        self.last = self._syscall("mmap", mm_mmap.do_mmap,
                                  (addr, length, prot, flags, file, huge, pgoff))
        return self.last.value

    def munmap(self, addr: int, length: int) -> OpResult:
        return self._syscall("munmap", mm_mmap.do_munmap, (addr, length))

    def mprotect(self, addr: int, length: int, prot: int, pkey: int = -1) -> OpResult:
        return self._syscall("mprotect", do_mprotect_pkey, (addr, length, prot, pkey))

    def madvise(self, addr: int, length: int, advice: int) -> OpResult:
        return self._syscall("madvise", mm_madvise.do_madvise, (addr, length, advice),
                             None, "r" if advice in _MADV_READ_LOCKED else "w")   # lock

    def process_madvise(self, iovec: list, advice: int, flags: int = 0) -> OpResult:
        """process_madvise(pidfd of this process, iovec, advice, flags): every (addr,
        len) of iovec in order under one mmap_lock and one mmu_gather; .value is the
        bytes advised (the error only if none was)."""
        return self._syscall("process_madvise", mm_madvise.do_process_madvise,
                             (iovec, advice, flags), lock=madvise_lock_mode(advice))

    def mbind(self, addr: int, length: int, mode: int, nodemask: Optional[int] = None,
              maxnode: int = 0, flags: int = 0) -> OpResult:
        """mbind(): the NUMA policy `mode` over [addr, addr + len), with VMA split and
        merge (pysim.mm.mempolicy); nodemask is the mask's bits (None: NULL) and
        maxnode the bit count the kernel reads plus one, as the syscall takes them."""
        return self._syscall("mbind", do_mbind, (addr, length, mode, nodemask, maxnode,
                                                 flags), lock="w")

    def set_mempolicy(self, mode: int, nodemask: Optional[int] = None,
                      maxnode: int = 0) -> OpResult:
        """set_mempolicy(): this thread's own NUMA policy (self.mempolicy)."""
        return self._syscall("set_mempolicy", do_set_mempolicy, (self, mode, nodemask,
                                                                 maxnode), lock=None)

    def get_mempolicy(self, policy: Optional[list] = None, nodemask: Optional[list] = None,
                      maxnode: int = 0, addr: int = 0, flags: int = 0) -> OpResult:
        """get_mempolicy(): the mode (or node) into policy[0] and the nodemask into
        nodemask[0] when they are lists (the user buffers; None is NULL)."""
        return self._syscall("get_mempolicy", do_get_mempolicy, (self, policy, nodemask,
                                                                 maxnode, addr, flags),
                             lock="r")

    def set_mempolicy_home_node(self, addr: int, length: int, home_node: int,
                                flags: int = 0) -> OpResult:
        """set_mempolicy_home_node(): the home node of the range's MPOL_BIND and
        MPOL_PREFERRED_MANY VMA policies."""
        return self._syscall("set_mempolicy_home_node", do_set_mempolicy_home_node,
                             (addr, length, home_node, flags), lock="w")

    def msync(self, addr: int, length: int, flags: int) -> OpResult:
        """msync(): the kernel's checks and VMA walk (writeback is not modelled)."""
        return self._syscall("msync", do_msync, (addr, length, flags), lock="r")

    def mincore(self, addr: int, length: int, vec: Any = None) -> OpResult:
        """mincore(): one residency byte per page into vec when it is a list."""
        return self._syscall("mincore", do_mincore, (addr, length, vec), lock="r")

    def brk(self, addr: int) -> OpResult:
        """brk(): .value is the new break, or the old one if the kernel refused (never
        an errno, as Linux's brk returns)."""
        return self._syscall("brk", mm_mmap.do_brk, (addr,), lock="w")

    def mremap(self, old_addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> OpResult:
        """mremap(): .value is the mapping's address after the call (MREMAP_MAYMOVE,
        MREMAP_FIXED, MREMAP_DONTUNMAP; present pages move with their flushes)."""
        return self._syscall("mremap", do_mremap, (old_addr, old_len, new_len, flags,
                                                   new_addr), lock="w")

    def mlock(self, addr: int, length: int) -> OpResult:
        """mlock(): lock and populate [addr, addr + len)."""
        return self._syscall("mlock", mm_mlock.do_mlock, (addr, length, 0), lock="w")

    def mlock2(self, addr: int, length: int, flags: int) -> OpResult:
        """mlock2(): mlock with MLOCK_ONFAULT (lock without populating)."""
        return self._syscall("mlock2", mm_mlock.do_mlock, (addr, length, flags), lock="w")

    def munlock(self, addr: int, length: int) -> OpResult:
        """munlock(): clear the lock flags over [addr, addr + len)."""
        return self._syscall("munlock", mm_mlock.do_munlock, (addr, length), lock="w")

    def mlockall(self, flags: int) -> OpResult:
        """mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)."""
        return self._syscall("mlockall", mm_mlock.do_mlockall, (flags,), lock="w")

    def munlockall(self) -> OpResult:
        """munlockall()."""
        return self._syscall("munlockall", mm_mlock.do_munlockall, (), lock="w")

    def pkey_alloc(self, flags: int = 0, access_rights: int = 0) -> OpResult:
        """pkey_alloc(): .value is the new protection key."""
        return self._syscall("pkey_alloc", mm_mlock.do_pkey_alloc, (flags, access_rights),
                             lock="w")

    def pkey_free(self, pkey: int) -> OpResult:
        """pkey_free(): release an allocated protection key."""
        return self._syscall("pkey_free", mm_mlock.do_pkey_free, (pkey,), lock="w")

    def pkey_mprotect(self, addr: int, length: int, prot: int, pkey: int) -> OpResult:
        """pkey_mprotect(): mprotect that also tags the VMAs with an allocated key."""
        return self._syscall("pkey_mprotect", do_mprotect_pkey, (addr, length, prot, pkey),
                             lock="w")

    def mseal(self, addr: int, length: int, flags: int = 0) -> OpResult:
        """mseal(): seal every VMA of the (fully mapped) range."""
        return self._syscall("mseal", mm_mlock.do_mseal, (addr, length, flags), lock="w")

    def clear_refs(self, value: int) -> OpResult:
        """write(2) of `value` to /proc/PID/clear_refs of this thread's process
        (clear_refs_write(), under mmap_write_lock): 4 (CLEAR_REFS_SOFT_DIRTY) clears
        VM_SOFTDIRTY on every VMA and write-protects every present entry with its
        soft-dirty bit cleared, then flushes the whole mm once; 1-3 make pages old
        (no flush); 5 resets the peak RSS (not kept).  See pysim.mm.softdirty."""
        return self._syscall("clear_refs", clear_refs_write, (value,), lock="w")

    # -------------------------------------------------------------- accesses
    def access(self, vas, kinds) -> OpResult:
        """A batch of user accesses (numpy uint64 addresses, uint8 kinds 0/1/2) run in C;
        faults are handled by the kernel model and the faulting access retried."""
        self.run()
        m = self.machine
        op = m.begin(self.cpu, "access", self.mm)
        try:
            n = memory.run_accesses(self.mm, self.cpu, vas, kinds)
        except BaseException:
            m.abort(op)
            raise
        return m.end(op, n)

    def _one(self, va: int, kind: int) -> OpResult:
        """One access of `kind` at va (an integer address, numpy integers too)."""
        if type(va) is not int and (isinstance(va, (bool, np.bool_))
                                    or not isinstance(va, (int, np.integer))) \
                or not 0 <= va < _ADDRESS_TOP:
            raise ConfigError(f"va: address must be an integer 0..2**64-1, got {va!r}",
                              field="va")
        return self.access(np.array([va], dtype=np.uint64), np.array([kind], dtype=np.uint8))

    def read(self, va: int) -> OpResult:
        return self._one(va, mmucore.READ)

    def write(self, va: int) -> OpResult:
        return self._one(va, mmucore.WRITE)

    def fetch(self, va: int) -> OpResult:
        return self._one(va, mmucore.FETCH)

    def __repr__(self) -> str:
        return f"Thread(mm{self.mm.ctx_id} on cpu{self.cpu.id})"
