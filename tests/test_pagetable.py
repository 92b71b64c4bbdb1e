"""Unit tests of mmucore.pagetable: map / read_range / get, change_range and its modes with
the gather they produce, THP splits, zap_range with and without table freeing,
clear_young_dirty, populate and input validation.  Values are worked out by hand from
/work/shared/SPEC.md and /work/shared/reference/kernel-semantics.md (sections 3-4, 11).
"""
import numpy as np
import pytest

import mmucore
from mmucore import (CP_DIRTY_ACCT, CP_RECORD_ALL, CP_RECORD_NEEDED, CP_TRY_WRITABLE,
                     CP_UFFD_WP, CP_UFFD_WP_RESOLVE, CP_WRITABLE_NEEDS_DIRTY, Gather)

P, RW, US, A, D, G, NX = (mmucore.PTE_P, mmucore.PTE_RW, mmucore.PTE_US, mmucore.PTE_A,
                          mmucore.PTE_D, mmucore.PTE_G, mmucore.PTE_NX)
PSE, PAT, PAT_LARGE, UFFD_WP = (mmucore.PTE_PSE, mmucore.PTE_PAT, mmucore.PTE_PAT_LARGE,
                                mmucore.PTE_UFFD_WP)
K = 4096
M2 = 1 << 21
G1 = 1 << 30
VA = 0x7F0000000000
HVA = 0x7F0000200000
DEFAULT = P | RW | US | A | D


def pte(pfn, flags):
    return (pfn << 12) | flags


def gather_state(g):
    return (g.start, g.end, g.stride_shift, g.needs_flush, g.cleared_ptes, g.cleared_pmds,
            g.freed_tables)


# ------------------------------------------------------------------ map / read / get
def test_gather_starts_empty():
    g = Gather()
    assert (g.start, g.end, g.needs_flush, g.empty, g.stride_shift) == (
        mmucore.TASK_SIZE, 0, False, True, 12)


def test_map_4k_read_range_and_get():
    pt = mmucore.PageTable()
    assert pt.table_counts == {"pte": 0, "pmd": 0, "pud": 0, "pgd": 1}
    first = pt.map(VA + K, 3)
    assert first == 0x1000 and pt.next_pfn == 0x1003
    want = [0] + [pte(0x1000 + i, DEFAULT) for i in range(3)] + [0]
    assert [int(x) for x in pt.read_range(VA, 5)] == want
    assert pt.get(VA + K + 123) == (pte(0x1000, DEFAULT), 12)
    assert pt.get(VA) == (0, 0) and pt.get(0x1000) == (0, 0)
    assert pt.table_counts == {"pte": 1, "pmd": 1, "pud": 1, "pgd": 1}
    pgd, pud, pmd = pt.upper_entries(VA)
    assert all(e & mmucore.PTE_TABLE_FLAGS == mmucore.PTE_TABLE_FLAGS for e in (pgd, pud, pmd))
    assert pt.upper_entries(0x40000000) == (0, 0, 0)
    # P is always added; an explicit pfn does not move next_pfn
    assert pt.map(VA + 8 * K, 1, flags=US, pfn=0x777) == 0x777
    assert pt.get(VA + 8 * K) == (pte(0x777, P | US), 12) and pt.next_pfn == 0x1003
    out = np.zeros(2, dtype=np.uint64)
    assert pt.read_range(VA + 7 * K, 2, out=out) is out
    assert [int(x) for x in out] == [0, pte(0x777, P | US)]
    # map overwrites existing entries
    pt.map(VA + K, 1, flags=US | A)
    assert pt.get(VA + K)[0] == pte(0x1003, P | US | A)


def test_map_huge_read_range_and_get():
    pt = mmucore.PageTable()
    first = pt.map(HVA, 1024, huge=True, pfn=0x40000)
    assert first == 0x40000 and pt.next_pfn == 0x1000
    pmd0, pmd1 = pte(0x40000, DEFAULT | PSE), pte(0x40200, DEFAULT | PSE)
    assert pt.get(HVA + 0x1234) == (pmd0, 21)
    assert pt.get(HVA + M2 + 0x1FF000) == (pmd1, 21)
    assert [int(x) for x in pt.read_range(HVA + 510 * K, 4)] == [pmd0, pmd0, pmd1, pmd1]
    assert pt.table_counts["pte"] == 0
    # next_pfn advances by the pages mapped when no pfn is given (512-aligned here)
    pt2 = mmucore.PageTable()
    pt2.next_pfn = 0x2000
    assert pt2.map(HVA, 512, huge=True) == 0x2000 and pt2.next_pfn == 0x2200


def test_map_huge_over_ptes_frees_the_table_and_4k_over_huge_replaces_it():
    pt = mmucore.PageTable()
    pt.map(HVA + 5 * K, 2)
    assert pt.table_counts["pte"] == 1
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    assert pt.table_counts["pte"] == 0 and pt.get(HVA + 5 * K)[1] == 21
    pt.map(HVA + 7 * K, 1, pfn=0x999)              # a 4K map into the huge PMD
    assert pt.table_counts["pte"] == 1
    assert pt.get(HVA + 7 * K) == (pte(0x999, DEFAULT), 12)
    assert pt.get(HVA) == (0, 0)                   # the rest of the 2M page is gone


def test_set_pte_set_pmd_split():
    pt = mmucore.PageTable()
    pt.set_pte(VA, pte(0x55, P | US))
    assert pt.get(VA) == (pte(0x55, P | US), 12)
    pt.set_pmd(HVA, pte(0x40000, P | RW | US))     # PSE is added
    assert pt.get(HVA + 3 * K) == (pte(0x40000, P | RW | US | PSE), 21)
    with pytest.raises(ValueError):
        pt.set_pte(HVA + K, pte(1, P))             # inside a huge PMD: split first
    assert pt.split_huge_pmd(HVA + 77 * K) is True
    assert pt.get(HVA + 3 * K) == (pte(0x40003, P | RW | US), 12)
    assert pt.split_huge_pmd(HVA) is False         # already split
    assert pt.split_huge_pmd(0x40000000) is False  # nothing there
    pt.set_pmd(HVA, 0)                             # frees the PTE table of the split
    assert pt.get(HVA + 3 * K) == (0, 0) and pt.table_counts["pte"] == 1


def test_split_keeps_frames_pat_and_prot_none():
    pt = mmucore.PageTable()
    pt.set_pmd(HVA, pte(0x40000, P | US | A | NX | PAT_LARGE))
    pt.split_huge_pmd(HVA)
    for i in (0, 1, 511):
        e, shift = pt.get(HVA + i * K)
        assert shift == 12 and mmucore.pte_pfn(e) == 0x40000 + i
        assert e & ~mmucore.PTE_PFN_MASK == P | US | A | NX | PAT    # PAT_LARGE -> PAT
    none = mmucore.pmd_modify(pte(0x40200, DEFAULT | PSE), mmucore.PAGE_NONE)
    pt.set_pmd(HVA + M2, none)
    pt.split_huge_pmd(HVA + M2)
    for i in (0, 300):
        e = pt.get(HVA + M2 + i * K)[0]
        assert not e & P and e & mmucore.PTE_PROTNONE and mmucore.pte_present(e)
        assert mmucore.pte_pfn(e) == 0x40200 + i


# ------------------------------------------------------------------ change_range modes
def _mixed(pt):
    """Six pages: RW+D, RW clean, RO+D, hole, PROT_NONE, RW+D."""
    pt.map(VA, 6, flags=RW | US | A | D | NX)
    pt.set_pte(VA + K, pt.get(VA + K)[0] & ~D)
    pt.set_pte(VA + 2 * K, mmucore.pte_modify(pt.get(VA + 2 * K)[0], mmucore.PAGE_READONLY))
    pt.set_pte(VA + 3 * K, 0)
    pt.set_pte(VA + 4 * K, mmucore.pte_modify(pt.get(VA + 4 * K)[0], mmucore.PAGE_NONE))


def test_change_range_record_all():
    pt = mmucore.PageTable()
    _mixed(pt)
    g = Gather()
    pages, changed, flagged, thp, splits, tables = pt.change_range(
        VA, 6, mmucore.PAGE_READONLY, CP_RECORD_ALL, g)
    # present (incl. PROT_NONE) entries: 0, 1, 2, 4, 5; page 2 was already read-only
    assert (pages, changed, flagged, list(thp), list(splits), tables) == (5, 4, 5, [], [], 1)
    assert gather_state(g) == (VA, VA + 6 * K, 12, True, True, False, False)
    assert pt.get(VA)[0] == pte(0x1000, P | US | A | D | NX)
    assert pt.get(VA + 4 * K)[0] == pte(0x1004, P | US | A | D | NX)   # back from PROT_NONE
    assert pt.get(VA + 3 * K) == (0, 0)


def test_change_range_record_needed():
    pt = mmucore.PageTable()
    _mixed(pt)
    g = Gather()
    pages, changed, flagged = pt.change_range(VA, 6, mmucore.PAGE_READONLY,
                                              CP_RECORD_NEEDED, g)[:3]
    # RW cleared on 0, 1, 5; page 2 unchanged; page 4 was not present (P clear)
    assert (pages, changed, flagged) == (5, 4, 3)
    assert gather_state(g) == (VA, VA + 6 * K, 12, True, True, False, False)
    # READ|WRITE on a private mapping is the same read-only prot: nothing to flush
    g = Gather()
    pages, changed, flagged = pt.change_range(VA, 6, mmucore.PAGE_COPY,
                                              CP_RECORD_NEEDED, g)[:3]
    assert (pages, changed, flagged) == (5, 0, 0) and g.empty and not g.needs_flush
    # only the middle page needs it: the gather covers just that page
    pt.set_pte(VA + 2 * K, pt.get(VA + 2 * K)[0] | RW)
    g = Gather()
    assert pt.change_range(VA, 6, mmucore.PAGE_COPY, CP_RECORD_NEEDED, g)[2] == 1
    assert (g.start, g.end) == (VA + 2 * K, VA + 3 * K)


def test_change_range_without_recording():
    pt = mmucore.PageTable()
    _mixed(pt)
    pages, changed, flagged = pt.change_range(VA, 6, mmucore.PAGE_NONE)[:3]
    assert (pages, changed, flagged) == (5, 4, 0)
    assert all(not int(e) & P for e in pt.read_range(VA, 6))


def test_change_range_try_writable():
    pt = mmucore.PageTable()
    zero = 0x3333
    pt.map(VA, 2, flags=US | A | NX)                         # read-only, clean
    pt.set_pte(VA + K, pt.get(VA + K)[0] | D)                # read-only, dirty
    pt.set_pte(VA + 2 * K, pte(zero, P | US | A | NX))       # the shared zero page
    g = Gather()
    mode = CP_RECORD_NEEDED | CP_TRY_WRITABLE
    assert pt.change_range(VA, 3, mmucore.PAGE_COPY, mode, g, zero_pfn=zero)[1:3] == (2, 2)
    assert [bool(int(e) & RW) for e in pt.read_range(VA, 3)] == [True, True, False]
    assert (g.start, g.end, g.stride_shift) == (VA, VA + 2 * K, 12)   # RW set flushes


def test_change_range_try_writable_skips_page_cache_frames():
    """A private file mapping holds page-cache frames (not PageAnon: stay read-only) next
    to the anonymous copies its write faults made (made writable)."""
    pt = mmucore.PageTable()
    pt.map(VA, 1, flags=US | A | D | NX, pfn=mmucore.FILE_PFN_BASE + 7)    # page cache
    pt.map(VA + K, 1, flags=US | A | D | NX, pfn=0x5000)                    # anon copy
    g = Gather()
    mode = CP_RECORD_NEEDED | CP_TRY_WRITABLE
    assert pt.change_range(VA, 2, mmucore.PAGE_COPY, mode, g)[1:3] == (1, 1)
    assert [bool(int(e) & RW) for e in pt.read_range(VA, 2)] == [False, True]
    assert (g.start, g.end) == (VA + K, VA + 2 * K)


def test_change_range_try_writable_needs_dirty():
    pt = mmucore.PageTable()
    pt.map(VA, 2, flags=US | A | NX)
    pt.set_pte(VA + K, pt.get(VA + K)[0] | D)
    g = Gather()
    mode = CP_RECORD_NEEDED | CP_TRY_WRITABLE | CP_WRITABLE_NEEDS_DIRTY
    assert pt.change_range(VA, 2, mmucore.PAGE_COPY, mode, g)[1:3] == (1, 1)
    assert [bool(int(e) & RW) for e in pt.read_range(VA, 2)] == [False, True]
    assert (g.start, g.end) == (VA + K, VA + 2 * K)
    # NEEDS_DIRTY alone (without TRY_WRITABLE) does nothing
    pt2 = mmucore.PageTable()
    pt2.map(VA, 1, flags=US | A | D | NX)
    assert pt2.change_range(VA, 1, mmucore.PAGE_COPY, CP_WRITABLE_NEEDS_DIRTY)[1] == 0


def test_change_range_uffd_wp_and_resolve():
    pt = mmucore.PageTable()
    pt.map(VA, 2, flags=RW | US | A | D | NX)
    g = Gather()
    assert pt.change_range(VA, 2, mmucore.PAGE_SHARED, CP_RECORD_NEEDED | CP_UFFD_WP,
                           g)[1:3] == (2, 2)
    assert all(int(e) & UFFD_WP and not int(e) & RW for e in pt.read_range(VA, 2))
    assert (g.start, g.end) == (VA, VA + 2 * K)
    # a write-protected page is not made writable by TRY_WRITABLE
    assert pt.change_range(VA, 2, mmucore.PAGE_COPY, CP_TRY_WRITABLE)[1] == 0
    # resolve touches only the software bit: changed, but no flush needed
    g = Gather()
    assert pt.change_range(VA, 2, mmucore.PAGE_COPY, CP_RECORD_NEEDED | CP_UFFD_WP_RESOLVE,
                           g)[1:3] == (2, 0)
    assert g.empty and all(not int(e) & UFFD_WP for e in pt.read_range(VA, 2))
    # patch 1 alone (record all) still records them
    pt.change_range(VA, 2, mmucore.PAGE_COPY, CP_UFFD_WP)
    g = Gather()
    assert pt.change_range(VA, 2, mmucore.PAGE_COPY, CP_RECORD_ALL | CP_UFFD_WP_RESOLVE,
                           g)[2] == 2
    assert (g.start, g.end) == (VA, VA + 2 * K)


def test_change_range_dirty_acct():
    pt = mmucore.PageTable()
    pt.map(VA, 2, flags=US | A | NX)
    pt.set_pte(VA + K, pt.get(VA + K)[0] | D)
    assert pt.change_range(VA, 2, mmucore.PAGE_READONLY, CP_DIRTY_ACCT)[1] == 1
    assert [bool(int(e) & RW) for e in pt.read_range(VA, 2)] == [False, True]


def test_change_range_huge_pmd():
    pt = mmucore.PageTable()
    pt.map(HVA, 1024, huge=True, pfn=0x40000)
    g = Gather()
    pages, changed, flagged, thp, splits, tables = pt.change_range(
        HVA, 1024, mmucore.PAGE_READONLY, CP_RECORD_NEEDED, g)
    assert (pages, changed, flagged, [int(x) for x in thp], list(splits), tables) == (
        1024, 2, 2, [HVA, HVA + M2], [], 0)
    assert gather_state(g) == (HVA, HVA + 2 * M2, 21, True, False, True, False)
    assert pt.get(HVA)[0] == pte(0x40000, P | US | A | D | NX | PSE)
    # unchanged huge PMDs need no flush but are still counted and listed
    g = Gather()
    assert pt.change_range(HVA, 512, mmucore.PAGE_READONLY, CP_RECORD_NEEDED, g)[:3] == (
        512, 0, 0)
    assert g.empty


def test_change_over_a_partial_huge_pmd_splits_it():
    pt = mmucore.PageTable()
    pt.map(HVA, 1024, huge=True, pfn=0x40000, flags=RW | US | A | D)
    g = Gather()
    pages, changed, flagged, thp, splits, tables = pt.change_range(
        HVA + 100 * K, 10, mmucore.PAGE_READONLY, CP_RECORD_NEEDED, g)
    assert (pages, changed, flagged, list(thp), [int(x) for x in splits], tables) == (
        10, 10, 10, [], [HVA], 1)
    assert pt.table_counts["pte"] == 1
    for i in range(512):
        e, shift = pt.get(HVA + i * K)
        assert shift == 12 and mmucore.pte_pfn(e) == 0x40000 + i
        assert bool(e & RW) == (not 100 <= i < 110)
    assert pt.get(HVA + M2)[1] == 21                         # the next THP is untouched
    assert gather_state(g) == (HVA + 100 * K, HVA + 110 * K, 12, True, True, False, False)
    # a range cutting two huge PMDs splits both
    pt2 = mmucore.PageTable()
    pt2.map(HVA, 1024, huge=True, pfn=0x40000)
    splits = pt2.change_range(HVA + 500 * K, 20, mmucore.PAGE_READONLY)[4]
    assert [int(x) for x in splits] == [HVA, HVA + M2]


def test_change_range_counts_pte_tables_walked():
    pt = mmucore.PageTable()
    pt.map(VA, 3 * 512)                                       # three full PTE tables
    pt.zap_range(VA + 512 * K, 512, Gather())                 # the middle one freed
    # [VA + 10 pages, VA + 3 tables - 10 pages): two tables walked, the freed one skipped
    out = pt.change_range(VA + 10 * K, 3 * 512 - 20, mmucore.PAGE_READONLY)
    assert (out[0], out[5]) == (2 * 512 - 20, 2)
    # no mapping at all: nothing walked
    assert pt.change_range(VA + 1024 * M2, 512, mmucore.PAGE_READONLY)[5] == 0


# ------------------------------------------------------------------ zap_range
def test_zap_range_without_freeing_tables():
    pt = mmucore.PageTable()
    pt.map(VA, 3)
    g = Gather()
    assert pt.zap_range(VA + K, 1, g, VA + K, VA + K) == (1, 0, [])
    assert gather_state(g) == (VA + K, VA + 2 * K, 12, True, True, False, False)
    assert pt.get(VA + K) == (0, 0) and pt.table_counts["pte"] == 1
    g = Gather()
    assert pt.zap_range(VA + K, 1, g, VA + K, VA + K) == (0, 0, [])   # nothing present
    assert g.empty


def test_zap_range_frees_the_pte_table_it_covers():
    pt = mmucore.PageTable()
    pt.map(VA, 3)
    pt.map(VA + M2, 1)
    before = pt.table_counts
    g = Gather()
    assert pt.zap_range(VA, 512, g) == (3, 0, [])          # free range = the zap range
    assert g.freed_tables and g.cleared_ptes and g.cleared_pmds
    assert (g.start, g.end, g.stride_shift) == (VA, VA + 3 * K, 12)
    assert pt.table_counts == dict(before, pte=before["pte"] - 1)
    assert pt.upper_entries(VA)[2] == 0
    assert pt.get(VA + M2)[1] == 12                        # the neighbour is untouched


def test_zap_huge_pmd_and_partial_huge_pmd():
    pt = mmucore.PageTable()
    pt.map(HVA, 1024, huge=True, pfn=0x40000)
    g = Gather()
    assert pt.zap_range(HVA, 512, g, HVA, HVA) == (0, 1, [])
    assert gather_state(g) == (HVA, HVA + M2, 21, True, False, True, False)
    assert pt.get(HVA) == (0, 0)
    g = Gather()
    assert pt.zap_range(HVA + M2 + K, 2, g, HVA, HVA) == (2, 0, [HVA + M2])
    assert pt.get(HVA + M2 + K) == (0, 0) and pt.get(HVA + M2 + 2 * K) == (0, 0)
    assert mmucore.pte_pfn(pt.get(HVA + M2)[0]) == 0x40200
    assert mmucore.pte_pfn(pt.get(HVA + M2 + 3 * K)[0]) == 0x40203
    assert (g.start, g.end, g.stride_shift, g.cleared_pmds) == (HVA + M2 + K, HVA + M2 + 3 * K,
                                                                12, False)


def test_zap_range_frees_pmd_and_pud_tables():
    pt = mmucore.PageTable()
    pt.map(VA, 1)                                      # keeps PGD 254 busy
    pt.map(0x40000000, 1)                              # PGD 0, PUD 1
    pt.map(0x8000000000, 1)                            # PGD 1, PUD 0
    assert pt.table_counts == {"pte": 3, "pmd": 3, "pud": 3, "pgd": 1}
    g = Gather()
    pt.zap_range(0x40000000, 1, g, 0x40000000, 0x40000000 + G1)
    assert pt.table_counts == {"pte": 2, "pmd": 2, "pud": 3, "pgd": 1}
    assert g.freed_tables and g.cleared_puds and (g.start, g.end) == (0x40000000,
                                                                       0x40000000 + K)
    assert pt.upper_entries(0x40000000)[1] == 0 and pt.upper_entries(0x40000000)[0] & P
    g = Gather()
    pt.zap_range(0x8000000000, 1, g, 0x8000000000, 0x10000000000)   # a whole PGD slot
    assert pt.table_counts == {"pte": 1, "pmd": 1, "pud": 2, "pgd": 1}
    assert pt.upper_entries(0x8000000000) == (0, 0, 0)
    assert g.freed_tables and (g.start, g.end) == (0x8000000000, 0x8000000000 + K)
    assert pt.get(VA)[1] == 12


def test_zap_freeing_only_a_pud_table_records_a_range():
    """pud_free_tlb() -> tlb_flush_p4d_range(addr, PAGE_SIZE) grows the gather's range: a
    flush of [start, end) must cover the freed table's PML4E (its PSC entries)."""
    pt = mmucore.PageTable()
    pt.map(0x8040000000, 1)                            # PGD 1, PUD 1
    pt.zap_range(0x8040000000, 1, Gather(), 0x8040000000, 0x8080000000)   # PTE + PMD tables
    assert pt.table_counts == {"pte": 0, "pmd": 0, "pud": 1, "pgd": 1}   # PUD table empty
    g = Gather()
    pt.zap_range(0x8000000000, 1, g, 0x8000000000, 0x10000000000)
    assert pt.table_counts["pud"] == 0 and pt.upper_entries(0x8000000000)[0] == 0
    assert g.freed_tables and g.needs_flush and g.stride_shift == 39
    assert g.start < g.end, (
        "MMUCORE BUG (pagetable.pyx _free_pgtables, the PUD-table branch near line 505): "
        "freeing a PUD table sets cleared_p4ds but does not adjust the gather range "
        f"(start=0x{g.start:x} > end=0x{g.end:x}); add "
        "c_tlb_adjust_range(g, base_a, 4096) as the kernel's pud_free_tlb does")


# ------------------------------------------------------------------ clear_young_dirty
def test_clear_young_dirty_4k():
    pt = mmucore.PageTable()
    pt.map(VA, 5)
    pt.set_pte(VA + K, pt.get(VA + K)[0] & ~D)                          # young, clean
    pt.set_pte(VA + 2 * K, 0)                                           # hole
    pt.set_pte(VA + 4 * K, mmucore.pte_modify(pt.get(VA + 4 * K)[0], mmucore.PAGE_NONE))
    g = Gather()
    assert pt.clear_young_dirty(VA, 5, g) == (3, 0, [])                     # MADV_COLD: A
    assert [int(e) & (A | D) for e in pt.read_range(VA, 4)] == [D, 0, 0, D]
    assert pt.get(VA + 4 * K)[0] & A                                    # PROT_NONE skipped
    assert gather_state(g) == (VA, VA + 4 * K, 12, True, True, False, False)
    g = Gather()
    assert pt.clear_young_dirty(VA, 5, g) == (0, 0, []) and g.empty
    g = Gather()
    assert pt.clear_young_dirty(VA, 5, g, clear_dirty=True) == (2, 0, [])   # MADV_FREE: A, D
    assert [int(e) & (A | D) for e in pt.read_range(VA, 4)] == [0, 0, 0, 0]
    assert (g.start, g.end) == (VA, VA + 4 * K)


def test_clear_young_dirty_huge():
    pt = mmucore.PageTable()
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    g = Gather()
    assert pt.clear_young_dirty(HVA, 512, g, clear_dirty=True) == (0, 1, [])
    assert pt.get(HVA)[0] & (A | D) == 0 and pt.get(HVA)[0] & PSE
    assert gather_state(g) == (HVA, HVA + M2, 21, True, False, True, False)


def test_clear_young_dirty_on_part_of_a_huge_pmd_leaves_the_rest():
    """The kernel splits a THP that MADV_COLD/MADV_FREE covers only in part
    (madvise_cold_or_pageout_pte_range / madvise_free_huge_pmd) and then works on the PTEs
    in range; pages outside the range keep A and D (else MADV_FREE could discard data the
    caller never advised)."""
    pt = mmucore.PageTable()
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    pt.clear_young_dirty(HVA + 10 * K, 1, Gather(), clear_dirty=True)
    assert pt.get(HVA)[0] & (A | D) == A | D, (
        "MMUCORE BUG (pagetable.pyx clear_young_dirty, huge-PMD branch near line 526): a "
        "range covering part of a huge PMD clears A/D of the whole 2M page; split it (as "
        "change_range and zap_range do) and clear only the PTEs in range")


# ------------------------------------------------------------------ populate
def test_populate_fills_only_empty_entries():
    pt = mmucore.PageTable()
    pt.map(VA + K, 1)                                     # frame 0x1000
    n = pt.populate(VA, 4, P | US | A | NX)
    assert n == 3 and pt.next_pfn == 0x1004
    assert [int(x) for x in pt.read_range(VA, 4)] == [
        pte(0x1001, P | US | A | NX), pte(0x1000, DEFAULT), pte(0x1002, P | US | A | NX),
        pte(0x1003, P | US | A | NX)]
    assert pt.populate(VA, 4, P | US) == 0
    # the zero page: every new entry gets the same frame and next_pfn stays
    n = pt.populate(VA + 4 * K, 3, P | US | A | NX, pfn=0x3333, same_pfn=True)
    assert n == 3 and pt.next_pfn == 0x1004
    assert {mmucore.pte_pfn(int(e)) for e in pt.read_range(VA + 4 * K, 3)} == {0x3333}
    # entries under a huge PMD are left alone
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    assert pt.populate(HVA - 2 * K, 4, P | US) == 2
    assert pt.get(HVA + K) == (pte(0x40000, DEFAULT | PSE), 21)
    assert pt.get(HVA - K)[0] == pte(0x1005, P | US)


# ------------------------------------------------------------------ bad input
BAD_CALLS = [
    ("map unaligned", lambda pt: pt.map(VA + 1, 1)),
    ("map beyond 47 bits", lambda pt: pt.map(1 << 47, 1)),
    ("map running past 47 bits", lambda pt: pt.map((1 << 47) - K, 2)),
    ("map negative npages", lambda pt: pt.map(VA, -1)),
    ("map huge unaligned", lambda pt: pt.map(HVA + K, 512, huge=True, pfn=0x40000)),
    ("map huge partial", lambda pt: pt.map(HVA, 100, huge=True, pfn=0x40000)),
    ("map huge unaligned pfn", lambda pt: pt.map(HVA, 512, huge=True, pfn=0x40001)),
    ("map flags over the frame", lambda pt: pt.map(VA, 1, flags=1 << 12)),
    ("map frames past 40 bits", lambda pt: pt.map(VA, 2, pfn=(1 << 40) - 1)),
    ("populate unaligned", lambda pt: pt.populate(VA + 8, 1, P)),
    ("populate negative", lambda pt: pt.populate(VA, -3, P)),
    ("change unknown mode bits", lambda pt: pt.change_range(VA, 1, 0, 256, Gather())),
    ("change recording without gather", lambda pt: pt.change_range(VA, 1, 0,
                                                                   CP_RECORD_NEEDED)),
    ("change unaligned", lambda pt: pt.change_range(VA + 4, 1, 0)),
    ("change negative", lambda pt: pt.change_range(VA, -1, 0)),
    ("change beyond 47 bits", lambda pt: pt.change_range(1 << 47, 1, 0)),
    ("zap without gather", lambda pt: pt.zap_range(VA, 1, None)),
    ("zap negative", lambda pt: pt.zap_range(VA, -2, Gather())),
    ("zap unaligned", lambda pt: pt.zap_range(VA + 12, 1, Gather())),
    ("clear_young_dirty without gather", lambda pt: pt.clear_young_dirty(VA, 1, None)),
    ("clear_young_dirty beyond 47 bits", lambda pt: pt.clear_young_dirty(1 << 47, 1,
                                                                         Gather())),
    ("set_pte unaligned", lambda pt: pt.set_pte(VA + 8, 0)),
    ("set_pmd unaligned", lambda pt: pt.set_pmd(HVA + K, 0)),
    ("read_range negative", lambda pt: pt.read_range(VA, -1)),
    ("read_range wrong out", lambda pt: pt.read_range(VA, 2, out=np.zeros(3, np.uint64))),
    ("read_range wrong out dtype", lambda pt: pt.read_range(VA, 2,
                                                            out=np.zeros(2, np.int64))),
    ("get beyond 47 bits", lambda pt: pt.get(1 << 47)),
    ("upper_entries beyond 47 bits", lambda pt: pt.upper_entries(1 << 47)),
]


@pytest.mark.parametrize("what,call", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_raises_before_changing_anything(what, call):
    pt = mmucore.PageTable()
    pt.map(VA, 2)
    before = (pt.table_counts, pt.next_pfn, [int(x) for x in pt.read_range(VA, 4)])
    with pytest.raises(ValueError):
        call(pt)
    assert (pt.table_counts, pt.next_pfn, [int(x) for x in pt.read_range(VA, 4)]) == before


@pytest.mark.parametrize("call", [
    lambda pt: pt.get(-1), lambda pt: pt.map(-4096, 1), lambda pt: pt.set_pte(VA, -1),
    lambda pt: pt.change_range(-4096, 1, mmucore.PAGE_READONLY),
    lambda pt: pt.zap_range(-4096, 1, Gather()), lambda pt: Gather().flush_pte_range(-1, K),
    lambda pt: pt.get(1 << 64)], ids=["get", "map", "set_pte", "change", "zap", "gather", "big"])
def test_negative_or_oversized_values_are_named_value_errors(call):
    with pytest.raises(ValueError, match=r"(va|value|addr) .* unsigned 64-bit"):
        call(mmucore.PageTable())


def test_non_integer_address_is_a_type_error():
    with pytest.raises(TypeError, match="get: va must be an integer, got str"):
        mmucore.PageTable().get("0x1000")
