"""The model's counterpart of every hostbench scenario: the same operations on a
pysim.Machine, with the kernel configuration the CSV's header describes.

Each scenario returns, per cell, the model's cycles per operation (the mean over the
measured rounds, after the same warm-up the C program does) and the event counts per
operation in the units the tracepoints count (see COUNT_MAP).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..constants import (MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE,
                         MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE,
                         MAP_PRIVATE, PAGE_SIZE, PMD_SIZE, PROT_NONE, PROT_READ, PROT_WRITE)
from ..config import Preset, get_preset
from ..config.profiles import PROFILES
from ..machine import Machine
from ..mm import File
from ..mm.fork import default_image, map_image
from .hostbench import COUNT_COLUMNS, Scenario

RW = PROT_READ | PROT_WRITE
FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
WARMUP = 3
# tracepoint count -> how the model's counters give it:
#   tlb_local: tlb:tlb_flush with reason local (MM) shootdown, one per flush_tlb_func run
#     on the initiator, which flush_tlb_mm_range always does here (the mm is loaded);
#   tlb_local_full: those with pages -1 (TLB_FLUSH_ALL): nr_tlb_local_flush_all;
#   tlb_remote: reason remote shootdown, one per flush_tlb_func in an IPI handler:
#     nr_tlb_remote_flush_received;
#   ipi: function-call IPIs sent (ipi_send_cpu / ipi_send_cpumask): ipi_sent;
#   faults: exceptions:page_fault_user: the core's #PF count.
COUNT_MAP: Dict[str, str] = {"tlb_local": "flush_tlb_mm_range",
                             "tlb_local_full": "nr_tlb_local_flush_all",
                             "tlb_remote": "nr_tlb_remote_flush_received",
                             "ipi": "ipi_sent", "faults": "faults"}


@dataclass(frozen=True)
class HostConfig:
    """The kernel configuration of the measured machine, as the model takes it."""

    profile: str
    pti: bool
    pcid: bool
    invpcid: bool
    invlpgb: bool

    def machine_options(self) -> Dict[str, Any]:
        """Machine(...) keyword options for this configuration (the CPU features go on
        the preset: apply_features)."""
        return {"profile": self.profile, "pti": self.pti}

    def apply_features(self, preset: Any) -> Preset:
        """The preset with this machine's CPU features (pcid, invpcid, invlpgb), its name
        and sources kept."""
        p = get_preset(preset)
        return p.replace(name=p.name, pcid=self.pcid, invpcid=self.invpcid,
                         invlpgb=self.invlpgb, rar=False)   # RAR is not detected


def profile_for_kernel(release: str) -> str:
    """The newest built-in v6.x profile no newer than the kernel release (at least v6.2,
    the oldest release with 6.x's write-upgrade rules for clean exclusive pages)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    have = sorted((tuple(int(x) for x in name[1:].split(".")), name) for name in PROFILES
                  if re.fullmatch(r"v\d+\.\d+", name))
    best = "v6.2"
    if m:
        kernel = (int(m.group(1)), int(m.group(2)))
        for version, name in have:
            if (6, 2) <= version <= kernel:
                best = name
    return best


def host_config(info: Dict[str, str], profile: Optional[str] = None) -> HostConfig:
    """The model's configuration from a hostbench CSV header."""
    def flag(key: str) -> bool:
        return info.get(key, "false").strip().lower() == "true"
    return HostConfig(profile or profile_for_kernel(info.get("kernel", "")),
                      flag("pti"), flag("pcid"), flag("invpcid"), flag("invlpgb"))


def _image_mmap_base() -> int:
    """Where the model's top-down mmap area starts: just below the exec image's top group
    of mappings (vvar, vdso, ld.so: the segments above the image's widest gap), as in a
    real process, whose libraries sit just below mmap_base."""
    segs = sorted(default_image().segments, key=lambda s: s.start)
    gaps = [(b.start - (a.start + a.length), b.start) for a, b in zip(segs, segs[1:])]
    return max(gaps)[1]


class _Run:
    """One scenario on one machine: the threads, helpers, and what was recorded.

    The process is the C program's, not an empty mm: its exec image (the binary, ld.so,
    vdso, vvar, the stack) is mapped and the scenario's mmaps go just below it.  This
    matters to every zap that could free upper page tables: free_pgtables() frees a PMD
    or PUD table only when no other VMA uses it, and in a real process the libraries
    share the scenario's 1 GiB PUD slot.  So a THP munmap frees no table (the deposited
    PTE table of an anonymous THP is freed directly by zap_deposited_table(), not through
    the gather) and flushes [start, end) at the huge stride, one INVLPG per 2 MiB page,
    as the kernel does; in an empty mm it would free the PMD and PUD tables and the
    freed range (512 GiB at PUD stride) would make it a full flush."""

    def __init__(self, s: Scenario, preset: Any, cfg: HostConfig):
        self.m = Machine(cpus=2, preset=cfg.apply_features(preset), checker=False, **cfg.machine_options())
        self.proc = self.m.process(mmap_base=_image_mmap_base())
        map_image(self.proc.mm, default_image())
        self.t0 = self.proc.thread(cpu=0)
        if s.threads == 2:
            self.proc.thread(cpu=1).busy()
        self.cycles: Dict[str, List[float]] = {}
        self.counts: Dict[str, List[Dict[str, int]]] = {}

    def guarded(self, pages: int, populate: bool) -> int:
        """A mapping of `pages` between PROT_NONE guard pages (hostbench.c's guarded)."""
        area = self.t0.mmap((pages + 2) * PAGE_SIZE, PROT_NONE)
        flags = FIXED | (MAP_POPULATE if populate else 0)
        return self.t0.mmap(pages * PAGE_SIZE, RW, flags, addr=area + PAGE_SIZE)

    def huge(self, n: int, touch: bool) -> int:
        """n THP-eligible 2 MiB pages (MADV_HUGEPAGE), written once each if touch."""
        p = self.t0.mmap(n * PMD_SIZE, RW, huge=True)
        self.t0.madvise(p, n * PMD_SIZE, MADV_HUGEPAGE)
        if touch:
            for i in range(n):
                self.t0.write(p + i * PMD_SIZE)
        return p

    def record(self, cell: str, r: Any, measured: bool) -> None:
        """Keep one operation's cycles and counts (measured rounds only)."""
        if not measured:
            return
        ev = r.events
        self.cycles.setdefault(cell, []).append(r.cycles)
        self.counts.setdefault(cell, []).append({k: int(ev[v]) for k, v in COUNT_MAP.items()})


def _rounds(s: Scenario) -> Tuple[int, int]:
    """(warm-up, measured) rounds: the model is deterministic, so big ranges run once."""
    if s.n * (512 if "thp" in s.name and s.name != "fault_thp" else 1) >= 16384:
        return 1, 1
    return WARMUP, 2


def simulate(s: Scenario, preset: Any, cfg: HostConfig) -> Dict[str, Tuple[float, Dict[str, int]]]:
    """The model's cycles per operation and counts per operation, per cell of s."""
    if s.name == "empty":
        return {"empty": (0.0, dict.fromkeys(COUNT_COLUMNS, 0))}
    run = _Run(s, preset, cfg)
    t0 = run.t0
    warm, reps = _rounds(s)
    rounds = [(i >= warm) for i in range(warm + reps)]
    name, n = s.name, s.n
    if name == "getppid":
        # a syscall that takes no lock and touches no mm state: entry and exit only
        for measured in rounds:
            run.record("getppid", t0._syscall("getppid", lambda mm, cpu: 0, (), lock="r"),
                       measured)
    elif name == "mprotect_noop":
        p = run.guarded(1, True)
        for measured in rounds:
            run.record(name, t0.mprotect(p, PAGE_SIZE, RW), measured)
    elif name.startswith("seed"):
        p = run.guarded(1, name != "seed_unpop")
        lo = PROT_NONE if name == "seed_none" else PROT_READ
        first = "prot_none" if name == "seed_none" else "prot_read"
        for measured in rounds:
            run.record(first, t0.mprotect(p, PAGE_SIZE, lo), measured)
            run.record("prot_rw", t0.mprotect(p, PAGE_SIZE, RW), measured)
            if s.write:
                run.record("write", t0.write(p), measured)
    elif name in ("mprotect", "span", "kvma", "thp"):
        if name == "thp":
            p, length = run.huge(n, True), n * PMD_SIZE
        else:
            p, length = run.guarded(n, name != "span"), n * PAGE_SIZE
        if name == "span":
            t0.write(p)
            t0.write(p + (n - 1) * PAGE_SIZE)
        if name == "kvma":
            for i in range(n):
                t0.madvise(p + i * PAGE_SIZE, PAGE_SIZE,
                           MADV_NOHUGEPAGE if i % 2 else MADV_HUGEPAGE)
        for measured in rounds:
            run.record("prot_read", t0.mprotect(p, length, PROT_READ), measured)
            run.record("prot_rw", t0.mprotect(p, length, RW), measured)
    elif name.startswith("fault_"):
        kind = name[6:]
        count = len(rounds)
        stride = PMD_SIZE if kind == "thp" else PAGE_SIZE
        if kind == "thp":
            p = run.huge(count, False)
        elif kind == "cow":
            p = t0.mmap(count * PAGE_SIZE, RW, MAP_PRIVATE, file=File("memfd"))
            for i in range(count):
                t0.read(p + i * PAGE_SIZE)
        else:
            p = run.guarded(count, False)
        for i, measured in enumerate(rounds):
            va = p + i * stride
            run.record("fault", t0.read(va) if kind == "zero" else t0.write(va), measured)
    elif name in ("munmap", "dontneed", "munmap_thp", "dontneed_thp"):
        huge = name.endswith("_thp")
        dontneed = name.startswith("dontneed")
        length = n * (PMD_SIZE if huge else PAGE_SIZE)
        keep = run.guarded(n, False) if dontneed and not huge else None
        for measured in rounds:
            if huge:
                p = run.huge(n, True)
            elif keep is not None:
                p = keep
                t0.madvise(p, length, MADV_POPULATE_WRITE)
            else:
                p = run.guarded(n, True)
            if dontneed:
                run.record("dontneed", t0.madvise(p, length, MADV_DONTNEED), measured)
                if huge:
                    t0.munmap(p, length)
            else:
                run.record("munmap", t0.munmap(p, length), measured)
                if not huge:
                    t0.munmap(p - PAGE_SIZE, PAGE_SIZE)
                    t0.munmap(p + length, PAGE_SIZE)
    else:
        raise ValueError(f"no model for hostbench scenario {name!r}")
    out = {}
    for cell, cyc in run.cycles.items():
        ops = run.counts[cell]
        counts = {k: ops[0][k] for k in COUNT_COLUMNS}
        # the model is deterministic: every measured round must count the same
        if any(op != ops[0] for op in ops):
            counts = {k: round(sum(op[k] for op in ops) / len(ops)) for k in COUNT_COLUMNS}
        out[cell] = (sum(cyc) / len(cyc), counts)
    return out


def simulate_all(scs: List[Scenario], preset: Any, cfg: HostConfig,
                 log: Callable[[str], None] = lambda s: None
                 ) -> Dict[Tuple[Tuple[str, int, int, int], str], Tuple[float, Dict[str, int]]]:
    """simulate() for each scenario, keyed (scenario key, cell)."""
    out = {}
    for s in scs:
        log(f"model: {s.name} n={s.n} threads={s.threads} write={s.write}")
        for cell, v in simulate(s, preset, cfg).items():
            out[(s.key, cell)] = v
    return out
