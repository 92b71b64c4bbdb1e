"""The x86 flush machinery: the single-page ceiling, the tlb_gen rule, lazy CPUs and
freed page tables, context switches and ASID slots, PTI user PCIDs, per-operation cycles
and the counter table (kernel-semantics.md sections 7.1-7.5 and 12)."""
import numpy as np
import pandas as pd
import pytest

import pysim
from pysim import (MADV_COLD, MADV_FREE, MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE,
                   PROT_READ, PROT_WRITE)
from pysim.arch.tlbflush import flush_tlb_mm_range

PAGE = 4096
HPAGE = 2 << 20
RW = PROT_READ | PROT_WRITE
POPULATE = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE


def cpu_ev(r, cpu, name):
    return r.cpu_events.get(cpu, {}).get(name, 0)


def ev(r, name):
    """An operation's event count, all CPUs (TLB counters that stayed 0 are absent)."""
    return r.events.get(name, 0)


def kc(m, cpu, name):
    """A CPU's cumulative kernel counter."""
    return m.cpus[cpu].kernel_counts[name]


def hw(m, cpu, name):
    """A CPU's cumulative TLB counter."""
    return m.cpus[cpu].tlb.counter_dict()[name]


# ------------------------------------------------------------------ ceiling
@pytest.mark.parametrize("profile", ["mmots", "patched"])
@pytest.mark.parametrize("npages, invlpg, full", [(1, 1, 0), (33, 33, 0), (34, 0, 1)])
def test_single_page_flush_ceiling(profile, npages, invlpg, full):
    """(end - start) >> 12 > 33 turns the range into a full flush: 33 pages are 33
    INVLPGs, 34 pages one full flush (on the initiator and on the busy remote CPU)."""
    m = pysim.Machine(cpus=2, profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    proc.thread(cpu=1).busy()
    p = t0.mmap(npages * PAGE, RW, POPULATE)
    r = t0.mprotect(p, npages * PAGE, PROT_READ)
    assert r.events["flush_tlb_mm_range"] == 1
    for cpu, one, allname in ((0, "nr_tlb_local_flush_one", "nr_tlb_local_flush_all"),
                              (1, "remote_flush_one", "remote_flush_all")):
        assert (cpu_ev(r, cpu, one), cpu_ev(r, cpu, "invlpg")) == (invlpg, invlpg)
        assert (cpu_ev(r, cpu, allname), cpu_ev(r, cpu, "flush_pcid")) == (full, full)
    assert (r.events["ipi_sent"], r.events["nr_tlb_remote_flush_received"]) == (1, 1)


@pytest.mark.parametrize("ceiling, npages, invlpg, full", [(8, 8, 8, 0), (8, 9, 0, 1),
                                                            (0, 1, 0, 1)])
def test_ceiling_is_a_profile_knob(ceiling, npages, invlpg, full):
    m = pysim.Machine(cpus=1, profile="patched", tlb_single_page_flush_ceiling=ceiling)
    t = m.process().thread(cpu=0)
    p = t.mmap(npages * PAGE, RW, POPULATE)
    r = t.mprotect(p, npages * PAGE, PROT_READ)
    assert (ev(r, "invlpg"), ev(r, "flush_pcid")) == (invlpg, full)


@pytest.mark.parametrize("nthp, invlpg, full", [(33, 33, 0), (34, 0, 1)])
def test_thp_stride_ceiling_patched(nthp, invlpg, full):
    """Under patched a THP-only gather flushes at stride 2M: 33 THPs are 33 INVLPGs, 34
    a full flush."""
    m = pysim.Machine(cpus=2, profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    proc.thread(cpu=1).busy()
    p = t0.mmap(nthp * HPAGE, RW, POPULATE, huge=True)
    assert t0.last.events["fault_thp"] == nthp
    r = t0.mprotect(p, nthp * HPAGE, PROT_READ)
    assert r.events["flush_tlb_mm_range"] == 1
    assert (cpu_ev(r, 0, "nr_tlb_local_flush_one"), cpu_ev(r, 0, "invlpg")) == (invlpg, invlpg)
    assert (cpu_ev(r, 1, "remote_flush_one"), cpu_ev(r, 1, "invlpg")) == (invlpg, invlpg)
    assert (cpu_ev(r, 0, "flush_pcid"), cpu_ev(r, 1, "flush_pcid")) == (full, full)
    assert r.events["ipi_sent"] == 1


def test_mixed_4k_and_thp_gather_uses_4k_stride():
    """A gather holding a 4K PTE and a THP flushes at stride 12 over the union: one 4K
    page next to a THP is 513 entries, a full flush."""
    m = pysim.Machine(cpus=1, profile="patched")
    t = m.process().thread(cpu=0)
    p = t.mmap(2 * HPAGE, RW, huge=True)
    t.write(p)                                     # a THP at p
    t.madvise(p + HPAGE, HPAGE, pysim.MADV_NOHUGEPAGE)
    t.write(p + HPAGE)                             # a 4K page right after it
    r = t.mprotect(p, 2 * HPAGE, PROT_READ)
    assert (ev(r, "flush_tlb_mm_range"), ev(r, "flush_pcid"), ev(r, "invlpg")) == (1, 1, 0)


# ------------------------------------------------------------------ tlb_gen rule
def _two_busy_cpus(profile="patched"):
    m = pysim.Machine(cpus=2, profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1).busy()
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    t1.busy()
    return m, proc, t0, t1, p


def test_next_generation_does_the_partial_flush():
    m, proc, t0, t1, p = _two_busy_cpus()
    gen = proc.mm.tlb_gen
    op = m.begin(t0.cpu, "flush")
    f = flush_tlb_mm_range(t0.cpu, proc.mm, p, p + PAGE, 12, False)
    r = m.end(op)
    assert f.new_tlb_gen == gen + 1 == proc.mm.tlb_gen
    assert (cpu_ev(r, 0, "invlpg"), cpu_ev(r, 1, "invlpg")) == (1, 1)
    assert (cpu_ev(r, 0, "flush_pcid"), cpu_ev(r, 1, "flush_pcid")) == (0, 0)
    for c in m.cpus:
        assert c.asids[c.loaded_asid][1] == proc.mm.tlb_gen


def test_missed_generation_makes_a_one_page_request_a_full_flush():
    """Overlapping flushes: another flusher bumped mm->tlb_gen but its IPIs have not
    arrived yet, so our one-page request is two generations ahead of every CPU: each
    does a full flush (kernel-semantics 7.4, rule 7) and catches up to the mm."""
    m, proc, t0, t1, p = _two_busy_cpus()
    gen = proc.mm.tlb_gen
    op = m.begin(t0.cpu, "overlapping flush")
    proc.mm.tlb_gen += 1                           # inc_mm_tlb_gen() of the other flusher
    f = flush_tlb_mm_range(t0.cpu, proc.mm, p, p + PAGE, 12, False)
    r = m.end(op)
    assert f.new_tlb_gen == gen + 2
    assert r.events["flush_tlb_mm_range"] == 1
    assert (cpu_ev(r, 0, "invlpg"), cpu_ev(r, 1, "invlpg")) == (0, 0)
    assert (cpu_ev(r, 0, "nr_tlb_local_flush_all"), cpu_ev(r, 1, "remote_flush_all")) == (1, 1)
    assert (cpu_ev(r, 0, "flush_pcid"), cpu_ev(r, 1, "flush_pcid")) == (1, 1)
    assert r.events["ipi_sent"] == 1
    for c in m.cpus:
        assert c.asids[c.loaded_asid][1] == gen + 2


def test_lazy_cpu_that_missed_a_generation_flushes_fully_on_wakeup():
    """A lazy CPU skipped by a one-page flush is behind; when its thread runs again the
    switch flushes the whole ASID (not the one page)."""
    m, proc, t0, t1, p = _two_busy_cpus()
    t1.sleep()
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert (r.events["ipi_sent"], cpu_ev(r, 1, "invlpg"), cpu_ev(r, 1, "flush_pcid")) \
        == (0, 0, 0)
    c1 = m.cpus[1]
    assert c1.asids[c1.loaded_asid][1] == proc.mm.tlb_gen - 1
    flush0, inv0 = hw(m, 1, "flush_pcid"), hw(m, 1, "invlpg")
    sw0 = kc(m, 1, "tlb_flush_on_switch")
    t1.busy()
    assert (hw(m, 1, "flush_pcid") - flush0, hw(m, 1, "invlpg") - inv0) == (1, 0)
    assert kc(m, 1, "tlb_flush_on_switch") - sw0 == 1
    assert c1.asids[c1.loaded_asid][1] == proc.mm.tlb_gen
    assert m.check() == []


# ------------------------------------------------------------------ lazy TLB
def test_sleep_makes_the_cpu_lazy_and_keeps_the_mm():
    m = pysim.Machine(cpus=2, profile="patched")
    proc = m.process()
    proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    c1 = m.cpus[1]
    assert (c1.loaded_mm is proc.mm, c1.is_lazy, 1 in proc.mm.cpumask) == (True, False, True)
    t1.sleep()
    assert (c1.loaded_mm is proc.mm, c1.is_lazy, 1 in proc.mm.cpumask) == (True, True, True)
    t1.busy()
    assert (c1.loaded_mm is proc.mm, c1.is_lazy) == (True, False)


@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_lazy_cpu_skipped_by_mprotect_reached_by_munmap_freeing_tables(profile):
    """mprotect (no tables freed) skips the lazy CPU: no IPI, no flush there; a munmap
    that keeps the page table skips it too; a munmap that frees the page table IPIs it
    (freed_tables) and the lazy CPU leaves the mm instead of flushing.  When its thread
    runs again the stale ASID is flushed on the switch."""
    m = pysim.Machine(cpus=2, profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    p = t0.mmap(8 * PAGE, RW, POPULATE)
    t1.read(p)
    t1.sleep()
    c1 = m.cpus[1]

    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["flush_tlb_mm_range"] == 1
    assert (r.events["ipi_sent"], r.events["nr_tlb_remote_flush_received"]) == (0, 0)
    assert (cpu_ev(r, 1, "invlpg"), cpu_ev(r, 1, "flush_pcid")) == (0, 0)
    assert (cpu_ev(r, 0, "invlpg"), cpu_ev(r, 0, "nr_tlb_local_flush_one")) == (1, 1)

    r = t0.munmap(p + 7 * PAGE, PAGE)                 # the PTE table stays (p..p+6 live)
    assert r.events["flush_tlb_mm_range"] == 1
    assert (r.events["ipi_sent"], r.events["nr_tlb_remote_flush_received"]) == (0, 0)
    assert c1.loaded_mm is proc.mm and c1.is_lazy

    r = t0.munmap(p, 7 * PAGE)                        # last VMA here: the table goes
    assert r.events["flush_tlb_mm_range"] == 1
    assert (r.events["ipi_sent"], r.events["nr_tlb_remote_flush"]) == (1, 1)
    assert cpu_ev(r, 1, "nr_tlb_remote_flush_received") == 1
    assert (cpu_ev(r, 1, "invlpg"), cpu_ev(r, 1, "flush_pcid"),
            cpu_ev(r, 1, "remote_flush_one"), cpu_ev(r, 1, "remote_flush_all")) == (0, 0, 0, 0)
    assert c1.loaded_mm is None and 1 not in proc.mm.cpumask

    sw0, fl0 = kc(m, 1, "tlb_flush_on_switch"), hw(m, 1, "flush_pcid")
    t1.busy()
    assert c1.loaded_mm is proc.mm and 1 in proc.mm.cpumask
    assert (kc(m, 1, "tlb_flush_on_switch") - sw0, hw(m, 1, "flush_pcid") - fl0) == (1, 1)
    assert m.check() == []


def test_remote_flush_counted_when_only_lazy_cpus_share_the_mm():
    """native_flush_tlb_multi() counts NR_TLB_REMOTE_FLUSH before it filters out lazy
    CPUs (kernel comment: "there are (and have always been) cases in which a remote TLB
    flush will be traced, but eventually would not happen"); flush_tlb_mm_range takes
    that path whenever another CPU is in mm_cpumask.  So an mprotect with only a lazy
    second CPU counts one remote flush and sends no IPI."""
    m = pysim.Machine(cpus=2, profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.sleep()
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 0
    assert r.events["nr_tlb_remote_flush_received"] == 0
    assert r.events["nr_tlb_remote_flush"] == 1


def test_lazy_tlb_off_leaves_the_mm_on_sleep():
    m = pysim.Machine(cpus=2, profile="patched", lazy_tlb=False)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    t1.sleep()
    assert m.cpus[1].loaded_mm is None and 1 not in proc.mm.cpumask
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert (r.events["nr_tlb_remote_flush"], r.events["ipi_sent"]) == (0, 0)


# ------------------------------------------------------------------ context switches
def test_switch_back_with_stale_slot_generation_flushes():
    """CPU 0 runs process A, switches to B (A's ASID slot is kept), A changes on CPU 1;
    switching CPU 0 back to A finds its slot behind and flushes that ASID."""
    m = pysim.Machine(cpus=2, profile="patched")
    A, B = m.process(), m.process()
    a0 = A.thread(cpu=0)
    a1 = A.thread(cpu=1).busy()
    p = a0.mmap(PAGE, RW)
    a0.write(p)
    b0 = B.thread(cpu=0)
    assert 0 not in A.mm.cpumask
    r = a1.mprotect(p, PAGE, PROT_READ)
    assert (r.events["ipi_sent"], cpu_ev(r, 0, "invlpg"), cpu_ev(r, 0, "flush_pcid")) \
        == (0, 0, 0)
    assert m.check() == []          # CPU 0's stale A entry sits in a slot marked behind
    sw0, cs0, fl0 = (kc(m, 0, "tlb_flush_on_switch"), kc(m, 0, "context_switches"),
                     hw(m, 0, "flush_pcid"))
    a0.run()
    assert (kc(m, 0, "context_switches") - cs0, kc(m, 0, "tlb_flush_on_switch") - sw0,
            hw(m, 0, "flush_pcid") - fl0) == (1, 1, 1)
    assert m.cpus[0].tlb.probe(p) is None
    # back and forth without changes: no flush, NOFLUSH CR3 writes only
    sw0, nf0 = kc(m, 0, "tlb_flush_on_switch"), hw(m, 0, "cr3_noflush")
    b0.run()
    a0.run()
    assert (kc(m, 0, "tlb_flush_on_switch") - sw0, hw(m, 0, "cr3_noflush") - nf0) == (0, 2)


def test_asid_slots_reuse_and_round_robin_eviction():
    """6 dynamic ASIDs per CPU: 6 mms coexist (switching among them never flushes); the
    7th evicts the oldest slot; an evicted mm needs a new slot and a flush."""
    m = pysim.Machine(cpus=1, profile="patched")
    procs = [m.process() for _ in range(7)]
    threads = []

    def switches():
        return kc(m, 0, "tlb_flush_on_switch")

    for i in range(6):
        before = switches()
        threads.append(procs[i].thread(cpu=0))
        assert switches() - before == 1                  # a new slot always flushes
    assert [ctx for ctx, _ in m.cpus[0].asids] == [p.mm.ctx_id for p in procs[:6]]
    before = switches()
    for i in (0, 3, 5, 1, 2, 4):
        threads[i].run()
        assert m.cpus[0].loaded_asid == i
    assert switches() - before == 0
    threads.append(procs[6].thread(cpu=0))                # evicts slot 0 (procs[0])
    assert m.cpus[0].loaded_asid == 0 and switches() - before == 1
    threads[0].run()                                      # no slot: takes slot 1
    assert m.cpus[0].loaded_asid == 1 and switches() - before == 2
    threads[2].run()                                      # still in slot 2
    assert m.cpus[0].loaded_asid == 2 and switches() - before == 2
    threads[1].run()              # evicted: the next slot round-robin, 2 (evicts procs[2])
    assert m.cpus[0].loaded_asid == 2 and switches() - before == 3
    assert [ctx for ctx, _ in m.cpus[0].asids] == [procs[i].mm.ctx_id
                                                   for i in (6, 0, 1, 3, 4, 5)]


def test_no_pcid_flushes_on_every_switch():
    m = pysim.Machine(cpus=1, profile="patched", pcid=False)
    a = m.process().thread(cpu=0)
    b = m.process().thread(cpu=0)
    before = kc(m, 0, "tlb_flush_on_switch")
    for _ in range(3):
        a.run()
        b.run()
    assert kc(m, 0, "tlb_flush_on_switch") - before == 6


# ------------------------------------------------------------------ PTI
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("invpcid", [True, False])
def test_pti_user_pcid_flush(invpcid, threads):
    """With PTI each INVLPG also has to reach the user PCID: INVPCID(single) when the CPU
    has it, else the whole user ASID is flushed on the return to user space."""
    m = pysim.Machine(cpus=threads, profile="patched", pti=True, invpcid=invpcid)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1).busy() if threads == 2 else None
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    if t1 is not None:
        t1.read(p)
        t1.busy()
    r = t0.mprotect(p, PAGE, PROT_READ)
    for c in range(threads):
        assert cpu_ev(r, c, "invlpg") == 1
        if invpcid:
            assert (cpu_ev(r, c, "invpcid_single"), cpu_ev(r, c, "user_pcid_flush"),
                    cpu_ev(r, c, "flush_pcid")) == (1, 0, 0)
        else:
            assert (cpu_ev(r, c, "invpcid_single"), cpu_ev(r, c, "user_pcid_flush"),
                    cpu_ev(r, c, "flush_pcid")) == (0, 1, 1)
    for c in m.cpus:
        assert c.user_flush_pending == set()
        # the user PCID's copy of the translation is gone too
        assert c.tlb.probe(p, pcid=c.user_pcid) is None
    assert m.check() == []


def test_pti_full_flush_marks_user_pcid():
    m = pysim.Machine(cpus=1, profile="patched", pti=True, invpcid=True)
    t = m.process().thread(cpu=0)
    p = t.mmap(40 * PAGE, RW, POPULATE)
    r = t.mprotect(p, 40 * PAGE, PROT_READ)
    # one CR3 reload for the kernel PCID, one for the user PCID on the way out
    assert (ev(r, "nr_tlb_local_flush_all"), ev(r, "user_pcid_flush"),
            ev(r, "flush_pcid"), ev(r, "invpcid_single")) == (1, 1, 2, 0)


# ------------------------------------------------------------------ madvise
@pytest.mark.parametrize("advice", [MADV_COLD, MADV_FREE])
def test_madvise_cold_free_clear_young_pages_and_flush(advice):
    m = pysim.Machine(cpus=1, profile="patched")
    t = m.process().thread(cpu=0)
    p = t.mmap(4 * PAGE, RW, POPULATE)
    r = t.madvise(p, 4 * PAGE, advice)
    assert (ev(r, "flush_tlb_mm_range"), ev(r, "invlpg")) == (1, 4)
    r = t.madvise(p, 4 * PAGE, advice)                  # already old (and clean): nothing
    assert r.events["flush_tlb_mm_range"] == 0


@pytest.mark.parametrize("advice", [MADV_COLD, MADV_FREE])
def test_madvise_cold_free_skip_the_zero_page(advice):
    """madvise_cold_or_pageout_pte_range() and madvise_free_pte_range() skip entries
    without a normal page (vm_normal_page() is NULL for the shared zero page), so a
    range holding only zero-page mappings records nothing and does not flush."""
    m = pysim.Machine(cpus=1, profile="patched")
    t = m.process().thread(cpu=0)
    p = t.mmap(4 * PAGE, RW)
    for i in range(4):
        t.read(p + i * PAGE)                            # zero page, A set
    r = t.madvise(p, 4 * PAGE, advice)
    assert (ev(r, "flush_tlb_mm_range"), ev(r, "invlpg")) == (0, 0)


def test_madvise_dontneed_always_flushes_present_pages():
    m = pysim.Machine(cpus=2, profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    proc.thread(cpu=1).busy()
    p = t0.mmap(3 * PAGE, RW, POPULATE)
    r = t0.madvise(p, 3 * PAGE, pysim.MADV_DONTNEED)
    assert (r.events["flush_tlb_mm_range"], cpu_ev(r, 0, "invlpg"), cpu_ev(r, 1, "invlpg"),
            r.events["ipi_sent"]) == (1, 3, 3, 1)
    assert proc.mm.pt.get(p) == (0, 0)


# ------------------------------------------------------------------ cycles and counters
def test_cycles_positive_and_ipi_costs_more():
    res = {}
    for threads in (1, 2):
        m = pysim.Machine(cpus=threads, profile="patched")
        proc = m.process()
        t0 = proc.thread(cpu=0)
        if threads == 2:
            proc.thread(cpu=1).busy()
        p = t0.mmap(PAGE, RW)
        t0.write(p)
        res[threads] = (t0.mprotect(p, PAGE, PROT_READ), t0.mprotect(p, PAGE, RW))
    for threads, (ro, rw) in res.items():
        assert ro.cycles > 0 and rw.cycles > 0
        assert ro.cycles == pytest.approx(sum(ro.breakdown.values()))
        assert ro.breakdown["flush"] > 0
        assert "flush" not in rw.breakdown or rw.breakdown["flush"] == 0   # no flush
        assert rw.cycles < ro.cycles
    assert res[2][0].cycles > res[1][0].cycles          # the IPI round trip
    assert res[2][0].breakdown["ipi"] > 0 and "ipi" not in res[1][0].breakdown
    assert res[2][0].cpu_cycles[1] > 0                  # the handler ran on CPU 1


@pytest.mark.parametrize("huge", [False, True])
def test_change_protection_charges_entries_tables_and_huge_pmds(huge):
    """change_protection's kernel cost: per VMA, per PTE table walked, per present 4K
    entry, and one lock plus one entry per huge PMD (not 512 entries)."""
    m = pysim.Machine(cpus=1, profile="patched", preset="skylake")
    t = m.process().thread(cpu=0)
    p = t.mmap(2 * HPAGE, RW, POPULATE, huge=huge)
    r = t.mprotect(p + (0 if huge else 10 * PAGE), 2 * HPAGE - (0 if huge else 20 * PAGE),
                   PROT_READ)
    c = m.preset.cost
    if huge:
        # two huge PMDs, no PTE table
        change = 2 * (c("per_pmd_table") + c("per_pte"))
    else:
        # 1004 present entries in two PTE tables (the range starts and ends mid-table)
        change = 2 * c("per_pmd_table") + 1004 * c("per_pte")
    assert r.breakdown["pte"] == pytest.approx(c("mprotect_base") + c("per_vma") + change)


COUNTERS = (
    "nr_tlb_local_flush_one", "nr_tlb_local_flush_all", "nr_tlb_remote_flush",
    "nr_tlb_remote_flush_received", "ipi_sent",
    "l1_hits", "l1_misses", "stlb_hits", "stlb_misses", "walks", "walk_refs",
    "fault_anon", "fault_wp_reuse", "fault_cow", "fault_spurious", "sigsegv", "cycles",
)


def test_counters_dataframe():
    m = pysim.Machine(cpus=2, profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)                                  # fault_anon
    t1.read(p)
    t1.busy()
    t0.mprotect(p, PAGE, PROT_READ)              # 1 INVLPG here, 1 IPI to CPU 1
    t1.read(p)                                   # CPU 1 caches the read-only entry
    t1.busy()
    t0.mprotect(p, PAGE, RW)
    t0.write(p)                                  # wp reuse
    t1.write(p)                                  # spurious (stale RO entry)
    t0.read(p + PAGE * 1000)                     # unmapped: SIGSEGV
    df = m.counters()
    assert isinstance(df, pd.DataFrame)
    assert list(df.index) == [0, 1] and df.index.name == "cpu"
    missing = [c for c in COUNTERS if c not in df.columns]
    assert missing == []
    for name in COUNTERS:
        assert np.issubdtype(df[name].dtype, np.number)
    row = {c: {k: df.loc[c, k] for k in COUNTERS} for c in (0, 1)}
    assert (row[0]["nr_tlb_local_flush_one"], row[0]["nr_tlb_local_flush_all"],
            row[0]["nr_tlb_remote_flush"], row[0]["ipi_sent"]) == (1, 0, 1, 1)
    assert row[1]["nr_tlb_remote_flush_received"] == 1
    assert (row[0]["fault_anon"], row[0]["fault_wp_reuse"], row[0]["sigsegv"],
            row[1]["fault_spurious"], row[0]["fault_cow"]) == (1, 1, 1, 1, 0)
    for c in (0, 1):
        assert row[c]["l1_hits"] + row[c]["l1_misses"] == df.loc[c, "accesses"]
        assert row[c]["stlb_hits"] + row[c]["stlb_misses"] == row[c]["l1_misses"]
        assert row[c]["walks"] >= row[c]["stlb_misses"] and row[c]["walk_refs"] >= row[c]["walks"]
        assert row[c]["cycles"] > 0
    arrays = m.counter_array()
    assert set(COUNTERS) <= set(arrays)
    assert all(isinstance(v, np.ndarray) and v.shape == (2,) for v in arrays.values())


def test_pti_deferred_user_flush_happens_before_the_remote_threads_next_access():
    """PTI without INVPCID: the shootdown IPI defers CPU 1's user-PCID flush to its next
    return to user space.  CPU 1's thread is in user space (it is scheduled there, not
    in a syscall), so that return happens as the IPI handler exits, before the thread's
    next access: after mprotect(READ) returned, its write must fault (SIGSEGV: the VMA
    is read-only now), not go through the stale writable user-PCID entry."""
    m = pysim.Machine(cpus=2, profile="patched", pti=True, invpcid=False)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)                      # running, not busy-looping
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)                                  # CPU 1 caches RW in its user PCID
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 1
    r = t1.write(p)
    assert [f[3] for f in r.faults] == ["sigsegv"]
    assert r.value == 0
