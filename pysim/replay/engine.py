"""Replay a Trace on a Machine: every call at its traced address, through the Thread API.

Tasks: the first task of the trace is a process; clone/clone3 with CLONE_VM (threads,
and vfork until the child's execve) add a thread to the caller's process; without
CLONE_VM (fork) the child is `Process.fork()` of the caller's process when the machine
has it, else a fresh, empty process (and the call is recorded as unsupported); a
successful execve gives the task a new process holding the exec image (see image);
exit_group ends every task of a process, exit one task, and the last task's end calls
`Process.exit()` when the machine has it.  A task the trace never shows being created
becomes a thread of the first process, and the replay says so.  Threads go onto CPUs
by a stated policy: "round-robin" in order of creation, or "traced" (the CPU the
task's first traced page fault ran on, round robin for the others).

Calls: an mmap that succeeded is replayed with MAP_FIXED at its traced result (the
kernel chose that address; replaying the choice keeps every later call on the same
addresses), after the legacy MAP_DENYWRITE and MAP_EXECUTABLE bits are dropped as
ksys_mmap_pgoff() does on entry.  A MAYMOVE mremap that moved is replayed with
MREMAP_FIXED at its result.  A traced call that failed is replayed with its own
arguments; if the simulation succeeds instead, what it mapped is unmapped again so that
later calls see the address space the program saw (the record says so).  Other calls
go to the Thread method of the same name, found with getattr: a method the machine does
not have yet makes the call "unsupported" in the records, and the replay goes on.

Every call's record compares the traced result and errno with the simulated ones; a
difference is status "diverged", never hidden, never fatal.
"""
from __future__ import annotations

import bisect
import errno as _errno
from typing import Any, Dict, List, Optional

import numpy as np

from ..constants import MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, PAGE_SIZE
from ..errors import PysimError, SyscallError
from ..mm import File
from .accesses import AccessModel, get_access_model
from .events import Trace, gc_paused
from .image import plan_images
from .parse_strace import CLONE_VM
from .records import Records

__all__ = ["Replay", "PIN_POLICIES"]

PIN_POLICIES = ("round-robin", "traced")
MAP_DENYWRITE, MAP_EXECUTABLE = 0x0800, 0x1000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
_PROCESS_CALLS = frozenset({"clone", "clone3", "fork", "vfork", "execve", "execveat",
                            "exit", "exit_group"})
_ADJUSTED = frozenset({"mremap", "brk"})    # see Replay._call
CLOCK_HINT_US = 50.0                # see Replay._clock_hint


class _Task:
    """One traced task: its pid, its Thread, its process's state, and the Thread
    methods its calls were replayed with so far (by call name)."""

    __slots__ = ("pid", "thread", "space", "methods")

    def __init__(self, pid: int, thread: Any, space: "_Space") -> None:
        self.pid, self.thread, self.space = pid, thread, space
        self.methods: Dict[str, Any] = {}


class _Space:
    """One simulated process (an address space) and the traced tasks running in it."""

    __slots__ = ("proc", "tasks", "exited")

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.tasks: Dict[int, _Task] = {}
        self.exited = False


class Replay:
    """One replay of `trace` on `machine` with an access model and a pinning policy,
    sequential (the default) or on the timeline; run() returns the Records."""

    def __init__(self, trace: Trace, machine: Any, access: Any = "none",
                 pin: str = "round-robin", elf: bool = True, timeline: bool = False) -> None:
        if pin not in PIN_POLICIES:
            from ..errors import ConfigError
            raise ConfigError(f"pin must be one of {PIN_POLICIES}, got {pin!r}",
                              field="pin", allowed=PIN_POLICIES)
        self.trace = trace
        self.m = machine
        self.model: AccessModel = get_access_model(access)
        self.pin = pin
        self.elf = elf
        self.timeline = bool(timeline)          # run on the timeline (pysim.replay.timed)
        self.tasks: Dict[int, _Task] = {}
        self.spaces: List[_Space] = []
        self.files: Dict[str, File] = {}
        self.notes: List[str] = list(trace.notes)
        self.rec = Records()
        self._append_row = self.rec._rows.append        # (see _call's end)
        self._add_totals = self.rec._totals.add
        self._next_cpu = 0
        self._traced_cpu: Dict[int, int] = {}
        self._planned_cpu: Dict[int, List[int]] = {}   # pid -> CPUs, in creation order
        self._fault_va: Optional[np.ndarray] = None     # see _fault_arrays
        self._fault_kind: Optional[np.ndarray] = None
        self._batch_at = 0                  # the event index of the fault batch running
        self._unanswered: List[tuple] = []  # (pid, time) of faults a signal diverged
        # the fault signals the trace shows delivered, per task, each answering at most
        # one traced fault the model ends with that signal (see _signal_divergence)
        self._signals: Dict[int, List[Any]] = {}
        for sig in trace.signals:
            self._signals.setdefault(sig.pid, []).append(sig)
        self._heaps: set = set()                # id() of the mms whose heap is placed
        self.images, image_notes = plan_images(trace.events, elf=elf,
                                               faults=self.model.uses_faults,
                                               signals=trace.signals)
        self.notes.extend(image_notes)
        self.image_vmas = 0

    # ---------------------------------------------------------------- tasks
    def _cpu_for(self, pid: int) -> int:
        """The CPU a new task runs on, by the pinning policy."""
        n = len(self.m.cpus)
        if self.pin == "traced" and pid in self._traced_cpu:
            return self._traced_cpu[pid] % n
        c = self._next_cpu % n
        self._next_cpu += 1
        return c

    def _new_space(self, proc: Any = None) -> _Space:
        """A simulated process (a new empty mm unless proc is given)."""
        sp = _Space(proc if proc is not None else self.m.process())
        self.spaces.append(sp)
        return sp

    def _add_task(self, pid: int, space: _Space, cpu: Optional[int] = None) -> _Task:
        """A traced task as a new thread of space's process (on the CPU the timeline
        mode planned for it, when it did)."""
        if cpu is None:
            planned = self._planned_cpu.get(pid)
            cpu = planned.pop(0) if planned else self._cpu_for(pid)
        th = space.proc.thread(cpu=cpu)
        t = _Task(pid, th, space)
        space.tasks[pid] = t
        self.tasks[pid] = t
        return t

    def _task(self, pid: int, line: int) -> _Task:
        """The task of pid, inferring one the trace never showed being created."""
        t = self.tasks.get(pid)
        if t is not None:
            return t
        if not self.spaces:
            sp = self._new_space()
            t = self._add_task(pid, sp)
            self._map_image(sp, t, (pid, 0))
            return t
        sp = next((s for s in self.spaces if not s.exited), self.spaces[0])
        self.notes.append(f"line {line}: pid {pid} appears without a clone or fork line; "
                          f"taken as a thread of the first live process")
        return self._add_task(pid, sp)

    def _end_task(self, t: _Task) -> Optional[Any]:
        """The task is gone; the last one of a process ends it (Process.exit() when the
        machine has it).  Returns the exit's OpResult, if any."""
        self.tasks.pop(t.pid, None)
        sp = t.space
        sp.tasks.pop(t.pid, None)
        t.thread.sleep()
        if not sp.tasks and not sp.exited:
            sp.exited = True
            ex = getattr(sp.proc, "exit", None)
            if ex is not None:
                return ex()
        return None

    def _file(self, path: Optional[str], fd: int) -> File:
        """The simulated file behind mmap's fd (one File per path per replay)."""
        key = path if path is not None else f"fd {fd}"
        f = self.files.get(key)
        if f is None:
            f = self.files[key] = File(key)
        return f

    def _map_image(self, sp: _Space, t: _Task, key) -> None:
        """Map the exec image planned for this fresh address space."""
        for r in self.images.get(key, ()):
            flags = MAP_FIXED | 0x02 | (MAP_ANONYMOUS if r.path is None else 0)
            f = None if r.path is None else self._file(r.path, -1)
            try:
                t.thread.mmap(r.end - r.start, r.prot, flags, addr=r.start, file=f,
                              pgoff=r.pgoff)
                self.image_vmas += 1
            except SyscallError as e:
                self.notes.append(f"image region {r!r} could not be mapped: {e}")

    # ---------------------------------------------------------------- the run
    def run(self) -> Records:
        """Replay every event; returns the records (also in self.rec).  With timeline
        set, the tasks run as timeline programs (pysim.replay.timed)."""
        if self.timeline:
            from .timed import TimedReplay
            return TimedReplay(self).run()
        with gc_paused():               # the records are all kept (see gc_paused)
            return self._run()

    def _run(self) -> Records:
        """run() in sequence (the garbage collector paused by run())."""
        events = self.trace.events
        if self.pin == "traced":        # (the only policy reading the traced CPUs)
            for e in events:
                if e.kind == "fault" and e.cpu is not None:
                    self._traced_cpu.setdefault(e.pid, e.cpu)
        model = self.model
        before = model.before
        rec = self.rec
        tasks = self.tasks
        call = self._call
        i, n = 0, len(events)
        while i < n:
            e = events[i]
            kind = e.kind
            if kind == "fault":
                j = i + 1
                while j < n and events[j].kind == "fault" and events[j].pid == e.pid:
                    j += 1
                if model.uses_faults:
                    self._faults(events, i, j)
                i = j
                continue
            i += 1
            if kind == "exit":
                t = self.tasks.get(e.pid)
                if t is not None:
                    self._end_task(t)
                continue
            if e.name in _PROCESS_CALLS:
                self._process_call(e)
                continue
            t = tasks.get(e.pid)
            if t is None:
                t = self._task(e.pid, e.line)
            if before is not None:
                before(self, t.thread, e)
            call(t, e)
        self.finish_notes()
        rec.notes = self.notes
        rec.image_vmas = self.image_vmas
        return rec

    def finish_notes(self) -> None:
        """The run's closing notes: the traced fault signals no replayed fault ended
        with (the program got a signal the model did not give it)."""
        if not self.model.uses_faults:
            return
        self._clock_hint()
        for sigs in self._signals.values():
            for sig in sigs:
                self.notes.append(f"line {sig.line}: pid {sig.pid} got {sig.name} at "
                                  f"0x{sig.addr:x} in the trace; no replayed fault ended "
                                  f"with it")
        self._signals.clear()

    def _clock_hint(self) -> None:
        """A note when most faults the model ended with an untraced signal came just
        before a call of their own task (within CLOCK_HINT_US): the mark of a fault
        stream whose clock runs early against the trace's (pysim capture before
        2026-12-02 put faults tens of microseconds early), not of the model."""
        if not self._unanswered:
            return
        calls: Dict[int, List[float]] = {}
        for e in self.trace.events:
            if e.kind == "call" and e.time is not None:
                calls.setdefault(e.pid, []).append(e.time)
        near = 0
        for pid, t in self._unanswered:
            ts = calls.get(pid, [])
            k = bisect.bisect_left(ts, t)
            if k < len(ts) and ts[k] - t <= CLOCK_HINT_US * 1e-6:
                near += 1
        if near * 2 > len(self._unanswered):
            self.notes.append(
                f"{near} of the {len(self._unanswered)} faults the model ended with a "
                f"signal the trace lacks came at most {CLOCK_HINT_US:g} us before a call "
                f"of their own task: the faults' clock may run early against the "
                f"trace's (captures by pysim capture before 2026-12-02 did); capture "
                f"again")

    def _unit(self, i: int, j: int) -> None:
        """Replay events[i:j]: one fault batch of one task, or one other event (the body
        of run()'s loop, for the timeline mode, which runs such units one by one)."""
        events = self.trace.events
        e = events[i]
        kind = e.kind
        if kind == "fault":
            if self.model.uses_faults:
                self._faults(events, i, j)
            return
        if kind == "exit":
            t = self.tasks.get(e.pid)
            if t is not None:
                self._end_task(t)
            return
        if e.name in _PROCESS_CALLS:
            self._process_call(e)
            return
        t = self._task(e.pid, e.line)
        if self.model.before is not None:
            self.model.before(self, t.thread, e)
        self._call(t, e)

    def _faults(self, events: list, i: int, j: int) -> None:
        """One access batch of the faults events[i:j] (one task's, in time order)."""
        e = events[i]
        t = self._task(e.pid, e.line)
        if self._fault_va is None:
            self._fault_arrays(events)
        self._batch_at = i
        self.access(t.thread, self._fault_va[i:j], self._fault_kind[i:j], e.line, e.pid,
                    "fault")

    def _fault_arrays(self, events: list) -> None:
        """Every event's fault address and kind (0 for the other events), built once: a
        batch of consecutive fault events is then a slice, not a new array."""
        n = len(events)
        self._fault_va = np.fromiter((e.va if e.kind == "fault" else 0 for e in events),
                                     dtype=np.uint64, count=n)
        self._fault_kind = np.fromiter((e.access if e.kind == "fault" else 0
                                        for e in events), dtype=np.uint8, count=n)

    def access(self, thread: Any, vas, kinds, line: int, pid: int, why: str) -> None:
        """Run one access batch on thread and record it (used by the access models)."""
        try:
            r = thread.access(vas, kinds)
        except SyscallError as err:
            self.rec.add(line, pid, thread.cpu.id, "access", why, len(vas), None, None,
                         _errno.errorcode.get(err.errno, str(err.errno)), "diverged",
                         str(err), None)
            return
        status, note = "access", None
        if why == "fault":
            ev = r.events
            if ev["sigsegv"] or ev["sigbus"]:
                note = self._signal_divergence(pid, r.faults)
                if note is not None:
                    status = "diverged"
        self.rec.add(line, pid, thread.cpu.id, "access", why, len(vas), None, r.value,
                     None, status, note, r)

    def _signal_divergence(self, pid: int, faults: list) -> Optional[str]:
        """For traced faults the model ended with SIGSEGV or SIGBUS: each must be
        answered by a signal of that name the trace shows delivered to pid at the
        same page (taken, so it answers one fault).  Returns a note naming the faults
        no traced signal answers, or None when every one is answered."""
        sigs = self._signals.get(pid, [])
        unmatched = []
        for f in faults:
            if f.outcome != "sigsegv" and f.outcome != "sigbus":
                continue
            name = "SIGSEGV" if f.outcome == "sigsegv" else "SIGBUS"
            for k, sig in enumerate(sigs):
                if sig.name == name and sig.addr >> 12 == f.va >> 12:
                    del sigs[k]
                    break
            else:
                unmatched.append(f)
                ev = self.trace.events[self._batch_at + f.index]
                if ev.time is not None:
                    self._unanswered.append((pid, ev.time))
        if not unmatched:
            return None
        f = unmatched[0]
        more = f" (and {len(unmatched) - 1} more)" if len(unmatched) > 1 else ""
        kind = ("read", "write", "fetch")[f.kind]
        return (f"the model ended the traced {kind} fault at 0x{f.va:x} with "
                f"{f.outcome.upper()}{more}; the trace shows no such signal for pid {pid}")

    # ---------------------------------------------------------------- process calls
    def _process_call(self, e) -> None:
        """clone/fork/vfork/execve/exit/exit_group: the task bookkeeping."""
        name = e.name
        t = self._task(e.pid, e.line)
        res = None
        status, note = "process", None
        if name in ("exit", "exit_group"):
            if name == "exit_group":
                for other in list(t.space.tasks.values()):
                    if other is not t:
                        self._end_task(other)
            res = self._end_task(t)
        elif name in ("execve", "execveat"):
            if e.errno is None and e.result == 0:
                old = t.space
                old.tasks.pop(t.pid, None)
                cpu = t.thread.cpu.id
                t.thread.sleep()
                if not old.tasks and not old.exited:
                    old.exited = True
                    ex = getattr(old.proc, "exit", None)
                    res = ex() if ex is not None else None
                sp = self._new_space()
                self.tasks.pop(t.pid, None)
                nt = self._add_task(t.pid, sp, cpu=cpu)
                self._map_image(sp, nt, (t.pid, e.line))
        elif e.errno is None and isinstance(e.result, int) and e.result > 0:
            child = e.result
            if e.args[0] & CLONE_VM:
                self._add_task(child, t.space)
            else:
                fork = getattr(t.space.proc, "fork", None)
                if fork is not None:
                    try:
                        proc = fork()
                    except SyscallError as err:
                        status, note = "diverged", f"fork failed: {err}"
                        proc = self.m.process()
                else:
                    proc = None
                    status = "unsupported"
                    note = "no Process.fork(): the child starts with an empty mm"
                self._add_task(child, self._new_space(proc))
        r = res if res is not None and hasattr(res, "rows") else None
        self.rec.add(e.line, e.pid, t.thread.cpu.id, name, (e.args, e.path), e.result, e.errno,
                     e.result, e.errno, status, note, r)

    # ---------------------------------------------------------------- memory calls
    def _place_heap(self, th, e) -> None:
        """Put the heap where the traced program's was: the first brk(0) of an address
        space returns the break the kernel chose at exec (randomised), so start_brk and
        brk begin there (an exec image has no way to know it beforehand)."""
        mm = th.mm
        if id(mm) in self._heaps or not hasattr(mm, "start_brk"):
            return
        self._heaps.add(id(mm))
        if e.args and e.args[0] == 0 and e.errno is None and isinstance(e.result, int):
            mm.start_brk = mm.brk = e.result

    def _method(self, t: _Task, name: str) -> Any:
        """The Thread method replaying call `name` on t (None if the Thread has none),
        looked up once per task and name rather than on every call."""
        meth = getattr(t.thread, name, None)
        if meth is None and name == "pkey_mprotect":
            meth = t.thread.mprotect                # do_mprotect_pkey takes the key
        if meth is not None:
            t.methods[name] = meth
        return meth

    def _call(self, t: _Task, e) -> None:
        """Replay one memory call and record it."""
        th = t.thread
        name = e.name
        args = e.args
        traced_ok = e.errno is None
        note = undo = None
        try:
            if name == "mmap":
                addr, length, prot, flags, fd, off = args
                flags &= ~(MAP_DENYWRITE | MAP_EXECUTABLE)
                f = None if flags & MAP_ANONYMOUS or fd < 0 else self._file(e.path, fd)
                if traced_ok:
                    flags = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED
                    addr = e.result
                value = th.mmap(length, prot, flags, addr, f, False, off // PAGE_SIZE)
                r = th.last
                if not traced_ok:
                    undo = (value, length)
                elif self.model.after_map is not None:
                    self.model.after_map(self, th, e, value, length, prot)
            else:
                if name in _ADJUSTED:       # the calls replayed other than as traced
                    if name == "mremap" and traced_ok and args[3] & MREMAP_MAYMOVE \
                            and e.result != args[0]:
                        args = (args[0], args[1], args[2], args[3] | MREMAP_FIXED, e.result)
                    if name == "brk":
                        self._place_heap(th, e)
                meth = t.methods.get(name) or self._method(t, name)
                if meth is None:
                    self.rec.add(e.line, e.pid, th.cpu.id, name, (e.args, e.path), e.result,
                                 e.errno, None, None, "unsupported",
                                 f"Thread has no {name}()", None)
                    return
                r = meth(args[1], args[3]) if name == "process_madvise" else meth(*args)
                value = r.value
                if value is None:
                    value = 0
        except SyscallError as err:
            sim_err = _errno.errorcode.get(err.errno, str(err.errno))
            st = "match" if sim_err == e.errno else "diverged"
            self.rec.add(e.line, e.pid, th.cpu.id, name, (e.args, e.path), e.result, e.errno,
                         None, sim_err, st, None if st == "match" else str(err), None)
            return
        except (TypeError, ValueError) as err:
            if isinstance(err, PysimError):
                raise
            self.rec.add(e.line, e.pid, th.cpu.id, name, (e.args, e.path), e.result, e.errno,
                         None, None, "unsupported", f"{name}{args}: {err}", None)
            return
        if not traced_ok:
            st = "diverged"
            note = "the kernel failed this call; the simulation did not"
            if undo is not None:
                try:
                    th.munmap(*undo)
                    note += " (its mapping is unmapped again)"
                except SyscallError:
                    pass
        elif value == e.result:
            st = "match"
        else:
            st = "diverged"
            note = f"simulated result 0x{value:x}" if isinstance(value, int) else None
        # Records.add(..., r) written out for the common case (r is an OpResult), with
        # the record list's append and the totals log's add bound once (__init__); the
        # args column holds the Call itself, read as (e.args, e.path) (records._args_of)
        self._append_row((e.line, e.pid, th.cpu.id, name, e, e.result, e.errno, value,
                          None, st, note, self._add_totals(r.rows)))
