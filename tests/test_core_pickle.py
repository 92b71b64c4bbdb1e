"""Pickling and deep-copying the mmucore objects (TLB, PageTable, Gather, CostModel): the copy
holds exactly the original's state, and any sequence of operations then gives the same
results and counters on both.  The property tests drive a page table and a TLB together
with random operations, copy them mid-sequence and run the rest on the original and on the
copy side by side.
"""
import copy
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmucore
from mmucore import (CP_DIRTY_ACCT, CP_RECORD_ALL, CP_RECORD_NEEDED, CP_TRY_WRITABLE,
                     CP_UFFD_WP, CP_UFFD_WP_RESOLVE, CP_WRITABLE_NEEDS_DIRTY, Gather, access)

P, RW, US, A, D, G, NX = (mmucore.PTE_P, mmucore.PTE_RW, mmucore.PTE_US, mmucore.PTE_A,
                          mmucore.PTE_D, mmucore.PTE_G, mmucore.PTE_NX)
K = 4096
M2 = 1 << 21
G1 = 1 << 30
# three regions: two PUDs of PGD 254 and one of PGD 1, so zaps can free every level
REGIONS = (0x7F0000000000, 0x7F0040000000, 0x8000000000)
SPAN = 8 * 512                   # pages per region used by the tests (8 PMDs, 16 MiB)
COSTS = dict(l1_hit=1, stlb_hit=7, walk_base=20, walk_ref=30, invlpg=100,
             invpcid_single=150, cr3_flush=200, cr3_noflush=40, flush_global=500,
             fault_hw=300, invlpg_remote=90)
TINY = dict(l1_4k=(2, 2), l1_2m=(1, 2), l1_unified=False, stlb=(3, 2), psc=(1, 2, (2, 1)),
            nested_levels=0)
NO_PSC = dict(TINY, psc=(0, 0, 0), l1_unified=True, l1_2m=None)
GEOMETRIES = ("skylake", "zen3", "skylake-kvm", "zen3-kvm", TINY, NO_PSC)


def pickled(x):
    return pickle.loads(pickle.dumps(x))


COPIERS = {"pickle": pickled, "deepcopy": copy.deepcopy,
           "pickle5": lambda x: pickle.loads(pickle.dumps(x, protocol=5))}


def norm(x):
    """A plain, comparable form of an operation's result (arrays and dicts included)."""
    if isinstance(x, np.ndarray):
        return ("array", str(x.dtype), x.shape, x.tolist())
    if isinstance(x, dict):
        return ("dict", tuple(sorted((k, norm(v)) for k, v in x.items())))
    if isinstance(x, (tuple, list)):
        return tuple(norm(v) for v in x)
    if isinstance(x, mmucore.StreamResult):
        return ("stream", tuple((k, getattr(x, k)) for k in x.__slots__))
    if isinstance(x, Gather):
        return ("gather", norm(x.state))
    if isinstance(x, (np.integer, np.bool_)):
        return int(x)
    return x


def assert_same_state(a, b, path="state"):
    """Two state dicts are equal everywhere: same keys, arrays of equal dtype and values."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), path
        for k in a:
            assert_same_state(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b), path
    else:
        assert a == b, path


def assert_same_system(x, y):
    (pt1, tlb1), (pt2, tlb2) = x, y
    assert_same_state(pt1.state, pt2.state)
    assert_same_state(tlb1.state, tlb2.state)
    assert tlb1.counter_dict() == tlb2.counter_dict()
    assert (pt1.nbytes, pt1.table_counts) == (pt2.nbytes, pt2.table_counts)


def rich_system(geo):
    """A page table and TLB with 4K and THP mappings, global entries, three PCIDs, costs,
    and tables freed by a zap with a floor and ceiling (a non-empty free list)."""
    pt = mmucore.PageTable()
    tlb = mmucore.TLB(geo, mmucore.CostModel(**COSTS), pcid=1)
    r0, r1, r2 = REGIONS
    pt.map(r0, 600)
    pt.map(r0 + 2 * M2, 1024, huge=True, pfn=0x40000)
    pt.map(r0 + 4 * M2, 8, flags=RW | US | A | D | G)
    pt.map(r1, 3, flags=US | A | NX)
    pt.map(r2, 5)
    pt.map(r2 + M2, 512, huge=True, pfn=0x80000, flags=RW | US | A | D | G)
    vas = np.array([r0, r0 + K, r0 + 2 * M2 + 5 * K, r0 + 4 * M2, r1, r2, r2 + M2 + K,
                    r0 + 3 * M2 + 17 * K, r0 + M2 + 3 * K], dtype=np.uint64)
    for pcid in (1, 2, 3):
        tlb.switch_pcid(pcid, False)
        mmucore.access_stream(pt, tlb, vas, np.array([0, 1, 2, 1, 0, 1, 0, 2, 0], np.uint8))
    tlb.fill(r0 + 7 * M2, (0x123 << 12) | P | US | G, pcid=2)
    # free tables without a flush, so PSC entries name freed tables: r2's PTE, PMD and PUD
    # tables (zeroed first by the zap), and r0's second PTE table with its 88 PTEs in it
    pt.zap_range(r2, 2 * 512, Gather(), r2, r2 + (1 << 39))
    pt.set_pmd(r0 + M2, 0)
    assert pt.state["freelist"].size >= 4
    return pt, tlb


def table_filled_system(geo):
    """rich_system, checked to hold huge, global and several-PCID entries in its state."""
    pt, tlb = rich_system(geo)
    arrays = tlb.state["arrays"]
    assert sum(a["nhuge"] for a in arrays.values()) > 0
    assert sum(a["nglobal"] for a in arrays.values()) > 0
    # the tiny geometries have evicted the oldest PCID's entries: the presets still hold all
    assert len(set(tlb.entries()["pcid"].tolist())) >= (3 if isinstance(geo, str) else 2)
    return pt, tlb


# ------------------------------------------------------------------ random operations
# addresses crowd where rich_system left entries (so LRU sets fill, stale PSC entries and
# freed tables get walked), with the whole span still reachable
region_st = st.sampled_from([0, 0, 1, 2])
page_st = st.one_of(st.integers(0, 3), st.integers(510, 515), st.integers(590, 600),
                    st.integers(0, SPAN - 1))
va_st = st.builds(lambda r, p, off: REGIONS[r] + p * K + off, region_st, page_st,
                  st.sampled_from([0, 0, 0, 0x123, 0xFF8]))
page_va_st = st.builds(lambda r, p: REGIONS[r] + p * K, region_st, page_st)
pmd_va_st = st.builds(lambda r, m: REGIONS[r] + m * M2, region_st, st.integers(0, 7))
flags_st = st.sampled_from([RW | US | A | D, RW | US, US | A, RW | US | A | D | G, US | A | NX,
                            RW | A | D, RW | US | A | D | NX | G])
pcid_st = st.integers(0, 5)
npages_st = st.integers(1, 700)
mode_st = st.sampled_from([0, CP_RECORD_ALL, CP_RECORD_NEEDED, CP_RECORD_NEEDED | CP_TRY_WRITABLE,
                           CP_RECORD_NEEDED | CP_TRY_WRITABLE | CP_WRITABLE_NEEDS_DIRTY,
                           CP_RECORD_ALL | CP_UFFD_WP, CP_RECORD_NEEDED | CP_UFFD_WP_RESOLVE,
                           CP_RECORD_NEEDED | CP_DIRTY_ACCT])
prot_st = st.sampled_from([mmucore.PAGE_NONE, mmucore.PAGE_READONLY, mmucore.PAGE_COPY,
                           mmucore.PAGE_SHARED, mmucore.PAGE_SHARED_EXEC,
                           mmucore.PAGE_READONLY_EXEC])
entry_st = st.builds(lambda pfn, f: (pfn << 12) | f | P, st.integers(1, 1 << 20), flags_st)


def _free_bounds(va, n, which):
    """zap_range's free_start/free_end: the zap range, none, the 1G or 512G slot around it."""
    if which == 0:
        return None, None
    if which == 1:
        return va, va
    size = G1 if which == 2 else 1 << 39
    return va & ~(size - 1), (va & ~(size - 1)) + size


OPS = st.one_of(
    st.tuples(st.just("map"), page_va_st, npages_st, flags_st, st.none()),
    st.tuples(st.just("map_huge"), pmd_va_st, st.integers(1, 2), flags_st,
              st.integers(1, 1 << 10).map(lambda x: x * 512)),
    st.tuples(st.just("populate"), page_va_st, npages_st, flags_st, st.booleans()),
    st.tuples(st.just("stream"), st.lists(st.tuples(va_st, st.integers(0, 2)), min_size=1,
                                          max_size=40)),
    st.tuples(st.just("invlpg"), va_st, st.one_of(st.none(), pcid_st)),
    st.tuples(st.just("invpcid_single"), va_st, pcid_st),
    st.tuples(st.just("flush_pcid"), st.one_of(st.none(), pcid_st)),
    st.tuples(st.just("flush_all"), st.booleans()),
    st.tuples(st.just("switch_pcid"), pcid_st, st.booleans()),
    st.tuples(st.just("fill"), page_va_st, entry_st, st.booleans(), st.one_of(st.none(), pcid_st)),
    st.tuples(st.just("probe"), va_st, st.one_of(st.none(), pcid_st)),
    st.tuples(st.just("inspect"), pcid_st),
    st.tuples(st.just("change_range"), page_va_st, npages_st, prot_st, mode_st),
    st.tuples(st.just("zap_range"), page_va_st, npages_st, st.integers(0, 3)),
    st.tuples(st.just("clear_young_dirty"), page_va_st, npages_st, st.booleans()),
    st.tuples(st.just("read"), page_va_st, npages_st),
    st.tuples(st.just("set_pte"), page_va_st, st.one_of(st.just(0), entry_st)),
    st.tuples(st.just("set_pmd"), pmd_va_st, st.one_of(st.just(0), st.integers(1, 1 << 10).map(
        lambda x: (x << 21) | P | RW | US | A | D))),
    st.tuples(st.just("split"), va_st),
)


# after the random operations: touch the crowded addresses twice (LRU order, stale PSC
# entries, A/D bits show in hits, walks and faults), allocate tables, then look at everything
_CROWD = [REGIONS[r] + p * K for r in (0, 1, 2) for p in
          list(range(4)) + list(range(510, 516)) + list(range(590, 601))]
EPILOGUE = ([("stream", [(va, k % 3) for k, va in enumerate(_CROWD)])] * 2
            + [("inspect", p) for p in range(6)]
            + [("map", REGIONS[r] + 5 * M2, 1, RW | US | A | D, None) for r in (0, 1, 2)]
            + [("read", REGIONS[r] + 5 * M2, 1) for r in (0, 1, 2)])


def apply(op, system):
    """Run one operation on (pt, tlb); its result, or the error it raised, in plain form."""
    pt, tlb = system
    name, *args = op
    try:
        if name == "map":
            va, n, flags, pfn = args
            n = min(n, (SPAN * K - (va & (SPAN * K - 1))) // K)
            return norm(pt.map(va, n, flags=flags, pfn=pfn))
        if name == "map_huge":
            va, n, flags, pfn = args
            return norm(pt.map(va, 512 * n, flags=flags, pfn=pfn, huge=True))
        if name == "populate":
            va, n, flags, same = args
            return norm(pt.populate(va, n, flags | P, same_pfn=same))
        if name == "stream":
            vas = np.array([v for v, _ in args[0]], dtype=np.uint64)
            kinds = np.array([k for _, k in args[0]], dtype=np.uint8)
            out, start = [], 0
            while True:         # retry after each fault, as the kernel model does
                r = mmucore.access_stream(pt, tlb, vas, kinds, start=start, checked=start > 0)
                out.append(norm(r))
                if not r.faults or r.stopped_at + 1 >= len(vas):
                    break
                start = r.stopped_at + 1
            return tuple(out)
        if name == "invlpg":
            return norm(tlb.invlpg(*args))
        if name == "invpcid_single":
            return norm(tlb.invpcid_single(*args))
        if name == "flush_pcid":
            return norm(tlb.flush_pcid(*args))
        if name == "flush_all":
            return norm(tlb.flush_all(*args))
        if name == "switch_pcid":
            return norm(tlb.switch_pcid(*args))
        if name == "fill":
            va, entry, huge, pcid = args
            return norm(tlb.fill(va & ~(M2 - 1) if huge else va, entry, huge, pcid))
        if name == "probe":
            return norm(tlb.probe(*args))
        if name == "inspect":
            return norm((tlb.entries(), tlb.occupancy(), tlb.check(pt, args[0]), tlb.pcid,
                         tlb.counters, tlb.cycles, pt.table_counts, pt.nbytes, pt.next_pfn))
        if name == "change_range":
            va, n, prot, mode = args
            g = Gather()
            return norm((pt.change_range(va, n, prot, mode, g, zero_pfn=0x1001), g))
        if name == "zap_range":
            va, n, which = args
            g = Gather()
            fs, fe = _free_bounds(va, n, which)
            return norm((pt.zap_range(va, n, g, fs, fe), g))
        if name == "clear_young_dirty":
            va, n, dirty = args
            g = Gather()
            return norm((pt.clear_young_dirty(va, n, g, dirty), g))
        if name == "read":
            va, n = args
            return norm((pt.read_range(va, n), pt.get(va), pt.upper_entries(va)))
        if name == "set_pte":
            return norm(pt.set_pte(*args))
        if name == "set_pmd":
            return norm(pt.set_pmd(*args))
        if name == "split":
            return norm(pt.split_huge_pmd(*args))
    except (ValueError, TypeError) as e:
        return ("raised", type(e).__name__, str(e))
    raise AssertionError(f"unknown op {name}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geo=st.sampled_from(GEOMETRIES), ops=st.lists(OPS, min_size=4, max_size=40),
       split=st.integers(0, 40), copier=st.sampled_from(sorted(COPIERS)))
def test_copy_mid_sequence_behaves_like_the_original(geo, ops, split, copier):
    original = rich_system(geo)
    split = min(split, len(ops))
    for op in ops[:split]:
        apply(op, original)
    twin = COPIERS[copier](original)
    assert twin[0] is not original[0] and twin[1] is not original[1]
    assert_same_system(original, twin)
    for op in ops[split:] + EPILOGUE:
        assert apply(op, original) == apply(op, twin), op
    assert_same_system(original, twin)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_round_trip_keeps_huge_global_pcid_entries_and_freed_tables(geo):
    pt, tlb = table_filled_system(geo)
    pt2, tlb2 = pickled((pt, tlb))
    assert_same_system((pt, tlb), (pt2, tlb2))
    assert norm(tlb2.entries()) == norm(tlb.entries())
    assert tlb2.geometry == tlb.geometry and tlb2.costs.as_dict() == COSTS
    # the next tables allocated are the same freed ids, on both
    r0 = REGIONS[0]
    for p in (pt, pt2):
        p.map(r0 + 6 * M2 + 5 * K, 1)
        p.map(0x40000000, 1)
    assert pt.upper_entries(0x40000000) == pt2.upper_entries(0x40000000)
    assert pt.upper_entries(r0 + 6 * M2) == pt2.upper_entries(r0 + 6 * M2)
    assert_same_system((pt, tlb), (pt2, tlb2))


def test_stale_psc_entry_walks_the_freed_table_after_a_round_trip():
    """A freed table's old content is what a stale PDE-cache hit reads: the pickle keeps it."""
    va = REGIONS[0]
    pt = mmucore.PageTable()
    pt.map(va, 2)
    tlb = mmucore.TLB("skylake")
    access(pt, tlb, va, mmucore.READ)
    old = pt.get(va + K)[0]
    pt.set_pmd(va, 0)                        # frees the PTE table, no flush
    pt2, tlb2 = pickled((pt, tlb))
    for p, t in ((pt, tlb), (pt2, tlb2)):
        assert access(p, t, va + K, mmucore.READ) == mmucore.FAULT_NONE
        assert t.counter_dict()["psc_pde_hits"] == 1
        assert t.probe(va + K)[1] >> 12 == old >> 12 & 0xFFFFFFFFFF


def test_state_assignment_between_tlbs_and_independence():
    pt, tlb = rich_system("zen3")
    other = mmucore.TLB("zen3")
    other.state = tlb.state
    assert_same_state(other.state, tlb.state)
    s = tlb.state
    tlb.flush_all()                          # the state taken before is a copy
    assert s["arrays"]["stlb"]["nvalid"] > 0 and tlb.state["arrays"]["stlb"]["nvalid"] == 0
    assert s["counters"][mmucore.COUNTER_INDEX["flush_all"]] == 0
    twin = copy.deepcopy(other)
    other.flush_all()
    assert twin.occupancy()["stlb"] > 0
    pt2 = copy.deepcopy(pt)
    pt.zap_range(REGIONS[0], SPAN, Gather())
    assert pt2.get(REGIONS[0])[0] & P and not pt.get(REGIONS[0])[0] & P


def test_page_table_state_assignment_shrinks_the_pool():
    small = mmucore.PageTable()
    small.map(REGIONS[0], 3)
    big = mmucore.PageTable()
    big.map(REGIONS[0], 300 * 512)
    big.state = small.state
    assert_same_state(big.state, small.state)
    assert big.nbytes == small.nbytes
    for p in (big, small):
        p.map(REGIONS[1], 1000)
    assert_same_state(big.state, small.state)


def test_fresh_objects_round_trip():
    for geo in GEOMETRIES:
        t = mmucore.TLB(geo)
        assert_same_state(pickled(t).state, t.state)
    pt = mmucore.PageTable()
    assert_same_state(pickled(pt).state, pt.state)
    assert pickled(pt).nbytes == pt.nbytes


# ------------------------------------------------------------------ Gather and CostModel
@given(start=st.integers(0, (1 << 64) - 1), end=st.integers(0, (1 << 64) - 1),
       bits=st.lists(st.booleans(), min_size=8, max_size=8),
       copier=st.sampled_from(sorted(COPIERS)))
def test_gather_round_trip(start, end, bits, copier):
    g = Gather(fullmm=bits[0])
    state = dict(zip(("fullmm", "need_flush_all", "freed_tables", "cleared_ptes", "cleared_pmds",
                      "cleared_puds", "cleared_p4ds"), bits[:7]), start=start, end=end)
    g.state = state
    g2 = COPIERS[copier](g)
    assert g2.state == g.state == state
    assert (g2.needs_flush, g2.stride_shift, g2.empty, repr(g2)) == (
        g.needs_flush, g.stride_shift, g.empty, repr(g))
    for x in (g, g2):
        x.flush_pte_range(0x5000, 0x1000)
        x.reset_range()
    assert g2.state == g.state


def test_gather_cleared_p4ds_survives_pickling():
    pt = mmucore.PageTable()
    pt.map(0x8040000000, 1)
    pt.zap_range(0x8040000000, 1, Gather(), 0x8040000000, 0x8080000000)
    g = Gather()
    pt.zap_range(0x8000000000, 1, g, 0x8000000000, 0x10000000000)
    assert g.state["cleared_p4ds"] and g.stride_shift == 39
    g2 = pickled(g)
    assert g2.state == g.state and g2.stride_shift == 39


def test_cost_model_round_trip_keeps_fields_set_by_attribute():
    c = mmucore.CostModel(**COSTS)
    c.walk_ref = -1.5                        # attribute writes are not validated
    for copier in COPIERS.values():
        assert copier(c).as_dict() == c.as_dict()


def test_tlb_keeps_the_costs_it_charges_even_if_its_model_changed_later():
    tlb = mmucore.TLB("skylake", mmucore.CostModel(invlpg=10))
    tlb.costs.invlpg = 99                   # the TLB copied its costs when they were set
    tlb2 = pickled(tlb)
    for t in (tlb, tlb2):
        t.invlpg(0x1000)
    assert tlb.cycles.tolist() == tlb2.cycles.tolist() == [0, 0, 10, 0]
    assert tlb2.costs.invlpg == 99


# ------------------------------------------------------------------ state validation
def test_tlb_state_setter_rejects_bad_states_and_changes_nothing():
    pt, tlb = rich_system("skylake")
    good = tlb.state
    target = mmucore.TLB("skylake")
    before = target.state

    def bad(**changes):
        s = copy.deepcopy(good)
        for path, value in changes.items():
            node = s
            keys = path.split("__")
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value
        return s

    stlb = good["arrays"]["stlb"]
    cases = [
        (bad(geometry=mmucore.geometry("zen3")), "geometry"),
        (bad(pcid=4096), "pcid"),
        (bad(clock=-1), "clock"),
        (bad(counters=np.zeros(3, np.uint64)), "counters"),
        (bad(cycles=np.zeros(4, np.int64)), "cycles"),
        (bad(arrays__stlb__tag=stlb["tag"][:-1]), "stlb tag"),
        (bad(arrays__stlb__nvalid=stlb["nvalid"] + 1), "counts"),
        (bad(arrays__stlb__tag=stlb["tag"] | np.uint64(8)), "invalid tag"),
        ({k: v for k, v in good.items() if k != "clock"}, "missing"),
        (dict(good, extra=1), "unknown"),
        (bad(cost={"l1_hit": 1.0}), "cost"),
    ]
    for state, what in cases:
        with pytest.raises(ValueError, match=r"TLB state|must be"):
            target.state = state
        assert_same_state(target.state, before)
    with pytest.raises(TypeError):
        target.state = [1, 2]


def test_page_table_state_setter_rejects_bad_states_and_changes_nothing():
    pt, _ = rich_system("skylake")
    good = pt.state
    target = mmucore.PageTable()
    target.map(REGIONS[0], 10)
    before = target.state
    n = good["tables"].shape[0]
    bad_tree = good["tables"].copy()
    bad_tree[good["root"], 254] = (np.uint64(n + 5) << np.uint64(12)) | np.uint64(
        mmucore.PTE_TABLE_FLAGS)
    nonempty0 = good["tables"].copy()
    nonempty0[0, 3] = 1
    cases = [
        dict(good, tables=good["tables"][:, :256]),
        dict(good, tables=good["tables"].astype(np.int64)),
        dict(good, tables=nonempty0),
        dict(good, tables=bad_tree),
        dict(good, root=0),
        dict(good, root=n),
        dict(good, freelist=np.array([n], np.uint64)),
        dict(good, freelist=np.array([0], np.uint64)),
        dict(good, live=np.zeros(3, np.uint64)),
        dict(good, cap=n - 1),
        dict(good, cap=n + 5000),
        dict(good, freecap=0),
        dict(good, next_pfn=-1),
        {k: v for k, v in good.items() if k != "root"},
    ]
    for state in cases:
        with pytest.raises(ValueError, match="PageTable state"):
            target.state = state
        assert_same_state(target.state, before)


# ------------------------------------------------------------------ size, speed, counters
def test_million_page_table_pickles_small():
    """(its speed is measured in bench/bench_pickle.py)"""
    pt = mmucore.PageTable()
    pt.map(REGIONS[0], 1 << 20)
    blob = pickle.dumps(pt)
    pt2 = pickle.loads(blob)
    # 2048 PTE tables + 6 upper tables + table 0, 4 KiB each, and a little framing
    assert len(blob) < 2056 * 4096 + 4096
    assert np.array_equal(pt2.read_range(REGIONS[0], 1 << 20), pt.read_range(REGIONS[0], 1 << 20))


def test_counters_and_cycles_are_fresh_typed_copies():
    pt, tlb = rich_system("skylake-kvm")
    c, y = tlb.counters, tlb.cycles
    assert c.dtype == np.uint64 and c.shape == (len(mmucore.COUNTER_NAMES),)
    assert y.dtype == np.float64 and y.shape == (len(mmucore.CYCLE_NAMES),)
    d = tlb.counter_dict()
    assert c.tolist() == [d[n] for n in mmucore.COUNTER_NAMES]
    assert y.tolist() == [d["cycles_" + n] for n in mmucore.CYCLE_NAMES]
    assert c[mmucore.COUNTER_INDEX["walks"]] > 0 and y.sum() > 0
    c[:] = 0
    y[:] = 0
    assert tlb.counters.tolist() == [d[n] for n in mmucore.COUNTER_NAMES]
    assert tlb.cycles.sum() > 0
    assert tlb.counters is not tlb.counters
