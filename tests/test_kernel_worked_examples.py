"""The worked examples of kernel-semantics.md section 3.8, under mmots (5.17) and patched
(5.19), with one thread and with a second, busy (non-lazy) thread of the same process.

Every test pins the exact number of flush_tlb_mm_range calls, INVLPGs (the TLB's
`invlpg` and the kernel's `nr_tlb_local_flush_one` / `remote_flush_one`), full flushes
(`nr_tlb_local_flush_all` / `remote_flush_all` and the TLB's `flush_pcid`) and IPIs
(`ipi_sent`, `nr_tlb_remote_flush`, `nr_tlb_remote_flush_received`) of the operation.
"""
import mmucore
import pytest

import pysim
from rigs import uffd_writeprotect
from pysim import (MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, PROT_NONE, PROT_READ,
                   PROT_WRITE, PROT_EXEC)

PAGE = 4096
HPAGE = 2 << 20
RW = PROT_READ | PROT_WRITE
PROFILES = ("mmots", "patched")
THREADS = (1, 2)


def setup(profile, threads):
    """A machine with thread t0 on CPU 0 and, for 2 threads, a busy t1 on CPU 1."""
    m = pysim.Machine(cpus=threads, profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1).busy() if threads == 2 else None
    return m, proc, t0, t1


def cpu_ev(r, cpu, name):
    return r.cpu_events.get(cpu, {}).get(name, 0)


def check_flushes(r, threads, requests, invlpg=0, full=0):
    """The operation made `requests` flush_tlb_mm_range calls, which did `invlpg` INVLPGs
    and `full` full flushes on every CPU running the mm; with 2 threads each request
    IPIs the busy CPU once."""
    got = {
        "flush_tlb_mm_range": r.events["flush_tlb_mm_range"],
        "cpu0.invlpg": cpu_ev(r, 0, "invlpg"),
        "cpu0.nr_tlb_local_flush_one": cpu_ev(r, 0, "nr_tlb_local_flush_one"),
        "cpu0.flush_pcid": cpu_ev(r, 0, "flush_pcid"),
        "cpu0.nr_tlb_local_flush_all": cpu_ev(r, 0, "nr_tlb_local_flush_all"),
        "ipi_sent": r.events["ipi_sent"],
        "nr_tlb_remote_flush": r.events["nr_tlb_remote_flush"],
        "nr_tlb_remote_flush_received": r.events["nr_tlb_remote_flush_received"],
    }
    want = {
        "flush_tlb_mm_range": requests,
        "cpu0.invlpg": invlpg,
        "cpu0.nr_tlb_local_flush_one": invlpg,
        "cpu0.flush_pcid": full,
        "cpu0.nr_tlb_local_flush_all": full,
        "ipi_sent": requests if threads == 2 else 0,
        "nr_tlb_remote_flush": requests if threads == 2 else 0,
        "nr_tlb_remote_flush_received": requests if threads == 2 else 0,
    }
    if threads == 2:
        got.update({
            "cpu1.invlpg": cpu_ev(r, 1, "invlpg"),
            "cpu1.remote_flush_one": cpu_ev(r, 1, "remote_flush_one"),
            "cpu1.flush_pcid": cpu_ev(r, 1, "flush_pcid"),
            "cpu1.remote_flush_all": cpu_ev(r, 1, "remote_flush_all"),
            "cpu1.nr_tlb_remote_flush_received": cpu_ev(r, 1, "nr_tlb_remote_flush_received"),
            "cpu0.nr_tlb_remote_flush_received": cpu_ev(r, 0, "nr_tlb_remote_flush_received"),
        })
        want.update({
            "cpu1.invlpg": invlpg, "cpu1.remote_flush_one": invlpg,
            "cpu1.flush_pcid": full, "cpu1.remote_flush_all": full,
            "cpu1.nr_tlb_remote_flush_received": requests,
            "cpu0.nr_tlb_remote_flush_received": 0,
        })
    assert got == want


def pte(proc, addr):
    return proc.mm.pt.get(addr)[0]


# ------------------------------------------------------------------ row 1
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_read_on_one_written_page(profile, threads):
    """mprotect(READ) on 1 page whose PTE is RW+D: one 1-page flush in both kernels."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    assert pte(proc, p) & (mmucore.PTE_RW | mmucore.PTE_D) == mmucore.PTE_RW | mmucore.PTE_D
    r = t0.mprotect(p, PAGE, PROT_READ)
    check_flushes(r, threads, requests=1, invlpg=1)
    assert not pte(proc, p) & mmucore.PTE_RW


# ------------------------------------------------------------------ row 2
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_read_write_on_read_only_private_page(profile, threads):
    """mprotect(READ|WRITE) on a private page whose PTE is already RO: 5.17 flushes
    anyway (and IPIs the busy CPU), 5.19 leaves the unchanged PTE alone."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t0.mprotect(p, PAGE, PROT_READ)
    before = pte(proc, p)
    r = t0.mprotect(p, PAGE, RW)
    assert pte(proc, p) == before                    # PAGE_COPY: still read-only
    if profile == "mmots":
        check_flushes(r, threads, requests=1, invlpg=1)
    else:
        check_flushes(r, threads, requests=0)


# ------------------------------------------------------------------ row 3
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_read_over_1gb_with_one_populated_page(profile, threads):
    """mprotect(READ) over 1 GiB holding one RW page: 5.17 flushes the whole VMA range
    (262144 pages > 33: a full flush), 5.19 one INVLPG for the one page."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(1 << 30, RW)
    t0.write(p + 12345 * PAGE)
    r = t0.mprotect(p, 1 << 30, PROT_READ)
    if profile == "mmots":
        check_flushes(r, threads, requests=1, full=1)
    else:
        check_flushes(r, threads, requests=1, invlpg=1)


# ------------------------------------------------------------------ row 4
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_three_vmas_with_one_page_each(profile, threads):
    """One RW page in each of 3 VMAs of 100 pages, pages 100 pages apart: 5.17 flushes
    each VMA portion (100 pages > 33: 3 full flushes), 5.19 once over [0, 201) pages,
    which is beyond the ceiling: 1 full flush."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(300 * PAGE, RW)
    t0.mprotect(p + 100 * PAGE, 100 * PAGE, RW | PROT_EXEC)     # empty: no flush
    assert proc.mm.vmas.map_count == 3
    for i in (0, 100, 200):
        t0.write(p + i * PAGE)
    r = t0.mprotect(p, 300 * PAGE, PROT_READ)
    if profile == "mmots":
        check_flushes(r, threads, requests=3, full=3)
    else:
        check_flushes(r, threads, requests=1, full=1)
    assert proc.mm.vmas.map_count == 1                           # all READ now: merged


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_three_small_vmas_with_one_page_each(profile, threads):
    """The same with VMAs of 10 pages, pages 10 apart: 5.17 flushes each 10-page portion
    with 10 INVLPGs (30 in all), 5.19 once over 21 pages (21 INVLPGs)."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(30 * PAGE, RW)
    t0.mprotect(p + 10 * PAGE, 10 * PAGE, RW | PROT_EXEC)
    for i in (0, 10, 20):
        t0.write(p + i * PAGE)
    r = t0.mprotect(p, 30 * PAGE, PROT_READ)
    if profile == "mmots":
        check_flushes(r, threads, requests=3, invlpg=30)
    else:
        check_flushes(r, threads, requests=1, invlpg=21)


# ------------------------------------------------------------------ row 5
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_one_thp_to_read(profile, threads):
    """A 2 MiB-aligned RW THP -> READ: 5.17 flushes at once in pmdp_invalidate (512 pages
    at stride 4K: full) and again at the end of the range (full): 2 full flushes, 2 IPI
    rounds; 5.19 one flush at stride 2M: 1 INVLPG per CPU, 1 IPI round."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(HPAGE, RW, huge=True)
    assert p % HPAGE == 0
    t0.write(p)
    if t1 is not None:
        t1.read(p + 5 * PAGE)
        t1.busy()
    assert proc.mm.pt.get(p)[1] == 21
    assert m.cpus[0].tlb.probe(p)[2] is True                 # a 2M entry is cached
    r = t0.mprotect(p, HPAGE, PROT_READ)
    if profile == "mmots":
        check_flushes(r, threads, requests=2, full=2)
    else:
        check_flushes(r, threads, requests=1, invlpg=1)
    for c in m.cpus:                                         # the 2M entry is gone
        assert c.tlb.probe(p) is None
    assert proc.mm.pt.get(p)[1] == 21                        # still a THP, now RO
    assert not pte(proc, p) & mmucore.PTE_RW


# ------------------------------------------------------------------ row 6
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_forty_thps_to_read(profile, threads):
    """40 contiguous THPs -> READ: 5.17 does 40 immediate full flushes plus the final one
    (41); 5.19 one flush of 80 MiB >> 21 = 40 > 33 entries: one full flush."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(40 * HPAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, huge=True)
    assert t0.last.events["fault_thp"] == 40
    r = t0.mprotect(p, 40 * HPAGE, PROT_READ)
    if profile == "mmots":
        check_flushes(r, threads, requests=41, full=41)
    else:
        check_flushes(r, threads, requests=1, full=1)


# ------------------------------------------------------------------ row 7
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_prot_none_to_read_write(profile, threads):
    """PROT_NONE -> READ|WRITE (heap growth): the PROT_NONE PTE counts as present in
    5.17 (pages = 1: a flush); in 5.19 its P bit is clear, so nothing to flush."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    r = t0.mprotect(p, PAGE, PROT_NONE)
    check_flushes(r, threads, requests=1, invlpg=1)          # P cleared: both flush
    e = pte(proc, p)
    assert not e & mmucore.PTE_P and e & mmucore.PTE_PROTNONE
    r = t0.mprotect(p, PAGE, RW)
    if profile == "mmots":
        check_flushes(r, threads, requests=1, invlpg=1)
    else:
        check_flushes(r, threads, requests=0)
    assert pte(proc, p) & mmucore.PTE_P


# ------------------------------------------------------------------ row 8 (uffd-wp)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", PROFILES)
def test_uffd_wp_protect_and_resolve(profile, threads):
    """UFFDIO_WRITEPROTECT: protect clears RW (a flush in both kernels); resolve only
    clears the uffd-wp software bit: 5.17 flushes the present page anyway (every present
    entry is recorded), 5.19 does not flush."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    r = uffd_writeprotect(m, t0, p, PAGE, mmucore.CP_UFFD_WP)
    check_flushes(r, threads, requests=1, invlpg=1)
    e = pte(proc, p)
    assert e & mmucore.PTE_UFFD_WP and not e & mmucore.PTE_RW
    assert proc.mm.tlb_flush_pending == 0
    r = uffd_writeprotect(m, t0, p, PAGE, mmucore.CP_UFFD_WP_RESOLVE)
    assert pte(proc, p) == e & ~mmucore.PTE_UFFD_WP
    if profile == "mmots":
        check_flushes(r, threads, requests=1, invlpg=1)
    else:
        check_flushes(r, threads, requests=0)
    assert proc.mm.tlb_flush_pending == 0
    # the next write takes the write-protect fault and reuses the page: no flush
    r = t0.write(p)
    assert [f[3] for f in r.faults] == ["wp_reuse"]
    check_flushes(r, threads, requests=0)


def test_gather_api_outside_an_operation():
    """The mmu_gather API as pysim/gather.py documents it for user-written kernel paths
    (`with tlb_gather_mmu(cpu, mm) as tlb: ... tlb_flush_pte_range ...`), called without
    wrapping it in Machine.begin()/end() first: the recorded page is flushed, counted on
    the CPU, and the mm's flush-pending count goes back to 0."""
    m, proc, t0, t1 = setup("patched", 1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    mm, cpu = proc.mm, m.cpus[0]
    vma = mm.vmas.find_vma(p)
    assert cpu.tlb.probe(p) is not None
    flushes0 = cpu.kernel_counts["flush_tlb_mm_range"]
    with pysim.tlb_gather_mmu(cpu, mm) as tlb:
        pysim.tlb_start_vma(tlb, vma)
        mm.pt.set_pte(p, pte(proc, p) & ~mmucore.PTE_RW)
        pysim.tlb_flush_pte_range(tlb, p, PAGE)
        pysim.tlb_end_vma(tlb, vma)
    assert tlb.finished and len(tlb.flushes) == 1
    assert mm.tlb_flush_pending == 0
    assert cpu.kernel_counts["flush_tlb_mm_range"] - flushes0 == 1
    assert cpu.tlb.probe(p) is None
    assert m.check() == []


# ------------------------------------------------------------------ 8.1: later kernels
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile, rw_flush", [("mmots", True), ("patched", False),
                                               ("v6.0", True), ("v6.2", True)])
def test_seed_loop_by_kernel_version(profile, rw_flush, threads):
    """The cover letter's loop (mprotect READ; mprotect READ|WRITE; *p = 0) on a dirty
    exclusive anonymous page: 6.0+ set RW in mprotect itself, which brings the flush on
    READ|WRITE back (5.19 had removed it) and removes the write fault."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    r = t0.mprotect(p, PAGE, PROT_READ)
    check_flushes(r, threads, requests=1, invlpg=1)
    r = t0.mprotect(p, PAGE, RW)
    check_flushes(r, threads, requests=int(rw_flush), invlpg=int(rw_flush))
    r = t0.write(p)
    assert [f[3] for f in r.faults] == ([] if profile.startswith("v6") else ["wp_reuse"])
    check_flushes(r, threads, requests=0)


@pytest.mark.parametrize("profile, writable", [("v6.0", False), ("v6.2", True)])
def test_clean_exclusive_page_made_writable_only_from_6_2(profile, writable):
    """6.0 needs the PTE dirty to set RW in mprotect; 6.2 does it for clean exclusive
    anonymous pages too (MADV_FREE made this one clean)."""
    m, proc, t0, t1 = setup(profile, 1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t0.madvise(p, PAGE, pysim.MADV_FREE)
    t0.mprotect(p, PAGE, PROT_READ)
    assert not pte(proc, p) & (mmucore.PTE_D | mmucore.PTE_RW)
    r = t0.mprotect(p, PAGE, RW)
    assert bool(pte(proc, p) & mmucore.PTE_RW) == writable
    check_flushes(r, 1, requests=int(writable), invlpg=int(writable))


def test_zero_page_is_never_made_writable_by_mprotect():
    m, proc, t0, t1 = setup("v6.2", 1)
    p = t0.mmap(PAGE, PROT_READ)
    t0.read(p)
    r = t0.mprotect(p, PAGE, RW)
    assert not pte(proc, p) & mmucore.PTE_RW
    check_flushes(r, 1, requests=0)
    r = t0.write(p)
    assert [f[3] for f in r.faults] == ["cow"]
