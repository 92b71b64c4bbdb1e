"""Replays on the timeline (pysim.machine.timeline): the traced tasks run at once.

The sequential replay (the default) runs every event in trace order on one clock.  In
the timeline mode each CPU runs one program: the events of the traced tasks pinned to
it, in trace order, each one request of the timeline (a fault batch, a memory call, a
process call, as the sequential engine splits them), so CPUs advance on their own
clocks, an mprotect's IPIs land in the middle of another CPU's work, and mmap_lock and
the shared cache lines are contended as the timeline models them.

What keeps the replay faithful where tasks would otherwise race is the causality that
is cheap to keep: within one address space the calls run in trace order, each after
the fault batches traced before it (a thread's first call waits for the clone that
made it, a munmap for the mmap and the touches before it, whatever CPU they ran on),
while the fault batches of different threads between two calls run at once; a new
address space's first unit waits for the fork or execve that made it.  A program whose next unit must wait spins in user mode (charged as
user-mode compute, reported per task as wait) until the unit it waits for has run,
then starts no earlier than that unit's end.  Address spaces do not wait for each
other.

Tasks go onto CPUs by the replay's pinning policy, decided before the run in trace
order exactly as the sequential replay decides them, so both modes place every task
on the same CPU; tasks sharing a CPU take turns in trace order.

The result: the Records (as the sequential replay's), the TimelineResult (its
operations are units), and per task its simulated busy time, its wait (the spinning
before each of its units, the first included: the wait to be created), and its span
from its first unit's start to its last one's end, beside the traced wall time
(task_times()).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from mmucore.stats import B_USER

from .parse_strace import CLONE_VM

if TYPE_CHECKING:                                   # pragma: no cover
    from .engine import Replay
    from .records import Records

__all__ = ["TimedReplay", "plan_units"]


class _CpuSlot:
    """What a timeline program is bound to: a CPU of the machine (the traced tasks
    that run on it come and go with clone and exit, so no one Thread stands for it)."""

    __slots__ = ("machine", "cpu")

    def __init__(self, machine: Any, cpu: Any) -> None:
        """The slot of `cpu` on `machine`."""
        self.machine, self.cpu = machine, cpu

    def __repr__(self) -> str:
        """Which CPU the programs run on."""
        return f"replay programs on cpu{self.cpu.id}"


def plan_units(events: list) -> Tuple[List[Tuple[int, int]], List[int],
                                        List[Tuple[int, ...]]]:
    """Split events as the sequential engine does (a run of one task's consecutive
    faults is one unit, any other event one unit) and find each unit's address space
    and the units it waits for.  A call (or exit) waits for the space's previous call
    and for every fault batch since it; a fault batch waits for the space's last call
    only, so the threads' fault batches between two calls run at once.  A space's first
    unit waits for the fork, clone or execve that made the space.  Returns (units,
    space of each unit, the units each one waits for)."""
    units: List[Tuple[int, int]] = []
    space: List[int] = []
    deps: List[Tuple[int, ...]] = []
    space_of: Dict[int, int] = {}
    last_call: Dict[int, int] = {}                # space -> its last call unit so far
    faults_since: Dict[int, List[int]] = {}       # space -> fault units since that call
    made_by: Dict[int, int] = {}                  # space -> the unit that made it
    nspaces = 0
    i, n = 0, len(events)
    while i < n:
        e = events[i]
        j = i + 1
        if e.kind == "fault":
            while j < n and events[j].kind == "fault" and events[j].pid == e.pid:
                j += 1
        s = space_of.get(e.pid)
        if s is None:
            # the first task, or one the trace never showed being created: the engine
            # makes it a thread of the first live process (taken here as the first)
            s = space_of[e.pid] = 0
            nspaces = max(nspaces, 1)
        u = len(units)
        units.append((i, j))
        space.append(s)
        prev = last_call.get(s, made_by.get(s, -1))
        before = (prev,) if prev >= 0 else ()
        if e.kind == "fault":
            deps.append(before)
            faults_since.setdefault(s, []).append(u)
            i = j
            continue
        deps.append(before + tuple(faults_since.pop(s, ())))
        last_call[s] = u
        if e.kind == "call" and e.errno is None and isinstance(e.result, int):
            if e.name in ("clone", "clone3", "fork", "vfork") and e.result > 0:
                if e.args and e.args[0] & CLONE_VM:
                    space_of[e.result] = s
                else:
                    space_of[e.result] = nspaces
                    made_by[nspaces] = u
                    nspaces += 1
            elif e.name in ("execve", "execveat") and e.result == 0:
                space_of[e.pid] = nspaces
                made_by[nspaces] = u
                nspaces += 1
        i = j
    return units, space, deps


class TimedReplay:
    """A Replay whose tasks run as timeline programs, one per CPU (module comment)."""

    def __init__(self, replay: "Replay") -> None:
        """Plan the units of replay's trace (plan_units); nothing runs yet."""
        self.r = replay
        self.m = replay.m
        self.units, self.space, self.dep = plan_units(replay.trace.events)
        self.done: List[Optional[float]] = [None] * len(self.units)
        self.busy: Dict[int, float] = {}
        self.wait: Dict[int, float] = {}
        self.first: Dict[int, float] = {}
        self.last: Dict[int, float] = {}
        self.result = None

    # ---------------------------------------------------------------- planning
    def _plan_cpus(self) -> Dict[int, List[int]]:
        """Each unit's CPU: the pinning policy applied in trace order at every point
        where the sequential engine creates a task (a pid's first event, a clone's or
        fork's child); an execve keeps its task's CPU.  Fills the replay's plan of CPUs
        per pid and returns {cpu: [units]}."""
        r = self.r
        events = r.trace.events
        for e in events:
            if e.kind == "fault" and e.cpu is not None:
                r._traced_cpu.setdefault(e.pid, e.cpu)
        cpu_of: Dict[int, int] = {}
        per_cpu: Dict[int, List[int]] = {}
        for u, (i, _) in enumerate(self.units):
            e = events[i]
            if e.pid not in cpu_of:
                cpu_of[e.pid] = r._cpu_for(e.pid)
                r._planned_cpu.setdefault(e.pid, []).append(cpu_of[e.pid])
            per_cpu.setdefault(cpu_of[e.pid], []).append(u)
            if e.kind == "call" and e.errno is None and isinstance(e.result, int) \
                    and e.result > 0 and e.name in ("clone", "clone3", "fork", "vfork"):
                c = r._cpu_for(e.result)
                cpu_of[e.result] = c
                r._planned_cpu.setdefault(e.result, []).append(c)
        return per_cpu

    # ---------------------------------------------------------------- running
    def _run_unit(self, u: int, cpu: Any) -> None:
        """One unit on its CPU (a timeline request): the engine's handler, its busy
        time recorded for its task; new address spaces get a timed mmap_lock."""
        i, j = self.units[u]
        pid = self.r.trace.events[i].pid
        t0 = cpu.tlbstate.now
        nmms = len(self.m.mms)
        self.r._unit(i, j)
        for mm in self.m.mms[nmms:]:
            mm.mmap_lock.timed = True
        t1 = cpu.tlbstate.now
        self.done[u] = t1
        self.busy[pid] = self.busy.get(pid, 0.0) + (t1 - t0)
        self.first.setdefault(pid, t0)
        self.last[pid] = t1

    def _spin(self, cpu: Any, until: float, pid: int) -> None:
        """Wait in user mode until `until` (a timeline request)."""
        dt = until - cpu.tlbstate.now
        if dt > 0:
            cpu.stats.charge(B_USER, dt)
            self.wait[pid] = self.wait.get(pid, 0.0) + dt

    def _program(self, calls: Any, cpu: Any, units: List[int]):
        """The timeline program of one CPU: its units in trace order, each after the
        unit it depends on (module comment)."""
        events = self.r.trace.events
        cpus = self.m.cpus
        for u in units:
            pid = events[self.units[u][0]].pid
            for d in self.dep[u]:
                while self.done[d] is None:
                    # the unit waited for runs on a CPU now later than this one: catch
                    # up with it (one cycle past, so that the other CPU runs first)
                    other = self._cpu_of_unit[d]
                    yield (self._spin, (cpu, cpus[other].tlbstate.now + 1.0, pid), None,
                           None)
                if self.done[d] > cpu.tlbstate.now:
                    yield (self._spin, (cpu, self.done[d], pid), None, None)
            yield (self._run_unit, (u, cpu), None, None)
            calls.tick()                # a unit is the timeline's operation here

    def run(self) -> "Records":
        """Plan, spawn one program per CPU used, run the timeline; returns the Records
        (the TimelineResult is in self.result)."""
        from ..machine.timeline import Timeline
        per_cpu = self._plan_cpus()
        self._cpu_of_unit = [0] * len(self.units)
        for c, us in per_cpu.items():
            for u in us:
                self._cpu_of_unit[u] = c
        rec = self.r.rec
        if not per_cpu:                     # nothing to run: a timeline needs a program
            rec.notes, rec.image_vmas, rec.task_times = self.r.notes, 0, []
            return rec
        tl = Timeline(self.m)
        for c in sorted(per_cpu):
            cpu = self.m.cpus[c]
            tl.spawn(_CpuSlot(self.m, cpu), self._program, cpu, per_cpu[c])
        self.result = tl.run()
        self.r.finish_notes()
        rec.notes = self.r.notes
        rec.image_vmas = self.r.image_vmas
        rec.timeline = self.result
        rec.task_times = self.task_times()
        return rec

    def task_times(self) -> List[dict]:
        """Per traced task: its CPU, units, simulated busy and wait seconds, the span
        from its first unit's start to its last one's end, and the traced wall time
        from its first event to its last (None without timestamps)."""
        hz = self.m.preset.ghz * 1e9
        events = self.r.trace.events
        times: Dict[int, List[float]] = {}
        count: Dict[int, int] = {}
        cpu: Dict[int, int] = {}
        for u, (i, j) in enumerate(self.units):
            e = events[i]
            count[e.pid] = count.get(e.pid, 0) + 1
            cpu.setdefault(e.pid, self._cpu_of_unit[u])
            for k in (i, j - 1):
                t = events[k].time
                if t is not None:
                    times.setdefault(e.pid, []).append(t)
        out = []
        for pid in count:
            tt = times.get(pid)
            out.append({"pid": pid, "cpu": cpu[pid], "units": count[pid],
                        "sim_busy_s": self.busy.get(pid, 0.0) / hz,
                        "sim_wait_s": self.wait.get(pid, 0.0) / hz,
                        "sim_span_s": (self.last.get(pid, 0.0) - self.first.get(pid, 0.0))
                        / hz,
                        "traced_s": (max(tt) - min(tt)) if tt else None})
        return out
