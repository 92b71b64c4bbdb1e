"""Many CPUs at once: a deterministic discrete-event timeline (SPEC section 9).

    tl = Timeline(m)
    def prog(t, n):                       # a program: a generator of requests
        p = yield t.mmap(1 << 20, PROT_READ | PROT_WRITE)
        for i in range(n):
            yield t.write(p); yield t.madvise(p, 4096, MADV_DONTNEED)
            t.tick()                      # one operation done (instant, no yield)
    for cpu in range(4):
        tl.spawn(proc.thread(cpu=cpu), prog, 1000)
    res = tl.run()
    res.ops_per_sec, res.threads(), res.cpus()

How time works.  Each CPU has its own clock: its simulated time is an offset plus
every cycle charged to it (mmucore.tlbstate's cpu_now), so work charged to a CPU by
anyone delays what it runs next.  The machine always advances the thread whose CPU is
earliest: it runs that thread's next request (a syscall or an access batch) whole,
then puts the thread back at its CPU's new time.  Requests therefore start in time
order, and whatever they contend for is granted first come, first served:
- a flush's IPIs reach their targets `ipi_send + ipi_deliver` after the flush began;
  each handler starts when its target's earlier handlers are done, is charged to the
  target (delaying its thread, or filling a wait for acks it was in), and the
  initiator waits for the last acknowledgement;
- mmap_lock is the rwsem of pysim.mm.mmap_lock: a request that must wait for it
  puts its thread to sleep (its CPU idles, in the state the menu governor picks when
  given an idle-state table), and the release that frees the lock for the queue's
  head wakes it (a wake check on the timeline at that time; wake checks run before
  CPUs at the same instant); the LRU lists' spinlock is taken twice per batch of freed
  pages (pysim.mm.lru), and the writes every flusher makes to tlb_gen, and every
  lock holder to a lock word, contend for their cache lines.
A request's own work happens at its start time (it is not interleaved with other
CPUs' requests); the queues above are where CPUs meet.  On an SMT preset (smt_speed
below 1) CPUs i and i + N/2 share a core: a request that starts while the sibling's
thread is awake (not asleep on a lock, not finished) does its work at smt_speed, so
its user, syscall and handler cycles grow by 1/smt_speed (waits do not), and so
does an IPI handler's on a CPU whose sibling's thread is awake when it arrives (the
sender's per-target work is its own syscall time).  jiffies follow the clock of the
CPU whose request runs, at the profile's HZ (Machine.begin sets them).

Sequential calls on the machine are the case of one runnable thread: with the
timeline off (the default), nothing here runs and every number is as before.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from mmucore import stats as _stats
from mmucore.stats import B_LOCK as _B_LOCK, B_USER

from ..errors import ArgumentError, ConfigError, PysimError, no_unknown_keywords
from ..mm.mmap_lock import madvise_lock_mode
from .cpu import smt_sibling
from .cpuidle import Menu, table, until_tick

# the per-CPU split of time the results report: category -> breakdown names in it
TIME_SPLIT: Dict[str, Tuple[str, ...]] = {
    "user": ("user", "walks"),
    "syscall": ("syscall", "pte", "flush", "invalidate", "fault", "context_switch", "vma"),
    "ipi_handler": ("ipi_handler",),
    "ipi_wait": ("ipi",),
    "lock_wait": ("lock",),
}


# the breakdown categories that are work a core's siblings share (not waits)
_WORK = np.array([_stats.BREAKDOWN_INDEX[n] for k in ("user", "syscall", "ipi_handler")
                  for n in TIME_SPLIT[k]], dtype=np.intp)


class Calls:
    """What a program yields: each method returns a request the timeline runs on the
    thread's CPU when its turn comes; the value sent back is the call's result (the
    address for mmap, an OpResult otherwise)."""

    __slots__ = ("thread", "ops", "warm_ops", "_task", "_warm_until")

    def __init__(self, thread: Any, task: "Task"):
        self.thread = thread
        self.ops = 0                # operations counted (after the warm-up)
        self.warm_ops = 0           # operations done during the warm-up
        self._task = task
        self._warm_until = 0.0

    # a request: (call, args, keywords, how the call takes mmap_lock: "r", "w" or None)
    def mmap(self, length: int, prot: int, flags: Optional[int] = None, **kw: Any):
        return (self.thread.mmap, (length, prot, flags), kw, "w")

    def munmap(self, addr: int, length: int):
        return (self.thread.munmap, (addr, length), None, "w")

    def mprotect(self, addr: int, length: int, prot: int):
        return (self.thread.mprotect, (addr, length, prot), None, "w")

    def madvise(self, addr: int, length: int, advice: int):
        return (self.thread.madvise, (addr, length, advice), None,
                madvise_lock_mode(advice))

    # "v": a page fault takes the per-VMA lock, or mmap_lock for reading when its VMA
    # is write-locked (MmapLock.vma_fallback)
    def read(self, va: int):
        return (self.thread.read, (va,), None, "v")

    def write(self, va: int):
        return (self.thread.write, (va,), None, "v")

    def access(self, vas: np.ndarray, kinds: np.ndarray):
        return (self.thread.access, (vas, kinds), None, None)

    def compute(self, cycles: float):
        """User-mode work of `cycles` that touches no memory the model tracks."""
        if type(cycles) is not float and type(cycles) is not int:
            _cycles(cycles, "cycles")
        elif not cycles >= 0:
            raise ConfigError(f"compute() needs cycles >= 0, got {cycles!r}", field="cycles")
        return (self.thread.cpu.stats.charge, (B_USER, float(cycles)), None, None)

    def tick(self, n: int = 1) -> None:
        """Count n operations done by this thread now (no yield: it takes no time);
        during the warm-up they are not counted, and the first tick after it starts
        this thread's measured span."""
        if type(n) is not int:
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, np.integer):
                raise ConfigError(f"tick() needs an operation count n, an integer, got "
                                  f"{n!r}", field="n")
            n = int(n)
        now = self.thread.cpu.tlbstate.now
        task = self._task
        if now < self._warm_until:
            self.warm_ops += n
            task.start = task.last_tick = now
            return
        self.ops += n
        task.last_tick = now


@dataclass
class Task:
    """A program bound to a thread, and what it did on the timeline."""

    thread: Any
    program: Iterator
    calls: Calls = None                  # type: ignore[assignment]
    start: float = 0.0
    end: float = 0.0
    last_tick: float = 0.0
    requests: int = 0
    sleeps: int = 0                      # times it slept waiting for mmap_lock
    done: bool = False
    pending: Any = None                  # the request it sleeps on
    index: int = 0                       # its place in Timeline.tasks
    slept_at: float = 0.0                # when its current sleep began
    idle_exit: float = -1.0              # that sleep's idle-state exit latency, cycles
    idle_from: float = 0.0               # when its CPU last chose an idle state
    next_tick: float = -1.0              # the tick that will wake its CPU (< 0: none)
    spinning: bool = False               # its writer spins on a reader-owned mmap_lock

    @property
    def ops(self) -> int:
        return self.calls.ops


@dataclass
class TimelineResult:
    """Operations and simulated time per thread, and each CPU's time by category."""

    ghz: float
    start: float
    end: float
    tasks: List[Task]
    cpu_time: Dict[int, Dict[str, float]] = field(default_factory=dict)
    # the window cpu_time covers: from the end of the warm-up (start without one)
    window_start: float = 0.0
    # what the warm-up already held when it ended (subtract for the window): each
    # task's sleeps, the idle states chosen, the machine's counters (counter_array())
    warm_sleeps: List[int] = field(default_factory=list)
    warm_idle_usage: Dict[str, int] = field(default_factory=dict)
    warm_counters: Dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Simulated seconds from the common start to the last thread's end."""
        return (self.end - self.start) / (self.ghz * 1e9)

    def thread_rate(self, task: Task) -> float:
        """One thread's operations per simulated second (from the end of its warm-up
        to its last tick)."""
        span = task.last_tick - task.start
        return task.ops / (span / (self.ghz * 1e9)) if span > 0 else 0.0

    @property
    def ops_per_sec(self) -> float:
        """Every thread's rate, summed: will-it-scale's total."""
        return float(sum(self.thread_rate(t) for t in self.tasks))

    @property
    def per_thread_ops(self) -> float:
        """The mean thread's operations per second (will-it-scale's per_thread_ops)."""
        return self.ops_per_sec / len(self.tasks) if self.tasks else 0.0

    def threads(self):
        """One row per thread: its CPU, operations, simulated seconds and rate."""
        import pandas as pd
        hz = self.ghz * 1e9
        return pd.DataFrame([{"cpu": t.thread.cpu.id, "ops": t.ops, "requests": t.requests,
                              "seconds": (t.end - self.start) / hz,
                              "ops_per_sec": self.thread_rate(t)} for t in self.tasks])

    def cpus(self):
        """One row per CPU: cycles of user work, syscalls, IPI handlers, waiting for
        acks, waiting for locks, and idle, over the run."""
        import pandas as pd
        df = pd.DataFrame.from_dict(self.cpu_time, orient="index")
        df.index.name = "cpu"
        return df

    def __repr__(self) -> str:
        return (f"TimelineResult({len(self.tasks)} threads, {self.seconds * 1e3:.3f} ms, "
                f"{self.ops_per_sec:,.0f} ops/s)")


def _breakdown_now(cpu: Any) -> np.ndarray:
    """A CPU's cycles so far by breakdown category (kernel plus its TLB's)."""
    out = cpu.stats.kernel_cycles_array()
    hw = cpu.tlb.cycles
    for i, name in enumerate(_stats.CYCLE_NAMES):
        out[_stats.BREAKDOWN_INDEX[_stats.HW_CYCLE_CATEGORY[name]]] += hw[i]
    return out


def _cycles(value: Any, name: str) -> None:
    """ConfigError naming `name` unless value is a number of cycles >= 0 (numpy numbers
    too; not a bool, not NaN)."""
    if isinstance(value, (bool, np.bool_)) \
            or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value >= 0:
        raise ConfigError(f"{name} must be >= 0 cycles, got {value!r}", field=name)


class Timeline:
    """Runs programs on their threads' CPUs in simulated-time order (see the module)."""

    def __init__(self, machine: Any, cpuidle: Optional[str] = None):
        """A timeline on machine; cpuidle names an idle-state table
        (pysim.machine.cpuidle) that sleeping CPUs choose from, None for one state
        whose exit costs the preset's idle_exit."""
        self.machine = machine
        self.tasks: List[Task] = []
        self.idle_states = table(cpuidle)
        self.idle_usage: Dict[str, int] = {}      # cpuidle usage: entries per state
        self._heap: List[Tuple[float, int, int]] = []
        self._sibling: List[Optional[Task]] = []    # by task: its SMT sibling's task
        self._sibling_state: List[Any] = []         # by task: its sibling CPU's tlbstate
        self._smt_extra = 0.0                       # 1 / smt_speed - 1
        self._locks: List[Any] = []
        self._menu: Dict[int, Any] = {}
        self._running = 0                           # tasks neither ended nor asleep
        self._limit: Optional[float] = None

    def spawn(self, thread: Any, program: Callable[..., Iterator], *args: Any,
              **kw: Any) -> Task:
        """Bind program(calls, *args, **kw), a generator function, to thread; one
        program per CPU (a CPU runs one thread at a time and never switches here)."""
        if getattr(thread, "machine", None) is not self.machine:
            raise ConfigError(f"{thread!r} is not a thread of this machine", field="thread")
        if any(t.thread.cpu is thread.cpu for t in self.tasks):
            raise ConfigError(f"cpu {thread.cpu.id} already runs a program on this "
                              f"timeline; give each program its own CPU", field="cpu")
        if not callable(program):
            raise ArgumentError(f"program must be a generator function, got "
                                f"{type(program).__name__}", field="program")
        task = Task(thread, iter(()), index=len(self.tasks))
        task.calls = Calls(thread, task)
        try:
            gen = program(task.calls, *args, **kw)
        except TypeError as e:          # the arguments do not fit the program's signature
            raise ArgumentError(f"program {getattr(program, '__name__', program)!r} "
                                f"called with calls + {len(args)} arguments: {e}",
                                field="program") from None
        if not hasattr(gen, "send"):
            raise ConfigError(f"program {getattr(program, '__name__', program)!r} must be a "
                              f"generator function (it yields requests)", field="program")
        task.program = gen
        self.tasks.append(task)
        return task

    def run(self, until: Optional[float] = None, warmup: float = 0.0,
            stop_at_first_exit: bool = False, **unknown: Any) -> TimelineResult:
        """Run every program to its end (or until `until` cycles after the start); the
        operations a thread ticks in the first `warmup` cycles are not counted (steady
        state: will-it-scale discards its first samples the same way).  With
        stop_at_first_exit the run ends when the first program does, so every thread's
        rate is measured over the same window, all of them running throughout."""
        no_unknown_keywords("Timeline.run", unknown,
                            ("until", "warmup", "stop_at_first_exit"))
        _cycles(warmup, "warmup")
        if until is not None:
            _cycles(until, "until")
        m = self.machine
        if m.current_op is not None:
            raise PysimError("cannot run a timeline while an operation is running")
        if not self.tasks:
            raise ConfigError("the timeline has no programs; spawn() some first",
                              field="programs")
        t0 = max(c.tlbstate.now for c in m.cpus)
        for c in m.cpus:                       # every CPU starts at t0
            c.tlbstate.reset_time(t0 - c.stats.clock)
        self._locks = []
        for mm in m.mms:
            mm.context.reset_time()
            self._attach(mm.mmap_lock)
        if self.idle_states is not None:
            tick_us = 1e6 / m.profile.hz
            self._menu = {c.id: Menu(tick_us) for c in m.cpus}
            self._tick_cycles = tick_us * m.preset.ghz * 1e3
        m.frames.lruvec.reset()
        m.frames.lruvec.timed = True
        busy = {t.thread.cpu.id for t in self.tasks}
        for c in m.cpus:                       # CPUs with nothing to run sleep throughout
            if c.id not in busy and not c.tlbstate.running_user:
                c.tlbstate.idle_until = float("inf")
        self._pair_siblings()
        self._warm = None
        self._warm_at = t0 + warmup
        if not warmup > 0:
            self._snapshot(t0)
        limit = t0 + until if until is not None else None
        for task in self.tasks:
            task.calls._warm_until = t0 + warmup
        m.arch.set_timeline(True)
        try:
            end = self._loop(t0, limit, stop_at_first_exit)
        finally:
            m.arch.set_timeline(False)
            for c in m.cpus:
                c.tlbstate.smt_slow = 0.0
            for lk in self._locks:              # waiters left asleep are let go
                lk.attach(None)
                lk.drop_waiters()
                lk.timed = False
            m.frames.lruvec.timed = False
        if self._warm is None:                  # ended inside its warm-up
            self._snapshot(end)
        return self._result(t0, end)

    def _snapshot(self, t: float) -> None:
        """What the run holds at t, the end of its warm-up: the window the time split
        covers starts here (every CPU's categories, tasks' sleeps, idle states and
        counters as they are now; CPUs are within one request of t)."""
        m = self.machine
        self._warm = (t, {c.id: _breakdown_now(c) for c in m.cpus},
                      [task.sleeps for task in self.tasks], dict(self.idle_usage),
                      m.counter_array())

    def _pair_siblings(self) -> None:
        """Each task's SMT sibling task (CPU i pairs with i + N/2) on SMT presets, and
        its sibling CPU's tlbstate (whose handlers its thread slows while awake)."""
        m = self.machine
        n = len(m.cpus)
        speed = m.preset.smt_speed
        self._smt_extra = 1.0 / speed - 1.0 if speed < 1.0 and n % 2 == 0 else 0.0
        on = {t.thread.cpu.id: t for t in self.tasks}
        sibling = [smt_sibling(t.thread.cpu.id, n) for t in self.tasks]
        self._sibling = [on.get(c) if self._smt_extra else None for c in sibling]
        self._sibling_state = [m.cpus[c].tlbstate for c in sibling]
        for task in self.tasks:
            self._awake(task, True)

    def _awake(self, task: Task, awake: bool) -> None:
        """task's thread woke (or started) or went to sleep (or ended): IPI handlers
        on its SMT sibling CPU share the core with it, or have it to themselves."""
        if self._smt_extra:
            self._sibling_state[task.index].smt_slow = self._smt_extra if awake else 0.0

    def _attach(self, lock: Any) -> None:
        """Give an mm's mmap_lock to this run: timed, its wake checks on the heap."""
        k = len(self._locks)
        self._locks.append(lock)
        heap = self._heap
        lock.reset()
        lock.timed = True
        lock.attach(lambda _lock, t: heapq.heappush(heap, (t, -1, k)),
                    self.machine.preset.ghz)

    def _loop(self, t0: float, limit: Optional[float], stop_first: bool) -> float:
        """The event loop: advance the earliest thread by one request, or run the wake
        check a lock posted (entries (time, -1, lock)); returns the time the last
        thread ended."""
        heap = self._heap
        heap.clear()
        for i, task in enumerate(self.tasks):
            task.start = task.last_tick = task.end = t0
            task.done = False
            task.pending = None
            heap.append((t0, task.thread.cpu.id, i))
        heapq.heapify(heap)
        self._running = len(self.tasks)        # tasks neither ended nor asleep
        self._limit = limit
        end = t0
        tasks = self.tasks
        reply: List[Any] = [None] * len(tasks)
        warm_at = self._warm_at if self._warm is None else None
        while heap:
            t, cid, i = heapq.heappop(heap)
            if warm_at is not None and t >= warm_at:
                self._snapshot(t)              # the warm-up is over
                warm_at = None
            if cid == -1:                      # a lock's wake check
                lk = self._locks[i]
                for task, told in lk.check(t):
                    if task.spinning:
                        self._end_spin(task, told)
                    else:
                        self._wake(task, told)
                while lk.spin_failed:          # spun in vain: the writer sleeps now
                    task, told = lk.spin_failed.pop()
                    self._end_spin(task, told, got_lock=False)
                    self._doze(task)
                continue
            if cid == -2:                      # the tick of a CPU asleep
                self._tick(tasks[i], t)
                continue
            task = tasks[i]
            ts = task.thread.cpu.tlbstate
            now = ts.now
            if now > t:                        # handlers or waits pushed this CPU on
                heapq.heappush(heap, (now, cid, i))
                continue
            if limit is not None and now >= limit:
                task.end = now
                end = max(end, now)
                self._running -= 1
                self._awake(task, False)
                continue
            req = task.pending
            woken = req is not None
            if woken:                          # woken with the lock: the thread runs
                task.pending = None
                task.thread.run()
                if req[3] == "w" and task.thread.mm.mmap_lock.steal and \
                        not task.thread.mm.mmap_lock.retry(task, task.thread.cpu):
                    self._sleep(task, req)      # the lock was stolen meanwhile
                    continue
            else:
                try:
                    req = task.program.send(reply[i])
                except StopIteration:
                    req = None
            if req is None:
                task.done = True
                task.end = ts.now
                self._awake(task, False)
                end = max(end, task.end)
                self._running -= 1
                if stop_first:
                    limit = self._limit = end   # the others stop at their next request
                continue
            try:
                fn, args, kw, lock = req
            except (TypeError, ValueError):
                raise ConfigError(f"program of {task.thread!r} yielded {req!r}; a program "
                                  f"yields the requests of its calls (yield t.mmap(...))",
                                  field="program") from None
            lk = None
            fallback = False
            if lock == "v":                     # a page fault: mmap_lock only if it falls back
                mm = task.thread.mm
                lk0 = mm.mmap_lock
                fallback = woken or (lk0.vma_fallback
                                     and lk0.fault_takes_lock(mm.pt, args[0], ts.now))
                lock = "r" if fallback else None
            if lock is not None and not woken:
                lk = task.thread.mm.mmap_lock
                if lk.post is None:             # not this run's lock: waits are inline
                    lk = None
                elif not lk.admit(task, task.thread.cpu, lock):
                    if lk.spinner is not None and lk.spinner[0] is task:
                        self._spin(task, req)
                    else:
                        self._sleep(task, req)
                    continue
            elif woken and lock is not None:
                lk = task.thread.mm.mmap_lock
            sib = self._sibling[i] if self._smt_extra else None
            shared = sib is not None and not sib.done and (
                sib.pending is None or sib.spinning or sib.slept_at > ts.now)
            if shared:                          # the sibling thread is awake
                work = task.thread.cpu.stats.kernel_cycles_array()[_WORK]
            if fallback and lk is not None:
                lk.lock(task.thread.cpu, "r")  # the fault's mmap_read_lock (admitted)
            reply[i] = fn(*args, **kw) if kw else fn(*args)
            if shared:
                self._smt_slow(task.thread.cpu, work)
            if lk is not None:
                if fallback:
                    lk.unlock(task.thread.cpu, "r")     # the fault's mmap_read_unlock
                lk.done(task.thread.cpu)
            task.requests += 1
            heapq.heappush(heap, (ts.now, cid, i))
        for task in tasks:                     # asleep when the run ended
            if task.pending is not None and not task.done:
                task.end = max(task.end, task.slept_at)
        return end

    def _smt_slow(self, cpu: Any, work_before: np.ndarray) -> None:
        """The request just run shared its core with a busy sibling: its work (user,
        syscall and handler cycles since work_before) took 1/smt_speed as long."""
        grew = cpu.stats.kernel_cycles_array()[_WORK] - work_before
        for k, cycles in zip(_WORK, grew):
            if cycles > 0.0:
                cpu.stats.charge(int(k), float(cycles) * self._smt_extra)

    def _sleep(self, task: Task, req: tuple) -> None:
        """The task blocks on mmap_lock: its CPU runs the idle task in lazy TLB mode
        with the mm still loaded, in the idle state the governor picks (leave_mm()
        first for a CPUIDLE_FLAG_TLB_FLUSHED one), until a wake check wakes it."""
        task.pending = req
        self._running -= 1
        self._doze(task)

    def _doze(self, task: Task) -> None:
        """_sleep's part from the switch to the idle task on (a writer whose spin
        failed comes here at the spin's end)."""
        thread = task.thread
        ts = thread.cpu.tlbstate
        now = ts.now
        thread.sleep()                          # enter_lazy_tlb: the idle task runs
        self._awake(task, False)
        task.sleeps += 1
        task.slept_at = now
        task.idle_exit = -1.0
        if self.idle_states is not None:
            self._enter_idle(task, now)
        ts.idle_from_now(task.idle_exit)

    def _spin(self, task: Task, req: tuple) -> None:
        """The task's writer spins on a reader-owned mmap_lock (MmapLock.steal): its
        CPU stays in the mm, busy and not lazy (IPIs reach it and run at once), until
        the lock's check ends the spin (_end_spin) one way or the other."""
        task.pending = req
        task.spinning = True
        task.slept_at = task.thread.cpu.tlbstate.now
        self._running -= 1

    def _end_spin(self, task: Task, t: float, got_lock: bool = True) -> None:
        """The spin ended at t: its time was spent waiting for the lock (what IPI
        handlers did not take of it); with the lock, the writer runs from t."""
        cpu = task.thread.cpu
        ts = cpu.tlbstate
        if t > ts.now:
            cpu.stats.charge(_B_LOCK, t - ts.now)
        task.spinning = False
        if got_lock:
            self._running += 1
            heapq.heappush(self._heap, (ts.now, cpu.id, task.index))

    def _enter_idle(self, task: Task, now: float) -> None:
        """cpuidle_idle_call() at now on the task's sleeping CPU: the menu governor's
        state (counted; leave_mm() first for a CPUIDLE_FLAG_TLB_FLUSHED one), and the
        tick that will end this idle period if nothing wakes the CPU before."""
        cpu = task.thread.cpu
        us = self.machine.preset.ghz * 1e3
        state = self._menu[cpu.id].select(self.idle_states, now / us)
        self.idle_usage[state.name] = self.idle_usage.get(state.name, 0) + 1
        if state.tlb_flushed:
            self.machine.arch.leave_mm(cpu)
        task.idle_exit = state.wake_latency_us * us
        task.idle_from = now
        task.next_tick = now + until_tick(now, self._tick_cycles)
        heapq.heappush(self._heap, (task.next_tick, -2, task.index))

    def _tick(self, task: Task, t: float) -> None:
        """The tick wakes a CPU whose thread still sleeps: the governor learns from
        the idle period the tick ended, and the idle loop chooses a state again."""
        if task.pending is None or task.next_tick != t:
            return                              # woken before this tick
        if self._running == 0 or (self._limit is not None and t >= self._limit):
            return                              # the run is over: no more ticks
        us = self.machine.preset.ghz * 1e3
        self._menu[task.thread.cpu.id].reflect((t - task.idle_from) / us)
        self._enter_idle(task, t)
        task.thread.cpu.tlbstate.idle_from_now(task.idle_exit)

    def _wake(self, task: Task, told: float) -> None:
        """The waker told task's CPU at `told`: it leaves its idle state (the exit
        latency) and is scheduled (lock_handoff), then runs the request it slept on."""
        cpu = task.thread.cpu
        cost = cpu.cfg.cost
        exit_cycles = task.idle_exit if task.idle_exit >= 0.0 else cost.idle_exit
        if self.idle_states is not None:
            us = self.machine.preset.ghz * 1e3
            self._menu[cpu.id].reflect((told - task.idle_from) / us)
            task.next_tick = -1.0
        ts = cpu.tlbstate
        ts.wake(told + exit_cycles + cost.lock_handoff)
        self._awake(task, True)
        self._running += 1
        heapq.heappush(self._heap, (ts.now, cpu.id, task.index))

    def _result(self, t0: float, end: float) -> TimelineResult:
        """Per-CPU time split over the window after the warm-up (idle is what the rest
        leaves of it), and what the warm-up held."""
        m = self.machine
        w0, before, sleeps, usage, counters = self._warm
        res = TimelineResult(m.preset.ghz, t0, end, list(self.tasks), window_start=w0,
                             warm_sleeps=sleeps, warm_idle_usage=usage,
                             warm_counters=counters)
        idx = _stats.BREAKDOWN_INDEX
        for c in m.cpus:
            delta = _breakdown_now(c) - before[c.id]
            row = {k: float(sum(delta[idx[n]] for n in names))
                   for k, names in TIME_SPLIT.items()}
            row["idle"] = max(0.0, (end - w0) - float(delta.sum()))
            res.cpu_time[c.id] = row
        return res
