"""arm64's batched unmap flush (43b3dfdd0455, 6.6): MADV_PAGEOUT reclaim with exact
TLBI / DSB / arch_tlbbatch_flush counts on 1, 4 and 8 CPUs before (v6.2: ptep_clear_flush
per page) and after (v6.18), the DVM per-CPU cost paid once per DSB, the dirty-page
flush before each swap write, flush_tlb_batched_pending() as a full flush_tlb_mm from
the CPU that meets the batch, and the checker catching the broken variants (no DSB at
arch_tlbbatch_flush; 6.6's DSB on the wrong CPU in arch_flush_tlb_batched_pending)."""
import pytest

import pysim
from pysim import MADV_PAGEOUT, PROT_READ, PROT_WRITE
from pysim.errors import SafetyViolation
from pysim.mm import rmap

PAGE = 4096
RW = PROT_READ | PROT_WRITE
SHARED_ANON = pysim.MAP_SHARED | pysim.MAP_ANONYMOUS
N = 16


def clean_mapped(profile, cpus, preset="altra", pages=N):
    """One thread on CPU 0 of a `cpus`-CPU arm64 machine with `pages` shared anonymous
    pages written, paged out once and read back (clean PTEs, as the swap_bench loop
    leaves them); returns (machine, thread, address)."""
    m = pysim.Machine(cpus=cpus, preset=preset, profile=profile)
    proc = m.process()
    t = proc.thread(cpu=0)
    p = t.mmap(pages * PAGE, RW, SHARED_ANON)
    for i in range(pages):
        t.write(p + i * PAGE)
    t.madvise(p, pages * PAGE, MADV_PAGEOUT)
    for i in range(pages):
        t.read(p + i * PAGE)
    return m, proc, t, p


def flush_events(r):
    """The counts the batch changes, for one operation."""
    return {k: r.events[k] for k in ("tlbi", "dsb", "tlbbatch_flush", "flush_tlb_mm_range",
                                     "tlbi_received")}


@pytest.mark.parametrize("cpus", (1, 4, 8))
def test_pageout_after_6_6_is_n_tlbis_and_one_dsb(cpus):
    """v6.18: every page's TLBI at add_pending, one DSB at arch_tlbbatch_flush, on any
    CPU count (the merged should_defer has no CPU threshold); each TLBI reaches every
    CPU of the domain."""
    m, proc, t, p = clean_mapped("v6.18", cpus)
    r = t.madvise(p, N * PAGE, MADV_PAGEOUT)
    assert flush_events(r) == {"tlbi": N, "dsb": 1, "tlbbatch_flush": 1,
                               "flush_tlb_mm_range": 0, "tlbi_received": N * cpus}
    assert all(proc.pt.get(p + i * PAGE)[0] == 0 for i in range(N))
    assert m.check() == []


@pytest.mark.parametrize("cpus", (1, 4, 8))
def test_pageout_before_6_6_is_a_tlbi_and_a_dsb_per_page(cpus):
    """v6.2: no batching on arm64; ptep_clear_flush() per page, a one-page
    __flush_tlb_range each (TLBI + DSB)."""
    m, proc, t, p = clean_mapped("v6.2", cpus)
    r = t.madvise(p, N * PAGE, MADV_PAGEOUT)
    assert flush_events(r) == {"tlbi": N, "dsb": N, "tlbbatch_flush": 0,
                               "flush_tlb_mm_range": N, "tlbi_received": N * cpus}
    assert m.check() == []


def test_the_dvm_per_cpu_cost_is_paid_once_per_dsb():
    """Going from 4 to 8 CPUs adds 4 x dvm_per_cpu to each DSB: once for the batch, N
    times without it; the TLBIs' own cost does not depend on the CPU count."""
    dvm = pysim.get_preset("altra").cost("dvm_per_cpu")
    cyc = {}
    for prof in ("v6.2", "v6.18"):
        for cpus in (4, 8):
            m, proc, t, p = clean_mapped(prof, cpus)
            cyc[prof, cpus] = t.madvise(p, N * PAGE, MADV_PAGEOUT).cycles
    assert cyc["v6.18", 8] - cyc["v6.18", 4] == pytest.approx(4 * dvm)
    assert cyc["v6.2", 8] - cyc["v6.2", 4] == pytest.approx(N * 4 * dvm)


def test_dirty_anonymous_pages_complete_the_batch_before_each_swap_write():
    """Private anonymous pages written (dirty PTEs): try_to_unmap_flush_dirty() before
    each pageout(), so the batch is one page long: N DSBs, N arch_tlbbatch_flush."""
    m = pysim.Machine(cpus=4, preset="altra", profile="v6.18")
    t = m.process().thread(cpu=0)
    p = t.mmap(N * PAGE, RW)
    for i in range(N):
        t.write(p + i * PAGE)
    r = t.madvise(p, N * PAGE, MADV_PAGEOUT)
    assert flush_events(r) == {"tlbi": N, "dsb": N, "tlbbatch_flush": N,
                               "flush_tlb_mm_range": 0, "tlbi_received": N * 4}
    assert m.check() == []


def test_a_batch_flush_without_its_dsb_is_caught():
    """skip_batch_dsb: the TLBIs stay pending on CPU 0 after the reclaim, the PTEs are
    gone, CPU 0's TLB still maps the pages: the checker raises and names the TLBI."""
    m, proc, t, p = clean_mapped("v6.18", 8)
    m.arch.skip_batch_dsb = True
    with pytest.raises(SafetyViolation) as e:
        t.madvise(p, N * PAGE, MADV_PAGEOUT)
    assert "not completed (no DSB on cpu 0)" in str(e.value.violations[0].reason)
    assert len(m.cpus[0].tlbstate.pending_tlbi) == N


def pending_on_cpu0(profile="v6.18"):
    """A 2-CPU machine whose mm both CPUs cached page p of; reclaim on CPU 0 has cleared
    p's PTE into the batch (TLBI issued, no DSB yet) and stopped, as if another thread
    ran before its try_to_unmap_flush()."""
    m = pysim.Machine(cpus=2, preset="altra", profile=profile)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(2 * PAGE, RW, SHARED_ANON)
    t0.read(p)
    t1.read(p)
    cpu = m.cpus[0]
    op = m.begin(cpu, "kswapd", proc.mm)
    assert rmap.try_to_unmap_one(cpu, proc.mm, p, rmap.TTU_BATCH_FLUSH)
    m.end(op, check=False)
    return m, proc, t1, p


def test_mprotect_on_another_cpu_meets_the_batch_with_a_full_flush_tlb_mm():
    """flush_tlb_batched_pending() from CPU 1: one flush_tlb_mm (TLBI ASIDE1IS + DSB on
    CPU 1), which removes the stale entry everywhere although CPU 0's own TLBI is still
    pending; the pending count is settled."""
    m, proc, t1, p = pending_on_cpu0()
    assert proc.mm.tlb_flush_batched == 1
    r = t1.mprotect(p, 2 * PAGE, PROT_READ)
    assert r.events["flush_tlb_mm_range"] >= 1 and r.events["dsb"] >= 1
    assert len(m.cpus[0].tlbstate.pending_tlbi) == 1
    assert proc.mm.tlb_flush_batched == 1 | (1 << 16)
    assert m.check() == []


def test_the_6_6_dsb_in_batched_pending_is_caught():
    """batched_pending_dsb (6.6..6.15's arch_flush_tlb_batched_pending: dsb(ish) on the
    calling CPU): CPU 1's DSB completes nothing of CPU 0's TLBI, so both TLBs still map
    p after the mprotect; the checker raises."""
    m, proc, t1, p = pending_on_cpu0()
    m.arch.batched_pending_dsb = True
    with pytest.raises(SafetyViolation) as e:
        t1.mprotect(p, 2 * PAGE, PROT_READ)
    assert {v.cpu for v in e.value.violations} == {0, 1}


# ------------------------------------------------------------ the registry entry
def test_batched_flush_2023_entry_fits_its_training_cells_and_labels_its_kernels():
    """arm64-batched-flush-2023: the two training cells land on the published
    ptep_clear_flush shares; every --json cell says "before" or "after"; the after
    kernel flushes by one DSB per page table; the speed-up's sign and its growth with
    CPUs hold; the 4-CPU "no gain" is not reached and the text names why."""
    import json

    from pysim.report import arm64_batched_flush_2023 as entry
    from pysim.report.reproduce import reproduce

    d = json.loads(reproduce("arm64-batched-flush-2023", as_json=True, iterations=1))
    assert {c["kernel"] for c in d["cells"]} == {"before", "after"}
    assert len(d["fit"]["free_params"]) <= 5
    for c in d["cells"]:
        if not c["held_out"]:
            assert c["kernel"] == "before"
            assert c["pageout_flush_share_pct"] == pytest.approx(c["published_share_pct"],
                                                                abs=0.01)
        assert c["events_per_loop"]["dsb"] == (1 if c["kernel"] == "after" else entry.PAGES)
    assert d["checks"]["sign"] and d["checks"]["grows_with_cpus"]
    assert not d["checks"]["no_gain_on_4"]
    text = entry.format_text(d)
    assert "missing mechanism" in text and "held out" in text
