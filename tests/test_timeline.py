"""The timeline (pysim.machine.timeline): CPUs at once.  Hand-worked cases for each rule
(IPI handlers queue on their target, a handler fills its target's own ack wait,
mmap_lock readers wait for a writer, tlb_gen's line is contended), the calendar that
books shared resources, and the sequential API as the case of one runnable thread."""
import numpy as np
import pytest

import pysim
from mmucore import stats
from mmucore.calendar import Calendar
from pysim import MADV_DONTNEED, PROT_READ, PROT_WRITE
from pysim.errors import ConfigError
from pysim.workloads import will_it_scale

RW = PROT_READ | PROT_WRITE
B = stats.BREAKDOWN_INDEX


# ------------------------------------------------------------------ the calendar
def test_calendar_books_the_first_gap_at_or_after_the_request():
    c = Calendar()
    assert c.fit(100.0, 10.0) == 100.0
    assert c.fit(95.0, 10.0) == 110.0          # [95, 105) overlaps [100, 110)
    assert c.fit(50.0, 10.0) == 50.0           # an earlier gap stays usable
    assert c.fit(55.0, 50.0) == 120.0          # too long for [60, 100)
    assert c.bookings == [(50.0, 60.0), (100.0, 110.0), (110.0, 120.0), (120.0, 170.0)]


def test_a_line_costs_a_transfer_only_when_another_cpu_wrote_it_last():
    line = Calendar()
    assert line.write(0, 0.0, 50.0) == 0.0      # nobody had it: as if ours
    assert line.write(1, 10.0, 50.0) == 50.0    # moves to CPU 1: [10, 60)
    assert line.write(0, 60.0, 50.0) == 50.0    # and back: [60, 110)
    assert line.write(0, 60.0, 50.0) == 0.0     # still ours
    assert line.write(1, 110.0, 50.0) == 50.0   # moves: free at 110, so no wait
    assert line.write(2, 120.0, 50.0) == 90.0   # waits for [110, 160), then moves
    assert line.owner == 2


def test_calendar_forgets_only_its_oldest_bookings():
    c = Calendar()
    for i in range(300):
        c.fit(i * 10.0, 5.0)
    held = c.bookings
    assert len(held) == 256 and held[0] == (440.0, 445.0) and held[-1] == (2990.0, 2995.0)
    assert c.queued(2000.0) == 100 and c.queued(0.0) == 256
    with pytest.raises(ValueError, match="duration"):
        c.fit(0.0, -1.0)


# ------------------------------------------------------------------ the shootdown path
def _flush_rig(cacheline=0.0):
    """CPUs 1 and 2 run one mm; CPUs 0 and 3 are initiators outside it; time 0 on all."""
    preset = pysim.get_preset("zen3", cacheline_transfer=cacheline)
    m2 = pysim.Machine(cpus=4, preset=preset, profile="v6.2", checker=False)
    proc = m2.process()
    proc.thread(cpu=1)
    proc.thread(cpu=2)
    for c in m2.cpus:
        c.tlbstate.reset_time(-c.stats.clock)
    m2.arch.set_timeline(True)
    return m2, proc.mm


def _ipi_cycles(cpu):
    return cpu.stats.kernel_cycles_array()[B["ipi"]]


def _flush_cycles(cpu):
    return cpu.stats.kernel_cycles_array()[B["flush"]]


def test_two_flushes_at_once_queue_their_handlers_on_the_common_targets():
    m, mm = _flush_rig()
    f = m.arch.flush
    c0, c1, c3 = m.cpus[0], m.cpus[1], m.cpus[3]
    f.flush_tlb_mm_range(c0.tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    w = c1.tlbstate.now                          # CPU 1's first handler, all of it
    f.flush_tlb_mm_range(c3.tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    # same work before the IPIs, same arrival: CPU 3's handlers start when CPU 0's end
    (s0, e0), (s1, e1) = c1.tlbstate.irq_bookings
    assert s1 == e0 and e0 - s0 == pytest.approx(w)
    assert _ipi_cycles(c3) - _ipi_cycles(c0) == pytest.approx(e1 - e0)
    cost = m.cfg.cost
    # the initiator's wait: delivery, CPU 1's handler and the ack (the sends are work)
    assert _ipi_cycles(c0) == pytest.approx(cost.ipi_deliver + w + cost.ipi_ack)
    assert _flush_cycles(c0) == pytest.approx(_flush_cycles(c3))


def test_off_the_timeline_the_same_flushes_do_not_queue():
    m, mm = _flush_rig()
    m.arch.set_timeline(False)
    f = m.arch.flush
    f.flush_tlb_mm_range(m.cpus[0].tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    f.flush_tlb_mm_range(m.cpus[3].tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    assert _ipi_cycles(m.cpus[3]) == _ipi_cycles(m.cpus[0])
    assert m.cpus[1].tlbstate.irq_bookings == []


def test_flushers_contend_for_the_tlb_gen_line():
    m, mm = _flush_rig(cacheline=70.0)
    f = m.arch.flush
    f.flush_tlb_mm_range(m.cpus[0].tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    f.flush_tlb_mm_range(m.cpus[3].tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    lock = [c.stats.kernel_cycles_array()[B["lock"]] for c in m.cpus]
    assert lock[0] == 0.0                       # the first writer: nothing to move
    assert lock[3] == 70.0                      # the line moves from CPU 0 to CPU 3


def test_a_line_from_another_last_level_cache_costs_the_remote_transfer():
    line = Calendar()
    assert line.write(0, 0.0, 50.0, llc=0, remote=120.0) == 0.0
    assert line.write(1, 200.0, 50.0, llc=0, remote=120.0) == 50.0     # same LLC
    assert line.write(2, 400.0, 50.0, llc=1, remote=120.0) == 120.0    # from LLC 0
    assert line.write(3, 600.0, 50.0, llc=1, remote=120.0) == 50.0     # LLC 1 again


@pytest.mark.parametrize("ncpus, per_llc, smt, llcs", [
    (8, 0, False, [0] * 8),
    (8, 4, False, [0, 0, 0, 0, 1, 1, 1, 1]),
    (8, 2, True, [0, 0, 1, 1, 0, 0, 1, 1]),        # CPUs i and i + 4 are one core
    (72, 8, True, [0, 4, 0, 4]),                  # CPUs 0, 35, 36, 71 of a 36-core Milan
])
def test_cpus_are_placed_in_last_level_caches_as_linux_numbers_them(ncpus, per_llc, smt,
                                                                     llcs):
    from pysim.machine.cpu import llc_of
    ids = range(ncpus) if ncpus == 8 else (0, 35, 36, 71)
    assert [llc_of(i, ncpus, per_llc, smt) for i in ids] == llcs


def test_ipis_to_another_last_level_cache_cost_the_sender_more():
    sent = {}
    for per_llc in (0, 1):
        preset = pysim.get_preset("zen3", cacheline_transfer=50.0, cacheline_remote=200.0,
                                  cores_per_llc=per_llc)
        m = pysim.Machine(cpus=4, preset=preset, profile="v6.2", checker=False)
        proc = m.process()
        for c in (1, 2):
            proc.thread(cpu=c)
        for c in m.cpus:
            c.tlbstate.reset_time(-c.stats.clock)
        m.arch.set_timeline(True)
        m.arch.flush.flush_tlb_mm_range(m.cpus[0].tlbstate, proc.mm.context, 0x1000,
                                        0x2000, 12, False)
        sent[per_llc] = _flush_cycles(m.cpus[0])     # the sends are flush work
    # one LLC per core: both targets' call queues are remote lines, 150 more each
    assert [c.llc for c in m.cpus] == [0, 1, 2, 3]
    assert sent[1] - sent[0] == pytest.approx(2 * 150.0)


def test_a_handler_that_arrives_during_its_targets_ack_wait_fills_the_wait():
    m, mm = _flush_rig()
    f = m.arch.flush
    c0, c1, c2 = m.cpus[0], m.cpus[1], m.cpus[2]
    # CPU 1 flushes first: it waits for CPU 2's ack
    f.flush_tlb_mm_range(c1.tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    wait_before = _ipi_cycles(c1)
    t1 = c1.tlbstate.now
    # CPU 0's flush reaches CPU 1 while CPU 1 was still waiting for its ack
    f.flush_tlb_mm_range(c0.tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    (start, end), = c1.tlbstate.irq_bookings
    assert start < t1                            # it arrived inside the wait
    # only the part of the handler past the end of the wait delays CPU 1
    assert c1.tlbstate.now == pytest.approx(max(t1, end))
    assert _ipi_cycles(c1) == pytest.approx(wait_before - (min(end, t1) - start))
    assert c1.stats.kernel_cycles_array()[B["ipi_handler"]] > 0


# ------------------------------------------------------------------ programs
def _one_madvise(t, addr):
    yield t.madvise(addr, 4096, MADV_DONTNEED)


def _write_dontneed_read(t, addr, n):
    for _ in range(n):
        yield t.write(addr)
        yield t.madvise(addr, 4096, MADV_DONTNEED)
        yield t.read(addr)
        t.tick()


def test_one_thread_on_the_timeline_costs_what_the_sequential_calls_cost():
    def machine():
        m = pysim.Machine(cpus=2, preset="zen3", profile="v6.2", pti=True, checker=True)
        proc = m.process()
        t = proc.thread(cpu=0)
        proc.thread(cpu=1).busy()
        return m, t, t.mmap(4096, RW)
    m, t, p = machine()
    for _ in range(5):
        t.write(p); t.madvise(p, 4096, MADV_DONTNEED); t.read(p)
    seq = [c.stats.clock for c in m.cpus]
    m, t, p = machine()
    tl = m.timeline()
    tl.spawn(t, _write_dontneed_read, p, 5)
    before = m.cpus[0].stats.clock
    res = tl.run()
    assert [c.stats.clock for c in m.cpus] == seq
    assert res.tasks[0].ops == 5 and res.tasks[0].requests == 15
    assert res.end - res.start == pytest.approx(seq[0] - before)


def test_a_reader_sleeps_until_the_writers_release_wakes_it():
    m = pysim.Machine(cpus=2, preset="zen3", profile="v6.2", checker=False)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(1 << 20, RW)                          # nothing populated: no flushes

    def writer(t):
        yield t.mprotect(p, 1 << 20, PROT_READ)

    tl = m.timeline()
    tl.spawn(t0, writer)
    tl.spawn(t1, _one_madvise, p)
    start = max(c.stats.clock for c in m.cpus)
    clock1, clock0 = m.cpus[1].stats.clock, m.cpus[0].stats.clock
    res = tl.run()
    writer_end = res.tasks[0].end
    cost = m.cfg.cost
    lock0 = m.cpus[0].stats.kernel_cycles_array()[B["lock"]]
    assert res.start == start and res.tasks[1].sleeps == 1
    assert proc.mm.mmap_lock.slept == proc.mm.mmap_lock.woken == 1
    # CPU 0 ran first and whole; CPU 1's down_read found the writer done later than
    # now, took the slow path (one write to the count line CPU 0 wrote last) and slept.
    # The release woke it: CPU 0's wake_up_q paid ttwu and told CPU 1 when it ended;
    # CPU 1 left its idle state (the preset's one, idle_exit), was scheduled
    # (lock_handoff) and ran its madvise.
    assert lock0 == cost.ttwu                           # the writer: line writes free
    pre = cost.cacheline_transfer
    woke = writer_end + cost.idle_exit + cost.lock_handoff
    spent = m.cpus[1].stats.clock - clock1
    assert m.cpus[1].tlbstate.now == pytest.approx(woke + spent - pre)
    assert res.cpus().loc[1, "idle"] == pytest.approx(woke - start - pre)
    assert m.cpus[1].tlbstate.idle_until == pytest.approx(woke)
    assert m.cpus[0].stats.clock - clock0 == pytest.approx(writer_end - start)


def test_an_ipi_to_a_sleeping_cpu_waits_for_it_to_wake():
    m, mm = _flush_rig()
    f = m.arch.flush
    c1 = m.cpus[1]
    f.flush_tlb_mm_range(m.cpus[0].tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    awake = _ipi_cycles(m.cpus[0])
    c1.tlbstate.idle_until = 1e12                     # CPU 1 sleeps (not lazy: it gets it)
    f.flush_tlb_mm_range(m.cpus[3].tlbstate, mm.context, 0x1000, 0x2000, 12, False)
    # CPU 3's flush waits the wake-up on top of what CPU 0's did (its handlers come
    # after CPU 0's on CPU 2, but CPU 1's wake-up is longer than that)
    assert _ipi_cycles(m.cpus[3]) > awake + m.cfg.cost.idle_exit - 1


def test_runs_are_deterministic_and_report_every_cpu():
    def once():
        r = will_it_scale.run("tlb_flush2", "threads", threads=4, iterations=60,
                              preset="zen3", profile="v6.2")
        return {k: v for k, v in r.items() if not k.startswith("wall")}
    a, b = once(), once()
    # the run ends when the first thread has done its 60: the others are counted up
    # to then (each has done at least one loop)
    assert a == b and 4 < a["iterations"] <= 240


def test_threads_mode_shoots_down_the_others_and_processes_mode_does_not():
    th = will_it_scale.run("tlb_flush2", "threads", threads=4, iterations=100)
    pr = will_it_scale.run("tlb_flush2", "processes", threads=4, iterations=100)
    # every flush goes to the three other CPUs, unless one sleeps (lazy) on mmap_lock
    assert 2 * th["flush_tlb_mm_range"] < th["ipi_sent"] <= 3 * th["flush_tlb_mm_range"]
    assert pr["ipi_sent"] == 0 and pr["cycles_ipi_handler"] == 0
    assert th["cycles_ipi_handler"] > 0 and th["cycles_ipi_wait"] > 0
    assert th["per_thread_ops"] < pr["per_thread_ops"]


def test_bad_programs_and_bindings_are_refused():
    m = pysim.Machine(cpus=2, checker=False)
    proc = m.process()
    t = proc.thread(cpu=0)
    tl = m.timeline()
    with pytest.raises(ConfigError, match="generator"):
        tl.spawn(t, lambda calls: 3)
    tl.spawn(t, _one_madvise, 0x1000)
    with pytest.raises(ConfigError, match="already runs"):
        tl.spawn(t, _one_madvise, 0x1000)
    other = pysim.Machine(cpus=1, checker=False).process().thread(cpu=0)
    with pytest.raises(ConfigError, match="not a thread of this machine"):
        tl.spawn(other, _one_madvise, 0x1000)
    with pytest.raises(ConfigError, match="no programs"):
        m.timeline().run()


def test_switches_write_mm_cpumask_eagerly_before_6_14_and_only_when_unset_after():
    for profile, moves in (("v6.2", 2), ("v6.14", 1)):
        m = pysim.Machine(cpus=2, preset="zen3", profile=profile, checker=False)
        a, b, c = m.process(), m.process(), m.process()
        c.thread(cpu=0)
        b.thread(cpu=1)
        for c in m.cpus:
            c.tlbstate.reset_time(-c.stats.clock)
        m.arch.set_timeline(True)
        f = m.arch.flush
        s0, s1 = m.cpus[0].tlbstate, m.cpus[1].tlbstate
        f.switch_mm(s0, b.mm.context)                # CPU 0 writes the masks it touches
        f.switch_mm(s0, a.mm.context)
        before = m.cpus[1].stats.kernel_cycles_array()[B["lock"]]
        f.switch_mm(s1, a.mm.context)                # CPU 1: b -> a
        lock = m.cpus[1].stats.kernel_cycles_array()[B["lock"]] - before
        # before 6.14: clear b's bit and set a's, both lines last written by CPU 0;
        # 6.14 leaves b's bit alone and only sets a's
        assert lock == pytest.approx(moves * m.cfg.cost.cacheline_transfer), profile
        assert (1 in b.mm.context.cpumask) == (profile == "v6.14")


def _computes(t, n):
    for _ in range(n):
        yield t.compute(10_000)


@pytest.mark.parametrize("speed, ends", [(1.0, (10_000, 30_000)), (0.5, (20_000, 40_000))])
def test_smt_siblings_share_a_core_while_both_are_awake(speed, ends):
    # CPUs 0 and 1 of a 2-CPU machine are siblings (i and i + N/2).  At half speed the
    # first request of each takes twice its cycles (the other is awake); once CPU 0's
    # program has ended, CPU 1 has the core to itself again.
    m = pysim.Machine(cpus=2, preset=pysim.get_preset("zen3", smt_speed=speed),
                      profile="v6.2", checker=False)
    proc = m.process()
    tl = m.timeline()
    tl.spawn(proc.thread(cpu=0), _computes, 1)
    tl.spawn(proc.thread(cpu=1), _computes, 3)
    res = tl.run()
    assert tuple(t.end - res.start for t in res.tasks) == ends
    assert res.cpus().loc[1, "user"] == ends[1]


def test_an_ipi_handler_on_a_core_shared_with_a_busy_sibling_takes_longer():
    # smt_slow is what the timeline sets on a CPU while its sibling's thread is awake:
    # at half speed (smt_slow 1) CPU 1's handler takes twice its cycles (its TLB's
    # too), the extra charged as handler time, and CPU 0's ack comes that much later
    done = {}
    for slow in (0.0, 1.0):
        m, mm = _flush_rig()
        m.cpus[1].tlbstate.smt_slow = slow
        m.arch.flush.flush_tlb_mm_range(m.cpus[0].tlbstate, mm.context, 0x1000, 0x2000,
                                        12, False)
        (s, e), = m.cpus[1].tlbstate.irq_bookings
        done[slow] = (e - s, m.cpus[1].stats.kernel_cycles_array()[B["ipi_handler"]],
                      _ipi_cycles(m.cpus[0]))
    (w0, h0, wait0), (w1, h1, wait1) = done[0.0], done[1.0]
    assert w1 == pytest.approx(2 * w0) and h1 - h0 == pytest.approx(w0)
    assert wait1 - wait0 == pytest.approx(w0)


def _reads_smt_slow(t, cpus, seen):
    for n in (10, 200_000):
        yield t.compute(n)
        seen.append(cpus[1].tlbstate.smt_slow)


def test_the_timeline_keeps_smt_slow_while_the_sibling_runs():
    # 4 CPUs: 1 and 3 are siblings.  CPU 1's handlers share the core while CPU 3's
    # program runs (smt_slow = 1/0.5 - 1) and have it alone once it has ended
    m = pysim.Machine(cpus=4, preset=pysim.get_preset("zen3", smt_speed=0.5),
                      profile="v6.2", checker=False)
    proc = m.process()
    tl = m.timeline()
    seen = []
    tl.spawn(proc.thread(cpu=0), _reads_smt_slow, m.cpus, seen)
    tl.spawn(proc.thread(cpu=3), _computes, 1)
    tl.run()
    assert seen == [1.0, 0.0]
    assert all(c.tlbstate.smt_slow == 0.0 for c in m.cpus)     # nothing left after


def test_smt_speed_is_checked():
    with pytest.raises(ConfigError, match="smt_speed"):
        pysim.get_preset("zen3", smt_speed=0.0)
    with pytest.raises(ConfigError, match="smt_speed"):
        pysim.get_preset("zen3", smt_speed=1.5)


def _work_then_tick(t, before, after):
    """user work during the warm-up, then more after it, ticking once."""
    yield t.compute(before)
    yield t.compute(after)
    t.tick()


def test_the_time_split_and_counts_cover_the_window_after_the_warm_up():
    """will-it-scale discards its warm-up: cpus() splits the time from the warm-up's end
    (window_start) on, and what the warm-up did is kept apart (warm_counters)."""
    m = pysim.Machine(cpus=1, preset="zen3", profile="v6.2")
    t = m.process().thread(cpu=0)
    tl = m.timeline()
    tl.spawn(t, _work_then_tick, 40_000.0, 10_000.0)
    res = tl.run(warmup=30_000.0)
    assert res.window_start >= res.start + 30_000.0
    split = res.cpus().loc[0]
    # the window holds what came after the 40,000-cycle request that ended the warm-up
    assert split["user"] == pytest.approx(10_000.0)
    assert split["user"] + split["idle"] == pytest.approx(res.end - res.window_start)
    assert res.warm_counters and res.warm_sleeps == [0]
    tl = m.timeline()
    tl.spawn(t, _work_then_tick, 40_000.0, 10_000.0)
    res = tl.run()                                  # no warm-up: the whole run
    assert res.window_start == res.start
    assert res.cpus().loc[0, "user"] == pytest.approx(50_000.0)
