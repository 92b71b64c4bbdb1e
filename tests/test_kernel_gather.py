"""The mmu_gather's batch limits in the zap paths (munmap, MADV_DONTNEED) and the cost
mechanisms of issue 13, each pinned on a hand-worked count.

Batch arithmetic (include/asm-generic/tlb.h, mm/mmu_gather.c; mmucore/gather.pxd): the
page batch is the on-stack bundle of MMU_GATHER_BUNDLE = 8 entries plus at most
MAX_GATHER_BATCH_COUNT = 19 batches of MAX_GATHER_BATCH = 510.  Up to 6.8 a batch is
full when nr == max, so the 8 + 19 x 510 = 9,698th queued page finds the chain at its
limit and zap_pte_range() flushes right after it; from 6.9 (nr >= max - 1) the
7 + 19 x 509 = 9,678th does.  The built-in profiles are all older than 6.9.

  pages    DONTNEED flushes                     munmap flushes
  9,697    1 (final)                            1 (final, with the freed tables)
  9,698    1 (mid-zap; nothing left for final)  2 (mid-zap; final over the tables)
  9,699    2 (mid-zap; final over 1 page)       2
  65,536   6 mid-zap (6 x 9,698 = 58,188) + 1   6 + 1
  262,144  27 mid-zap (27 x 9,698 = 261,846)+1  27 + 1 when the 509th of the 512 PTE
                                                tables fills the table batch
                                                (MAX_TABLE_BATCH) + 1 final = 29
"""
import random

import numpy as np
import pytest

import mmucore
import pysim
from mmucore import Gather, PageTable
from pysim import (MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MADV_DONTNEED,
                   PROT_READ, PROT_WRITE)
from pysim.mm.memory import free_pgtables, unmap_page_range

PAGE = 4096
HPAGE = 2 << 20
RW = PROT_READ | PROT_WRITE
POPULATE = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE
FIRST_FULL = {0: 8 + 19 * 510, 1: 7 + 19 * 509}     # the page that fills the chain


# ------------------------------------------------------------------ the reference
class RefPageBatch:
    """The kernel's page-batch chain as lists, line by line after tlb_next_batch() and
    __tlb_remove_folio_pages_size() (nr == max up to 6.8, nr >= max - 1 from 6.9)."""

    def __init__(self, reserve):
        self.reserve = reserve
        self.chain = [[0, 8]]            # [nr, max]: the bundle tlb->local
        self.active = 0

    def remove_page(self):
        batch = self.chain[self.active]
        batch[0] += 1
        if batch[0] >= batch[1] - self.reserve:
            if self.active + 1 < len(self.chain):
                self.active += 1
            elif len(self.chain) - 1 == 19:
                return True
            else:
                self.chain.append([0, 510])
                self.active += 1
        return False

    def flush(self):
        for batch in self.chain:
            batch[0] = 0
        self.active = 0


def test_kernel_constants_follow_from_the_struct_sizes():
    """The cited constants, recomputed from the definitions in asm-generic/tlb.h on a
    64-bit kernel with 4 KiB pages."""
    gather_batch_header = 8 + 4 + 4          # next pointer, nr, max
    table_batch_header = 16 + 4 + 4          # rcu_head, nr, padding
    assert mmucore.gather.GATHER_BUNDLE == 8
    assert mmucore.gather.GATHER_BATCH == (4096 - gather_batch_header) // 8 == 510
    assert mmucore.gather.GATHER_BATCH_COUNT == 10000 // 510 == 19
    assert mmucore.gather.TABLE_BATCH == (4096 - table_batch_header) // 8 == 509


@pytest.mark.parametrize("reserve", [0, 1])
def test_gather_page_batch_fills_at_the_kernels_count(reserve):
    """The first full batch comes with page 9,698 (9,678 from 6.9); after the flush the
    allocated batches are reused, so the next comes as many pages later."""
    g = Gather(batch_reserve=reserve)
    full = [i for i in range(1, 3 * FIRST_FULL[reserve] + 1) if g.remove_page()
            and (g.batch_pages_flush() or True)]
    assert full == [FIRST_FULL[reserve], 2 * FIRST_FULL[reserve], 3 * FIRST_FULL[reserve]]
    assert g.batch_count == 19 and g.nr_pages == 0


@pytest.mark.parametrize("reserve", [0, 1])
def test_gather_page_batch_matches_the_reference_on_random_runs(reserve):
    """mmucore.Gather against RefPageBatch: random runs of queued pages with flushes
    in between (a flush before the chain is full leaves fewer batches allocated)."""
    rng = random.Random(13 + reserve)
    g, ref = Gather(batch_reserve=reserve), RefPageBatch(reserve)
    for _ in range(200):
        for _ in range(rng.choice((1, 7, 300, 5000, 12000))):
            a, b = g.remove_page(), ref.remove_page()
            assert a == b
            if a:
                break
        g.batch_pages_flush()
        ref.flush()
        assert g.batch_count == len(ref.chain) - 1


def test_gather_table_batch_and_pickling():
    """tlb_remove_table() reports the 509th table; a pickled gather keeps its counts."""
    import pickle
    g = Gather(batch_reserve=1)
    assert [g.remove_table() for _ in range(509)].count(True) == 1
    g.table_flush()
    for _ in range(5):
        g.remove_page()
    g2 = pickle.loads(pickle.dumps(g))
    assert g2.batch_state == g.batch_state and g2.nr_pages == 5 and g2.batch_reserve == 1
    with pytest.raises(ValueError):
        Gather(batch_reserve=2)


# ------------------------------------------------------------------ the zap paths
def zap(op, npages, profile="v6.2", prot=RW, flags=POPULATE):
    """One thread; map npages (populated), then munmap or MADV_DONTNEED all of them."""
    m = pysim.Machine(cpus=1, profile=profile)
    t = m.process().thread(cpu=0)
    p = t.mmap(npages * PAGE, prot, flags)
    if op == "munmap":
        return t.munmap(p, npages * PAGE)
    return t.madvise(p, npages * PAGE, MADV_DONTNEED)


@pytest.mark.parametrize("op, npages, flushes, batch_full, table_full", [
    ("dontneed", 9697, 1, 0, 0), ("dontneed", 9698, 1, 1, 0), ("dontneed", 9699, 2, 1, 0),
    ("munmap", 9697, 1, 0, 0), ("munmap", 9698, 2, 1, 0), ("munmap", 9699, 2, 1, 0),
    ("dontneed", 65536, 7, 6, 0), ("munmap", 65536, 7, 6, 0),
    ("dontneed", 262144, 28, 27, 0), ("munmap", 262144, 29, 27, 1),
])
def test_zap_flushes_when_the_gather_fills(op, npages, flushes, batch_full, table_full):
    """The module docstring's table: mid-zap flushes from the page batch, one from the
    table batch for 512 freed PTE tables, and the final flush when anything is left."""
    r = zap(op, npages)
    assert r.events["flush_tlb_mm_range"] == flushes
    assert r.events.get("gather_batch_full", 0) == batch_full
    assert r.events.get("gather_table_full", 0) == table_full
    assert r.events["zap_pte"] == npages


@pytest.mark.parametrize("profile", ["mmots", "patched", "v6.2"])
def test_every_profile_has_the_pre_6_9_batch(profile):
    """mmots (5.17), patched (5.19) and v6.2 all fill the chain at page 9,698."""
    assert zap("dontneed", 9698, profile).events["flush_tlb_mm_range"] == 1
    assert zap("dontneed", 9699, profile).events["flush_tlb_mm_range"] == 2


@pytest.mark.parametrize("op, npages, flushes, batch_full", [
    ("dontneed", 9677, 1, 0), ("dontneed", 9678, 1, 1), ("dontneed", 9679, 2, 1),
    ("munmap", 9677, 1, 0), ("munmap", 9678, 2, 1), ("munmap", 9679, 2, 1),
    ("dontneed", 65536, 7, 6), ("munmap", 65536, 7, 6),
    ("dontneed", 262144, 28, 27), ("munmap", 262144, 29, 27),
])
@pytest.mark.parametrize("profile", ["v6.14", "v6.15", "v6.18"])
def test_6_9_and_later_profiles_fill_the_chain_one_entry_early(profile, op, npages,
                                                                flushes, batch_full):
    """From 6.9 (__tlb_remove_folio_pages_size: full at nr >= max - 1) the first
    mid-zap flush comes with the 7 + 19 x 509 = 9,678th page; 65,536 and 262,144 pages
    still take 7 and 28/29 flushes, as this machine's 6.18 kernel counts."""
    assert pysim.get_profile(profile).mmu_gather_batch_reserve == 1
    r = zap(op, npages, profile)
    assert r.events["flush_tlb_mm_range"] == flushes
    assert r.events.get("gather_batch_full", 0) == batch_full


def test_batch_reserve_is_validated():
    """Only 0 (up to 6.8) and 1 (6.9 on) exist."""
    assert pysim.get_profile("v6.2").mmu_gather_batch_reserve == 0
    with pytest.raises(pysim.ConfigError, match="mmu_gather_batch_reserve"):
        pysim.get_profile("v6.2", mmu_gather_batch_reserve=2)


def test_mid_zap_flush_covers_the_range_so_far_then_tables_at_pmd_stride():
    """A user-written unmap with the gather API (the ceiling raised so that flushes keep
    their ranges): the first flush is the mid-zap one over exactly the 9,698 pages zapped
    so far (4K stride, no tables); the last one, after free_pgtables, covers the 2 pages
    left and the freed tables (4K stride, since PTEs were cleared after the reset)."""
    m = pysim.Machine(cpus=1, profile="v6.2", tlb_single_page_flush_ceiling=1 << 40)
    proc = m.process()
    t = proc.thread(cpu=0)
    n = 9700
    p = t.mmap(n * PAGE, RW, POPULATE)
    mm, cpu = proc.mm, m.cpus[0]
    op = m.begin(cpu, "unmap")
    with pysim.tlb_gather_mmu(cpu, mm) as tlb:
        unmap_page_range(tlb, p, p + n * PAGE)
        assert tlb.state.nr_pages == 2 and tlb.state.start == p + 9698 * PAGE
        free_pgtables(tlb, p, p + n * PAGE)
        assert tlb.state.freed_tables and tlb.state.start <= p
    m.end(op)
    assert len(tlb.flushes) == 2
    first, last = tlb.flushes
    assert (first.start, first.end, first.stride_shift, first.freed_tables) == (
        p, p + 9698 * PAGE, 12, False)
    assert (last.end, last.stride_shift, last.freed_tables) == (p + n * PAGE, 12, True)


def test_final_flush_uses_the_pmd_stride_when_only_tables_are_left():
    """munmap of exactly 9,698 pages in the middle of a larger mapping: the mid-zap flush
    takes every page, so the final flush has only the freed PTE tables (the 2M-aligned
    part), recorded as cleared_pmds: stride 2M, a partial flush of one step per table."""
    m = pysim.Machine(cpus=1, profile="v6.2")
    t = m.process().thread(cpu=0)
    p = t.mmap(40 * HPAGE, RW, POPULATE)
    r = t.munmap(p + 2 * HPAGE, 9698 * PAGE)
    # pages [p + 2M, +9698): the tables of the 18 whole 2M blocks go (9698 = 18 x 512
    # + 482); the partly unmapped 19th stays (a VMA remains above it)
    assert r.events["flush_tlb_mm_range"] == 2
    assert r.events["nr_tlb_local_flush_all"] == 1       # the 9,698-page mid-zap flush
    # 18 tables: the range is [first table, last table + 4K), (end - start) >> 21 = 17
    # steps as the kernel counts them (nr_invalidate)
    assert r.events["nr_tlb_local_flush_one"] == 17


def test_a_huge_pmd_is_one_batch_entry():
    """zap_huge_pmd queues the THP as one entry: with 9,697 pages queued, a huge PMD
    fills the chain and the zap stops right after it (tlb_remove_page_size flushes)."""
    pt = PageTable()
    pt.map(4 * HPAGE, 1024, huge=True)                 # two huge PMDs
    g = Gather()
    for _ in range(9697):
        assert not g.remove_page()
    addr, n4k, nhuge, nnone, ntables, splits, stop = pt.unmap_page_range(4 * HPAGE, 1024, g)
    assert (addr, nhuge, stop) == (5 * HPAGE, 1, mmucore.ZAP_BATCH_FULL)
    g.batch_pages_flush()
    addr, n4k, nhuge, nnone, ntables, splits, stop = pt.unmap_page_range(addr, 512, g)
    assert (addr, nhuge, stop, g.nr_pages) == (6 * HPAGE, 1, mmucore.ZAP_DONE, 1)


def test_zero_page_entries_are_not_batched():
    """vm_normal_page() is NULL for the zero page: 9,698 read-populated pages fill no
    batch, so DONTNEED flushes once."""
    r = zap("dontneed", 9698, prot=PROT_READ)
    assert r.events["flush_tlb_mm_range"] == 1 and r.events.get("gather_batch_full", 0) == 0
    assert r.events["zap_pte"] == 9698


def test_dirty_shared_pages_flush_at_the_end_of_each_pte_table():
    """A dirty page-cache page sets force_flush: zap_pte_range flushes before dropping
    the PTE lock, so written shared memory over 2 tables flushes twice (and nothing is
    left for the final flush); read-only shared memory is clean and flushes once."""
    shared = MAP_SHARED | MAP_ANONYMOUS
    m = pysim.Machine(cpus=1, profile="v6.2")
    t = m.process().thread(cpu=0)
    p = t.mmap(1024 * PAGE, RW, shared)
    t.access(p + np.arange(1024, dtype=np.uint64) * PAGE, np.full(1024, mmucore.WRITE, np.uint8))
    r = t.madvise(p, 1024 * PAGE, MADV_DONTNEED)
    assert r.events["flush_tlb_mm_range"] == 2
    q = t.mmap(1024 * PAGE, RW, shared)
    t.access(q + np.arange(1024, dtype=np.uint64) * PAGE, np.full(1024, mmucore.READ, np.uint8))
    r = t.madvise(q, 1024 * PAGE, MADV_DONTNEED)
    assert r.events["flush_tlb_mm_range"] == 1


def test_dontneed_over_two_vmas_flushes_per_vma():
    """zap_page_range() (5.17-6.15) opens one gather per VMA: two VMAs, two flushes."""
    m = pysim.Machine(cpus=1, profile="patched")
    t = m.process().thread(cpu=0)
    p = t.mmap(8 * PAGE, RW, POPULATE)
    t.mprotect(p + 4 * PAGE, 4 * PAGE, PROT_READ)       # split into two VMAs
    r = t.madvise(p, 8 * PAGE, MADV_DONTNEED)
    assert r.events["flush_tlb_mm_range"] == 2 and r.events["zap_pte"] == 8


# ------------------------------------------------------------------ the cost mechanisms
def machine(profile="v6.2", preset="skylake", cpus=1, **costs):
    """A machine whose preset has the given costs overridden."""
    return pysim.Machine(cpus=cpus, profile=profile,
                         preset=pysim.get_preset(preset, **costs) if costs else preset)


def test_dontneed_charges_each_zapped_and_each_empty_slot():
    """MADV_DONTNEED over 16 pages of which 10 are present: madvise_base + 10 x
    per_page_zap + 6 x per_pte_none (the empty slots) + per_pmd_table (one PTE table)."""
    m = machine(per_page_zap=7, per_pte_none=3, per_pmd_table=50)
    t = m.process().thread(cpu=0)
    p = t.mmap(16 * PAGE, RW)
    t.access(p + np.arange(10, dtype=np.uint64) * PAGE, np.full(10, mmucore.WRITE, np.uint8))
    r = t.madvise(p, 16 * PAGE, MADV_DONTNEED)
    c = m.preset.cost
    assert r.breakdown["pte"] == pytest.approx(c("madvise_base") + 10 * 7 + 6 * 3 + 50)


def test_huge_pmd_zap_is_one_entry_not_512():
    """munmap of one THP charges zap_huge_pmd once (the munmap_base is in "vma")."""
    m = machine(per_page_zap=100, zap_huge_pmd=3000)
    t = m.process().thread(cpu=0)
    p = t.mmap(HPAGE, RW, POPULATE, huge=True)
    r = t.munmap(p, HPAGE)
    assert r.events["zap_huge_pmd"] == 1 and r.events.get("zap_pte", 0) == 0
    assert r.breakdown["pte"] == pytest.approx(3000)


def test_thp_first_touch_costs_fault_thp():
    """A THP fault is charged fault_thp (clearing 512 subpages), a 4K one fault_anon:
    the two faults' kernel cycles differ by exactly fault_thp - fault_anon."""
    m = machine(fault_thp=400000)
    t = m.process().thread(cpu=0)
    p = t.mmap(HPAGE, RW, huge=True)
    q = t.mmap(PAGE, RW)
    thp, small = t.write(p), t.write(q)
    assert thp.events["fault_thp"] == 1 and small.events["fault_anon"] == 1
    c = m.preset.cost
    assert thp.breakdown["fault"] - small.breakdown["fault"] == pytest.approx(
        400000 - c("fault_anon"))


def test_span_mprotect_charges_the_empty_slots_it_scans():
    """mprotect of 64 pages with only the first and last present scans 62 empty slots."""
    cycles = {}
    for none in (0, 9):
        m = machine(profile="patched", per_pte_none=none)
        t = m.process().thread(cpu=0)
        p = t.mmap(64 * PAGE, RW)
        t.access(np.array([p, p + 63 * PAGE], dtype=np.uint64), np.full(2, mmucore.WRITE, np.uint8))
        cycles[none] = t.mprotect(p, 64 * PAGE, PROT_READ).breakdown["pte"]
    assert cycles[9] - cycles[0] == pytest.approx(62 * 9)


def test_extra_vmas_cost_per_extra_vma():
    """An mprotect over three VMAs pays per_vma once and per_extra_vma twice."""
    cycles = {}
    for extra in (400, 100):
        m = machine(profile="patched", per_vma=400, per_extra_vma=extra)
        t = m.process().thread(cpu=0)
        p = t.mmap(6 * PAGE, RW, POPULATE)
        t.mprotect(p + 2 * PAGE, 2 * PAGE, PROT_READ)       # RW | R | RW: three VMAs
        cycles[extra] = t.mprotect(p, 6 * PAGE, PROT_READ | pysim.PROT_EXEC).breakdown["pte"]
    assert cycles[400] - cycles[100] == pytest.approx(2 * 300)


@pytest.mark.parametrize("profile, checks", [("v6.2", 8), ("patched", 0)])
def test_write_upgrade_check_is_charged_per_pte(profile, checks):
    """PROT_READ -> PROT_READ|PROT_WRITE over 8 read-only PTEs: v6.2 asks
    can_change_pte_writable() for each of them, 5.19 has no such check."""
    cycles = {}
    for price in (0, 15):
        m = machine(profile=profile, can_change_pte_writable=price)
        t = m.process().thread(cpu=0)
        p = t.mmap(8 * PAGE, RW, POPULATE)
        t.mprotect(p, 8 * PAGE, PROT_READ)
        cycles[price] = t.mprotect(p, 8 * PAGE, RW).breakdown["pte"]
    assert cycles[15] - cycles[0] == pytest.approx(15 * checks)


def test_remote_invlpg_has_its_own_price():
    """A one-page flush with a busy second CPU: the INVLPG on CPU 1 (the IPI's target)
    costs invlpg_remote, the one on CPU 0 invlpg.  Changing the remote price changes
    CPU 1's cycles (and the initiator's wait for its ack); changing the local price
    leaves CPU 1 alone."""
    def cycles(local, remote):
        m = machine(profile="patched", cpus=2, invlpg=local, invlpg_remote=remote)
        proc = m.process()
        t0 = proc.thread(cpu=0)
        t1 = proc.thread(cpu=1).busy()
        p = t0.mmap(PAGE, RW)
        t0.write(p)
        t1.write(p)
        t1.busy()
        r = t0.mprotect(p, PAGE, PROT_READ)
        assert (r.cpu_events[0]["invlpg"], r.cpu_events[1]["invlpg"]) == (1, 1)
        return r.cpu_cycles[0], r.cpu_cycles[1]
    base = cycles(190, 100)
    assert cycles(190, 140)[1] - base[1] == pytest.approx(40)
    assert cycles(150, 100)[1] == base[1]


@pytest.mark.parametrize("seed", range(6))
def test_unmap_page_range_stops_where_the_reference_says(seed):
    """PageTable.unmap_page_range, resumed after every stop, against a plain-Python walk
    of the same entries in address order: 4K pages (some the zero page, SPECIAL: not
    queued), huge PMDs (one entry each) and dirty page-cache pages (a stop at the end
    of their PTE table, odd seeds only), with the batch chain prefilled to a random
    level so that even seeds fill it during the walk."""
    rng = random.Random(seed)
    pt = PageTable()
    base, span = 1 << 32, 64 * HPAGE
    entries = {}                         # address -> "normal" | "zero" | "file" | "huge"
    for block in range(64):
        a = base + block * HPAGE
        kind = rng.choice(("empty", "huge", "ptes", "ptes"))
        if kind == "huge":
            pt.map(a, 512, huge=True)
            entries[a] = "huge"
        elif kind == "ptes":
            for i in sorted(rng.sample(range(512), rng.randint(1, 512))):
                what = rng.choices(("normal", "zero", "file"),
                                   (10, 4, 0 if seed % 2 == 0 else 0.2))[0]
                flags = mmucore.PTE_RW | mmucore.PTE_US | mmucore.PTE_A | (
                    mmucore.PTE_SPECIAL if what == "zero" else 0) | (
                    mmucore.PTE_D if what == "file" else 0)
                pfn = {"normal": 0x5000 + i, "zero": 0x1001,
                       "file": mmucore.FILE_PFN_BASE + i}[what]
                pt.map(a + i * PAGE, 1, flags=flags, pfn=pfn)
                entries[a + i * PAGE] = what
    prefill = rng.randint(6000, 9697)

    # the reference: walk the entries, queue the normal ones, note where it stops
    ref, expect = RefPageBatch(0), []
    for _ in range(prefill):
        ref.remove_page()
    dirty_table = None
    for a in sorted(entries):
        table = a & ~(HPAGE - 1)
        if dirty_table is not None and table != dirty_table:
            expect.append(dirty_table + HPAGE)       # force_flush at the table's end
            ref.flush()
            dirty_table = None
        kind = entries[a]
        if kind == "file":
            dirty_table = table
        if kind != "zero" and ref.remove_page():
            expect.append(a + (HPAGE if kind == "huge" else PAGE))
            ref.flush()
            dirty_table = None
    if dirty_table is not None:
        expect.append(dirty_table + HPAGE)

    g = Gather()
    for _ in range(prefill):
        g.remove_page()
    got, addr, end = [], base, base + span
    while True:
        addr, *_, stop = pt.unmap_page_range(addr, (end - addr) // PAGE, g)
        if stop == mmucore.ZAP_DONE:
            break
        got.append(addr)
        g.batch_pages_flush()
    assert got == expect
    if seed % 2 == 0:
        assert expect         # without page-cache pages every stop is a full batch
    assert not pt.read_range(base, span // PAGE).any()
