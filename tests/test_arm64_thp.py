"""Rows 5-8 of kernel-semantics.md 3.8 on arm64, with exact TLBI / DSB / flush counts
under 5.17 (mmots), 5.19 (patched), v6.18 and v6.19 (arm64's 2025 pte_needs_flush and
huge_pmd_needs_flush, c320dbb7c80d), 1 and 2 threads, on the Altra preset (Neoverse
N1: no FEAT_TLBIRANGE) unless a test says otherwise.  The checker is on (raise) in
every machine here.

What the kernel does on arm64, and what the counts follow from:

* change_huge_pmd() (mm/huge_memory.c) takes the old PMD with pmdp_invalidate() in
  5.17 and with pmdp_invalidate_ad() from 5.19.  arm64 does not define
  __HAVE_ARCH_PMDP_INVALIDATE_AD (asm/pgtable.h has pmdp_establish() only), so the
  generic pmdp_invalidate_ad() of mm/pgtable-generic.c is pmdp_invalidate(), which
  calls flush_pmd_tlb_range() at once: patch 3 of the mprotect series changes nothing
  on arm64, and every kernel flushes each THP immediately.
* flush_pmd_tlb_range() on arm64 is __flush_tlb_range(vma, addr, end, PMD_SIZE,
  false, 2): one TLBI VAE1IS per 2 MiB stride and one DSB ISH.
* 5.17's change_protection_range() then flushes the VMA portion with flush_tlb_range()
  at PAGE_SIZE: 2 MiB is MAX_DVM_OPS (512) strides, so __flush_tlb_range() becomes
  flush_tlb_mm(): one TLBI ASIDE1IS, one DSB.
* From 5.19 change_huge_pmd() records the PMD with tlb_flush_pmd_range() when
  huge_pmd_needs_flush() (generic: always; 2025 arm64: any non-software bit of a valid
  old entry changed); arm64's tlb_flush() (asm/tlb.h) at tlb_end_vma() flushes the
  gathered range at tlb_get_unmap_size(), PMD_SIZE when only PMDs were cleared, last
  level only: one TLBI VALE1IS per THP, under the 1 GiB ceiling of 512 PMD strides.
* A TLBI reaches every CPU of the inner-shareable domain (tlbi_received = TLBIs times
  CPUs); no IPI is ever sent.
"""
import mmucore
import pytest

import pysim
from rigs import count_flush_tlb_mm, uffd_writeprotect
from pysim import (MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, PROT_NONE, PROT_READ,
                   PROT_WRITE)

PAGE = 4096
HPAGE = 2 << 20
RW = PROT_READ | PROT_WRITE
EVENTS = ("flush_tlb_mm_range", "tlbi", "tlbi_received", "dsb", "ipi_sent")
KERNELS = ("mmots", "patched", "v6.18", "v6.19")
THREADS = (1, 2)


def setup(profile, threads, **kw):
    """An Altra-class arm64 machine with the checker raising; t0 on CPU 0 and, for two
    threads, a busy t1 of the same process on CPU 1."""
    m = pysim.Machine(cpus=threads, profile=profile, preset="altra", checker="raise", **kw)
    assert m.checker.mode == "raise"
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1).busy() if threads == 2 else None
    return m, proc, t0, t1




def record_range_flushes(m):
    """Record (stride_shift, last_level) of every __flush_tlb_range() the machine's
    arm64 arch runs (before its ceiling test), in a list."""
    seen, inner = [], m.arch._flush_tlb_range

    def _flush_tlb_range(cpu, mm, start, end, stride_shift, last_level):
        """The wrapped __flush_tlb_range: record, then run the arch's own."""
        seen.append((stride_shift, last_level))
        return inner(cpu, mm, start, end, stride_shift, last_level)
    m.arch._flush_tlb_range = _flush_tlb_range
    return seen


def counts(r):
    """The arm64 flush events of one operation."""
    return {k: r.events[k] for k in EVENTS}


def want(m, requests, tlbi):
    """`requests` flushes (one DSB each) issuing `tlbi` TLBIs in all, each received by
    every CPU, and no IPI."""
    return {"flush_tlb_mm_range": requests, "tlbi": tlbi, "tlbi_received": tlbi * len(m.cpus),
            "dsb": requests, "ipi_sent": 0}


def pte(proc, addr):
    """The leaf entry over addr (canonical form)."""
    return proc.mm.pt.get(addr)[0]


# ------------------------------------------------------------------ row 5
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", KERNELS)
def test_one_thp_to_read(profile, threads):
    """Row 5, one 2 MiB-aligned RW THP -> READ.  Every kernel: pmdp_invalidate()'s
    flush_pmd_tlb_range() (1 TLBI VAE1IS, 1 DSB).  Then 5.17: flush_tlb_range() of the
    512-page portion = flush_tlb_mm() (1 TLBI ASIDE1IS, 1 DSB); 5.19+: tlb_flush() at
    stride PMD_SIZE (1 TLBI VALE1IS, 1 DSB), huge_pmd_needs_flush() being true for
    RW -> RO under both rules.  So 2 flushes, 2 TLBIs, 2 DSBs everywhere."""
    m, proc, t0, t1 = setup(profile, threads)
    mm_flushes = count_flush_tlb_mm(m)
    ranges = record_range_flushes(m)
    p = t0.mmap(HPAGE, RW, huge=True)
    assert p % HPAGE == 0
    t0.write(p)
    if t1 is not None:
        t1.read(p + 5 * PAGE)
        t1.busy()
    assert proc.mm.pt.get(p)[1] == 21
    for c in m.cpus:                                   # every CPU caches the block
        assert c.tlb.probe(p)[2] is True
    r = t0.mprotect(p, HPAGE, PROT_READ)
    assert counts(r) == want(m, 2, 2)
    assert mm_flushes[0] == (1 if profile == "mmots" else 0)
    # flush_pmd_tlb_range (2 MiB, all levels), then flush_tlb_range (4K, all levels)
    # or tlb_flush (2 MiB, last level)
    assert ranges == [(21, False), (12, False) if profile == "mmots" else (21, True)]
    for c in m.cpus:
        assert c.tlb.probe(p) is None
    assert proc.mm.pt.get(p)[1] == 21 and not pte(proc, p) & mmucore.PTE_RW
    assert m.check() == []


def test_one_thp_patch_3_is_what_makes_the_difference():
    """The same THP on x86's rule for pmdp_invalidate_ad() (a debug override of the
    arch attribute): the immediate flush goes and one flush is left, which is what
    arm64 does not get."""
    m, proc, t0, t1 = setup("patched", 2)
    m.arch.has_pmdp_invalidate_ad = True
    p = t0.mmap(HPAGE, RW, huge=True)
    t0.write(p)
    r = t0.mprotect(p, HPAGE, PROT_READ)
    assert counts(r) == want(m, 1, 1)


# ------------------------------------------------------------------ row 6
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", KERNELS)
def test_forty_thps_to_read(profile, threads):
    """Row 6, 40 contiguous THPs -> READ.  40 immediate flush_pmd_tlb_range() (1 TLBI
    each) in every kernel; then 5.17 one flush_tlb_range() of 80 MiB at 4K (20480
    strides >= 512: flush_tlb_mm, 1 TLBI): 41 flushes, 41 TLBIs; 5.19+ one tlb_flush()
    at stride PMD_SIZE (40 strides < 512: 40 TLBIs): 41 flushes, 80 TLBIs.  41 DSBs."""
    m, proc, t0, t1 = setup(profile, threads)
    mm_flushes = count_flush_tlb_mm(m)
    p = t0.mmap(40 * HPAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, huge=True)
    assert t0.last.events["fault_thp"] == 40
    r = t0.mprotect(p, 40 * HPAGE, PROT_READ)
    if profile == "mmots":
        assert counts(r) == want(m, 41, 41) and mm_flushes[0] == 1
    else:
        assert counts(r) == want(m, 41, 80) and mm_flushes[0] == 0
    assert m.check() == []


@pytest.mark.parametrize("profile, tlbi", [("mmots", 41), ("v6.19", 41)])
def test_forty_thps_with_range_tlbi(profile, tlbi):
    """With FEAT_TLBIRANGE the range encoding counts 4K pages: each 2 MiB flush is 512
    pages, one range TLBI; 5.19+'s 80 MiB gather flush is 20480 pages (10240 = 10 << 10:
    one range TLBI at scale 2); 5.17's 80 MiB flush_tlb_range() is below
    MAX_TLBI_RANGE_PAGES, so one range TLBI too instead of flush_tlb_mm."""
    m, proc, t0, t1 = setup(profile, 2, tlbi_range=True)
    mm_flushes = count_flush_tlb_mm(m)
    p = t0.mmap(40 * HPAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, huge=True)
    r = t0.mprotect(p, 40 * HPAGE, PROT_READ)
    assert counts(r) == want(m, 41, tlbi) and mm_flushes[0] == 0


# ------------------------------------------------------------------ row 7
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", KERNELS)
def test_prot_none_to_read_write(profile, threads):
    """Row 7, PROT_NONE -> READ|WRITE on a written page.  The way in (RW -> NONE)
    clears VALID: 1 TLBI, 1 DSB in every kernel.  The way back: 5.17 counts the
    PROT_NONE entry as present (pte_present), pages = 1, one 1-page flush; 5.19 and
    6.18 have the generic pte_needs_flush() (always true): one flush; 6.19's
    __pte_flags_need_flush() sees an invalid old entry: no flush."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    assert counts(t0.mprotect(p, PAGE, PROT_NONE)) == want(m, 1, 1)
    e = pte(proc, p)
    assert not e & mmucore.PTE_P and e & mmucore.PTE_PROTNONE
    r = t0.mprotect(p, PAGE, RW)
    n = 0 if profile == "v6.19" else 1
    assert counts(r) == want(m, n, n)
    assert pte(proc, p) & mmucore.PTE_P
    t0.write(p)
    assert m.check() == []


# ------------------------------------------------------------------ row 8 (uffd-wp)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", ("v6.18", "v6.19"))
def test_uffd_wp_resolve_software_bit_only(profile, threads):
    """Row 8 on arm64 (uffd-wp exists there from 6.10, 5b32510af77b; the 5.17 and
    5.19 rows do not apply).  A page of a VMA without VM_WRITE, so uffd_wp_range() does
    not add MM_CP_TRY_CHANGE_WRITABLE and only PTE_UFFD_WP (bit 58, a software bit)
    changes, both ways: 6.18 flushes each (generic pte_needs_flush()), 6.19 neither."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t0.mprotect(p, PAGE, PROT_READ)
    e = pte(proc, p)
    n = 0 if profile == "v6.19" else 1
    r = uffd_writeprotect(m, t0, p, PAGE, mmucore.CP_UFFD_WP)
    assert pte(proc, p) == e | mmucore.PTE_UFFD_WP and counts(r) == want(m, n, n)
    r = uffd_writeprotect(m, t0, p, PAGE, mmucore.CP_UFFD_WP_RESOLVE)
    assert pte(proc, p) == e and counts(r) == want(m, n, n)
    assert proc.mm.tlb_flush_pending == 0 and m.check() == []


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("profile", ("v6.18", "v6.19"))
def test_uffd_wp_on_a_written_exclusive_page(profile, threads):
    """The same on a written private page of a writable VMA: protect clears write
    (a flush under both rules); resolve runs with MM_CP_TRY_CHANGE_WRITABLE and makes
    the exclusive page writable again, a DBM/AP[2] change the 2025 rule flushes too;
    the next write then takes no fault."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    r = uffd_writeprotect(m, t0, p, PAGE, mmucore.CP_UFFD_WP)
    e = pte(proc, p)
    assert e & mmucore.PTE_UFFD_WP and not e & mmucore.PTE_RW
    assert counts(r) == want(m, 1, 1)
    r = uffd_writeprotect(m, t0, p, PAGE, mmucore.CP_UFFD_WP_RESOLVE)
    e = pte(proc, p)
    assert e & mmucore.PTE_RW and not e & mmucore.PTE_UFFD_WP
    assert counts(r) == want(m, 1, 1)
    w = t0.write(p)
    assert w.faults == [] and counts(w) == want(m, 0, 0)
    assert m.check() == []
