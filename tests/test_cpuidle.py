"""Idle states on the timeline (pysim.machine.cpuidle): the governor's choice, leave_mm()
before CPUIDLE_FLAG_TLB_FLUSHED states, and the exit latency a flush IPI waits for."""
import pytest

import pysim
from mmucore import stats
from pysim.errors import ConfigError
from pysim.machine import cpuidle

B = stats.BREAKDOWN_INDEX


def test_menu_picks_the_deepest_state_whose_target_residency_fits():
    s = cpuidle.SKX_CSTATES
    # residencies 0, 2, 20, 600 us: each sleep below gets the state worked out by hand
    picks = {0.5: "POLL", 2.0: "C1", 19.9: "C1", 20.0: "C1E", 599.0: "C1E",
             600.0: "C6", 5000.0: "C6"}
    assert {us: cpuidle.menu_select(s, us).name for us in picks} == picks
    assert [st.tlb_flushed for st in s] == [False, False, False, True]
    with pytest.raises(ConfigError):
        cpuidle.table("nhm")


def _rig(**kernel):
    """CPUs 0 and 1 run one mm on a 2-CPU skylake under v6.14 with `kernel`'s mask
    rules; CPU 1's thread then blocks (lazy TLB) and its CPU enters C6 (leave_mm)."""
    m = pysim.Machine(cpus=2, preset="skylake", profile="v6.14", checker=False, **kernel)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    t0.run()
    t1.run()
    t1.sleep()
    m.arch.flush.leave_mm(m.cpus[1].tlbstate)
    return m, proc.mm


def test_leave_mm_clears_the_bit_before_the_lazy_mask_and_keeps_it_after():
    m, mm = _rig(lazy_cpumask=False, trim_cpumask=False)
    ts = m.cpus[1].tlbstate
    assert ts.loaded_mm is None and not ts.is_lazy and 1 not in mm.context
    m, mm = _rig(trim_cpumask=False)                  # 209954cbc7d0: the bit stays
    ts = m.cpus[1].tlbstate
    assert ts.loaded_mm is None and not ts.is_lazy and 1 in mm.context
    m.arch.flush.leave_mm(ts)                         # already on init_mm: nothing
    assert ts.loaded_mm is None and 1 in mm.context


@pytest.mark.parametrize("kernel, ipis", [
    ({"lazy_cpumask": False, "trim_cpumask": False}, 0),   # bit gone at leave_mm
    ({"trim_cpumask": False}, 1),                          # not lazy, in the mask
    ({}, 0),                                               # should_flush_tlb skips it
])
def test_a_flush_after_c6_ipis_the_cpu_only_under_the_lazy_mask_alone(kernel, ipis):
    m, mm = _rig(**kernel)
    c0 = m.cpus[0]
    mm.context.next_trim_cpumask = m.arch.flush.jiffies + 10 ** 6   # no trim now
    before = m.counter_array()["ipi_sent"].sum()
    m.arch.flush.flush_tlb_mm_range(c0.tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    assert m.counter_array()["ipi_sent"].sum() - before == ipis
    # eager: gone at leave_mm; lazy alone: the IPI found it on init_mm and cleared it
    # (a wrong-CPU flush); lazy+trim: skipped, so the bit stays until a trim
    assert (1 in mm.context) == (kernel == {})
    assert m.counter_array()["tlb_remote_wrong_cpu"].sum() == ipis


def test_an_ipi_to_a_cpu_in_c6_waits_its_exit_latency():
    m, mm = _rig(trim_cpumask=False)
    c0, c1 = m.cpus[0], m.cpus[1]
    for c in m.cpus:
        c.tlbstate.reset_time(-c.stats.clock)
    m.arch.set_timeline(True)
    mm.context.next_trim_cpumask = m.arch.flush.jiffies + 10 ** 6
    exit_c6 = 133.0 * m.preset.ghz * 1e3              # skx C6 exit_latency, in cycles
    c1.tlbstate.sleep_until(1e12, exit_c6)
    m.arch.flush.flush_tlb_mm_range(c0.tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    (start, _end), = c1.tlbstate.irq_bookings
    cost = m.cfg.cost
    # sent at the flush's start (time 0 plus what CPU 0 spent before the sends):
    # the handler starts after delivery and C6's exit, not the preset's idle_exit
    assert start >= exit_c6 + cost.ipi_deliver
    assert start < exit_c6 + cost.ipi_deliver + cost.ipi_send + 20_000
    assert c0.stats.kernel_cycles_array()[B["ipi"]] > exit_c6


def _rig3(timeline=True):
    """_rig on three CPUs under 209954cbc7d0 alone: CPUs 0 and 1 run the mm, CPU 2 ran
    it, left it for C6 (leave_mm); with timeline, CPUs start one at time 0 and CPU 2
    sleeps in C6 there."""
    m = pysim.Machine(cpus=3, preset="skylake", profile="v6.14", checker=False,
                      trim_cpumask=False)
    proc = m.process()
    threads = [proc.thread(cpu=c) for c in range(3)]
    for t in threads:
        t.run()
    threads[2].sleep()
    m.arch.flush.leave_mm(m.cpus[2].tlbstate)
    proc.mm.context.next_trim_cpumask = m.arch.flush.jiffies + 10 ** 6
    exit_c6 = 133.0 * m.preset.ghz * 1e3
    if timeline:
        for c in m.cpus:
            c.tlbstate.reset_time(-c.stats.clock)
        m.arch.set_timeline(True)
        m.cpus[2].tlbstate.sleep_until(1e12, exit_c6)
    return m, proc.mm, exit_c6


def test_a_wrong_cpu_bit_stays_set_until_its_handler_runs():
    """flush_tlb_func() clears a wrong CPU's bit when the handler runs, after the CPU
    left C6: a flush sent before that targets the CPU again (and clears it again), one
    sent after finds the bit gone.  Off the timeline the clear is at once."""
    m, mm, exit_c6 = _rig3()
    c0, c1, c2 = (c.tlbstate for c in m.cpus)
    flush = m.arch.flush.flush_tlb_mm_range
    wrong = lambda: int(m.counter_array()["tlb_remote_wrong_cpu"].sum())   # noqa: E731
    flush(c0, mm.context, 0x1000, 0x2000, 12, False)       # at 0: CPU 2 still in C6
    assert wrong() == 1 and 2 in mm.context                # cleared only when it runs
    (start, end), = c2.irq_bookings
    assert start >= exit_c6
    assert c1.now < start                                  # CPU 1 flushes before that
    flush(c1, mm.context, 0x3000, 0x4000, 12, False)
    assert wrong() == 2                                    # the bit was still set
    assert c0.now > end                                    # CPU 0 waited out C6's exit
    flush(c0, mm.context, 0x5000, 0x6000, 12, False)       # after the first handler
    assert wrong() == 2 and 2 not in mm.context
    # off the timeline, the first flush's handler clears it at once
    m, mm, _ = _rig3(timeline=False)
    for c in (0, 1):
        m.arch.flush.flush_tlb_mm_range(m.cpus[c].tlbstate, mm.context, 0x1000, 0x2000,
                                        12, False)
    assert int(m.counter_array()["tlb_remote_wrong_cpu"].sum()) == 1
    assert 2 not in mm.context


def test_a_cpu_back_on_the_mm_before_the_wrong_cpu_handler_keeps_its_bit():
    """switch_mm_irqs_off() to the mm before the pending clear's handler ran: the
    handler would find the mm loaded, so the bit stays (and is not written again)."""
    m, mm, exit_c6 = _rig3()
    c0, c2 = m.cpus[0].tlbstate, m.cpus[2].tlbstate
    m.arch.flush.flush_tlb_mm_range(c0, mm.context, 0x1000, 0x2000, 12, False)
    assert 2 in mm.context
    (start, _end), = c2.irq_bookings
    c2.wake(start - 1000.0)                 # woken for its thread just before that
    m.arch.flush.switch_mm(c2, mm.context)
    assert c0.now > start                   # CPU 0's next flush comes after it
    m.arch.flush.flush_tlb_mm_range(c0, mm.context, 0x3000, 0x4000, 12, False)
    assert 2 in mm.context and c2.loaded_mm is not None
    assert int(m.counter_array()["tlb_remote_wrong_cpu"].sum()) == 1


def _rig_late(lazy_cpumask, late=True):
    """Three CPUs running one mm at time 0 on the timeline (6.14's mask rules, or the
    eager ones before it), no trim; CPU 0 flushes a page, so CPUs 1 and 2 get IPIs
    whose handlers run after the sends."""
    m = pysim.Machine(cpus=3, preset="skylake", profile="v6.14", checker=False,
                      trim_cpumask=False, lazy_cpumask=lazy_cpumask)
    proc = m.process()
    threads = [proc.thread(cpu=c) for c in range(3)]
    for t in threads:
        t.run()
    proc.mm.context.next_trim_cpumask = m.arch.flush.jiffies + 10 ** 6
    for c in m.cpus:
        c.tlbstate.reset_time(-c.stats.clock)
    m.arch.set_timeline(True)
    m.arch.flush.late_lazy_ipis = late
    m.arch.flush.flush_tlb_mm_range(m.cpus[0].tlbstate, proc.mm.context, 0x1000, 0x2000,
                                    12, False)
    return m, proc, threads


def _at(ts, t):
    """Move a CPU's timeline clock to t (its handler calendar starts empty again)."""
    ts.reset_time(0.0)
    ts.reset_time(t - ts.now)


@pytest.mark.parametrize("lazy_cpumask", [False, True])
def test_a_flush_ipi_taken_after_its_cpu_went_lazy_leaves_the_mm(lazy_cpumask):
    """native_flush_tlb_multi() picks CPU 2 while it runs the mm; its thread blocks
    before the IPI's handler runs, so the handler finds it lazy and flush_tlb_func()
    switches it to init_mm (counted tlb_lazy_ipi).  Before 6.14 that clears its bit;
    with the lazy mask the bit stays, so the next flush reaches the idle CPU (wrong
    CPU).  The switch happens at the handler's time: a flush sent before it still
    skips the lazy CPU."""
    m, proc, threads = _rig_late(lazy_cpumask)
    c0, c1, c2 = (c.tlbstate for c in m.cpus)
    ctx = proc.mm.context
    count = lambda k: int(m.counter_array()[k].sum())       # noqa: E731
    (start, end), = c2.irq_bookings
    assert c2.now < start
    threads[2].sleep()                                      # enter_lazy_tlb before it
    assert c2.loaded_mm is ctx and count("tlb_lazy_ipi") == 0
    assert c1.now < start                                   # CPU 1 flushes before it
    m.arch.flush.flush_tlb_mm_range(c1, ctx, 0x3000, 0x4000, 12, False)
    assert count("tlb_lazy_ipi") == 0 and c2.loaded_mm is ctx    # still lazy: skipped
    _at(c0, end + 1)                                        # and CPU 0 after it ran
    sent = count("ipi_sent")
    m.arch.flush.flush_tlb_mm_range(c0, ctx, 0x5000, 0x6000, 12, False)
    assert count("tlb_lazy_ipi") == 1 and c2.loaded_mm is None
    assert count("ipi_sent") - sent == (2 if lazy_cpumask else 1)
    assert count("tlb_remote_wrong_cpu") == (1 if lazy_cpumask else 0)
    assert (2 in ctx) == lazy_cpumask          # the wrong-CPU clear is still pending


def test_a_cpu_woken_before_the_late_ipi_takes_it_running_the_mm():
    """The thread runs again before the handler: the IPI finds the mm loaded and the
    CPU not lazy, an ordinary flush, and no switch to init_mm."""
    m, proc, threads = _rig_late(True)
    c2 = m.cpus[2].tlbstate
    (start, end), = c2.irq_bookings
    threads[2].sleep()
    threads[2].run()                                        # woken at once
    _at(m.cpus[0].tlbstate, end + 1)
    m.arch.flush.flush_tlb_mm_range(m.cpus[0].tlbstate, proc.mm.context, 0x5000, 0x6000,
                                    12, False)
    assert int(m.counter_array()["tlb_lazy_ipi"].sum()) == 0
    assert c2.loaded_mm is proc.mm.context and not c2.is_lazy


def test_late_lazy_ipis_off_keep_the_send_time_rule():
    """With late_lazy_ipis off (the default) the IPI acts on the state the send saw:
    the CPU that went lazy before its handler keeps the mm."""
    m, proc, threads = _rig_late(True, late=False)
    c2 = m.cpus[2].tlbstate
    (start, end), = c2.irq_bookings
    threads[2].sleep()
    _at(m.cpus[0].tlbstate, end + 1)
    m.arch.flush.flush_tlb_mm_range(m.cpus[0].tlbstate, proc.mm.context, 0x5000, 0x6000,
                                    12, False)
    assert int(m.counter_array()["tlb_lazy_ipi"].sum()) == 0
    assert c2.loaded_mm is proc.mm.context and c2.is_lazy
