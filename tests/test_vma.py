"""Tests of pysim.mm.vma: lookup, split, merge, munmap, mprotect_fixup, get_unmapped_area."""
from __future__ import annotations

import errno
import random
from typing import Dict, List, Optional, Tuple

import pytest

from pysim.constants import (
    MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, PROT_EXEC,
    PROT_NONE, PROT_READ, PROT_WRITE, TASK_SIZE, TASK_UNMAPPED_BASE, VM_ACCOUNT,
    VM_HUGETLB, VM_MAYWRITE, VM_NORESERVE, VM_PFNMAP, VM_PKEY_SHIFT, VM_READ, VM_SHARED,
    VM_SOFTDIRTY, VM_WRITE,
)
from pysim.errors import PysimError, SyscallError
from pysim.mm.vma import (
    VMA, VMAList, anon_vma_compatible, mmap_vm_flags, mprotect_flags_permitted,
    mprotect_newflags, vmas_mergeable,
)

P = PAGE_SIZE
BASE = 0x10000000
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
ANON_RW = mmap_vm_flags(RW, ANON)
ANON_R = mmap_vm_flags(PROT_READ, ANON)


def pg(n: int) -> int:
    """Address of page n of the test window."""
    return BASE + n * P


def mmap_anon(vl: VMAList, first: int, npages: int, prot: int = RW, **kw) -> VMA:
    """mmap(MAP_FIXED) of anonymous private memory over pages [first, first+npages)."""
    vl.remove_range(pg(first), pg(first + npages))
    return vl.insert_merging(VMA(pg(first), pg(first + npages), mmap_vm_flags(prot, ANON), **kw))


def layout(vl: VMAList) -> List[Tuple[int, int]]:
    """VMAs as (first page, end page) pairs relative to BASE."""
    return [((v.start - BASE) // P, (v.end - BASE) // P) for v in vl]


def do_mprotect(vl: VMAList, start: int, end: int, prot: int) -> int:
    """The VMA walk of do_mprotect_pkey over vl (no page tables); returns 0 or an errno."""
    vma, prev = vl.find_vma_prev(start)
    if vma is None or vma.start > start:
        return errno.ENOMEM
    if start > vma.start:
        prev = vma
    nstart = start
    while True:
        newflags = mprotect_newflags(vma.flags, prot)
        if not mprotect_flags_permitted(newflags):
            return errno.EACCES
        tmp = min(vma.end, end)
        prev = vl.mprotect_fixup(vma, prev, nstart, tmp, newflags)
        nstart = max(tmp, prev.end)
        if nstart >= end:
            return 0
        vma = vl.find_vma(nstart)
        if vma is None or vma.start != nstart:
            return errno.ENOMEM


# --- split --------------------------------------------------------------------------------

def test_split_vma_at_both_ends_keeps_metadata_and_offsets():
    vl = VMAList()
    av, f = object(), object()
    vma = vl.insert(VMA(pg(0), pg(8), ANON_RW, anon=False, file=f, pgoff=100, anon_vma=av,
                        name="x", page_prot=0x8000000000000025))
    low = vl.split_vma(vma, pg(2), new_below=True)
    high = vl.split_vma(vma, pg(6), new_below=False)
    assert layout(vl) == [(0, 2), (2, 6), (6, 8)]
    assert [v.pgoff for v in vl] == [100, 102, 106]
    assert vl.vmas() == [low, vma, high]
    for v in vl:
        assert (v.flags, v.file, v.anon_vma, v.name, v.page_prot) == \
            (ANON_RW, f, av, "x", 0x8000000000000025)
    vl.check_invariants(check_merged=False)
    with pytest.raises(AssertionError, match="should have been merged"):
        vl.check_invariants()


def test_split_vma_rejects_addresses_outside_or_unaligned():
    vl = VMAList()
    vma = vl.insert(VMA(pg(0), pg(4), ANON_RW))
    for addr in (pg(0), pg(4), pg(1) + 8):
        with pytest.raises(PysimError):
            vl.split_vma(vma, addr, new_below=True)
    assert layout(vl) == [(0, 4)]


def test_split_vma_enomem_at_max_map_count():
    vl = VMAList(max_map_count=1)
    vma = vl.insert(VMA(pg(0), pg(4), ANON_RW))
    with pytest.raises(SyscallError) as e:
        vl.split_vma(vma, pg(2), new_below=False)
    assert e.value.errno == errno.ENOMEM


# --- mprotect_fixup: merge and split -----------------------------------------------------

def test_mprotect_middle_gives_three_vmas_and_restoring_merges_back_to_one():
    vl = VMAList()
    mmap_anon(vl, 0, 8)
    assert do_mprotect(vl, pg(3), pg(5), PROT_READ) == 0
    assert layout(vl) == [(0, 3), (3, 5), (5, 8)]
    assert [v.flags & (VM_READ | VM_WRITE) for v in vl] == [VM_READ | VM_WRITE, VM_READ,
                                                           VM_READ | VM_WRITE]
    assert [v.pgoff for v in vl] == [(BASE >> PAGE_SHIFT) + n for n in (0, 3, 5)]
    vl.check_invariants()
    assert do_mprotect(vl, pg(3), pg(5), RW) == 0
    assert layout(vl) == [(0, 8)]
    assert vl.vmas()[0].flags == ANON_RW and vl.vmas()[0].pgoff == BASE >> PAGE_SHIFT
    vl.check_invariants()


def test_whole_vma_merges_with_prev_when_flags_become_equal():
    vl = VMAList()
    mmap_anon(vl, 0, 4)
    do_mprotect(vl, pg(2), pg(4), PROT_READ)
    low, high = vl.vmas()
    got = vl.mprotect_fixup(high, low, pg(2), pg(4), mprotect_newflags(high.flags, RW))
    assert got is low and layout(vl) == [(0, 4)]
    vl.check_invariants()


def test_whole_vma_merges_with_next_when_flags_become_equal():
    vl = VMAList()
    mmap_anon(vl, 0, 4)
    do_mprotect(vl, pg(0), pg(2), PROT_READ)
    low, high = vl.vmas()
    got = vl.mprotect_fixup(low, None, pg(0), pg(2), mprotect_newflags(low.flags, RW))
    assert got is high and layout(vl) == [(0, 4)]
    assert high.pgoff == BASE >> PAGE_SHIFT
    vl.check_invariants()


def test_head_of_vma_moves_into_prev():
    vl = VMAList()
    mmap_anon(vl, 0, 6)
    do_mprotect(vl, pg(2), pg(6), PROT_READ)
    a, b = vl.vmas()
    got = vl.mprotect_fixup(b, a, pg(2), pg(4), mprotect_newflags(b.flags, RW))
    assert got is a and layout(vl) == [(0, 4), (4, 6)]
    assert b.pgoff == (BASE >> PAGE_SHIFT) + 4 and b.flags & VM_WRITE == 0
    vl.check_invariants()


def test_tail_of_vma_moves_into_next():
    vl = VMAList()
    mmap_anon(vl, 0, 6)
    do_mprotect(vl, pg(0), pg(4), PROT_READ)
    a, b = vl.vmas()
    got = vl.mprotect_fixup(a, a, pg(2), pg(4), mprotect_newflags(a.flags, RW))
    assert got is b and layout(vl) == [(0, 2), (2, 6)]
    assert b.pgoff == (BASE >> PAGE_SHIFT) + 2
    vl.check_invariants()


def test_mprotect_over_several_vmas_merges_them_all():
    vl = VMAList()
    mmap_anon(vl, 0, 2, PROT_READ)
    mmap_anon(vl, 2, 2, RW)
    mmap_anon(vl, 4, 2, PROT_READ | PROT_EXEC)
    assert len(vl) == 3
    assert do_mprotect(vl, pg(0), pg(6), RW) == 0
    assert layout(vl) == [(0, 6)]
    vl.check_invariants()


def test_mprotect_stops_at_a_hole_with_enomem_keeping_earlier_changes():
    vl = VMAList()
    mmap_anon(vl, 0, 2)
    mmap_anon(vl, 3, 2)
    assert do_mprotect(vl, pg(0), pg(5), PROT_READ) == errno.ENOMEM
    assert [v.flags & VM_WRITE for v in vl] == [0, VM_WRITE]
    assert vl.first_hole(pg(0), pg(5)) == pg(2)


def test_unchanged_flags_touch_nothing():
    vl = VMAList()
    vma = mmap_anon(vl, 0, 8)
    assert vl.mprotect_fixup(vma, vma, pg(2), pg(4), vma.flags) is vma
    assert layout(vl) == [(0, 8)]


def test_no_merge_across_different_anon_vmas():
    vl = VMAList()
    mmap_anon(vl, 0, 4)
    do_mprotect(vl, pg(2), pg(4), PROT_READ)
    a, b = vl.vmas()
    a.anon_vma, b.anon_vma = object(), object()
    got = vl.mprotect_fixup(b, a, pg(2), pg(4), mprotect_newflags(b.flags, RW))
    assert got is b and layout(vl) == [(0, 2), (2, 4)]
    assert a.flags == b.flags
    vl.check_invariants()          # equal flags, but the kernel would not merge these


def test_anon_vma_prepare_shares_a_compatible_neighbours_anon_vma():
    vl = VMAList()
    mmap_anon(vl, 0, 4)
    do_mprotect(vl, pg(2), pg(4), PROT_READ)
    a, b = vl.vmas()
    assert anon_vma_compatible(a, b)
    first = vl.anon_vma_prepare(a)
    assert vl.anon_vma_prepare(b) is first
    assert do_mprotect(vl, pg(2), pg(4), RW) == 0
    assert layout(vl) == [(0, 4)] and vl.vmas()[0].anon_vma is first


def test_merge_takes_the_anon_vma_of_what_it_absorbs():
    vl = VMAList()
    mmap_anon(vl, 0, 4)
    do_mprotect(vl, pg(2), pg(4), PROT_READ)
    a, b = vl.vmas()
    b.anon_vma = av = object()
    vl.mprotect_fixup(b, a, pg(2), pg(4), mprotect_newflags(b.flags, RW))
    assert vl.vmas() == [a] and a.anon_vma is av


def test_file_mappings_merge_only_for_same_file_and_contiguous_offsets():
    vl = VMAList()
    f, g = object(), object()
    flags = mmap_vm_flags(PROT_READ, MAP_PRIVATE)

    def fmap(first, n, file, pgoff):
        return vl.insert_merging(VMA(pg(first), pg(first + n), flags, anon=False, file=file,
                                     pgoff=pgoff))
    fmap(0, 2, f, 0)
    fmap(2, 2, f, 2)                # contiguous in f: merges
    fmap(4, 2, f, 10)               # same file, offsets jump: separate
    fmap(6, 2, g, 12)               # another file: separate
    vl.insert_merging(VMA(pg(8), pg(10), flags))   # anonymous next to a file: separate
    assert layout(vl) == [(0, 4), (4, 6), (6, 8), (8, 10)]
    vl.check_invariants()


def test_softdirty_is_ignored_but_special_and_names_block_merging():
    vl = VMAList()
    vl.insert_merging(VMA(pg(0), pg(2), ANON_RW))
    vl.insert_merging(VMA(pg(2), pg(4), ANON_RW | VM_SOFTDIRTY))
    assert layout(vl) == [(0, 4)]
    vl.insert_merging(VMA(pg(4), pg(6), ANON_RW | VM_PFNMAP))
    vl.insert_merging(VMA(pg(6), pg(8), ANON_RW | VM_PFNMAP))
    vl.insert_merging(VMA(pg(8), pg(10), ANON_RW, name="heap"))
    vl.insert_merging(VMA(pg(10), pg(12), ANON_RW, name="stack"))
    assert layout(vl) == [(0, 4), (4, 6), (6, 8), (8, 10), (10, 12)]
    vl.check_invariants()


def test_adjacent_anonymous_mmaps_merge_including_into_a_gap():
    vl = VMAList()
    mmap_anon(vl, 0, 2)
    mmap_anon(vl, 4, 2)
    assert len(vl) == 2
    merged = mmap_anon(vl, 2, 2)
    assert layout(vl) == [(0, 6)] and merged.pgoff == BASE >> PAGE_SHIFT
    vl.check_invariants()


def test_shared_anonymous_mappings_do_not_merge():
    vl = VMAList()
    flags = mmap_vm_flags(RW, MAP_SHARED | MAP_ANONYMOUS)
    assert flags & VM_SHARED and not flags & VM_ACCOUNT
    for first in (0, 2):             # each MAP_SHARED|MAP_ANONYMOUS gets its own shmem file
        vl.insert_merging(VMA(pg(first), pg(first + 2), flags, shared=True, file=object(),
                              pgoff=0))
    assert len(vl) == 2


def test_vm_account_added_by_mprotect_blocks_the_merge_back():
    # Linux quirk: a read-only private mapping is not charged at mmap; making part of it
    # writable charges it and adds VM_ACCOUNT, which stays after going back to read-only.
    vl = VMAList()
    mmap_anon(vl, 0, 6, PROT_READ)
    assert not ANON_R & VM_ACCOUNT and ANON_RW & VM_ACCOUNT
    do_mprotect(vl, pg(2), pg(4), RW)
    assert vl.vmas()[1].flags & VM_ACCOUNT
    do_mprotect(vl, pg(2), pg(4), PROT_READ)
    assert layout(vl) == [(0, 2), (2, 4), (4, 6)]
    assert [bool(v.flags & VM_ACCOUNT) for v in vl] == [False, True, False]
    vl.check_invariants()


@pytest.mark.parametrize("old_extra", [VM_SHARED, VM_NORESERVE, VM_HUGETLB, VM_ACCOUNT])
def test_vm_account_not_added_for_shared_noreserve_hugetlb_or_charged(old_extra):
    vl = VMAList()
    vma = vl.insert(VMA(pg(0), pg(2), ANON_R | old_extra, shared=bool(old_extra & VM_SHARED)))
    got = vl.mprotect_fixup(vma, None, pg(0), pg(2), mprotect_newflags(vma.flags, RW))
    assert got.flags & VM_ACCOUNT == old_extra & VM_ACCOUNT


def test_mprotect_flag_helpers():
    flags = mmap_vm_flags(RW, ANON, pkey=3)
    assert flags >> VM_PKEY_SHIFT == 3
    assert mprotect_newflags(flags, PROT_READ) >> VM_PKEY_SHIFT == 3
    assert mprotect_newflags(flags, PROT_READ, pkey=5) >> VM_PKEY_SHIFT == 5
    assert mprotect_newflags(flags, PROT_NONE) & (VM_READ | VM_WRITE) == 0
    no_maywrite = ANON_R & ~VM_MAYWRITE
    assert mprotect_flags_permitted(mprotect_newflags(no_maywrite, PROT_READ))
    assert not mprotect_flags_permitted(mprotect_newflags(no_maywrite, RW))


# --- insert / munmap ---------------------------------------------------------------------

def test_insert_overlap_is_eexist():
    vl = VMAList()
    vl.insert(VMA(pg(0), pg(4), ANON_RW))
    with pytest.raises(SyscallError) as e:
        vl.insert(VMA(pg(3), pg(6), ANON_R))
    assert e.value.errno == errno.EEXIST and "overlaps" in str(e.value)
    assert layout(vl) == [(0, 4)]


def test_munmap_of_a_middle_part_splits_and_returns_the_piece():
    vl = VMAList()
    vma = mmap_anon(vl, 0, 8)
    removed = vl.remove_range(pg(3), pg(5))
    assert [(v.start, v.end, v.pgoff) for v in removed] == \
        [(pg(3), pg(5), (BASE >> PAGE_SHIFT) + 3)]
    assert layout(vl) == [(0, 3), (5, 8)]
    assert [v.pgoff for v in vl] == [BASE >> PAGE_SHIFT, (BASE >> PAGE_SHIFT) + 5]
    assert vma in vl.vmas() or vma in removed
    vl.check_invariants()


def test_munmap_across_vmas_and_holes():
    vl = VMAList()
    mmap_anon(vl, 0, 4)
    mmap_anon(vl, 6, 4, PROT_READ)
    removed = vl.remove_range(pg(2), pg(8))
    assert [((v.start - BASE) // P, (v.end - BASE) // P) for v in removed] == [(2, 4), (6, 8)]
    assert layout(vl) == [(0, 2), (8, 10)]
    assert vl.remove_range(pg(3), pg(7)) == []
    vl.check_invariants()


def test_munmap_rejects_unaligned_or_empty_ranges():
    vl = VMAList()
    for start, end in ((pg(0) + 1, pg(2)), (pg(2), pg(2)), (pg(3), pg(2))):
        with pytest.raises(SyscallError) as e:
            vl.remove_range(start, end)
        assert e.value.errno == errno.EINVAL


# --- lookups -----------------------------------------------------------------------------

def test_find_vma_returns_first_vma_ending_above_addr():
    vl = VMAList()
    a = vl.insert(VMA(pg(10), pg(20), ANON_RW))
    b = vl.insert(VMA(pg(30), pg(40), ANON_R))
    assert vl.find_vma(0) is a
    assert vl.find_vma(pg(15)) is a
    assert vl.find_vma(pg(20) - 1) is a
    assert vl.find_vma(pg(20)) is b          # end is exclusive; the gap maps to the next
    assert vl.find_vma(pg(25)) is b
    assert vl.find_vma(pg(40)) is None
    assert vl.find_vma_prev(pg(25)) == (b, a)
    assert vl.find_vma_prev(pg(15)) == (a, None)
    assert vl.find_vma_prev(pg(50)) == (None, b)
    assert vl.vma_lookup(pg(25)) is None and vl.vma_lookup(pg(30)) is b
    assert vl.vmas_in(pg(19), pg(31)) == [a, b]
    assert vl.vmas_in(pg(20), pg(30)) == []
    assert vl.find_vma_intersection(pg(20), pg(30)) is None
    assert vl.first_hole(pg(10), pg(20)) is None
    assert vl.first_hole(pg(15), pg(35)) == pg(20)


# --- get_unmapped_area -------------------------------------------------------------------

def test_get_unmapped_area_is_top_down_below_mmap_base():
    vl = VMAList()
    a = vl.get_unmapped_area(4 * P)
    assert a == vl.mmap_base - 4 * P
    vl.insert(VMA(a, a + 4 * P, ANON_R))
    b = vl.get_unmapped_area(4 * P)
    assert b == a - 4 * P
    vl.insert(VMA(b, b + 4 * P, ANON_RW))
    c = vl.get_unmapped_area(2 * P)
    vl.insert(VMA(c, c + 2 * P, ANON_R))
    vl.remove_range(b, b + 4 * P)
    assert vl.get_unmapped_area(4 * P) == b          # the highest hole that fits
    assert vl.get_unmapped_area(8 * P) == c - 8 * P  # too big for it: below everything


def test_get_unmapped_area_honours_a_free_hint_only():
    vl = VMAList()
    hint = 0x200000000
    assert vl.get_unmapped_area(4 * P, hint=hint + 123) == hint
    vl.insert(VMA(hint, hint + 4 * P, ANON_RW))
    assert vl.get_unmapped_area(4 * P, hint=hint + P) == vl.mmap_base - 4 * P
    assert vl.get_unmapped_area(P, hint=P) == vl.mmap_min_addr   # raised to mmap_min_addr


def test_get_unmapped_area_alignment():
    vl = VMAList()
    vl.insert(VMA(vl.mmap_base - 3 * P, vl.mmap_base, ANON_RW))
    addr = vl.get_unmapped_area(PMD_SIZE, align=PMD_SIZE)
    assert addr % PMD_SIZE == 0
    assert vl.find_vma_intersection(addr, addr + PMD_SIZE) is None
    assert addr + PMD_SIZE <= vl.mmap_base - 3 * P


def test_get_unmapped_area_enomem_when_nothing_fits():
    vl = VMAList()
    vl.insert(VMA(vl.mmap_min_addr, TASK_SIZE, ANON_RW))
    with pytest.raises(SyscallError) as e:
        vl.get_unmapped_area(P)
    assert e.value.errno == errno.ENOMEM and isinstance(e.value, OSError)
    with pytest.raises(SyscallError):
        VMAList().get_unmapped_area(TASK_SIZE + P)


def _reference_unmapped_area(vl: VMAList, length: int, align: int) -> Optional[int]:
    """Brute force over all gaps: highest fit below mmap_base, else lowest bottom-up."""
    padded = length + align - P
    low = max(P, vl.mmap_min_addr)
    gaps, prev_end = [], 0
    for v in vl:
        gaps.append((prev_end, v.start))
        prev_end = v.end
    gaps.append((prev_end, TASK_SIZE))
    for gs, ge in reversed(gaps):
        gs, ge = max(gs, low), min(ge, vl.mmap_base)
        if ge - gs >= padded:
            return (ge - length) & ~(align - 1)
    for gs, ge in gaps:
        gs = max(gs, TASK_UNMAPPED_BASE, low)
        if ge - gs >= padded:
            return (gs + align - 1) & ~(align - 1)
    return None


@pytest.mark.parametrize("seed", range(6))
def test_get_unmapped_area_search_cache_matches_brute_force(seed):
    rng = random.Random(seed)
    vl = VMAList(mmap_base=BASE + 256 * P, mmap_min_addr=BASE)
    for _ in range(400):
        op = rng.random()
        if op < 0.6:
            length = rng.choice([1, 1, 2, 3, 8, 20]) * P
            align = rng.choice([P, P, 4 * P])
            want = _reference_unmapped_area(vl, length, align)
            got = vl.get_unmapped_area(length, align)
            assert got == want
            if got < vl.mmap_base and rng.random() < 0.9:
                vl.insert_merging(VMA(got, got + length, rng.choice([ANON_R, ANON_RW])))
        elif op < 0.9:
            s = rng.randrange(256)
            vl.remove_range(pg(s), pg(min(256, s + rng.randint(1, 12))))
        else:
            s = rng.randrange(255)
            if vl.first_hole(pg(s), pg(s + 1)) is None:
                do_mprotect(vl, pg(s), pg(s + 1), rng.choice([PROT_READ, RW]))
        vl.check_invariants()


# --- randomized: VMAList against a page-granular model ---------------------------------

WINDOW = 48
PROTS = [PROT_NONE, PROT_READ, RW, PROT_READ | PROT_EXEC, RW | PROT_EXEC]


def _model_mprotect(model: Dict[int, list], first: int, end: int, prot: int) -> None:
    """Page-by-page mprotect: stop at the first unmapped page, charge VM_ACCOUNT as
    mprotect_fixup does."""
    for p in range(first, end):
        if p not in model:
            return
        old = model[p][0]
        new = mprotect_newflags(old, prot)
        if new != old and new & VM_WRITE and not old & (VM_ACCOUNT | VM_WRITE | VM_SHARED
                                                        | VM_HUGETLB | VM_NORESERVE):
            new |= VM_ACCOUNT
        model[p][0] = new


def _check_against_model(vl: VMAList, model: Dict[int, list]) -> None:
    """Every page of the window has the model's flags, offset and file, or is unmapped."""
    vl.check_invariants()
    for p in range(WINDOW):
        vma = vl.vma_lookup(pg(p))
        if p not in model:
            assert vma is None, f"page {p} should be unmapped, found {vma!r}"
            continue
        flags, pgoff, file = model[p]
        assert vma is not None, f"page {p} should be mapped"
        assert vma.flags == flags, f"page {p}: flags 0x{vma.flags:x} != 0x{flags:x}"
        assert vma.pgoff_at(pg(p)) == pgoff and vma.file is file, f"page {p}: {vma!r}"


@pytest.mark.parametrize("seed", range(12))
def test_random_mprotect_munmap_sequence_matches_page_model(seed):
    rng = random.Random(1000 + seed)
    vl = VMAList()
    files = [object(), object()]
    model: Dict[int, list] = {}
    for _ in range(250):
        first = rng.randrange(WINDOW)
        end = rng.randint(first + 1, min(WINDOW, first + 16))
        op = rng.choices(["mmap", "file", "mprotect", "munmap", "fault"], [3, 1, 6, 2, 2])[0]
        if op == "mmap":
            flags = mmap_vm_flags(rng.choice(PROTS), ANON)
            vl.remove_range(pg(first), pg(end))
            vl.insert_merging(VMA(pg(first), pg(end), flags))
            model.update({p: [flags, (BASE >> PAGE_SHIFT) + p, None]
                          for p in range(first, end)})
        elif op == "file":
            file = rng.choice(files)
            pgoff = rng.choice([first, first, rng.randrange(100)])
            flags = mmap_vm_flags(rng.choice(PROTS), MAP_PRIVATE)
            vl.remove_range(pg(first), pg(end))
            vl.insert_merging(VMA(pg(first), pg(end), flags, anon=False, file=file,
                                  pgoff=pgoff))
            model.update({p: [flags, pgoff + p - first, file] for p in range(first, end)})
        elif op == "mprotect":
            prot = rng.choice(PROTS)
            err = do_mprotect(vl, pg(first), pg(end), prot)
            assert err == (0 if all(p in model for p in range(first, end)) else errno.ENOMEM)
            _model_mprotect(model, first, end, prot)
        elif op == "munmap":
            removed = vl.remove_range(pg(first), pg(end))
            assert sum(v.pages for v in removed) == sum(p in model for p in range(first, end))
            for p in range(first, end):
                model.pop(p, None)
        elif model:
            p = rng.choice(sorted(model))
            vl.anon_vma_prepare(vl.vma_lookup(pg(p)))
        _check_against_model(vl, model)
        for a, b in zip(vl.vmas(), vl.vmas()[1:]):
            assert not vmas_mergeable(a, b)


def test_the_cores_constants_are_pysims():
    """mmucore.vma keeps its own copies of the page, address-space and vm_flags
    constants (the core imports nothing from pysim): each equals pysim.constants'."""
    import mmucore.vma as core
    import pysim.constants as consts
    names = [n for n in dir(core) if n.isupper() and hasattr(consts, n)]
    assert {"PAGE_SIZE", "TASK_SIZE", "VM_READ", "VM_HUGETLB", "VM_SPECIAL"} <= set(names)
    assert {n: getattr(core, n) for n in names} == {n: getattr(consts, n) for n in names}

