"""A Machine behaves like an object: it pickles mid-run and the runs after the round
trip give the same results, its counters reset, numpy integers are accepted where
Python integers are, and every Thread syscall reports an OpResult."""
import pickle

import numpy as np
import pytest

import pysim
from pysim import MADV_DONTNEED, PROT_READ, PROT_WRITE

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def _scenario(**kw):
    m = pysim.Machine(cpus=3, profile="patched", **kw)
    a, b = m.process(), m.process()
    ta0, ta1 = a.thread(cpu=0), a.thread(cpu=1).busy()
    tb = b.thread(cpu=2)
    p = ta0.mmap(16 * PAGE, RW)
    ta0.write(p)
    ta1.write(p + PAGE)
    tb.mmap(4 * PAGE, RW)
    return m, ta0, ta1, tb, p


def _continue(ta0, ta1, tb, p):
    """Operations after the round trip; what they report, as plain data."""
    out = []
    for r in (ta0.mprotect(p, 16 * PAGE, PROT_READ), ta1.write(p + PAGE),
              ta0.mprotect(p, 16 * PAGE, RW), ta0.write(p), tb.read(tb.mm.vmas.vmas()[0].start),
              ta0.madvise(p, 2 * PAGE, MADV_DONTNEED), ta0.mprotect(p, PAGE, PROT_READ)):
        out.append((r.op, r.cpu, r.cycles, dict(r.events), r.cpu_cycles, r.faults))
    return out


@pytest.mark.parametrize("pti", [False, True])
def test_pickle_round_trip_mid_run_gives_the_same_results(pti):
    m, ta0, ta1, tb, p = _scenario(pti=pti, invpcid=not pti)
    blob = pickle.dumps((m, ta0, ta1, tb))
    expected = _continue(ta0, ta1, tb, p)
    m2, ta0b, ta1b, tbb = pickle.loads(blob)
    assert m2 is ta0b.machine and ta0b.cpu is m2.cpus[0] and ta0b.mm is m2.mms[0]
    assert _continue(ta0b, ta1b, tbb, p) == expected
    assert m2.counters().equals(m.counters())
    assert m2.check() == [] and m.check() == []


def test_pickle_keeps_cpu_tlb_state_and_the_cpumask():
    m, ta0, ta1, tb, p = _scenario()
    m2, ta0b, _, _ = pickle.loads(pickle.dumps((m, ta0, ta1, tb)))
    for c, c2 in zip(m.cpus, m2.cpus):
        assert (c.asids, c.loaded_asid, c.is_lazy, c.running_user) == \
            (c2.asids, c2.loaded_asid, c2.is_lazy, c2.running_user)
        assert c.tlb.entries()["va"].tolist() == c2.tlb.entries()["va"].tolist()
        assert (c.loaded_mm is None) == (c2.loaded_mm is None)
    assert m2.cpus[0].loaded_mm is ta0b.mm and ta0b.mm.cpumask == m.mms[0].cpumask


def test_reset_counters_zeroes_counts_but_keeps_state():
    m, ta0, ta1, tb, p = _scenario()
    assert m.counters()["syscalls"].sum() > 0
    m.keep_history = True
    ta0.mprotect(p, PAGE, PROT_READ)
    tlb_before = m.cpus[0].tlb.entries()["va"].tolist()
    m.reset_counters()
    df = m.counters()
    assert (df.drop(columns="cycles").to_numpy() == 0).all() and (df["cycles"] == 0).all()
    assert m.history == [] and m.cpus[0].tlb.entries()["va"].tolist() == tlb_before
    r = ta0.mprotect(p, PAGE, RW)                 # the state carries on: no fault, no flush
    assert m.counters()["syscalls"].tolist() == [1, 0, 0]
    assert r.events["flush_tlb_mm_range"] == 0


def test_reset_counters_inside_an_operation_is_refused():
    m, ta0, *_ = _scenario()
    op = m.begin(m.cpus[0], "x")
    with pytest.raises(pysim.PysimError):
        m.reset_counters()
    m.end(op)


def test_numpy_integers_are_integers():
    m = pysim.Machine(cpus=np.int64(2), seed=np.uint32(3))
    t = m.process().thread(cpu=np.int64(1))
    assert t.cpu.id == 1 and len(m.cpus) == 2
    p = t.mmap(np.int64(PAGE), np.int32(RW))
    assert t.mprotect(np.uint64(p), np.int64(PAGE), np.int8(PROT_READ)).value == 0


@pytest.mark.parametrize("bad", ["abc", 1.5, -1, True])
def test_bad_seed_and_cpus_are_config_errors(bad):
    with pytest.raises(pysim.ConfigError, match="seed"):
        pysim.Machine(seed=bad)
    with pytest.raises(pysim.ConfigError, match="cpus"):
        pysim.Machine(cpus=bad)


def test_every_syscall_reports_an_op_result():
    m = pysim.Machine(cpus=1)
    t = m.process().thread(cpu=0)
    p = t.mmap(2 * PAGE, RW)                        # mmap returns the address ...
    assert isinstance(t.last, pysim.OpResult) and t.last.value == p and t.last.op == "mmap"
    for r in (t.mprotect(p, PAGE, PROT_READ), t.madvise(p, PAGE, MADV_DONTNEED),
              t.write(p + PAGE), t.munmap(p, 2 * PAGE)):
        assert isinstance(r, pysim.OpResult)
        assert r.cpus == [0] and r.cycles == pytest.approx(sum(r.breakdown.values()))


@pytest.mark.parametrize("order", ["machine-first", "threads-first"])
def test_pickle_keeps_which_thread_runs_where(order):
    """CPU.current survives a round trip whatever order pickle rebuilds the objects in
    (a CPU can be restored before the thread it runs)."""
    m, ta0, ta1, tb, p = _scenario()
    objs = (m, ta0, ta1, tb) if order == "machine-first" else (ta1, tb, ta0, m)
    out = pickle.loads(pickle.dumps(objs))
    m2, ta0b, ta1b, tbb = out if order == "machine-first" else (out[3], out[2], out[0], out[1])
    assert [c.current for c in m2.cpus] == [ta0b, ta1b, tbb]
    assert ta1b.run() is ta1b and m2.cpus[1].running_user      # no switch: still current
