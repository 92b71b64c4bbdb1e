"""mmucore.stats and mmucore.tlbstate on their own: counters by enum (an unknown one
cannot be charged), an operation's rows cover exactly the CPUs it touched, and the
cpumask bitmap works past 64 CPUs."""
import numpy as np
import pytest

import mmucore
import pysim
from mmucore import stats, tlbstate
from pysim import PROT_READ, PROT_WRITE

RW = PROT_READ | PROT_WRITE


def test_unknown_counter_or_category_is_refused():
    acct = stats.OpAccount()
    s = stats.CpuStats(0, mmucore.TLB(mmucore.geometry("skylake")), acct)
    for bad in (-1, stats.N_KERNEL_COUNTERS):
        with pytest.raises(ValueError, match="kernel counter"):
            s.count(bad, 1)
    for bad in (-1, stats.N_CATEGORIES):
        with pytest.raises(ValueError, match="category"):
            s.charge(bad, 1.0)
    s.count(stats.K_SYSCALLS, 2)
    s.charge(stats.B_VMA, 7.5)
    assert s.kernel_count(stats.K_SYSCALLS) == 2 and s.kernel_cycles == 7.5


def test_rows_cover_the_touched_cpus_and_row_zero_is_their_sum():
    acct = stats.OpAccount()
    tlbs = [mmucore.TLB(mmucore.geometry("skylake")) for _ in range(4)]
    ss = [stats.CpuStats(i, t, acct) for i, t in enumerate(tlbs)]
    ss[3].count(stats.K_IPI_SENT, 5)                  # before the window: not in it
    acct.begin(ss[2])
    ss[0].charge(stats.B_FLUSH, 10.0)
    tlbs[0].invlpg(0x1000)
    ss[2].count(stats.K_SYSCALLS, 1)
    rows = acct.finish()
    col = stats.COLUMNS
    assert rows[1:, col["cpu"]].tolist() == [2, 0]
    assert np.allclose(rows[0, 1:], rows[1:, 1:].sum(axis=0))
    k = col["kernel"] + stats.K_SYSCALLS
    assert (rows[1, k], rows[2, k]) == (1, 0)
    assert rows[2, col["cycles"]] == 10.0
    inv = col["hw"] + mmucore.COUNTER_INDEX["invlpg"]
    assert rows[2, inv] == 1 and rows[0, col["kernel"] + stats.K_IPI_SENT] == 0


def test_an_op_on_a_big_machine_touches_only_its_cpu():
    m = pysim.Machine(cpus=256, checker=False)
    other = m.process()
    for c in range(1, 256):
        other.thread(cpu=c).busy()
    t = m.process().thread(cpu=0)
    p = t.mmap(4096, RW)
    t.write(p)
    r = t.mprotect(p, 4096, PROT_READ)
    assert r.cpus == [0] and r.events["flush_tlb_mm_range"] == 1
    assert r.events["ipi_sent"] == 0 and r.rows.shape[0] == 2


def test_ipi_targets_join_the_op_in_the_order_reached():
    m = pysim.Machine(cpus=70, profile="mmots", checker=True)
    proc = m.process()
    t0 = proc.thread(cpu=5)
    for c in (69, 64, 1):
        proc.thread(cpu=c).busy()
    p = t0.mmap(4096, RW)
    t0.write(p)
    assert proc.mm.cpumask == {1, 5, 64, 69}
    assert 64 in proc.mm.context and 63 not in proc.mm.context
    r = t0.mprotect(p, 4096, PROT_READ)
    assert r.cpus == [5, 1, 64, 69] and r.events["ipi_sent"] == 3
    assert r.events["nr_tlb_remote_flush_received"] == 3


def test_a_context_belongs_to_one_machine_width():
    m = pysim.Machine(cpus=2)
    t = m.process().thread(cpu=0)
    stray = tlbstate.MMContext(99, 3)
    with pytest.raises(ValueError, match="3 CPUs"):
        m.arch.flush.switch_mm(t.cpu.tlbstate, stray)
    with pytest.raises(ValueError, match="stride"):
        m.arch.flush.flush_tlb_mm_range(t.cpu.tlbstate, t.mm.context, 0, 4096, 13, False)
