"""will-it-scale's TLB-flush tests (antonblanchard/will-it-scale, tests/tlb_flush*.c) on
the timeline: every task loops over a mapping, and for each page writes it, drops it
with madvise(MADV_DONTNEED) and reads it back, counting one iteration per page.

- tlb_flush1: a 128 MiB MAP_PRIVATE mapping of the task's own file (the write copies
  the page-cache page; the read maps the file page again);
- tlb_flush2: a 1 MiB anonymous private mapping, mmapped afresh and munmapped after
  each pass (the read maps the zero page);
- tlb_flush3: a 128 MiB MAP_SHARED mapping of the task's own file (the write dirties
  the page-cache page, which DONTNEED leaves in the cache).

Threads mode runs every task as a thread of one process, so each DONTNEED shoots down
every other task's CPU; processes mode gives each task its own mm.  Each task is pinned
to its own CPU, as the harness does.  The result is operations per second, summed over
the tasks (will-it-scale's total) and per task (its per_thread_ops), counted while every
task runs: the run ends when the first task has done its iterations.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

from ..constants import MADV_DONTNEED, MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, \
    PROT_READ, PROT_WRITE
from ..errors import ConfigError
from ..machine import Machine
from ..mm.mm import File

TESTS = ("tlb_flush1", "tlb_flush2", "tlb_flush3")
MODES = ("threads", "processes")
_ANON_SIZE = 1 << 20            # tlb_flush2.c: MEMORYSIZE
_FILE_SIZE = 128 << 20          # tlb_flush1.c / tlb_flush3.c: FILESIZE
_RW = PROT_READ | PROT_WRITE


def _dontneed_loop(t, iterations: int, size: int, flags: int, file: Optional[File],
                   remap: bool) -> Iterator:
    """The body every tlb_flush test shares; remap: mmap/munmap around each pass."""
    addr = None
    while t.ops < iterations:
        if addr is None:
            addr = yield t.mmap(size, _RW, flags, file=file)
        for off in range(0, size, PAGE_SIZE):
            yield t.write(addr + off)
            yield t.madvise(addr + off, PAGE_SIZE, MADV_DONTNEED)
            yield t.read(addr + off)
            t.tick()
            if t.ops >= iterations:
                break
        if remap or t.ops >= iterations:
            yield t.munmap(addr, size)
            addr = None


def tlb_flush1(t, iterations: int) -> Iterator:
    """tlb_flush1.c: a private mapping of a 128 MiB file."""
    return _dontneed_loop(t, iterations, _FILE_SIZE, MAP_PRIVATE, File("willitscale"),
                          remap=False)


def tlb_flush2(t, iterations: int) -> Iterator:
    """tlb_flush2.c: 1 MiB of anonymous private memory, remapped every pass."""
    return _dontneed_loop(t, iterations, _ANON_SIZE, MAP_PRIVATE | MAP_ANONYMOUS, None,
                          remap=True)


def tlb_flush3(t, iterations: int) -> Iterator:
    """tlb_flush3.c: a shared mapping of a 128 MiB file."""
    return _dontneed_loop(t, iterations, _FILE_SIZE, MAP_SHARED, File("willitscale"),
                          remap=False)


PROGRAMS = {"tlb_flush1": tlb_flush1, "tlb_flush2": tlb_flush2, "tlb_flush3": tlb_flush3}


def _delayed(t, program, delay: float, iterations: int) -> Iterator:
    """program(t, iterations) after `delay` cycles in user space."""
    yield t.compute(delay)
    yield from program(t, iterations)


def run(test: str = "tlb_flush2", mode: str = "threads", threads: int = 4,
        iterations: int = 2000, cpus: Optional[int] = None, preset: Any = "zen3",
        profile: Any = "v6.2", checker: Any = False, seed: int = 0,
        warmup_ms: float = 0.0, machine: Optional[Machine] = None,
        cpuidle: Optional[str] = None, start_jitter_us: float = 0.0,
        rwsem_steal: bool = False, vma_fallback: bool = False,
        late_lazy_ipis: bool = False, **overrides: Any) -> Dict[str, Any]:
    """One will-it-scale point: `threads` tasks on CPUs 0..threads-1 of a machine of
    `cpus` CPUs (default: threads), `iterations` counted iterations each after
    `warmup_ms` of simulated warm-up (time for rules that sample jiffies, such as the
    global ASID choice, to settle).  Returns the totals and the per-CPU time split
    summed over the tasks' CPUs (cycles), every count and share over the window after
    the warm-up.  cpuidle names the idle-state
    table of pysim.machine.cpuidle that CPUs asleep on mmap_lock choose from (None: one
    state, the preset's idle_exit); its usage comes back as cpuidle_usage.
    start_jitter_us > 0 starts each task after a delay drawn uniformly below it from
    the machine's seeded generator (the harness starts its tasks one by one): runs
    with other seeds are replicates of a workload whose lock convoys make any one run
    depend on how the tasks happened to line up.  rwsem_steal lets mmap_lock be
    stolen rather than handed to a woken writer (pysim.mm.mmap_lock, MmapLock.steal);
    vma_fallback makes page faults in VMAs a writer holds write-locked take mmap_lock
    (MmapLock.vma_fallback).  late_lazy_ipis: a flush IPI whose target blocked before
    its handler ran finds it lazy and leaves the mm (X86Flush.late_lazy_ipis)."""
    if test not in PROGRAMS:
        raise ConfigError(f"test {test!r} unknown; allowed: {', '.join(TESTS)}",
                          field="test", allowed=TESTS)
    if mode not in MODES:
        raise ConfigError(f"mode {mode!r} unknown; allowed: {', '.join(MODES)}",
                          field="mode", allowed=MODES)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}",
                          field="threads")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError(f"iterations must be an integer >= 1, got {iterations!r}",
                          field="iterations")
    if isinstance(start_jitter_us, bool) or not isinstance(start_jitter_us, (int, float)) \
            or not start_jitter_us >= 0:
        raise ConfigError(f"start_jitter_us must be a number >= 0, got {start_jitter_us!r}",
                          field="start_jitter_us")
    ncpus = threads if cpus is None else cpus
    if ncpus < threads:
        raise ConfigError(f"cpus ({ncpus}) must be at least threads ({threads})",
                          field="cpus")
    m = machine if machine is not None else Machine(
        cpus=ncpus, preset=preset, profile=profile, checker=checker, seed=seed, **overrides)
    tl = m.timeline(cpuidle=cpuidle)
    if late_lazy_ipis:
        m.arch.flush.late_lazy_ipis = True
    proc = m.process()
    for cpu in range(threads):
        if mode == "processes" and cpu:
            proc = m.process()
        proc.mm.mmap_lock.steal = bool(rwsem_steal)
        proc.mm.mmap_lock.vma_fallback = bool(vma_fallback)
        if start_jitter_us > 0:
            delay = float(m.rng.uniform(0.0, start_jitter_us)) * m.preset.ghz * 1e3
            tl.spawn(proc.thread(cpu=cpu), _delayed, PROGRAMS[test], delay, iterations)
        else:
            tl.spawn(proc.thread(cpu=cpu), PROGRAMS[test], iterations)
    if not warmup_ms >= 0:
        raise ConfigError(f"warmup_ms must be >= 0, got {warmup_ms!r}", field="warmup_ms")
    res = tl.run(warmup=warmup_ms * 1e-3 * m.preset.ghz * 1e9, stop_at_first_exit=True)
    out: Dict[str, Any] = {
        "ops_per_sec": res.ops_per_sec,
        "per_thread_ops": res.per_thread_ops,
        "seconds": res.seconds,
        "iterations": sum(t.ops for t in res.tasks),
        # on mmap_lock, after the warm-up (as every count below)
        "sleeps": sum(t.sleeps for t in res.tasks) - sum(res.warm_sleeps),
    }
    split = res.cpus().loc[list(range(threads))].sum()
    for key, value in split.items():
        out[f"cycles_{key}"] = float(value)
    counts = {k: v - res.warm_counters[k] if k in res.warm_counters else v
              for k, v in m.counter_array().items()}
    for name in ("ipi_sent", "flush_tlb_mm_range", "nr_tlb_remote_flush_received",
                 "remote_flush_one", "remote_flush_all", "nr_tlb_local_flush_one",
                 "nr_tlb_local_flush_all"):
        out[name] = int(counts[name].sum())
    for name in sorted(counts):                     # counters a profile adds (INVLPGB, ...)
        out.setdefault(name, int(counts[name].sum()) if name != "cycles" else None)
    out.pop("cycles", None)
    if cpuidle is not None:
        out["cpuidle_usage"] = {k: n - res.warm_idle_usage.get(k, 0)
                                for k, n in tl.idle_usage.items()}
    return out
