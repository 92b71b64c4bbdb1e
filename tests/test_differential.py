"""Differential tests: the Cython core (mmucore) against the plain-Python reference.

Random operation streams (accesses, invalidations, PCID switches and page-table changes)
run through both implementations over a small address universe chosen so that hits,
evictions at every level, huge pages, splits, faults of every class (also from stale TLB
entries), PSC hits at every level and stale PDE-cache walks into freed PTE tables all
occur, including walks through stale PDPTE/PML4E-cache entries into freed tables.
Every counter is compared after every operation, return values of every operation, the
TLB contents periodically, and the whole state (TLB slots, page-table leaves, upper
entries, table counts, A/D bits) at the end.
"""
import collections
import os
import random
import sys

import numpy as np
import pytest

import mmucore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MB2 = 1 << 21
GB1 = 1 << 30

# ------------------------------------------------------------------ the address universe
# 4K regions: three neighbouring 2M chunks (one PMD table), another 1G region, and three
# other PGD slots.  Huge regions: six chunks 16M apart (the same set of an 8-set L1 2M
# array) in a third 1G region.  4 PGD slots, 6 PUD slots, 13 PMD slots in all.
REGIONS_4K = [0x7F0000000000, 0x7F0000200000, 0x7F0000400000, 0x7F0040000000,
              0x000040000000, 0x008000200000, 0x010000000000]
REGIONS_2M = [0x7F0080000000 + k * 8 * MB2 for k in range(6)]
REGIONS = REGIONS_4K + REGIONS_2M
# maps and populates that start near a region's end spill into the next 2M chunk
CHECK_REGIONS = sorted(set(REGIONS) | {r + MB2 for r in REGIONS})
# page offsets: 0/16/32/.. share an L1 set of 16 sets, 0/128/256/384 an STLB set of 128
OFFSETS_4K = [0, 1, 2, 5, 16, 32, 48, 64, 128, 256, 384, 511]
OFFSETS_2M = [0, 1, 300, 511]
PAGES = ([r + o * 4096 for r in REGIONS_4K for o in OFFSETS_4K]
         + [r + o * 4096 for r in REGIONS_2M for o in OFFSETS_2M])
PCIDS = [0, 1, 2]

P, RW, US, A, D, G, NX = ref.P, ref.RW, ref.US, ref.A, ref.D, ref.G, ref.NX
PROTS = [mmucore.PAGE_NONE, mmucore.PAGE_READONLY, mmucore.PAGE_COPY, mmucore.PAGE_SHARED,
         mmucore.PAGE_READONLY_EXEC, mmucore.PAGE_SHARED_EXEC,
         mmucore.PAGE_SHARED | (3 << 59), mmucore.PAGE_READONLY | ref.PWT]
MODES = [0, mmucore.CP_RECORD_ALL, mmucore.CP_RECORD_NEEDED,
         mmucore.CP_RECORD_NEEDED | mmucore.CP_TRY_WRITABLE,
         mmucore.CP_RECORD_NEEDED | mmucore.CP_TRY_WRITABLE | mmucore.CP_WRITABLE_NEEDS_DIRTY,
         mmucore.CP_RECORD_NEEDED | mmucore.CP_UFFD_WP,
         mmucore.CP_RECORD_NEEDED | mmucore.CP_UFFD_WP_RESOLVE,
         mmucore.CP_RECORD_NEEDED | mmucore.CP_DIRTY_ACCT,
         mmucore.CP_RECORD_ALL | mmucore.CP_TRY_WRITABLE | mmucore.CP_UFFD_WP_RESOLVE]
NPAGES = [1, 2, 5, 17, 300, 512, 513, 700, 1027]
ZERO_PFN = 0x7777
MAP_FLAGS = [RW | US | A | D, US | A, RW | US | NX, US | NX | A, RW | US | A | D | G,
             RW | A | D, RW | US | ref.SOFT_DIRTY]

GEOMETRIES = {
    "skylake": "skylake",
    "zen3": "zen3",
    "skylake-kvm": "skylake-kvm",
    "tiny": dict(l1_4k=(2, 2), l1_2m=(1, 2), l1_unified=False, stlb=(3, 2),
                 psc=(1, 2, (2, 2)), nested_levels=0),
    "tiny-unified": dict(l1_4k=(3, 2), l1_2m=None, l1_unified=True, stlb=(5, 3),
                         psc=(0, 3, (3, 1)), nested_levels=0),
    "tiny-nopsc-kvm5": dict(l1_4k=(1, 3), l1_2m=(2, 1), l1_unified=False, stlb=(6, 2),
                            psc=(0, 0, 0), nested_levels=5),
}

COSTS = dict(l1_hit=1, stlb_hit=7, walk_base=20, walk_ref=3, invlpg=101, invpcid_single=103,
             cr3_flush=107, cr3_noflush=11, flush_global=307, fault_hw=1009)


def expected_cycles(c):
    """Cycles per kind (mmucore.CYCLE_NAMES) implied by the counters and COSTS."""
    return [c["l1_hits"] * COSTS["l1_hit"] + c["stlb_hits"] * COSTS["stlb_hit"],
            c["walks"] * COSTS["walk_base"] + c["walk_refs"] * COSTS["walk_ref"],
            c["invlpg"] * COSTS["invlpg"] + c["invpcid_single"] * COSTS["invpcid_single"]
            + c["flush_pcid"] * COSTS["cr3_flush"] + c["cr3_noflush"] * COSTS["cr3_noflush"]
            + c["flush_all"] * COSTS["flush_global"],
            c["faults"] * COSTS["fault_hw"]]


def make_geometry(name):
    g = GEOMETRIES[name]
    return mmucore.geometry(g) if isinstance(g, str) else mmucore.geometry(None, **g)


# ------------------------------------------------------------------ the pair under test
class Pair:
    """One mmucore (PageTable, TLB) and one reference (RefPageTable, RefTLB), driven alike."""

    def __init__(self, geo_name):
        geo = make_geometry(geo_name)
        self.pt = mmucore.PageTable()
        self.tlb = mmucore.TLB(geo, costs=mmucore.CostModel(**COSTS))
        self.rpt = ref.RefPageTable()
        self.rtlb = ref.RefTLB(geo)
        self.log = []
        self.last_fault = None
        self.coverage = collections.Counter()

    # -- comparison helpers
    def fail(self, what, got, want):
        tail = "\n".join(f"  #{i}: {op}" for i, op in self.log[-12:])
        raise AssertionError(f"mmucore and reference differ on {what} after op "
                             f"#{len(self.log) - 1}:\n  mmucore:   {got}\n"
                             f"  reference: {want}\nlast ops:\n{tail}")

    def check(self, what, got, want):
        if got != want:
            self.fail(what, got, want)

    def counters(self):
        return dict(zip(mmucore.COUNTER_NAMES, (int(x) for x in self.tlb.counters)))

    def check_counters(self):
        got, want = self.counters(), self.rtlb.counters
        if got != want:
            diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
            self.fail("counters (mmucore, reference)", diff, "")

    def tlb_entries(self):
        e = self.tlb.entries()
        return [(int(lv), int(va), int(pc), bool(h), bool(gl), int(d)) for lv, va, pc, h, gl, d
                in zip(e["level"], e["va"], e["pcid"], e["huge"], e["global"], e["data"])]

    def check_tlb_state(self):
        self.check("TLB entries", self.tlb_entries(), self.rtlb.entries())
        self.check("TLB occupancy", self.tlb.occupancy(), self.rtlb.occupancy())
        self.check("current PCID", self.tlb.pcid, self.rtlb.pcid)

    def check_pt_state(self):
        self.check("table counts", self.pt.table_counts, self.rpt.table_counts)
        self.check("next_pfn", self.pt.next_pfn, self.rpt.next_pfn)
        for r in CHECK_REGIONS:
            self.check(f"read_range 0x{r:x}", [int(x) for x in self.pt.read_range(r, 512)],
                       self.rpt.read_range(r, 512))
            self.check(f"upper entries 0x{r:x}", self.pt.upper_entries(r),
                       self.rpt.upper_entries(r))
        for va in PAGES:
            self.check(f"get 0x{va:x}", self.pt.get(va), self.rpt.get(va))
        leaves = self.rpt.leaves()
        for va, (entry, shift) in leaves.items():
            assert any(r <= va < r + MB2 for r in CHECK_REGIONS), f"leaf 0x{va:x} outside the universe"
            self.check(f"leaf 0x{va:x}", self.pt.get(va), (entry, shift))

    def check_cycles(self):
        got = [float(x) for x in self.tlb.cycles]
        self.check("cycles per kind", got, [float(x) for x in expected_cycles(self.rtlb.counters)])

    def check_all(self):
        self.check_counters()
        self.check_tlb_state()
        self.check_pt_state()
        self.check_cycles()

    @staticmethod
    def gathers_equal(g, rg):
        return (g.as_dict() == rg.as_dict() and g.needs_flush == rg.needs_flush
                and g.stride_shift == rg.stride_shift)

    # -- one operation on both sides
    def apply(self, op):
        self.log.append((len(self.log), op))
        name, args = op[0], op[1:]
        pt, tlb, rpt, rtlb = self.pt, self.tlb, self.rpt, self.rtlb
        if name == "access":
            va, kind, user = args
            self.last_fault = ref.ref_access(rpt, rtlb, va, kind, user)
            self.check("fault class", mmucore.access(pt, tlb, va, kind, user), self.last_fault)
            hit = rtlb._lookup(0, va & ref.VA48)
            if hit is not None:
                self.coverage["huge translations"] += hit[2]
                self.coverage["global translations"] += hit[1].key[3]
                self.coverage["nonzero PCID translations"] += hit[1].key[1] != 0
        elif name == "invlpg":
            tlb.invlpg(args[0], args[1])
            rtlb.invlpg(args[0], args[1])
        elif name == "invpcid":
            tlb.invpcid_single(args[0], args[1])
            rtlb.invpcid_single(args[0], args[1])
        elif name == "flush_pcid":
            tlb.flush_pcid(args[0])
            rtlb.flush_pcid(args[0])
        elif name == "flush_all":
            tlb.flush_all(args[0])
            rtlb.flush_all(args[0])
        elif name == "switch":
            tlb.switch_pcid(args[0], args[1])
            rtlb.switch_pcid(args[0], args[1])
        elif name == "map":
            va, npages, flags, huge, pfn = args
            self.check("map", pt.map(va, npages, flags, pfn=pfn, huge=huge),
                       rpt.map(va, npages, flags, pfn=pfn, huge=huge))
        elif name in ("set_pte", "set_pmd"):
            va, value = args
            outcome = []
            for target in (pt, rpt):
                try:
                    getattr(target, name)(va, value)
                    outcome.append("ok")
                except ValueError:
                    outcome.append("ValueError")
            self.check(name + " outcome", outcome[0], outcome[1])
        elif name == "split":
            self.check("split", pt.split_huge_pmd(args[0]), rpt.split_huge_pmd(args[0]))
        elif name == "populate":
            va, npages, flags, pfn, same = args
            self.check("populate", pt.populate(va, npages, flags, pfn=pfn, same_pfn=same),
                       rpt.populate(va, npages, flags, pfn=pfn, same_pfn=same))
        elif name == "change":
            va, npages, prot, mode, zero = args
            g, rg = mmucore.Gather(), ref.RefGather()
            pages, changed, flagged, thp, splits, tables = pt.change_range(
                va, npages, prot, mode, g, zero_pfn=zero)
            got = (pages, changed, flagged, [int(x) for x in thp], [int(x) for x in splits],
                   tables)
            self.check("change_range", got, rpt.change_range(va, npages, prot, mode, rg, zero))
            self.check("change_range gather", self.gathers_equal(g, rg), True)
            self.coverage["THP splits"] += len(splits)
            self.coverage["THP changes"] += len(thp)
        elif name == "zap":
            va, npages, fs, fe = args
            g, rg = mmucore.Gather(), ref.RefGather()
            n4k, nh, splits = pt.zap_range(va, npages, g, fs, fe)
            self.check("zap_range", (n4k, nh, [int(x) for x in splits]),
                       rpt.zap_range(va, npages, rg, fs, fe))
            self.check("zap_range gather", (g.as_dict(), g.needs_flush, g.stride_shift),
                       (rg.as_dict(), rg.needs_flush, rg.stride_shift))
            self.coverage["table frees"] += rg.freed_tables
        elif name == "cyd":
            va, npages, dirty = args
            g, rg = mmucore.Gather(), ref.RefGather()
            self.check("clear_young_dirty", pt.clear_young_dirty(va, npages, g, dirty),
                       rpt.clear_young_dirty(va, npages, rg, dirty))
            self.check("clear_young_dirty gather", self.gathers_equal(g, rg), True)
        else:
            raise AssertionError(f"unknown op {op}")
        self.check_counters()


# ------------------------------------------------------------------ random streams
def random_pte(rng):
    if rng.random() < 0.08:
        return 0
    flags = A * (rng.random() < 0.7) | D * (rng.random() < 0.4) | RW * (rng.random() < 0.6)
    flags |= US * (rng.random() < 0.85) | NX * (rng.random() < 0.5) | G * (rng.random() < 0.1)
    flags |= ref.PWT * (rng.random() < 0.1) | ref.SOFT_DIRTY * (rng.random() < 0.2)
    flags |= ref.UFFD_WP * (rng.random() < 0.1) | (rng.randrange(16) << 59) * (rng.random() < 0.1)
    pfn = rng.randrange(0x3000, 0x3040)
    if pfn % 5 == 0:                                        # a page-cache frame
        pfn += ref.FILE_PFN_BASE
    if rng.random() < 0.1:                                  # PROT_NONE, frame inverted
        return ref._fix_protnone(0, (pfn << 12) | (flags & ~G) | ref.PROTNONE, ref.PFN_MASK)
    return (pfn << 12) | flags | P


def random_pmd(rng):
    if rng.random() < 0.1:
        return 0
    k = rng.randrange(8)
    pfn = 0x80000 + 512 * k + ref.FILE_PFN_BASE * (k == 7)     # k == 7: page-cache frames
    flags = A * (rng.random() < 0.7) | D * (rng.random() < 0.4) | RW * (rng.random() < 0.6)
    flags |= US * (rng.random() < 0.85) | NX * (rng.random() < 0.5) | G * (rng.random() < 0.1)
    flags |= ref.PAT_LARGE * (rng.random() < 0.1)
    if rng.random() < 0.1:
        return ref._fix_protnone(0, (pfn << 12) | flags & ~G | ref.PROTNONE, ref.PMD_PFN_MASK)
    return (pfn << 12) | flags | P


# pages sharing set 0 of a 128-set STLB (and of a 16-set L1): bursts over them evict
STLB_SET0 = [p for p in PAGES if (p >> 12) % 128 == 0]


def random_ops(rng, pfn_state):
    """One random operation, or now and then a burst of accesses to one STLB set or a sweep
    over the whole universe."""
    r = rng.random()
    if r < 0.015:
        return [("access", p, rng.choice((0, 1)), True)
                for p in rng.sample(STLB_SET0, len(STLB_SET0) // 2 + 6)]
    if r < 0.02:      # a sweep over every page overflows even a 64-entry L1
        return [("access", p, 0, True) for p in PAGES]
    return [random_op(rng, pfn_state)]


def random_op(rng, pfn_state):
    r = rng.random()
    page = rng.choice(PAGES)
    if r < 0.62:
        if r < 0.3:               # a hot set of a few pages gives L1 hits despite the churn
            page = PAGES[(pfn_state[1] + rng.randrange(6) * 7) % len(PAGES)]
        kind = rng.choice((0, 0, 1, 1, 2))
        return ("access", page + rng.randrange(0, 4096, 8), kind, rng.random() < 0.93)
    if r < 0.645:
        return ("invlpg", page, rng.choice([None, None, *PCIDS]))
    if r < 0.66:
        return ("invpcid", page, rng.choice(PCIDS))
    if r < 0.668:
        return ("flush_pcid", rng.choice([None, *PCIDS]))
    if r < 0.673:
        return ("flush_all", rng.random() < 0.5)
    if r < 0.703:
        return ("switch", rng.choice(PCIDS), rng.random() < 0.3)
    if r < 0.753:
        if rng.random() < 0.3:
            pfn_state[0] += 1024
            return ("map", rng.choice(REGIONS), 512 * rng.choice((1, 1, 2)),
                    rng.choice(MAP_FLAGS), True, pfn_state[0])
        return ("map", page, rng.choice((1, 3, 40, 512)), rng.choice(MAP_FLAGS), False, None)
    if r < 0.798:
        return ("set_pte", page, random_pte(rng))
    if r < 0.813:
        return ("set_pmd", rng.choice(REGIONS), random_pmd(rng))
    if r < 0.821:
        return ("split", page)
    if r < 0.881:
        prot = rng.choice(PROTS[1:]) if rng.random() < 0.85 else PROTS[0]
        return ("change", page, rng.choice(NPAGES), prot, rng.choice(MODES),
                rng.choice((0, ZERO_PFN)))
    if r < 0.901:
        npages = rng.choice(NPAGES[:4]) if rng.random() < 0.7 else rng.choice(NPAGES)
        end = page + npages * 4096
        fs, fe = rng.choice([(None, None), (page, page), (None, None),
                             (page & ~(MB2 - 1), (end + MB2 - 1) & ~(MB2 - 1))])
        if rng.random() < 0.15:
            fs, fe = page & ~(GB1 - 1), (end + GB1 - 1) & ~(GB1 - 1)
        return ("zap", page, npages, fs, fe)
    if r < 0.926:
        return ("cyd", page, rng.choice(NPAGES), rng.random() < 0.5)
    flags = rng.choice(MAP_FLAGS) | P
    if rng.random() < 0.3:
        return ("populate", page, rng.choice((1, 4, 100)), US | A | NX | P, ZERO_PFN, True)
    return ("populate", page, rng.choice((1, 4, 100, 512)), flags, None, False)


def initial_ops(rng):
    """Map most of the universe first, so the stream starts with something to hit."""
    ops = []
    for r in REGIONS_4K:
        ops.append(("map", r, 512, rng.choice(MAP_FLAGS[:3]), False, None))
    for k, r in enumerate(REGIONS_2M):
        ops.append(("map", r, 512, rng.choice(MAP_FLAGS), True, 0x100000 + 512 * k))
    return ops


def run_stream(geo_name, seed, nops, check_every=40):
    rng = random.Random(seed)
    pair = Pair(geo_name)
    pfn_state = [0x200000, rng.randrange(len(PAGES))]
    for op in initial_ops(rng):
        pair.apply(op)
    for i in range(nops):
        for op in random_ops(rng, pfn_state):
            pair.apply(op)
            if (op[0] == "access" and pair.last_fault == ref.FAULT_NOT_PRESENT
                    and rng.random() < 0.6):
                # the kernel would fault the page in: keeps the universe populated
                pair.apply(("map", op[1] & ~4095, 1, rng.choice(MAP_FLAGS), False, None))
        if i % check_every == check_every - 1:
            pair.check_tlb_state()
    pair.check_all()
    return pair


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("geo_name", sorted(GEOMETRIES))
def test_random_stream(geo_name, seed):
    pair = run_stream(geo_name, seed, 2000)
    c = pair.rtlb.counters
    # the stream must exercise what it is meant to (else the comparison proves little)
    for name in ("l1_hits", "stlb_hits", "walks", "l1_evictions", "dirty_walks",
                 "fault_not_present", "fault_write", "fault_nx", "fault_user",
                 "fault_from_tlb", "invlpg", "invpcid_single", "flush_pcid", "flush_all",
                 "cr3_noflush"):
        assert c[name] > 0, f"{geo_name}/{seed}: the stream never produced {name}"
    psc_levels = [lvl for lvl in (0, 1, 2) if pair.rtlb.psc[lvl] is not None]
    for lvl in psc_levels:
        name = ("psc_pml4_hits", "psc_pdpt_hits", "psc_pde_hits")[lvl]
        assert c[name] > 0, f"{geo_name}/{seed}: no {name}"
    assert c["stlb_evictions"] > 0
    assert (c["psc_evictions"] > 0) == bool(psc_levels)
    for what in ("huge translations", "global translations", "nonzero PCID translations",
                 "THP splits", "THP changes", "table frees"):
        assert pair.coverage[what] > 0, f"{geo_name}/{seed}: the stream never had {what}"


# ------------------------------------------------------------------ hypothesis streams
_page = st.sampled_from(PAGES)
_op = st.one_of(
    st.tuples(st.just("access"), _page, st.sampled_from([0, 1, 2]), st.booleans()),
    st.tuples(st.just("access"), _page, st.sampled_from([0, 1, 2]), st.just(True)),
    st.tuples(st.just("invlpg"), _page, st.sampled_from([None, *PCIDS])),
    st.tuples(st.just("invpcid"), _page, st.sampled_from(PCIDS)),
    st.tuples(st.just("flush_pcid"), st.sampled_from([None, *PCIDS])),
    st.tuples(st.just("flush_all"), st.booleans()),
    st.tuples(st.just("switch"), st.sampled_from(PCIDS), st.booleans()),
    st.tuples(st.just("map"), _page, st.sampled_from([1, 3, 40]), st.sampled_from(MAP_FLAGS),
              st.just(False), st.none()),
    st.tuples(st.just("map"), st.sampled_from(REGIONS), st.just(512),
              st.sampled_from(MAP_FLAGS), st.just(True),
              st.integers(0x300, 0x340).map(lambda k: k * 512)),
    st.tuples(st.just("set_pte"), _page,
              st.integers(0, 2**32).map(lambda s: random_pte(random.Random(s)))),
    st.tuples(st.just("set_pmd"), st.sampled_from(REGIONS),
              st.integers(0, 2**32).map(lambda s: random_pmd(random.Random(s)))),
    st.tuples(st.just("split"), _page),
    st.tuples(st.just("change"), _page, st.sampled_from(NPAGES), st.sampled_from(PROTS),
              st.sampled_from(MODES), st.sampled_from([0, ZERO_PFN])),
    st.tuples(st.just("zap"), _page, st.sampled_from(NPAGES), st.none(), st.none()),
    st.tuples(st.just("cyd"), _page, st.sampled_from(NPAGES), st.booleans()),
    st.tuples(st.just("populate"), _page, st.sampled_from([1, 4, 100]),
              st.sampled_from([f | P for f in MAP_FLAGS]), st.none(), st.just(False)),
)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(geo_name=st.sampled_from(["tiny", "tiny-unified", "zen3", "skylake-kvm"]),
       ops=st.lists(_op, min_size=1, max_size=60))
def test_hypothesis_stream(geo_name, ops):
    pair = Pair(geo_name)
    for op in initial_ops(random.Random(0)):
        pair.apply(op)
    for op in ops:
        pair.apply(op)
    pair.check_all()


# ------------------------------------------------------------------ access_stream batches
def _fix_fault(pair, va, cls):
    """What a fault handler might do, applied to both sides: make the access legal."""
    entry, shift = pair.pt.get(va)
    if cls == mmucore.FAULT_NOT_PRESENT:
        if entry == 0:
            pair.apply(("map", va & ~4095, 1, RW | US | A, False, None))
            return
        entry = (mmucore.pmd_modify if shift == 21 else mmucore.pte_modify)(
            entry, mmucore.PAGE_SHARED_EXEC)
    elif cls == mmucore.FAULT_WRITE:
        entry |= RW
    elif cls == mmucore.FAULT_NX:
        entry &= ~NX & ((1 << 64) - 1)
    elif cls == mmucore.FAULT_USER:
        entry |= US
    if shift == 21:
        pair.apply(("set_pmd", va & ~(MB2 - 1), entry))
    else:
        pair.apply(("set_pte", va & ~4095, entry))


def _ref_stream(pair, vas, kinds, start, user):
    """The reference's view of one access_stream call."""
    c = pair.rtlb.counters
    before = {k: c[k] for k in ("accesses", "l1_hits", "stlb_hits", "walks")}
    before_counts = dict(c)
    i, cls = start, 0
    while i < len(vas):
        cls = ref.ref_access(pair.rpt, pair.rtlb, int(vas[i]), int(kinds[i]), user)
        if cls:
            break
        i += 1
    out = {k: c[k] - before[k] for k in before}
    out.update(faults=int(cls != 0), stopped_at=i, fault_class=cls,
               fault_from_tlb=bool(cls and pair.rtlb.last_fault_from_tlb),
               fault_va=int(vas[i]) if cls else None, fault_kind=int(kinds[i]) if cls else None)
    cyc = sum(expected_cycles(c)) - sum(expected_cycles(before_counts))
    return out, float(cyc)


@pytest.mark.parametrize("geo_name", ["skylake", "zen3", "tiny", "skylake-kvm"])
def test_access_stream_matches_reference(geo_name):
    rng = random.Random(11)
    nprng = np.random.default_rng(11)
    pair = Pair(geo_name)
    for op in initial_ops(rng):
        pair.apply(op)
    pair.apply(("change", REGIONS_4K[1], 512, mmucore.PAGE_READONLY, 0, 0))
    pair.apply(("change", REGIONS_4K[2], 512, mmucore.PAGE_READONLY_EXEC, 0, 0))
    seen = set()
    pool = np.array(PAGES, dtype=np.uint64)
    for batch in range(8):
        n = 400
        vas = pool[nprng.integers(0, len(pool), n)] + nprng.integers(0, 512, n).astype(
            np.uint64) * np.uint64(8)
        kinds = nprng.choice(np.array([0, 0, 1, 2], dtype=np.uint8), n)
        user = batch != 5
        start, rounds = 0, 0
        while True:
            rounds += 1
            assert rounds < 400, "fault handling does not converge"
            want, want_cycles = _ref_stream(pair, vas, kinds, start, user)
            res = mmucore.access_stream(pair.pt, pair.tlb, vas, kinds, start=start, user=user)
            got = {k: getattr(res, k) for k in want}
            pair.check(f"access_stream batch {batch} from {start}", got, want)
            pair.check("access_stream cycles", res.cycles, want_cycles)
            pair.check_counters()
            if not res.faults:
                assert res.stopped_at == n
                break
            seen.add((res.fault_class, res.fault_from_tlb))
            _fix_fault(pair, res.fault_va, res.fault_class)
            start = res.stopped_at
        # make some cached entries stale before the next batch (no flush on purpose)
        for op in (("change", rng.choice(PAGES), rng.choice(NPAGES), rng.choice(PROTS[1:]),
                    0, 0),
                   ("set_pte", rng.choice(PAGES[:40]), random_pte(rng) & ~G),
                   ("invlpg", rng.choice(PAGES), None)):
            pair.apply(op)
    pair.check_all()
    classes = {cls for cls, _ in seen}
    assert {mmucore.FAULT_NOT_PRESENT, mmucore.FAULT_WRITE, mmucore.FAULT_NX} <= classes
    assert any(from_tlb for _, from_tlb in seen), "no fault came from a stale TLB entry"


def test_access_stream_start_resumes_where_it_stopped():
    """A stopped stream resumed at stopped_at does exactly the per-access work."""
    pair = Pair("tiny")
    base = REGIONS_4K[0]
    pair.apply(("map", base, 4, US | A | NX, False, None))          # read-only, NX
    vas = np.array([base, base + 4096, base + 8192, base + 4096, base + 12288, base],
                   dtype=np.uint64)
    kinds = np.array([0, 0, 1, 0, 2, 0], dtype=np.uint8)
    res = mmucore.access_stream(pair.pt, pair.tlb, vas, kinds)
    want, _ = _ref_stream(pair, vas, kinds, 0, True)
    assert {k: getattr(res, k) for k in want} == want
    assert (res.stopped_at, res.fault_class, res.fault_from_tlb) == (2, mmucore.FAULT_WRITE,
                                                                      False)
    pair.apply(("set_pte", base + 8192, pair.pt.get(base + 8192)[0] | RW))
    res = mmucore.access_stream(pair.pt, pair.tlb, vas, kinds, start=2)
    want, _ = _ref_stream(pair, vas, kinds, 2, True)
    assert {k: getattr(res, k) for k in want} == want
    assert (res.stopped_at, res.fault_class, res.fault_va) == (4, mmucore.FAULT_NX, base + 12288)
    pair.check_all()
