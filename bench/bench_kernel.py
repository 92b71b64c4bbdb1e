"""The kernel model's syscall path: mprotect driven from Python, small and large.

    python -m pytest bench/bench_kernel.py -q          (figures in the summary table)

* One-page mprotect calls per second: one thread alternates PROT_READ and
  PROT_READ|PROT_WRITE on a page written once, with 1 CPU, and with 2 CPUs where a
  second thread keeps the mm busy.  No write comes between the calls, so this is the
  cover letter's no-write case: mmots flushes (and with 2 CPUs sends an IPI) on every
  call, patched only on the first (ipis_per_call shows it).  Checker on (the default)
  and off.  This is the whole Python path: syscall entry, VMA lookup, mprotect_fixup,
  change_range in C, the gather, the flush decision, the TLB operations on every CPU
  and the end-of-op bookkeeping.
* One mprotect over 1 GiB (262,144 populated 4K PTEs in one VMA), alternating
  PROT_READ and PROT_READ|PROT_WRITE, under mmots and patched: ms per call and ns per
  PTE.  The page walk is in C; the figure is dominated by change_range.

Benchmarks report; they never assert on speed.
"""
import pytest

import pysim
from pysim.constants import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE

RW = pysim.PROT_READ | pysim.PROT_WRITE
PROTS = (pysim.PROT_READ, RW)
GIB_PAGES = 262_144


def _machine(profile: str, cpus: int, checker: bool):
    m = pysim.Machine(cpus=cpus, preset="skylake", profile=profile, checker=checker)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    if cpus > 1:
        proc.thread(cpu=1).busy()
    return m, t0


def _alternating_mprotect(t0):
    """A one-page mapping written once, and a call that mprotects it to PROT_READ and
    PROT_READ|PROT_WRITE in turn; ipis() gives the IPIs sent per call so far (read from
    the machine's counters, so the timed call does nothing but the syscall)."""
    p = t0.mmap(4096, RW)
    t0.write(p)
    state = [1]
    sent0 = t0.cpu.kernel_counts["ipi_sent"]

    def run():
        k = state[0] ^ 1
        state[0] = k
        t0.mprotect(p, 4096, PROTS[k])

    def ipis():
        calls = t0.cpu.kernel_counts["syscalls"] - calls0
        return (t0.cpu.kernel_counts["ipi_sent"] - sent0) / max(1, calls)

    calls0 = t0.cpu.kernel_counts["syscalls"]
    return run, ipis


@pytest.mark.parametrize("checker", [True, False], ids=["checker", "nochecker"])
@pytest.mark.parametrize("cpus", [1, 2])
@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_mprotect_one_page(benchmark, report, profile, cpus, checker):
    m, t0 = _machine(profile, cpus, checker)
    run, ipis = _alternating_mprotect(t0)
    iterations = 2_000
    benchmark.pedantic(run, rounds=5, iterations=iterations, warmup_rounds=1)
    st = benchmark.stats.stats
    report("mprotect, one page (calls per second)", f"{profile}-{cpus}cpu-"
           f"{'checker' if checker else 'nochecker'}",
           calls_per_s_best=1.0 / st.min, calls_per_s_median=1.0 / st.median,
           us_per_call=st.min * 1e6,
           ipis_per_call=ipis())


@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_mprotect_1gib(benchmark, report, profile):
    m, t0 = _machine(profile, 1, False)
    p = t0.mmap(GIB_PAGES * 4096, RW, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)
    state = [1]
    last = [None]

    def run():
        k = state[0] ^ 1
        state[0] = k
        last[0] = t0.mprotect(p, GIB_PAGES * 4096, PROTS[k])

    benchmark.pedantic(run, rounds=10, iterations=2, warmup_rounds=1)
    st = benchmark.stats.stats
    ev = last[0].events
    report("mprotect, 1 GiB = 262,144 PTEs", profile,
           ms_per_call_best=st.min * 1e3, ms_per_call_median=st.median * 1e3,
           ns_per_pte=st.min / GIB_PAGES * 1e9,
           full_flushes=int(ev.get("nr_tlb_local_flush_all", 0)),
           sim_cycles=float(last[0].cycles))


# (case, profile, cpus, busy CPUs of the same mm, whether the other CPUs run another mm,
#  checker)
SCALING = [
    ("patched-1cpu", "patched", 1, 0, False, False),
    ("patched-2cpu-1busy", "patched", 2, 1, False, False),
    ("mmots-1cpu", "mmots", 1, 0, False, False),
    ("mmots-2cpu-1busy", "mmots", 2, 1, False, False),
    ("mmots-64cpu-63busy", "mmots", 64, 63, False, False),
    ("patched-256cpu-other-mm", "patched", 256, 0, True, False),
    ("patched-1cpu-checker", "patched", 1, 0, False, True),
    ("patched-256cpu-other-mm-checker", "patched", 256, 0, True, True),
]


@pytest.mark.parametrize("case,profile,cpus,busy,other_mm,checker", SCALING,
                         ids=[c[0] for c in SCALING])
def test_mprotect_scaling(benchmark, report, case, profile, cpus, busy, other_mm, checker):
    """One-page mprotect (checker off) as the machine grows: an operation costs what it
    touches.  mmots sends one IPI per busy CPU on every call; under patched the page is
    written once and no call after the first needs a flush, so the 2-CPU case's one
    remote flush happens in the warm-up; 256 CPUs running another mm are never touched,
    not even by the checker (it scans the operation's mm and the CPUs it touched)."""
    m = pysim.Machine(cpus=cpus, preset="skylake", profile=profile, checker=checker)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    if other_mm:
        other = m.process()
        for c in range(1, cpus):
            other.thread(cpu=c).busy()
    for c in range(1, busy + 1):
        proc.thread(cpu=c).busy()
    run, ipis = _alternating_mprotect(t0)
    benchmark.pedantic(run, rounds=5, iterations=2_000 if cpus < 64 else 500,
                       warmup_rounds=1)
    st = benchmark.stats.stats
    report("mprotect, one page, as the machine grows (us per call)", case,
           us_per_call_best=st.min * 1e6, us_per_call_median=st.median * 1e6,
           ipis_per_call=ipis())
