"""Random operation sequences under every built-in profile, with the safety checker on.

Each run (seeded, a few hundred operations per profile over four runs with 1-4 CPUs)
mixes mmap (4K and THP, private and shared, MAP_POPULATE, MAP_FIXED), munmap, mprotect
over 1-3 VMAs including partial ranges and THP cuts, madvise (DONTNEED, FREE, COLD,
HUGEPAGE, POPULATE_READ/WRITE), reads/writes/fetches from every thread, and threads
going busy, to sleep, or giving their CPU to another process.  After every operation
the VMA invariants must hold and no CPU may hold a stale, more permissive translation.
For every mprotect the flush_tlb_mm_range calls, INVLPGs, full flushes and IPIs on every
CPU must equal what tests/flushref.py (independent of pysim) predicts from the page table
before and after, the VMAs the range covers, the profile and the CPU states.
"""
import errno
import functools
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import pytest

import mmucore
import pysim
from pysim import (MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK, MADV_GUARD_INSTALL,  # noqa: E402
                   MADV_GUARD_REMOVE, MADV_MERGEABLE, MADV_NORMAL, MADV_PAGEOUT,
                   MADV_RANDOM, MADV_REMOVE, MADV_SEQUENTIAL, MADV_WILLNEED,
                   MADV_WIPEONFORK, MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE)
from pysim import (MADV_COLD, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE, MADV_POPULATE_READ,
                   MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE,
                   MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flushref  # noqa: E402

PAGE = 4096
HPAGE = 2 << 20
PROFILES = sorted(pysim.PROFILES)
RUNS = ((1, 80), (2, 110), (3, 110), (4, 110))     # (cpus, operations) per seed
PROTS = (PROT_NONE, PROT_READ, PROT_WRITE, PROT_READ | PROT_WRITE, PROT_READ | PROT_WRITE,
         PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC)
FLUSH_COUNTERS = ("flush_tlb_mm_range", "nr_tlb_local_flush_one", "nr_tlb_local_flush_all",
                  "remote_flush_one", "remote_flush_all", "nr_tlb_remote_flush_received",
                  "ipi_sent", "tlb_remote_wrong_cpu", "invlpg", "flush_pcid")


@dataclass
class RunResult:
    ops: object = None
    flush_mismatches: List[str] = field(default_factory=list)
    remote_flush_mismatches: List[str] = field(default_factory=list)
    errno_mismatches: List[str] = field(default_factory=list)
    stats: Dict[str, int] = field(default_factory=dict)


def snapshot(m):
    out = {}
    for c in m.cpus:
        hwc = c.tlb.counter_dict()
        d = {k: c.kernel_counts[k] for k in FLUSH_COUNTERS + ("nr_tlb_remote_flush",)
             if k not in ("invlpg", "flush_pcid")}
        d["invlpg"], d["flush_pcid"] = hwc["invlpg"], hwc["flush_pcid"]
        out[c.id] = d
    return out


def cpu_states(m, mm):
    """running / lazy (mm loaded), stale / stale_lazy (6.14+: in mm_cpumask, running
    another mm or none), other."""
    def state(c):
        if c.loaded_mm is mm:
            return "lazy" if c.is_lazy else "running"
        if c.id in mm.context:
            return "stale_lazy" if c.is_lazy else "stale"
        return "other"
    return {c.id: state(c) for c in m.cpus}


def portions_of(mm, start, end):
    """(VMA portions before the first hole, whether the range is fully mapped)."""
    out, addr = [], start
    for v in mm.vmas.vmas_in(start, end):
        if v.start > addr:
            return out, False
        s, e = max(v.start, start), min(v.end, end)
        out.append((s, e, v.flags & 7))
        addr = e
    return out, addr >= end


class Workload:
    def __init__(self, profile: str, seed: int, ncpus: int, preset: str = "skylake"):
        self.rng = random.Random(f"{profile}/{seed}" if preset == "skylake"
                                 else f"{profile}/{preset}/{seed}")
        self.trim_rng = random.Random(f"trim/{profile}/{seed}")   # leaves rng's draws alone
        self.m = pysim.Machine(cpus=ncpus, profile=profile, seed=seed, preset=preset)
        self.profile = self.m.profile
        self.proc = self.m.process()
        self.mm = self.proc.mm
        self.other = self.m.process()
        self.threads = [self.proc.thread(cpu=c) for c in range(ncpus)]
        for i, t in enumerate(self.threads):    # current->pid & 0x1f == 0: sampled by
            t.tid = 32 * (i + 1)                # consider_global_asid at jiffies 0..
        self.other_threads = {}
        self.files = [pysim.File("a"), pysim.File("b")]
        self.res = RunResult(ops=__import__("collections").Counter())
        for t in self.threads[1:]:
            self.rng.choice((t.busy, t.sleep, t.run))()

    # -------------------------------------------------------------- helpers
    def vmas(self):
        return self.mm.vmas.vmas()

    def page_in(self, v):
        return v.start + self.rng.randrange((v.end - v.start) // PAGE) * PAGE

    def boundary_in(self, v, low):
        """A page boundary in v: its start/end, a 2M boundary, or any page."""
        r = self.rng.random()
        if r < 0.4:
            return v.start if low else v.end
        if r < 0.6:
            cands = list(range(-(-v.start // HPAGE) * HPAGE, v.end + 1, HPAGE))
            if cands:
                return self.rng.choice(cands)
        return self.page_in(v) + (0 if low else PAGE)

    def thread(self):
        return self.rng.choice(self.threads)

    # -------------------------------------------------------------- operations
    def op_mmap(self):
        t = self.thread()
        rng = self.rng
        huge = rng.random() < 0.3
        length = rng.randint(1, 3) * HPAGE if huge else rng.randint(1, 48) * PAGE
        prot = rng.choice(PROTS)
        shared = not huge and rng.random() < 0.15
        file = None
        if not huge and rng.random() < 0.2:              # a file mapping, private or shared
            file = self.files[rng.randrange(len(self.files))]
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_ANONYMOUS if file is None else 0)
        if prot != PROT_NONE and rng.random() < 0.35:
            flags |= MAP_POPULATE        # (PROT_NONE + MAP_POPULATE: see test_kernel_faults)
        addr = 0
        vs = self.vmas()
        if vs and rng.random() < 0.1:
            v = rng.choice(vs)
            addr = v.start + (rng.randrange((v.end - v.start) // PAGE) * PAGE
                              if not huge else 0)
            flags |= MAP_FIXED
        t.mmap(length, prot, flags, addr=addr, huge=huge, file=file)
        self.res.ops["mmap"] += 1
        if file is not None:
            self.res.ops["mmap_file"] += 1

    def op_munmap(self):
        vs = self.vmas()
        if not vs:
            return
        i = self.rng.randrange(len(vs))
        j = min(len(vs) - 1, i + self.rng.choice((0, 0, 1)))
        start, end = self.boundary_in(vs[i], True), self.boundary_in(vs[j], False)
        if end <= start:
            start, end = vs[i].start, vs[i].end
        self.thread().munmap(start, end - start)
        self.res.ops["munmap"] += 1

    def op_madvise(self):
        vs = self.vmas()
        if not vs:
            return
        i = self.rng.randrange(len(vs))
        j = min(len(vs) - 1, i + self.rng.choice((0, 0, 1)))
        start, end = self.boundary_in(vs[i], True), self.boundary_in(vs[j], False)
        if end <= start:
            start, end = vs[i].start, vs[i].end
        advice = self.rng.choice((MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_HUGEPAGE,
                                  MADV_POPULATE_READ, MADV_POPULATE_WRITE))
        try:
            self.thread().madvise(start, end - start, advice)
            self.res.ops["madvise"] += 1
        except pysim.SyscallError as e:
            assert e.errno in (errno.EINVAL, errno.EFAULT, errno.ENOMEM), str(e)
            self.res.ops["madvise_error"] += 1

    def op_access(self):
        vs = self.vmas()
        if not vs:
            return
        n = self.rng.randint(1, 12)
        vas, kinds = [], []
        for _ in range(n):
            v = self.rng.choice(vs)
            va = self.page_in(v) + self.rng.choice((0, 8, 2048))
            if self.rng.random() < 0.05 and self.mm.vmas.vma_lookup(v.start - PAGE) is None:
                va = v.start - PAGE                       # unmapped: SIGSEGV
            vas.append(va)
            kinds.append(self.rng.choices((0, 1, 2), (45, 45, 10))[0])
        r = self.thread().access(np.array(vas, dtype=np.uint64),
                                 np.array(kinds, dtype=np.uint8))
        for f in r.faults:
            self.res.stats["fault_" + f[3]] = self.res.stats.get("fault_" + f[3], 0) + 1
        self.res.ops["access"] += 1

    def op_schedule(self):
        t = self.thread()
        what = self.rng.choice(("busy", "sleep", "sleep", "run", "other"))
        if what == "other":
            c = t.cpu.id
            if c not in self.other_threads:
                self.other_threads[c] = self.other.thread(cpu=c)
            self.other_threads[c].run()
        else:
            getattr(t, what)()
        self.res.ops["schedule_" + what] += 1
        assert self.m.check() == []                       # schedule ops skip the checker

    def op_mprotect(self):
        vs = self.vmas()
        if not vs:
            return
        rng = self.rng
        i = rng.randrange(len(vs))
        j = min(len(vs) - 1, i + rng.choice((0, 0, 1, 2)))
        start, end = self.boundary_in(vs[i], True), self.boundary_in(vs[j], False)
        if end <= start:
            start, end = vs[i].start, vs[i].end
        if rng.random() < 0.05:
            start = max(PAGE * 16, start - PAGE)         # maybe unmapped start
        prot = rng.choice(PROTS)
        t = self.thread()
        t.run()
        init = t.cpu.id
        states = cpu_states(self.m, self.mm)
        if self.trim_rng.random() < 0.3:   # make the trim due (jiffies hardly move in a run)
            self.mm.context.next_trim_cpumask = (1 << 64) - 1
        next_trim = self.mm.context.next_trim_cpumask
        broadcast = self.mm.context.global_asid != 0
        parts, full_range = portions_of(self.mm, start, end)
        if not parts or parts[0][0] != start:
            parts, full_range = [], False
        npages = (end - start) // PAGE
        before = self.mm.pt.read_range(start, npages)
        c0 = snapshot(self.m)
        got_errno = None
        try:
            t.mprotect(start, end - start, prot)
        except pysim.SyscallError as e:
            got_errno = e.errno
        after = self.mm.pt.read_range(start, npages)
        c1 = snapshot(self.m)
        portions = [flushref.Portion(s, e, rwx, before[(s - start) // PAGE:(e - start) // PAGE],
                                     after[(s - start) // PAGE:(e - start) // PAGE])
                    for s, e, rwx in parts]
        reqs = flushref.mprotect_requests(self.profile, prot, portions)
        exp = flushref.dispatch(self.profile, reqs, init, states,
                                self.m.arch.flush.jiffies, next_trim)
        where = (f"op {self.n}: mprotect([0x{start:x}, 0x{end:x}) = {npages} pages, "
                 f"prot {prot}) on cpu {init}, states {states}, requests "
                 f"{[(hex(r.start), r.nr(), r.stride, r.why) for r in reqs]}")
        want_errno = None if full_range else errno.ENOMEM
        if got_errno != want_errno:
            self.res.errno_mismatches.append(f"{where}: errno {got_errno}, want {want_errno}")
        if self.mm.context.global_asid and not broadcast:
            self.res.stats["global_asid"] = self.res.stats.get("global_asid", 0) + 1
        if broadcast:                   # INVLPGB flushes: the checker alone judges them
            self.res.stats["broadcast_mprotect"] = \
                self.res.stats.get("broadcast_mprotect", 0) + 1
            return
        if self.mm.context.next_trim_cpumask != exp.next_trim:
            self.res.flush_mismatches.append(
                f"{where}: next_trim_cpumask {self.mm.context.next_trim_cpumask}, "
                f"reference {exp.next_trim}")
        for c in self.m.cpus:
            for k in FLUSH_COUNTERS:
                got = c1[c.id][k] - c0[c.id][k]
                if got != exp.get(c.id, k):
                    self.res.flush_mismatches.append(
                        f"{where}: cpu {c.id} {k} = {got}, reference {exp.get(c.id, k)}")
            got = c1[c.id]["nr_tlb_remote_flush"] - c0[c.id]["nr_tlb_remote_flush"]
            if got != exp.get(c.id, "nr_tlb_remote_flush"):
                self.res.remote_flush_mismatches.append(
                    f"{where}: cpu {c.id} nr_tlb_remote_flush = {got}, kernel "
                    f"{exp.get(c.id, 'nr_tlb_remote_flush')}")
        st = self.res.stats
        st["mprotect"] = st.get("mprotect", 0) + 1
        st["requests"] = st.get("requests", 0) + len(reqs)
        for r in reqs:
            kind = "full" if r.nr() > self.profile.tlb_single_page_flush_ceiling else "partial"
            st[f"req_{r.why}_{kind}"] = st.get(f"req_{r.why}_{kind}", 0) + 1
        if any(s != "running" for c, s in states.items() if c != init):
            st["mprotect_with_idle_cpu"] = st.get("mprotect_with_idle_cpu", 0) + 1
        st["ipis"] = st.get("ipis", 0) + exp.get(init, "ipi_sent")
        st["wrong_cpu"] = st.get("wrong_cpu", 0) + sum(
            exp.get(c, "tlb_remote_wrong_cpu") for c in states)
        st["portions"] = st.get("portions", 0) + len(parts)
        if got_errno:
            st["mprotect_enomem"] = st.get("mprotect_enomem", 0) + 1

    def check_frames(self):
        """Frame invariants: a shared VMA maps only page-cache frames; a private VMA never
        maps a page-cache frame writable (a write would reach the file, not a copy)."""
        P, RW = mmucore.PTE_P, mmucore.PTE_RW
        for v in self.vmas():
            e = self.mm.pt.read_range(v.start, (v.end - v.start) // PAGE)
            e = e[(e & np.uint64(P)) != 0]
            file_frame = ((e & np.uint64(mmucore.PTE_PFN_MASK)) >> np.uint64(12)) \
                >= np.uint64(mmucore.FILE_PFN_BASE)
            if v.shared:
                assert file_frame.all(), f"op {self.n}: {v!r} maps an anonymous frame"
            else:
                writable_file = file_frame & ((e & np.uint64(RW)) != 0)
                assert not writable_file.any(), \
                    f"op {self.n}: {v!r} maps a page-cache frame writable"
                self.res.stats["file_frames_private"] = \
                    self.res.stats.get("file_frames_private", 0) + int(file_frame.sum())

    def operations(self):
        """The ops run() draws from, with their weights."""
        return ((self.op_mmap, 12), (self.op_munmap, 6), (self.op_mprotect, 30),
                (self.op_madvise, 10), (self.op_access, 25), (self.op_schedule, 15))

    def after_op(self):
        """What must hold after every op."""
        self.mm.vmas.check_invariants()
        self.check_frames()
        assert self.mm.tlb_flush_pending == 0

    def run(self, nops):
        ops, weights = zip(*self.operations())
        for n in range(nops):
            self.n = n
            if self.mm.vmas.map_count < 2:
                op = self.op_mmap
            elif self.mm.vmas.map_count > 14:
                op = self.op_munmap
            else:
                op = self.rng.choices(ops, weights)[0]
            op()
            self.after_op()
        assert self.m.check() == []
        assert self.m.checker.violations == []
        return self.res


@functools.lru_cache(maxsize=None)
def runs(profile: str):
    out = []
    for seed, (ncpus, nops) in enumerate(RUNS):
        out.append(Workload(profile, seed, ncpus).run(nops))
    return out


@pytest.mark.parametrize("profile", ("v6.15", "v6.18"))
def test_random_ops_with_invlpgb_are_safe(profile):
    """On milan (INVLPGB) with 5 CPUs, the mm is given a global ASID once 4 CPUs run
    it; every operation before and after (broadcast flushes, the transition IPIs) passes
    the checker, and mprotects before the assignment still match tests/flushref.py."""
    rs = [Workload(profile, seed, 5, preset="milan").run(160) for seed in (11, 12)]
    assert sum(r.stats.get("global_asid", 0) for r in rs) >= 1
    assert sum(r.stats.get("broadcast_mprotect", 0) for r in rs) > 10
    bad = [m for r in rs for m in r.flush_mismatches + r.errno_mismatches]
    assert not bad, _first(bad)


def _first(lines, n=8):
    return "\n".join(lines[:n]) + (f"\n... {len(lines) - n} more" if len(lines) > n else "")


@pytest.mark.parametrize("profile", PROFILES)
def test_random_ops_are_safe(profile):
    """No safety violation, VMA invariants after every op (asserted while running), and the
    runs exercised what they should."""
    rs = runs(profile)
    total = {}
    for r in rs:
        for k, v in list(r.stats.items()) + list(r.ops.items()):
            total[k] = total.get(k, 0) + v
    assert total["mprotect"] >= 60
    assert total["requests"] > 20
    assert total.get("req_vma_partial", 0) + total.get("req_tlb_finish_mmu_partial", 0) > 0
    assert total.get("req_vma_full", 0) + total.get("req_tlb_finish_mmu_full", 0) > 0
    assert total.get("req_split_full", 0) > 0                 # THPs cut by a range
    assert total["ipis"] > 0 and total.get("mprotect_with_idle_cpu", 0) > 0
    assert total.get("mprotect_enomem", 0) > 0
    assert total.get("fault_sigsegv", 0) > 0 and total.get("fault_anon", 0) > 0
    assert total.get("fault_thp", 0) > 0
    assert total.get("mmap_file", 0) > 0 and total.get("file_frames_private", 0) > 0
    if pysim.get_profile(profile).lazy_cpumask:
        assert total.get("wrong_cpu", 0) > 0          # trims and lazy CPUs reached


@pytest.mark.parametrize("profile", PROFILES)
def test_random_mprotect_flushes_match_reference(profile):
    """Per mprotect and per CPU: flush_tlb_mm_range calls, INVLPGs, full flushes, IPIs
    sent and received equal tests/flushref.py's prediction; errno too."""
    rs = runs(profile)
    errs = [m for r in rs for m in r.errno_mismatches]
    assert not errs, _first(errs)
    bad = [m for r in rs for m in r.flush_mismatches]
    assert not bad, _first(bad)


@pytest.mark.parametrize("profile", PROFILES)
def test_random_mprotect_remote_flush_counter_matches_kernel(profile):
    """nr_tlb_remote_flush counts every request made while another CPU is in mm_cpumask,
    lazy or not (native_flush_tlb_multi counts before filtering lazy CPUs)."""
    rs = runs(profile)
    bad = [m for r in rs for m in r.remote_flush_mismatches]
    assert not bad, _first(bad)


class ContractWorkload(Workload):
    """The same random workload plus the rest of the syscall contract: mremap (moves
    with MAYMOVE, FIXED and DONTUNMAP, growth, shrink), the vm_flags madvise advice,
    PAGEOUT and guard pages, process_madvise, mlock/munlock, brk, and a fork whose
    child touches and exits; every error must carry an errno the call can give."""

    def op_mprotect(self):
        """mprotect inside one VMA (the VMAs here lie far apart: heap, moved ranges)."""
        v = self.rng.choice(self.vmas())
        start, end = self.boundary_in(v, True), self.boundary_in(v, False)
        if end <= start:
            start, end = v.start, v.end
        prot = self.rng.choice((PROT_READ, PROT_READ | PROT_WRITE, PROT_NONE))
        try:
            self.thread().mprotect(start, end - start, prot)
            self.res.ops["mprotect"] += 1
        except pysim.SyscallError as e:
            assert e.errno in (errno.EACCES, errno.EPERM), str(e)

    def op_mremap(self):
        vs = self.vmas()
        v = self.rng.choice(vs)
        start = self.page_in(v)
        npages = self.rng.choice((1, 2, 8, 512))
        new = self.rng.choice((npages, 2 * npages, max(1, npages // 2)))
        flags = self.rng.choice((0, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED,
                                 MREMAP_MAYMOVE | MREMAP_DONTUNMAP))
        dest = 0
        if flags & MREMAP_FIXED:
            dest = self.rng.choice((0x500000000000, 0x500000200000 + PAGE))
        if flags & MREMAP_DONTUNMAP:
            new = npages
        try:
            self.thread().mremap(start, npages * PAGE, new * PAGE, flags, dest)
            self.res.ops["mremap"] += 1
        except pysim.SyscallError as e:
            assert e.errno in (errno.EINVAL, errno.EFAULT, errno.ENOMEM), str(e)
            self.res.ops["mremap_error"] += 1

    def op_madvise_more(self):
        v = self.rng.choice(self.vmas())
        start, end = self.boundary_in(v, True), self.boundary_in(v, False)
        if end <= start:
            start, end = v.start, v.end
        advice = self.rng.choice((MADV_RANDOM, MADV_SEQUENTIAL, MADV_NORMAL, MADV_DONTFORK,
                                  MADV_DOFORK, MADV_WIPEONFORK, MADV_DONTDUMP, MADV_MERGEABLE,
                                  MADV_PAGEOUT, MADV_WILLNEED, MADV_GUARD_INSTALL,
                                  MADV_GUARD_REMOVE, MADV_REMOVE))
        t = self.thread()
        try:
            if self.rng.random() < 0.3:
                t.process_madvise([(start, PAGE), (end - PAGE, PAGE)], advice)
            else:
                t.madvise(start, end - start, advice)
            self.res.ops["madvise_more"] += 1
        except pysim.SyscallError as e:
            assert e.errno in (errno.EINVAL, errno.EACCES, errno.ENOMEM, errno.EAGAIN), str(e)
            self.res.ops["madvise_more_error"] += 1

    def op_lock(self):
        v = self.rng.choice(self.vmas())
        start = self.page_in(v)
        n = self.rng.choice((1, 4, 600)) * PAGE
        t = self.thread()
        try:
            self.rng.choice((t.mlock, t.munlock))(start, n)
            self.res.ops["mlock"] += 1
        except pysim.SyscallError as e:
            assert e.errno == errno.ENOMEM, str(e)
            self.res.ops["mlock_error"] += 1

    def op_brk(self):
        t = self.thread()
        cur = t.brk(0).value
        target = cur + self.rng.choice((-3, -1, 1, 5, 40)) * PAGE
        got = t.brk(target).value
        assert got in (cur, target)
        if self.rng.random() < 0.5 and got > self.mm.start_brk:
            t.write(self.mm.start_brk)
        self.res.ops["brk"] += 1

    def op_fork(self):
        child = self.proc.fork(self.thread())
        ct = child.threads[0]
        for v in child.mm.vmas.vmas()[:4]:
            if v.flags & pysim.VM_WRITE:
                ct.write(v.start)
        child.exit()
        self.res.ops["fork"] += 1

    def operations(self):
        """The base ops (reweighted) and the contract's calls."""
        return ((self.op_mmap, 12), (self.op_munmap, 6), (self.op_mprotect, 15),
                (self.op_madvise, 8), (self.op_access, 25), (self.op_schedule, 10),
                (self.op_mremap, 10), (self.op_madvise_more, 10), (self.op_lock, 5),
                (self.op_brk, 4), (self.op_fork, 3))

    def after_op(self):
        """Flag advice may leave mergeable neighbours apart (as Linux can), and the
        checker must be clean after every op."""
        self.mm.vmas.check_invariants(check_merged=False)
        assert self.mm.tlb_flush_pending == 0
        assert self.m.checker.violations == []


@pytest.mark.parametrize("profile", ("mmots", "patched", "v6.2", "v6.14", "v6.18"))
def test_random_contract_ops_are_safe(profile):
    """mremap, the madvise advice set, process_madvise, mlock, brk and fork mixed into
    the random workload: the checker stays clean after every op on every CPU count."""
    total = __import__("collections").Counter()
    for seed, (ncpus, nops) in enumerate(RUNS):
        total.update(ContractWorkload(profile, 100 + seed, ncpus).run(nops).ops)
    assert total["mremap"] > 0 and total["madvise_more"] > 0 and total["fork"] > 0
    assert total["brk"] > 0 and total["mlock"] > 0
