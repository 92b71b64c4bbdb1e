"""A shrinking property test of the kernel model: a hypothesis RuleBasedStateMachine.

Two or three processes, whose threads share two or three CPUs, run mmap (anonymous,
private or shared, 4K-sized or THP-sized with huge=True, maybe MAP_POPULATE), munmap,
mprotect, madvise (DONTNEED, FREE, COLD, POPULATE_WRITE), syscalls with a bad argument,
single and batched reads, writes and fetches, and their threads sleep, run and busy-loop,
under every combination of pti, invpcid and pcid (one pytest case each) and a drawn
profile (mmots, patched, v6.2, v6.14, v6.18), with the safety checker raising.  After
every step the checker's scan must be empty.  A variant runs v6.15/v6.18 on milan
(INVLPGB) with four or five CPUs, so an mm can get a global ASID.

The test keeps its own page-granular model of what each process mapped with which
protection (it never reads pysim's VMAs or CPU state), and checks every outcome against
it: a syscall fails exactly when the range has a problem Linux reports, with an errno
Linux gives for that problem; an access is a SIGSEGV exactly when the protection forbids
it, so a stale TLB entry that lets a forbidden write through is caught here even if the
checker were to miss it.
"""
import errno
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

import mmucore
import pysim
from pysim import (MADV_COLD, MADV_DONTNEED, MADV_FREE, MADV_POPULATE_WRITE, MAP_ANONYMOUS,
                   MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ,
                   PROT_WRITE)

PAGE = 4096
HPAGE_PAGES = 512
PROTS = (PROT_READ | PROT_WRITE, PROT_READ, PROT_NONE, PROT_WRITE, PROT_READ | PROT_EXEC,
         PROT_READ | PROT_WRITE | PROT_EXEC)
PROFILES = ("patched", "mmots", "v6.2", "v6.14", "v6.18")
ADVICE = (MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_POPULATE_WRITE)
KINDS = (mmucore.READ, mmucore.WRITE, mmucore.FETCH)
# range lengths in pages: one page, a few, the flush ceiling (33) and one past it, a THP
LENGTHS = (1, 2, 3, 8, 33, 34, HPAGE_PAGES, 2 * HPAGE_PAGES)
MAX_REGIONS = 4                 # live mmaps per process
REGION = st.integers(0, MAX_REGIONS - 1)
# page offsets into a region: half of them among its first pages, where accesses,
# mprotects and zaps of different threads meet
OFFSET = st.one_of(st.integers(0, 3), st.integers(0, 2 * HPAGE_PAGES + 1))

# CPU bitmasks for a process's threads; the first (every CPU) is what shrinking aims at
PLACEMENTS = (0b111, 0b011, 0b101, 0b110, 0b001, 0b010, 0b100)
KNOBS = [dict(pti=pti, invpcid=invpcid, pcid=pcid)
         for pti, invpcid, pcid in itertools.product((True, False), repeat=3)]


def allowed(prot, kind):
    """Whether x86 lets user code do `kind` to a page mapped with `prot`: every
    protection but PROT_NONE reads (write and exec imply read), writes need PROT_WRITE,
    fetches PROT_EXEC."""
    if kind == mmucore.WRITE:
        return bool(prot & PROT_WRITE)
    if kind == mmucore.FETCH:
        return bool(prot & PROT_EXEC)
    return prot != PROT_NONE


class Shadow:
    """One process's mappings as the test understands them: page address -> (prot,
    shared), and the regions mmap returned (start, pages), to aim operations at."""

    def __init__(self):
        self.pages = {}
        self.regions = []

    def pages_of(self, start, npages):
        return [start + i * PAGE for i in range(npages)]

    def prune(self):
        self.regions = [(s, n) for s, n in self.regions
                        if any(a in self.pages for a in self.pages_of(s, n))]


class KernelStateMachine(RuleBasedStateMachine):
    """The kernel model under random syscalls, accesses and scheduling."""

    def __init__(self, knobs):
        super().__init__()
        self.knobs = knobs
        self.m = None

    # -------------------------------------------------------------- setup
    @initialize(profile=st.sampled_from(PROFILES), ncpus=st.integers(2, 3),
                placements=st.lists(st.sampled_from(PLACEMENTS), min_size=2, max_size=3))
    def setup(self, profile, ncpus, placements):
        """placements[i] is a CPU bitmask: process i gets one thread per CPU in it (CPU 0
        if none of its CPUs exist); the last thread created on a CPU runs there."""
        self.m = pysim.Machine(cpus=ncpus, profile=profile, checker="raise", **self.knobs)
        self.threads = []                # (thread, its process's Shadow)
        self.procs = []
        for mask in placements:
            cpus = [c for c in range(ncpus) if mask >> c & 1] or [0]
            proc, sh = self.m.process(), Shadow()
            self.procs.append(proc)
            self.threads += [(proc.thread(cpu=c), sh) for c in cpus]

    def thread(self, i):
        return self.threads[i % len(self.threads)]

    def has_regions(self):
        """Some process has a region to aim at."""
        return self.m is not None and any(sh.regions for _, sh in self.threads)

    def mapper(self, i):
        """The i-th (mod) (thread, shadow) whose process has a region to aim at."""
        cands = [(t, sh) for t, sh in self.threads if sh.regions]
        return cands[i % len(cands)]

    @staticmethod
    def target(sh, region, off):
        """The page address `off` pages into one of the process's regions (mod its size)."""
        start, npages = sh.regions[region % len(sh.regions)]
        return start + (off % npages) * PAGE

    # -------------------------------------------------------------- syscalls
    @rule(ti=st.integers(0, 8), prot=st.sampled_from(PROTS), shared=st.booleans(),
          huge=st.booleans(), size=st.integers(1, 8), populate=st.booleans())
    def mmap(self, ti, prot, shared, huge, size, populate):
        t, sh = self.thread(ti)
        if len(sh.regions) >= MAX_REGIONS:
            return
        npages = (1 + size % 2) * HPAGE_PAGES if huge else size
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS \
            | (MAP_POPULATE if populate else 0)
        addr = t.mmap(npages * PAGE, prot, flags, huge=huge)
        assert addr % (HPAGE_PAGES * PAGE if huge else PAGE) == 0
        pages = sh.pages_of(addr, npages)
        assert not any(a in sh.pages for a in pages), "mmap overlapped a mapping"
        for a in pages:
            sh.pages[a] = (prot, shared)
        sh.regions.append((addr, npages))

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          length=st.sampled_from(LENGTHS))
    def munmap(self, ti, region, off, length):
        t, sh = self.mapper(ti)
        start, npages = self.target(sh, region, off), length
        t.munmap(start, npages * PAGE)
        for a in sh.pages_of(start, npages):
            sh.pages.pop(a, None)
        sh.prune()

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          length=st.sampled_from(LENGTHS), prot=st.sampled_from(PROTS))
    def mprotect(self, ti, region, off, length, prot):
        t, sh = self.mapper(ti)
        start, npages = self.target(sh, region, off), length
        pages = sh.pages_of(start, npages)
        # do_mprotect_pkey changes VMA after VMA up to the first hole (ENOMEM there)
        done = list(itertools.takewhile(lambda a: a in sh.pages, pages))
        try:
            t.mprotect(start, npages * PAGE, prot)
            err = None
        except pysim.SyscallError as e:
            err = e.errno
        assert err == (None if len(done) == npages else errno.ENOMEM), \
            f"mprotect errno {err}, {len(done)} of {npages} pages mapped"
        for a in done:
            sh.pages[a] = (prot, sh.pages[a][1])

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          length=st.sampled_from(LENGTHS), advice=st.sampled_from(ADVICE))
    def madvise(self, ti, region, off, length, advice):
        t, sh = self.mapper(ti)
        start, npages = self.target(sh, region, off), length
        present = [sh.pages.get(a) for a in sh.pages_of(start, npages)]
        problems = set()
        if None in present:
            problems.add(errno.ENOMEM)                   # a hole
        mapped = [p for p in present if p is not None]
        if advice == MADV_FREE and any(shared for _, shared in mapped):
            problems.add(errno.EINVAL)                   # not private anonymous memory
        if advice == MADV_POPULATE_WRITE and any(not prot & PROT_WRITE for prot, _ in mapped):
            problems.add(errno.EINVAL)                   # GUP: VMA not writable
        try:
            t.madvise(start, npages * PAGE, advice)
            err = None
        except pysim.SyscallError as e:
            err = e.errno
        # Linux reports the first problem in address order; pysim looks for holes
        # before permissions, so either errno of a range with both is accepted
        if problems:
            assert err in problems, f"madvise({advice}) errno {err}, expected one of {problems}"
        else:
            assert err is None, f"madvise({advice}) failed with errno {err} on a good range"

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          call=st.sampled_from(("mprotect_unaligned", "mprotect_prot", "munmap_empty",
                                "madvise_unaligned", "madvise_advice")))
    def bad_argument(self, ti, region, off, call):
        """A syscall Linux rejects with EINVAL before touching anything: an unaligned
        start, an unknown prot bit or advice, a zero-length munmap.  (The failed call
        still enters and leaves the kernel, with whatever flushes are pending.)"""
        t, sh = self.mapper(ti)
        start = self.target(sh, region, off)
        with pytest.raises(pysim.SyscallError) as e:
            if call == "mprotect_unaligned":
                t.mprotect(start + 8, PAGE, PROT_READ)
            elif call == "mprotect_prot":
                t.mprotect(start, PAGE, PROT_READ | 0x10)
            elif call == "munmap_empty":
                t.munmap(start, 0)
            elif call == "madvise_unaligned":
                t.madvise(start + 8, PAGE, MADV_DONTNEED)
            else:
                t.madvise(start, PAGE, 0x7777)
        assert e.value.errno == errno.EINVAL, f"{call}: {e.value}"

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          length=st.sampled_from(LENGTHS),
          # (not DONTFORK: the shadow copied at fork would have to drop those pages)
          advice=st.sampled_from((pysim.MADV_RANDOM, pysim.MADV_SEQUENTIAL,
                                  pysim.MADV_DONTDUMP, pysim.MADV_WILLNEED,
                                  pysim.MADV_PAGEOUT, pysim.MADV_NORMAL)),
          vector=st.booleans())
    def madvise_more(self, ti, region, off, length, advice, vector):
        """The vm_flags advice, WILLNEED and PAGEOUT (madvise_walk_vmas: ENOMEM exactly
        when the range has a hole, the rest advised), or process_madvise of the range's
        first and last page (bytes advised)."""
        t, sh = self.mapper(ti)
        start, npages = self.target(sh, region, off), length
        pages = sh.pages_of(start, npages)
        if vector:
            ends = [pages[0], pages[-1]]
            ok = list(itertools.takewhile(lambda a: a in sh.pages, ends))
            try:
                r = t.process_madvise([(a, PAGE) for a in ends], advice)
                assert r.value == len(ok) * PAGE and ok, (r.value, ok)
            except pysim.SyscallError as e:
                assert e.errno == errno.ENOMEM and not ok
            return
        try:
            t.madvise(start, npages * PAGE, advice)
            err = None
        except pysim.SyscallError as e:
            err = e.errno
        hole = any(a not in sh.pages for a in pages)
        assert err == (errno.ENOMEM if hole else None), f"madvise({advice}) errno {err}"

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          length=st.sampled_from(LENGTHS),
          policy=st.sampled_from(((pysim.MPOL_BIND, 1, 64), (pysim.MPOL_LOCAL, None, 0),
                                  (pysim.MPOL_DEFAULT, None, 0))))
    def mbind(self, ti, region, off, length, policy):
        """mbind (queue_pages_range, mbind_range): EFAULT for a range with a hole, and
        for the default policy only when nothing of it is mapped; the VMAs split and
        merge by policy, which leaves the list as Linux would have merged it."""
        t, sh = self.mapper(ti)
        start, npages = self.target(sh, region, off), length
        mapped = [a in sh.pages for a in sh.pages_of(start, npages)]
        mode, nodes, maxnode = policy
        try:
            t.mbind(start, npages * PAGE, mode, nodes, maxnode)
            err = None
        except pysim.SyscallError as e:
            err = e.errno
        bad = not any(mapped) or (mode != pysim.MPOL_DEFAULT and not all(mapped))
        assert err == (errno.EFAULT if bad else None), f"mbind errno {err}, mapped {mapped}"
        t.mm.vmas.check_invariants()

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET,
          length=st.sampled_from(LENGTHS), ms=st.booleans())
    def mincore_or_msync(self, ti, region, off, length, ms):
        """mincore (ENOMEM at the first hole, a byte for each page before it) or
        msync(MS_SYNC) (ENOMEM when any page is unmapped, the rest walked)."""
        t, sh = self.mapper(ti)
        start, npages = self.target(sh, region, off), length
        mapped = [a in sh.pages for a in sh.pages_of(start, npages)]
        vec = []
        try:
            if ms:
                t.msync(start, npages * PAGE, pysim.MS_SYNC)
            else:
                t.mincore(start, npages * PAGE, vec)
            err = None
        except pysim.SyscallError as e:
            err = e.errno
        assert err == (None if all(mapped) else errno.ENOMEM), f"errno {err}, {mapped}"
        if not ms:
            assert len(vec) == len(list(itertools.takewhile(bool, mapped)))

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), cpu=st.integers(0, 2))
    def fork(self, ti, cpu):
        """fork: the child has the parent's mappings and protections (the test's shadow
        is copied); the parent's pages are write-protected with its flush."""
        t, sh = self.mapper(ti)
        if len(self.threads) >= 8:
            return
        proc = next(p for p in self.procs if t in p.threads)
        child = proc.fork(t, cpu=cpu % len(self.m.cpus))
        csh = Shadow()
        csh.pages, csh.regions = dict(sh.pages), list(sh.regions)
        self.procs.append(child)
        self.threads.append((child.threads[0], csh))

    # -------------------------------------------------------------- accesses
    def _access(self, ti, accesses):
        t, sh = self.mapper(ti)
        regions = sh.regions
        vas, kinds, ok = [], [], []
        for region, off, byte, kind in accesses:
            start, npages = regions[region % len(regions)]
            # one page either side of the region too: maybe unmapped, maybe a neighbour
            page = start + (off % (npages + 2) - 1) * PAGE
            entry = sh.pages.get(page)
            vas.append(page + byte)
            kinds.append(kind)
            ok.append(entry is not None and allowed(entry[0], kind))
        if len(vas) == 1:
            r = (t.read, t.write, t.fetch)[KINDS.index(kinds[0])](vas[0])
        else:
            r = t.access(np.array(vas, dtype=np.uint64), np.array(kinds, dtype=np.uint8))
        segv = {f[0] for f in r.faults if f[3] == "sigsegv"}
        for i, (va, kind, good) in enumerate(zip(vas, kinds, ok)):
            assert (i in segv) == (not good), \
                (f"access {i} ({'RWX'[kind]} 0x{va:x}) "
                 f"{'SIGSEGV' if i in segv else 'went through'}; the protection "
                 f"{'allows' if good else 'forbids'} it (faults {r.faults})")
        assert r.value == sum(ok)

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8), region=REGION, off=OFFSET, byte=st.sampled_from((0, 8, 2048)),
          kind=st.sampled_from(KINDS))
    def access_one(self, ti, region, off, byte, kind):
        """t.read / t.write / t.fetch."""
        self._access(ti, [(region, off, byte, kind)])

    @precondition(has_regions)
    @rule(ti=st.integers(0, 8),
          accesses=st.lists(st.tuples(REGION, OFFSET, st.sampled_from((0, 8, 2048)),
                                      st.sampled_from(KINDS)), min_size=2, max_size=8))
    def access_batch(self, ti, accesses):
        """t.access(vas, kinds): one batch through the core."""
        self._access(ti, accesses)

    # -------------------------------------------------------------- scheduling
    @rule(ti=st.integers(0, 8), what=st.sampled_from(("run", "sleep", "busy")))
    def schedule(self, ti, what):
        """t.run() (context switch to it), t.sleep() (lazy TLB), t.busy() (user loop)."""
        getattr(self.thread(ti)[0], what)()

    # -------------------------------------------------------------- invariant
    @invariant()
    def no_stale_translation(self):
        if self.m is not None:
            assert self.m.check() == []


@pytest.mark.parametrize("knobs", KNOBS,
                         ids=lambda k: ",".join(f"{n}={int(v)}" for n, v in k.items()))
def test_kernel_state_machine(knobs):
    """No SafetyViolation, errnos and SIGSEGVs as the protections say, under every
    pti/invpcid/pcid combination."""
    # ~2 s per case; one bug shrunk at a time (shrinking several distinct failures of
    # one run can take Hypothesis's full five minutes)
    run_state_machine_as_test(
        lambda: KernelStateMachine(knobs),
        settings=settings(max_examples=100, stateful_step_count=40, deadline=None,
                          report_multiple_bugs=False,
                          suppress_health_check=[HealthCheck.too_slow]))


class InvlpgbStateMachine(KernelStateMachine):
    """The same rules on milan (INVLPGB), 4-5 CPUs, v6.15 or v6.18; every thread's tid
    is a multiple of 32, so consider_global_asid() samples its mm while jiffies & 0x1f
    == 0 (early in a run)."""

    @initialize(profile=st.sampled_from(("v6.15", "v6.18")), ncpus=st.integers(4, 5),
                placements=st.lists(st.sampled_from((0b11111, 0b01111, 0b11110, 0b00011)),
                                    min_size=2, max_size=3))
    def setup(self, profile, ncpus, placements):
        self.m = pysim.Machine(cpus=ncpus, profile=profile, preset="milan",
                               checker="raise", **self.knobs)
        self.threads = []
        self.procs = []
        for mask in placements:
            cpus = [c for c in range(ncpus) if mask >> c & 1] or [0]
            proc, sh = self.m.process(), Shadow()
            self.procs.append(proc)
            for c in cpus:
                t = proc.thread(cpu=c)
                t.tid = 32 * len(self.threads)
                self.threads.append((t, sh))

    def teardown(self):
        if self.m is not None:
            GLOBAL_ASIDS_SEEN.append(any(mm.context.global_asid for mm in self.m.mms))


GLOBAL_ASIDS_SEEN = []


@pytest.mark.parametrize("pti", (False, True))
def test_kernel_state_machine_invlpgb(pti):
    """No SafetyViolation with INVLPGB broadcasts, global ASIDs and their transition;
    some examples reach a global ASID."""
    GLOBAL_ASIDS_SEEN.clear()
    run_state_machine_as_test(
        lambda: InvlpgbStateMachine(dict(pti=pti)),
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None,
                          report_multiple_bugs=False,
                          suppress_health_check=[HealthCheck.too_slow]))
    assert any(GLOBAL_ASIDS_SEEN), len(GLOBAL_ASIDS_SEEN)
