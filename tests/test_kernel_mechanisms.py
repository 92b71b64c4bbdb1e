"""Hand-worked tests of the x86 flush mechanisms after the 5.19 series: the lazy
mm_cpumask and its once-per-HZ trimming (v6.14), global ASIDs with INVLPGB/TLBSYNC
(v6.15, v6.18 on a preset with the invlpgb feature), jiffies, and the checker's view of
broken variants of both (a forgotten TLBSYNC, a trim that drops a running CPU).

Jiffies: the machine sets them at every operation from the initiating CPU's clock; the
tests here pin them (Clock) to put a flush exactly before or after a deadline.
"""
import pytest

import pysim
from rigs import Clock, ev, shared_page_machine
from pysim import PROT_READ, PROT_WRITE

PAGE = 4096
HPAGE = 2 << 20
RW = PROT_READ | PROT_WRITE
NR_DYN = 6                       # TLB_NR_DYN_ASIDS: the first global ASID




# ------------------------------------------------------------------ jiffies
def test_jiffies_follow_the_initiating_cpus_clock():
    """Machine.begin sets jiffies = clock / (ghz * 1e9 / HZ): cycles per tick."""
    m = pysim.Machine(cpus=1, profile="v6.14")
    t0 = m.process().thread(cpu=0)
    p = t0.mmap(PAGE, RW)
    cpu = m.cpus[0]
    cpu.stats.charge(0, 10 * 3.0e9 / 1000)                 # ten ticks at 3 GHz, HZ=1000
    t0.write(p)
    assert m.arch.flush.jiffies == int(cpu.clock / (3.0e9 / 1000)) >= 10
    m.arch.flush.jiffies = 12345
    assert m.arch.flush.jiffies == 12345


# ------------------------------------------------------------------ lazy mm_cpumask
def two_mms(profile, **kw):
    """t0 (mm A) on CPU 0; t1 (mm A) ran on CPU 1, then u1 (mm B) took CPU 1."""
    m = pysim.Machine(cpus=2, profile=profile, **kw)
    a, b = m.process(), m.process()
    t0, t1 = a.thread(cpu=0), a.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    u1 = b.thread(cpu=1)
    u1.run()
    return m, a, b, t0, t1, u1, p


@pytest.mark.parametrize("profile, stays", [("v6.2", False), ("v6.14", True),
                                            ("v6.18", True)])
def test_the_bit_stays_when_a_cpu_switches_away_from_6_14(profile, stays):
    m, a, b, t0, t1, u1, p = two_mms(profile)
    assert (1 in a.mm.context) is stays
    assert 1 in b.mm.context


def test_a_cpu_that_left_is_not_sent_an_ipi_before_the_trim_deadline():
    """v6.14, jiffies 1000 = next_trim_cpumask (set to 0 + HZ when A was made): not yet
    after it, so the flush counts a remote flush (CPU 1 is in the mask) but sends no IPI;
    CPU 1's slot for A stays behind and its bit stays."""
    m, a, b, t0, t1, u1, p = two_mms("v6.14")
    clock = Clock(m, 1000)
    assert a.mm.context.next_trim_cpumask == 1000
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["nr_tlb_remote_flush"] == 1 and r.events["ipi_sent"] == 0
    assert 1 in a.mm.context and a.mm.context.next_trim_cpumask == 1000
    assert m.check() == []
    # CPU 1 comes back to A: its slot is behind, so the switch flushes it
    before = m.cpus[1].kernel_counts["tlb_flush_on_switch"]
    t1.run()
    assert m.cpus[1].kernel_counts["tlb_flush_on_switch"] == before + 1
    assert m.cpus[1].tlb.probe(p) is None and m.check() == []
    assert clock.now == 1000


def test_the_first_flush_after_the_deadline_trims_once():
    """jiffies 1001 > 1000: this request trims (IPI to CPU 1, which runs B: it clears its
    bit, tracepoint reason TLB_REMOTE_WRONG_CPU), next_trim_cpumask = 1001 + HZ; the
    next flush neither counts a remote flush nor sends anything."""
    m, a, b, t0, t1, u1, p = two_mms("v6.14")
    Clock(m, 1001)
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 1 and ev(r, 1, "nr_tlb_remote_flush_received") == 1
    assert ev(r, 1, "tlb_remote_wrong_cpu") == 1
    assert ev(r, 1, "invlpg") == 0 and ev(r, 1, "remote_flush_one") == 0
    assert 1 not in a.mm.context and a.mm.context.next_trim_cpumask == 2001
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["nr_tlb_remote_flush"] == 0 and r.events["ipi_sent"] == 0


def test_a_second_trim_waits_a_full_hz():
    """Two trims of one mm are HZ jiffies apart: at 1001 a trim, at 2001 none, at 2002
    the next; with HZ=250 the interval is 250."""
    m, a, b, t0, t1, u1, p = two_mms("v6.14")
    clock = Clock(m, 1001)
    t0.mprotect(p, PAGE, PROT_READ)
    t1.run()
    u1.run()                                       # CPU 1 in A's mask again, running B
    clock.now = 2001
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["ipi_sent"] == 0 and 1 in a.mm.context
    clock.now = 2002
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 1 and a.mm.context.next_trim_cpumask == 2002 + 1000
    m250, a2, *_rest, p2 = two_mms("v6.14", hz=250)
    assert a2.mm.context.next_trim_cpumask == 250


def test_freed_tables_reach_every_cpu_of_the_mask_and_trim_it():
    """A flush with freed page tables (munmap of a whole table) IPIs every CPU of the
    mask whatever the deadline: CPU 1, running B, clears its bit."""
    m, a, b, t0, t1, u1, p = two_mms("v6.14")
    Clock(m, 0)
    r = t0.munmap(p, PAGE)
    assert r.events["ipi_sent"] == 1 and ev(r, 1, "tlb_remote_wrong_cpu") == 1
    assert 1 not in a.mm.context


def test_a_lazy_cpu_is_never_trimmed_and_catches_up_when_it_wakes():
    """should_flush_tlb() returns false for a lazy CPU before looking at the trim flag:
    CPU 1 sleeping in A keeps its bit and misses the flush; waking, it flushes."""
    m = pysim.Machine(cpus=2, profile="v6.14")
    Clock(m, 5000)
    a = m.process()
    t0, t1 = a.thread(cpu=0), a.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    t1.sleep()
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["nr_tlb_remote_flush"] == 1 and r.events["ipi_sent"] == 0
    assert 1 in a.mm.context and m.check() == []
    r = t1.run()
    assert m.cpus[1].tlb.counter_dict()["flush_pcid"] >= 1 and m.check() == []


# ------------------------------------------------------------------ global ASIDs
def milan(ncpus, profile="v6.15", running=4, **kw):
    """ncpus CPUs of milan; one process with a busy thread on CPUs 1..running-1 and t0
    on CPU 0, every thread having touched page p."""
    return shared_page_machine("milan", profile, ncpus, running, **kw)


def hit(proc):
    """A jiffies value that samples proc's mm: pid & 0x1f == jiffies & 0x1f."""
    return 32 * 100 + (proc.mm.context.pid & 0x1f)


def test_a_global_asid_needs_four_active_cpus_and_a_sampled_jiffy():
    """consider_global_asid(): 4 CPUs running the mm and jiffies & 0x1f == pid & 0x1f
    give the mm global ASID 6 (the first after TLB_NR_DYN_ASIDS); the first allocation
    resets the global ASID space with one INVLPGB (all non-global entries) + TLBSYNC."""
    m, proc, t0, others, p = milan(5)
    ctx = proc.mm.context
    clock = Clock(m, hit(proc) + 1)                 # not this mm's jiffy
    t0.mprotect(p, PAGE, PROT_READ)
    assert ctx.global_asid == 0
    clock.now = hit(proc)
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["ipi_sent"] == 3                # this request still by IPIs
    assert ctx.global_asid == NR_DYN and ctx.asid_transition
    assert ev(r, 0, "invlpgb") == 1 and ev(r, 0, "tlbsync") == 1
    assert m.arch.flush.last_global_asid == NR_DYN
    assert m.check() == []


def test_three_active_cpus_do_not_get_a_global_asid():
    m, proc, t0, others, p = milan(5, running=3)
    Clock(m, hit(proc))
    assert not m.arch.flush.mm_active_cpus_exceeds(proc.mm.context, 3)
    t0.mprotect(p, PAGE, PROT_READ)
    assert proc.mm.context.global_asid == 0


def test_a_lazy_cpu_does_not_count_as_active():
    m, proc, t0, others, p = milan(5, running=5)
    others[0].sleep()
    Clock(m, hit(proc))
    t0.mprotect(p, PAGE, PROT_READ)
    assert m.arch.flush.mm_active_cpus_exceeds(proc.mm.context, 3)   # 4 still run it
    assert proc.mm.context.global_asid == NR_DYN
    m2, proc2, t02, others2, p2 = milan(5, running=5)
    others2[0].sleep()
    others2[1].sleep()
    assert not m2.arch.flush.mm_active_cpus_exceeds(proc2.mm.context, 3)


def test_the_transition_ipis_then_pure_broadcast():
    """After assignment every CPU still runs the mm on a local ASID.  The next flush is a
    broadcast (one INVLPGB for one page, TLBSYNC) and finish_asid_transition() finds a CPU
    on a local ASID: flush_tlb_multi to the mask (the initiator runs flush_tlb_func
    itself), and every CPU moves to the global ASID without a flush.  The flush after
    that sends no IPI and ends the transition."""
    m, proc, t0, others, p = milan(5)
    ctx = proc.mm.context
    Clock(m, hit(proc))
    t0.mprotect(p, PAGE, PROT_READ)
    assert [c.tlbstate.loaded_mm_asid for c in m.cpus[:4]] != [NR_DYN] * 4
    r = t0.mprotect(p, PAGE, RW)
    assert ev(r, 0, "invlpgb") == 1 and ev(r, 0, "tlbsync") == 1
    assert r.events["ipi_sent"] == 3 and r.events["nr_tlb_remote_flush"] == 1
    assert [c.tlbstate.loaded_mm_asid for c in m.cpus[:4]] == [NR_DYN] * 4
    assert r.events["invlpg"] == 0 and r.events["flush_pcid"] == 0
    assert ctx.asid_transition                      # cleared by the next flush
    assert m.check() == []
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 0 and r.events["nr_tlb_remote_flush"] == 0
    assert ev(r, 0, "invlpgb") == 1 and not ctx.asid_transition
    assert r.events["nr_tlb_local_flush_one"] == 0
    assert m.check() == []


def broadcast_mm(pti=False, ncpus=5):
    """A milan machine whose mm has finished its move to global ASID 6."""
    m, proc, t0, others, p = milan(ncpus, pti=pti)
    Clock(m, hit(proc))
    t0.mprotect(p, PAGE, PROT_READ)
    t0.mprotect(p, PAGE, RW)
    t0.mprotect(p, PAGE, PROT_READ)
    assert proc.mm.context.global_asid == NR_DYN and not proc.mm.context.asid_transition
    return m, proc, t0, others, p


def pending_of(m, t0, start, end, stride):
    """The INVLPGBs one flush_tlb_mm_range issues, read before TLBSYNC."""
    x = m.arch.flush
    x.skip_tlbsync = True
    x.flush_tlb_mm_range(t0.cpu.tlbstate, t0.mm.context, start, end, stride, False)
    got = t0.cpu.tlbstate.pending_invlpgb
    x.tlbsync(t0.cpu.tlbstate)
    x.skip_tlbsync = False
    return got


@pytest.mark.parametrize("pti", [False, True])
def test_broadcast_flush_counts_per_pcid_and_the_count_clamp(pti):
    """kern_pcid(6) = 7, user_pcid = 7 | 2048.  Full flush: one INVLPGB per PCID.  33
    pages (the ceiling) with invlpgb_count_max 8: runs of 8, 8, 8, 8, 1 per PCID.  34
    pages: over the ceiling, a full flush."""
    m, proc, t0, others, p = broadcast_mm(pti=pti)
    pcids = [7, 7 | 2048] if pti else [7]
    full = pending_of(m, t0, 0, pysim.TLB_FLUSH_ALL, 12)
    assert full == [("pcid", c, 0, 0, False) for c in pcids]
    got = pending_of(m, t0, p, p + 33 * PAGE, 12)
    want = [("va", c, p + i * 8 * PAGE, n, False)
            for i, n in enumerate((8, 8, 8, 8, 1)) for c in pcids]
    assert got == want
    assert pending_of(m, t0, p, p + 34 * PAGE, 12) == full


def test_pmd_stride_flag_and_strides_above_2m():
    """A 2M-stride flush of 8 MiB: one INVLPGB of 4 PMD steps with the PMD flag; of
    20 MiB: 10 steps clamped to runs of 8 and 2; a 1G stride takes one step per INVLPGB
    (nr 1, no PMD flag), as the kernel's loop does."""
    m, proc, t0, others, p = broadcast_mm()
    base = 1 << 30
    assert pending_of(m, t0, base, base + 4 * HPAGE, 21) == [("va", 7, base, 4, True)]
    assert pending_of(m, t0, base, base + 10 * HPAGE, 21) == [
        ("va", 7, base, 8, True), ("va", 7, base + 8 * HPAGE, 2, True)]
    got = pending_of(m, t0, base, base + 2 * (1 << 30), 30)
    assert got == [("va", 7, base, 1, False), ("va", 7, base + (1 << 30), 1, False)]


def test_broadcast_reaches_every_cpu_and_switching_back_never_flushes():
    """CPU 1 switches to another process and back: its entries of the global PCID
    stay, no switch flushes them (choose_new_asid: a global ASID is current), and the
    broadcast made while it was away invalidated them there too."""
    m, proc, t0, others, p = broadcast_mm()
    other = m.process().thread(cpu=1)
    t1 = others[0]
    t1.write(p + PAGE)
    assert m.cpus[1].tlb.probe(p + PAGE) is not None
    other.run()
    r = t0.mprotect(p + PAGE, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 0
    assert m.cpus[1].tlb.probe(p + PAGE) is None    # the INVLPGB reached CPU 1's TLB
    before = m.cpus[1].kernel_counts["tlb_flush_on_switch"]
    t1.run()
    assert m.cpus[1].kernel_counts["tlb_flush_on_switch"] == before
    assert m.cpus[1].tlbstate.loaded_mm_asid == NR_DYN
    assert m.check() == []


def test_a_global_asid_has_one_pcid_on_every_cpu():
    m, proc, t0, others, p = broadcast_mm()
    assert {c.user_pcid for c in m.cpus[:4]} == {NR_DYN + 1}
    slots = m.arch.global_slots(proc.mm)
    assert [s[:2] for s in slots] == [(i, NR_DYN) for i in range(5)]


def test_v6_15_without_invlpgb_is_v6_14():
    """On skylake (no INVLPGB) v6.15 and v6.18 run exactly as v6.14: the same counters
    on every CPU for a run that would assign a global ASID on milan."""
    def run(profile, preset):
        m = pysim.Machine(cpus=5, preset=preset, profile=profile)
        proc = m.process()
        Clock(m, 32 * 7 + (proc.mm.context.pid & 0x1f))
        t0 = proc.thread(cpu=0)
        p = t0.mmap(64 * PAGE, RW)
        t0.write(p)
        for c in range(1, 5):
            t = proc.thread(cpu=c)
            t.write(p)
            t.busy()
        out = [t0.mprotect(p, n * PAGE, prot).cpu_events
               for n, prot in ((1, PROT_READ), (3, RW), (40, PROT_READ), (1, RW))]
        return out, proc.mm.context.global_asid
    base = run("v6.14", "skylake")
    assert base[1] == 0
    assert run("v6.15", "skylake") == base and run("v6.18", "skylake") == base
    assert run("v6.15", "milan")[1] == NR_DYN
    assert run("v6.14", "milan")[1] == 0


def test_allocator_reset_and_free():
    """mm_free_global_asid(): the ASID is reusable only after the space wraps; a freed
    mm flushes by IPIs again."""
    m, proc, t0, others, p = broadcast_mm()
    x = m.arch.flush
    left = x.global_asid_available
    x.mm_free_global_asid(proc.mm.context)
    assert proc.mm.context.global_asid == 0 and x.global_asid_available == left + 1
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["ipi_sent"] == 3 and m.check() == []


# ------------------------------------------------------------------ the checker
def assert_caught(ei, cpu, va, operation, note=None):
    e = ei.value
    assert isinstance(e, pysim.PysimError)
    hits = [v for v in e.violations if v.cpu == cpu and v.va == va]
    assert hits, [str(v) for v in e.violations]
    assert all(v.operation == operation for v in e.violations)
    text = str(e)
    assert f"cpu {cpu}" in text and f"0x{va:x}" in text and operation in text
    if note:
        assert any(note in str(v) for v in hits), [str(v) for v in hits]


def test_a_forgotten_tlbsync_is_caught_and_named():
    """Broken broadcast policy: INVLPGBs issued, TLBSYNC skipped.  They never completed,
    so CPU 1 still holds the writable entry; the checker reports it and names the
    INVLPGB waiting on CPU 0.  Completing it (TLBSYNC) makes the machine clean."""
    m, proc, t0, others, p = broadcast_mm()
    t0.mprotect(p, PAGE, RW)
    others[0].write(p)
    assert m.cpus[1].tlb.probe(p) is not None
    m.arch.flush.skip_tlbsync = True
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, PAGE, PROT_READ)
    assert_caught(ei, 1, p, "mprotect", note="INVLPGB issued on cpu 0 not completed")
    m.arch.flush.tlbsync(m.cpus[0].tlbstate)
    assert m.check() == []


def test_a_trim_that_drops_a_running_cpu_is_caught():
    """Broken trim: the backend clears the mask bit of every other CPU before the IPI
    loop, also of CPU 1 which runs the mm; CPU 1 keeps its writable entry."""
    m = pysim.Machine(cpus=2, profile="v6.14")
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    t1.busy()

    def trim_everyone(x, cpu, mm, info, local):
        for c in sorted(mm.cpumask - {cpu.cpu}):
            mm.clear_cpu(c)
        x.native_flush_tlb_multi(cpu, mm, info, local)

    m.arch.flush.set_python_backend(trim_everyone)
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, PAGE, PROT_READ)
    assert_caught(ei, 1, p, "mprotect")


def test_the_same_backend_without_the_bad_trim_is_safe():
    m = pysim.Machine(cpus=2, profile="v6.14")
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    t1.busy()
    m.arch.flush.set_python_backend(
        lambda x, cpu, mm, info, local: x.native_flush_tlb_multi(cpu, mm, info, local))
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 1 and m.check() == []


def test_machines_with_global_asids_pickle():
    import pickle
    m, proc, t0, others, p = broadcast_mm()
    del m.arch.set_jiffies                          # the test's Clock, not picklable,
    m.arch.syscall_enter = m.arch.flush.syscall_enter_from_user_mode    # back to X86's
    m.arch.flush.jiffies = 777
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.arch.flush.jiffies == 777
    assert m2.mms[0].context.global_asid == NR_DYN
    assert m2.arch.flush.last_global_asid == NR_DYN
    assert m2.check() == []


# ------------------------------------------------------------------ v6.18 against v6.2
def _one_page_rw(t0, proc):
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    return [t0.mprotect(p, PAGE, PROT_READ), t0.mprotect(p, PAGE, RW), t0.write(p)]


def _three_vmas(t0, proc):
    p = t0.mmap(3 * PAGE, RW)
    t0.write(p)
    t0.write(p + 2 * PAGE)
    out = [t0.mprotect(p + PAGE, PAGE, PROT_READ)]
    return out + [t0.mprotect(p, 3 * PAGE, PROT_READ), t0.mprotect(p, 3 * PAGE, pysim.PROT_NONE)]


def _thp(t0, proc):
    p = t0.mmap(2 * HPAGE, RW, huge=True)
    t0.write(p)
    t0.write(p + HPAGE)
    return [t0.mprotect(p, 2 * HPAGE, PROT_READ), t0.mprotect(p + PAGE, PAGE, RW),
            t0.mprotect(p, 2 * HPAGE, RW)]


def _ceiling(t0, proc):
    p = t0.mmap(64 * PAGE, RW, flags=pysim.MAP_PRIVATE | pysim.MAP_ANONYMOUS | pysim.MAP_POPULATE)
    return [t0.mprotect(p, 33 * PAGE, PROT_READ), t0.mprotect(p, 34 * PAGE, RW),
            t0.madvise(p, 8 * PAGE, pysim.MADV_DONTNEED), t0.munmap(p, 64 * PAGE)]


SCENARIOS = {"one_page_rw": _one_page_rw, "three_vmas": _three_vmas, "thp": _thp,
             "ceiling": _ceiling}


def _counts(profile, scenario, threads):
    """Every counter of every CPU for each operation of a scenario; threads = 2 adds a
    busy second thread (a CPU running the mm: no lazy or departed CPU, where 6.14+
    and 6.2 would differ by design)."""
    m = pysim.Machine(cpus=threads, profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    if threads == 2:
        proc.thread(cpu=1).busy()
    return [r.cpu_events for r in SCENARIOS[scenario](t0, proc)]


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_v6_18_agrees_with_v6_2_where_the_mechanisms_agree(scenario, threads):
    """Worked-example style scenarios (mprotect of one page, three VMAs, THPs and THP
    cuts, the flush ceiling, DONTNEED, munmap) give identical counts on every CPU under
    v6.2 and v6.18 on skylake (no INVLPGB), with one thread or a second, busy one."""
    old = _counts("v6.2", scenario, threads)
    assert any(ev.get(0, {}).get("flush_tlb_mm_range", 0) for ev in old)
    assert _counts("v6.18", scenario, threads) == old
