"""Hand-worked tests of Intel RAR (profile rar-rfc on preset intel-rar) and of reclaim's
batched unmap flush (try_to_unmap with TTU_BATCH_FLUSH, arch_tlbbatch_add_pending /
arch_tlbbatch_flush, flush_tlb_batched_pending), with the checker on.

RAR: a global ASID (given as with INVLPGB: 4 active CPUs, a sampled jiffy) is flushed
by a Remote Action Request to every other CPU of mm_cpumask; dynamic ASIDs, trimming
requests and the ASID transition still go by IPIs; a CPU that left the mask flushes
when it switches back in.
"""
import numpy as np
import pytest

import pysim
from rigs import Clock, ev, shared_page_machine
from pysim import MADV_COLD, MADV_PAGEOUT, PROT_READ, PROT_WRITE
from pysim.errors import SafetyViolation
from pysim.mm import rmap

PAGE = 4096
RW = PROT_READ | PROT_WRITE
NR_DYN = 6




def hit(proc):
    """A jiffies value that samples proc's mm (pid & 0x1f == jiffies & 0x1f), before
    the mm's first trim deadline (HZ = 1000)."""
    return 32 * 10 + (proc.mm.context.pid & 0x1f)


def rar_machine(ncpus=5, running=4, **kw):
    """intel-rar, rar-rfc: one process with t0 on CPU 0 and busy threads on CPUs
    1..running-1, all having touched page p."""
    return shared_page_machine("intel-rar", "rar-rfc", ncpus, running, **kw)


def global_rar_mm(**kw):
    """A RAR machine whose mm has finished its move to global ASID 6 (first flush:
    IPIs and the assignment, whose reset of the ASID space is one RAR to every other
    CPU; second: RAR plus the transition IPIs; third: RAR only)."""
    m, proc, t0, others, p = rar_machine(**kw)
    clock = Clock(m, hit(proc))
    t0.mprotect(p, PAGE, PROT_READ)
    t0.mprotect(p, PAGE, RW)
    t0.mprotect(p, PAGE, PROT_READ)
    ctx = proc.mm.context
    assert ctx.global_asid == NR_DYN and not ctx.asid_transition
    return m, proc, t0, others, p, clock


# ------------------------------------------------------------------ configuration
def test_rar_is_a_backend_chosen_by_profile_and_feature():
    m = pysim.Machine(cpus=2, preset="intel-rar", profile="rar-rfc")
    assert m.arch.flush.backend == "rar" and m.arch.flush.params["rar"]
    assert len(m.arch.flush.rar_payloads) == 64 == len(m.arch.flush.rar_action(1))
    assert pysim.Machine(cpus=2, preset="intel-rar", profile="v6.15").arch.flush.backend \
        == "ipi"                                     # the feature alone: no RAR kernel
    assert pysim.Machine(cpus=2, preset="skylake", profile="rar-rfc").arch.flush.backend \
        == "ipi"                                     # the kernel alone: no RAR CPU
    with pytest.raises(pysim.ConfigError):
        pysim.get_profile("v6.14", rar_tlb_flush=True)   # needs the 6.15 global ASIDs
    with pytest.raises(pysim.ConfigError):
        pysim.get_profile("v6.15", rar=True)              # a CPU feature, not a profile


# ------------------------------------------------------------------ RAR rules
def test_dynamic_asids_still_use_ipis():
    """No global ASID yet: the request goes by IPI to the 3 busy CPUs, no RAR."""
    m, proc, t0, others, p = rar_machine()
    Clock(m, hit(proc) + 1)
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 3 and r.events["rar_sent"] == 0
    assert proc.mm.context.global_asid == 0 and m.check() == []


def test_assignment_resets_the_asid_space_by_one_rar_to_every_cpu():
    """The first global ASID wraps the space: flush_tlb_all() as a RAR with PCID 0 to
    the 4 other CPUs (every PCID), written in CPU 0's slot (0 % 64)."""
    m, proc, t0, others, p = rar_machine()
    Clock(m, hit(proc))
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 3                    # the request itself: IPIs
    assert proc.mm.context.global_asid == NR_DYN and proc.mm.context.asid_transition
    assert ev(r, 0, "rar_sent") == 4
    assert [ev(r, c, "rar_received") for c in range(1, 5)] == [1, 1, 1, 1]
    slot = m.arch.flush.rar_payloads[0]
    assert (slot["subtype"], slot["pcid"]) == ("all", 0)
    assert m.arch.flush.rar_action(3)[0] == 0           # RAR_SUCCESS
    assert m.check() == []


def test_the_transition_then_rar_to_the_mask():
    """In transition: RAR to the 3 others (their CPUs still run local ASIDs, so the
    PCID has nothing yet), then finish_asid_transition's IPIs move them.  After it: one
    RAR payload of 2 pages (the RFC's (end - start + PAGE_SIZE) / PAGE_SIZE) for kernel
    PCID 7, no IPI, no flush_tlb_func on the targets."""
    m, proc, t0, others, p = rar_machine()
    Clock(m, hit(proc))
    t0.mprotect(p, PAGE, PROT_READ)
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["rar_sent"] == 3 and r.events["ipi_sent"] == 3
    assert [c.tlbstate.loaded_mm_asid for c in m.cpus[:4]] == [NR_DYN] * 4
    assert m.check() == []
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["rar_sent"] == 3 and r.events["ipi_sent"] == 0
    assert r.events["nr_tlb_remote_flush_received"] == 0
    assert [ev(r, c, "rar_received") for c in (1, 2, 3)] == [1, 1, 1]
    assert [ev(r, c, "invpcid_single") for c in (1, 2, 3)] == [2, 2, 2]
    slot = m.arch.flush.rar_payloads[0]
    assert (slot["subtype"], slot["pcid"], slot["num_pages"]) == ("addr", NR_DYN + 1, 2)
    assert slot["linear_address"] == p
    assert not proc.mm.context.asid_transition and m.check() == []


def test_a_range_of_62_pages_or_more_is_one_pcid_flush():
    """num_pages must stay below RAR_INVLPG_MAX_PAGES (63): 61 pages give 62 (one
    past the range), 62 pages give the whole PCID (a ceiling of 100 lets such ranges
    through flush_tlb_mm_range)."""
    m, proc, t0, others, p, clock = global_rar_mm(tlb_single_page_flush_ceiling=100)
    x = m.arch.flush
    x.flush_tlb_mm_range(t0.cpu.tlbstate, proc.mm.context, p, p + 61 * PAGE, 12, False)
    assert (x.rar_payloads[0]["subtype"], x.rar_payloads[0]["num_pages"]) == ("addr", 62)
    x.flush_tlb_mm_range(t0.cpu.tlbstate, proc.mm.context, p, p + 62 * PAGE, 12, False)
    assert x.rar_payloads[0]["subtype"] == "pcid"


def test_rar_reaches_lazy_cpus_and_cpus_running_other_mms():
    """RAR skips should_flush_tlb(): every CPU of the mask is a target."""
    m, proc, t0, others, p, clock = global_rar_mm()
    others[0].sleep()                                   # CPU 1 lazy
    m.process().thread(cpu=2).run()                     # CPU 2 runs another mm
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["rar_sent"] == 3 and r.events["ipi_sent"] == 0
    assert m.check() == []


def test_a_trimming_request_goes_by_ipis_to_the_whole_mask():
    """Past next_trim_cpumask (HZ after creation) the request trims: IPIs to every
    CPU of the mask (should_flush_all), which clear the bit of a CPU running another
    mm; no RAR."""
    m, proc, t0, others, p, clock = global_rar_mm()
    m.process().thread(cpu=2).run()
    clock.now = 5000
    r = t0.mprotect(p, PAGE, RW)
    assert r.events["rar_sent"] == 0 and r.events["ipi_sent"] == 3
    assert ev(r, 2, "tlb_remote_wrong_cpu") == 1 and 2 not in proc.mm.context
    assert m.check() == []


def trimmed_cpu_rejoins(skip):
    """t2 caches p writable under global PCID 7 on CPU 2; CPU 2 switches to another mm;
    p goes read-only by a trimming request whose IPI only clears CPU 2's bit (it runs
    another mm: no flush); the next request is a RAR that misses CPU 2; then t2 runs
    the mm there again."""
    m, proc, t0, others, p, clock = global_rar_mm()
    t2 = others[1]
    t0.mprotect(p, PAGE, RW)
    t2.write(p)
    t0.write(p + PAGE)
    m.process().thread(cpu=2).run()
    clock.now = 5000
    r = t0.mprotect(p, 2 * PAGE, PROT_READ)             # trims: IPIs, CPU 2 leaves
    assert r.events["ipi_sent"] == 3 and ev(r, 2, "tlb_remote_wrong_cpu") == 1
    clock.now = 5001
    r = t0.mprotect(p + PAGE, PAGE, pysim.PROT_NONE)    # RAR to CPUs 1 and 3 only
    assert r.events["rar_sent"] == 2 and 2 not in proc.mm.context
    m.arch.flush.rar_skip_new_cpu_flush = skip
    before = m.cpus[2].kernel_counts["tlb_flush_on_switch"]
    return m, proc, t2, p, before


def test_a_cpu_outside_the_mask_flushes_when_it_runs_the_global_asid_again():
    m, proc, t2, p, before = trimmed_cpu_rejoins(skip=False)
    t2.run()
    assert m.cpus[2].tlbstate.loaded_mm_asid == NR_DYN
    assert m.cpus[2].kernel_counts["tlb_flush_on_switch"] == before + 1
    assert m.check() == []


def test_the_checker_catches_a_rejoin_without_the_flush():
    """The rule broken: CPU 2 kept the writable entry of p under PCID 7 while it was
    out of the mask; back in it, that entry is live again."""
    m, proc, t2, p, before = trimmed_cpu_rejoins(skip=True)
    t2.run()
    assert m.cpus[2].kernel_counts["tlb_flush_on_switch"] == before
    found = m.check()
    assert found and {v.cpu for v in found} == {2}


def test_rar_on_the_timeline():
    """Threads at once: the RAR's work lands on the targets' clocks (handle_rar), the
    initiator waits for the slowest status byte; the checker stays clean."""
    m, proc, t0, others, p, clock = global_rar_mm()
    m.arch.set_timeline(True)
    before = [c.tlbstate.now for c in m.cpus[1:4]]
    r = t0.mprotect(p, PAGE, RW)
    m.arch.set_timeline(False)
    assert r.events["rar_sent"] == 3
    assert all(c.tlbstate.now > b for c, b in zip(m.cpus[1:4], before))
    assert m.check() == []


# ------------------------------------------------------------------ reclaim's batch
def two_cpus(profile="v6.14", preset="skylake", ncpus=2):
    m = pysim.Machine(cpus=ncpus, preset=preset, profile=profile)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(8 * PAGE, RW)
    return m, proc, t0, t1, p


def test_pageout_of_clean_file_pages_is_one_batched_flush():
    """4 clean page-cache pages, the mm also on busy CPU 1: each PTE is cleared into
    the batch (4 tlb_gen bumps), one arch_tlbbatch_flush: one IPI, a full flush here
    and on CPU 1."""
    m, proc, t0, t1, p = two_cpus()
    f = t0.mmap(4 * PAGE, PROT_READ, pysim.MAP_PRIVATE, file=pysim.File("data"))
    for i in range(4):
        t0.read(f + i * PAGE)
    t1.read(f)
    t1.busy()
    gen = proc.mm.tlb_gen
    r = t0.madvise(f, 4 * PAGE, MADV_PAGEOUT)
    assert proc.mm.tlb_gen == gen + 4
    assert r.events["tlbbatch_flush"] == 1 and r.events["flush_tlb_mm_range"] == 0
    assert r.events["ipi_sent"] == 1 and ev(r, 1, "remote_flush_all") == 1
    assert ev(r, 0, "nr_tlb_local_flush_all") == 1
    assert proc.mm.tlb_flush_batched == 4                # 4 pending, 0 flushed
    assert m.check() == []


def test_dirty_anonymous_pages_flush_before_each_swap_write():
    """try_to_unmap_flush_dirty() before pageout(): 3 written pages, 3 batch flushes;
    the zero page stays."""
    m, proc, t0, t1, p = two_cpus()
    for i in range(3):
        t0.write(p + i * PAGE)
    t0.read(p + 3 * PAGE)
    t1.read(p)
    t1.busy()
    r = t0.madvise(p, 4 * PAGE, MADV_PAGEOUT)
    assert r.events["tlbbatch_flush"] == 3 and r.events["ipi_sent"] == 3
    assert proc.pt.get(p + 3 * PAGE)[0] & 1             # the zero page: still present
    assert m.check() == []


def test_one_cpu_mms_flush_each_page_at_once():
    """arch_tlbbatch_should_defer(): no other CPU in mm_cpumask, so ptep_clear_flush()
    flushes each page (2 single-page flush_tlb_mm_range), no batch."""
    m = pysim.Machine(cpus=2, profile="v6.14")
    t0 = m.process().thread(cpu=0)
    p = t0.mmap(2 * PAGE, RW)
    t0.write(p)
    t0.write(p + PAGE)
    r = t0.madvise(p, 2 * PAGE, MADV_PAGEOUT)
    assert r.events["flush_tlb_mm_range"] == 2 and r.events["tlbbatch_flush"] == 0
    assert r.events["nr_tlb_local_flush_one"] == 2 and m.check() == []


def test_the_next_mprotect_and_munmap_meet_the_pending_batch_once():
    """flush_tlb_batched_pending(): the first mprotect after the reclaim flushes the
    whole mm (flush_tlb_mm: freed_tables, an IPI to CPU 1) and settles the count; the
    munmap after it does not."""
    m, proc, t0, t1, p = two_cpus()
    t0.write(p)
    t0.write(p + PAGE)
    t1.write(p + 2 * PAGE)
    t1.busy()
    t0.madvise(p, 2 * PAGE, MADV_PAGEOUT)
    assert proc.mm.tlb_flush_batched == 2
    r = t0.mprotect(p + 2 * PAGE, PAGE, PROT_READ)      # one real flush besides
    assert r.events["flush_tlb_mm_range"] == 2 and r.events["ipi_sent"] == 2
    assert proc.mm.tlb_flush_batched == 2 | (2 << 16)
    r = t0.munmap(p + 4 * PAGE, PAGE)                   # nothing mapped there
    assert r.events["flush_tlb_mm_range"] == 0
    assert m.check() == []


def pending_batch(m, proc, t0, vas):
    """Reclaim on CPU 0 clears vas into the batch and stops before its flush (as if
    another thread ran in between); returns the operation's result, unchecked."""
    cpu = m.cpus[0]
    op = m.begin(cpu, "kswapd", proc.mm)
    for va in vas:
        assert rmap.try_to_unmap_one(cpu, proc.mm, va, rmap.TTU_BATCH_FLUSH)
    return m.end(op, check=False)


def test_a_skipped_batch_flush_is_caught():
    """The broken batch: PTEs gone, no arch_tlbbatch_flush; CPU 1, running the mm,
    still caches p's writable translation."""
    m, proc, t0, t1, p = two_cpus()
    t0.write(p)
    t1.write(p)
    t1.busy()
    pending_batch(m, proc, t0, [p])
    found = m.check()
    assert found and {v.cpu for v in found} == {0, 1}
    rmap.try_to_unmap_flush(m.cpus[0])
    assert m.check() == []


def test_mprotect_meeting_the_pending_batch_flushes_it():
    """mprotect of a range whose PTE reclaim cleared finds no entry to change, but
    flush_tlb_batched_pending() flushes the mm: the stale entry goes."""
    m, proc, t0, t1, p = two_cpus()
    t0.write(p)
    t1.write(p)
    t1.busy()
    pending_batch(m, proc, t0, [p])
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["flush_tlb_mm_range"] == 1 and r.events["ipi_sent"] == 1
    assert m.check() == []


def test_cold_then_reclaim_takes_only_unreferenced_pages():
    """MADV_COLD clears A and deactivates 3 pages; page 1 is touched again; reclaim of
    the inactive list takes pages 0 and 2 (dirty: a flush before each swap write)."""
    m, proc, t0, t1, p = two_cpus()
    for i in range(3):
        t0.write(p + i * PAGE)
    t1.read(p)
    t1.busy()
    t0.madvise(p, 3 * PAGE, MADV_COLD)
    t0.read(p + PAGE)
    cpu = m.cpus[0]
    op = m.begin(cpu, "kswapd", None)
    done = rmap.shrink_inactive_list(cpu, proc.mm.frames.lruvec)
    r = m.end(op)                                       # the checker scans everything
    assert done == 2 and r.events["tlbbatch_flush"] == 2
    assert [proc.pt.get(p + i * PAGE)[0] != 0 for i in range(3)] == [False, True, False]


def test_invlpgb_batch_for_a_global_asid_mm_is_targeted_and_async():
    """6.15 on milan, an mm on global ASID 6: add_pending issues one INVLPGB per page
    and leaves the batch cpumask empty (no tlb_gen bump); the flush waits with one
    TLBSYNC and sends no IPI."""
    from test_kernel_mechanisms import broadcast_mm
    m, proc, t0, others, p = broadcast_mm()
    gen = proc.mm.tlb_gen
    r = t0.madvise(p + 8 * PAGE, 2 * PAGE, MADV_PAGEOUT)   # not populated: nothing
    assert r.events["tlbbatch_flush"] == 0
    t0.write(p + 8 * PAGE)
    cpu = m.cpus[0]
    op = m.begin(cpu, "kswapd", proc.mm)
    for va in (p, p + 8 * PAGE):
        assert rmap.try_to_unmap_one(cpu, proc.mm, va, rmap.TTU_BATCH_FLUSH)
    assert m.arch.flush.cpu_need_tlbsync(cpu.tlbstate)
    assert not np.any(rmap.tlb_ubc(cpu).arch) and proc.mm.tlb_gen == gen
    rmap.try_to_unmap_flush(cpu)
    r = m.end(op)
    assert ev(r, 0, "invlpgb") == 2 and ev(r, 0, "tlbsync") == 1
    assert r.events["ipi_sent"] == 0 and r.events["tlbbatch_flush"] == 1
    assert m.check() == []


def test_rar_batch_flush_is_one_full_rar_to_the_mask():
    """rar-rfc: arch_tlbbatch_flush() sends one RAR (every PCID) to the batch cpumask
    and flushes this CPU's non-global entries; no IPI."""
    m, proc, t0, t1, p = two_cpus(profile="rar-rfc", preset="intel-rar")
    f = t0.mmap(2 * PAGE, PROT_READ, pysim.MAP_PRIVATE, file=pysim.File("data"))
    t0.read(f)
    t0.read(f + PAGE)
    t1.read(f)
    t1.busy()
    r = t0.madvise(f, 2 * PAGE, MADV_PAGEOUT)
    assert r.events["tlbbatch_flush"] == 1 and r.events["rar_sent"] == 1
    assert r.events["ipi_sent"] == 0 and ev(r, 1, "rar_received") == 1
    assert m.arch.flush.rar_payloads[0]["subtype"] == "all"
    assert m.check() == []
