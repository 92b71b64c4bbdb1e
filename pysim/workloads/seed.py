"""The cover letter's microbenchmark: on populated anonymous memory, loop

    mprotect(p, len, PROT_READ); mprotect(p, len, PROT_READ|PROT_WRITE); *p = 0;

with an optional second thread busy-looping on another CPU of the same process.  Each
step's cycles are those of the syscall (or the write) plus the loop's own user-mode
accesses around it (its code page, its stack), all through the TLB model, so a flush
that costs the loop refills later shows up where the refills happen.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np

import mmucore

from ..constants import (MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, PAGE_SIZE,
                         PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE)
from ..errors import ConfigError
from ..machine import Machine

STEPS = ("PROT_READ", "PROT_READ|PROT_WRITE", "write")
EVENT_KEYS = ("flush_tlb_mm_range", "nr_tlb_local_flush_one", "nr_tlb_local_flush_all",
              "nr_tlb_remote_flush", "nr_tlb_remote_flush_received", "remote_flush_one",
              "remote_flush_all", "ipi_sent", "user_pcid_flush", "fault_wp_reuse",
              "fault_spurious", "fault_cow", "faults", "walks", "walk_refs", "stlb_hits",
              "l1_misses", "invlpg", "invpcid_single", "flush_pcid")


@dataclass
class LoopResult:
    """Mean cycles per operation of each step, their breakdown, and events per iteration."""

    params: Dict[str, Any]
    cycles: Dict[str, float] = field(default_factory=dict)
    breakdown: Dict[str, Dict[str, float]] = field(default_factory=dict)
    events: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        """A flat dict of numbers (one column per step figure) for sweeps and tables."""
        out: Dict[str, Any] = {}
        for step, cyc in self.cycles.items():
            key = _slug(step)
            out[f"{key}_cycles"] = cyc
            for ev, v in self.events[step].items():
                out[f"{key}_{ev}"] = v
        return out

    def __repr__(self) -> str:
        cells = ", ".join(f"{s}={c:.0f}" for s, c in self.cycles.items())
        return f"LoopResult({self.params['profile']}, {self.params['threads']}T: {cells})"


def _slug(step: str) -> str:
    return {"PROT_READ": "prot_read", "PROT_READ|PROT_WRITE": "prot_rw",
            "write": "write"}[step]


def mprotect_loop(threads: int = 1, write: bool = True, pages: int = 1,
                  iterations: int = 50, profile: Any = "patched", preset: Any = "kvm-2022",
                  warmup: int = 5, user_pages: bool = True, kernel_footprint: Any = True,
                  checker: Any = True, seed: int = 0, **profile_overrides: Any) -> LoopResult:
    """Run the cover letter's loop and report cycles per operation for each step.

    threads: 1, or 2 (a second thread of the process busy-loops on CPU 1).
    write: do `*p = 0` after the second mprotect (the table) or not (the ~1,500 case).
    user_pages / kernel_footprint: route the loop's code and stack pages and the
    syscalls' kernel memory through the TLB model (see KernelFootprint).
    """
    if threads not in (1, 2):
        raise ConfigError(f"threads must be 1 or 2, got {threads!r}", field="threads")
    for name, v, lo in (("pages", pages, 1), ("iterations", iterations, 1),
                        ("warmup", warmup, 0)):
        if not isinstance(v, int) or v < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}", field=name)
    m = Machine(cpus=2, preset=preset, profile=profile, checker=checker, seed=seed,
                kernel_footprint=kernel_footprint, **profile_overrides)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    if threads == 2:
        proc.thread(cpu=1).busy()
    length = pages * PAGE_SIZE
    # separate mappings with PROT_NONE guards between them, so that mprotect of p
    # neither splits nor merges VMAs (p is a VMA of its own, as a fresh mmap is)
    area = t0.mmap(length + 12 * PAGE_SIZE, PROT_NONE)
    fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
    rx, rw = PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE
    code = t0.mmap(PAGE_SIZE, rx, fixed, addr=area + PAGE_SIZE)          # the loop
    libc = t0.mmap(PAGE_SIZE, rx, fixed, addr=area + 3 * PAGE_SIZE)      # mprotect() stub
    got = t0.mmap(PAGE_SIZE, PROT_READ, fixed, addr=area + 5 * PAGE_SIZE)  # its GOT entry
    stack = t0.mmap(2 * PAGE_SIZE, rw, fixed, addr=area + 7 * PAGE_SIZE)
    p = t0.mmap(length, rw, fixed | MAP_POPULATE, addr=area + 10 * PAGE_SIZE)
    top = stack + PAGE_SIZE
    # the loop's own user accesses: a syscall step fetches the loop and the libc stub,
    # reads the GOT and pushes a frame; the write step fetches the loop and stores to *p
    call = (np.array([code, got, libc, top], dtype=np.uint64),
            np.array([mmucore.FETCH, mmucore.READ, mmucore.FETCH, mmucore.WRITE],
                     dtype=np.uint8))
    store = (np.array([code, p], dtype=np.uint64),
             np.array([mmucore.FETCH, mmucore.WRITE], dtype=np.uint8))
    t0.access(*call)
    cycles: Dict[str, float] = defaultdict(float)
    breakdown: Dict[str, Counter] = defaultdict(Counter)
    events: Dict[str, Counter] = defaultdict(Counter)

    def record(step: str, *results) -> None:
        for r in results:
            cycles[step] += r.cycles
            breakdown[step].update(r.breakdown)
            events[step].update({k: v for k, v in r.events.items() if v})

    for i in range(warmup + iterations):
        measured = i >= warmup
        ops = []
        u = t0.access(*call) if user_pages else None
        r = t0.mprotect(p, length, PROT_READ)
        ops.append(("PROT_READ", [x for x in (u, r) if x is not None]))
        u = t0.access(*call) if user_pages else None
        r = t0.mprotect(p, length, PROT_READ | PROT_WRITE)
        ops.append(("PROT_READ|PROT_WRITE", [x for x in (u, r) if x is not None]))
        if write:
            r = t0.access(*store) if user_pages else t0.write(p)
            ops.append(("write", [r]))
        if measured:
            for step, rs in ops:
                record(step, *rs)
    params = dict(threads=threads, write=write, pages=pages, iterations=iterations,
                  profile=m.profile.name, preset=m.preset.name, warmup=warmup,
                  user_pages=user_pages, kernel_footprint=bool(kernel_footprint))
    res = LoopResult(params)
    for step in STEPS:
        if step not in cycles:
            continue
        res.cycles[step] = cycles[step] / iterations
        res.breakdown[step] = {k: v / iterations for k, v in sorted(breakdown[step].items())}
        res.events[step] = {k: events[step].get(k, 0) / iterations for k in EVENT_KEYS}
    return res
