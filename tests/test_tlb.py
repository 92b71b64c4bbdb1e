"""Unit tests of mmucore.tlb: lookups, fills and LRU, PCIDs and global entries, INVLPG and
flushes, the walk (PSCs, A/D, nested references), #PF side effects, access_stream input
validation, geometry validation and TLB.check.  Scenarios are worked by hand from
/work/shared/SPEC.md section 3.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mmucore
from mmucore import FAULT_NONE, FAULT_NOT_PRESENT, FAULT_WRITE, FETCH, READ, WRITE, access

P, RW, US, A, D, G, NX = (mmucore.PTE_P, mmucore.PTE_RW, mmucore.PTE_US, mmucore.PTE_A,
                          mmucore.PTE_D, mmucore.PTE_G, mmucore.PTE_NX)
PFN_MASK = mmucore.PTE_PFN_MASK
VA = 0x7F0000000000           # PGD 254, PUD 0, PMD 0
HVA = 0x7F0000200000          # the next 2M chunk
OTHER = 0x000040000000        # PGD 0, PUD 1


def counters(tlb):
    return dict(zip(mmucore.COUNTER_NAMES, (int(x) for x in tlb.counters)))


def entries(tlb):
    e = tlb.entries()
    return [dict(level=int(lv), va=int(va), pcid=int(pc), huge=bool(h), glob=bool(g),
                 data=int(d))
            for lv, va, pc, h, g, d in zip(e["level"], e["va"], e["pcid"], e["huge"],
                                           e["global"], e["data"])]


def tiny(**kw):
    geo = dict(l1_4k=(1, 2), l1_2m=(1, 1), l1_unified=False, stlb=(1, 4), psc=(0, 0, 0),
               nested_levels=0)
    geo.update(kw)
    return mmucore.TLB(geo)


# ------------------------------------------------------------------ INVLPG and PSCs
def test_invlpg_on_a_2m_entry_drops_it():
    pt = mmucore.PageTable()
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, HVA + 0x5123, READ) == FAULT_NONE
    level, data, huge = tlb.probe(HVA + 0x1FF000)          # any page inside the 2M page
    assert (level, huge) == ("l1", True)
    assert data >> 12 == 0x40000 and data & (P | RW | US | A) == P | RW | US | A
    tlb.invlpg(HVA + 0x123456)                             # an address inside it
    assert tlb.probe(HVA) is None
    assert not any(e["level"] < 2 for e in entries(tlb))
    walks = counters(tlb)["walks"]
    assert access(pt, tlb, HVA + 8, READ) == FAULT_NONE
    c = counters(tlb)
    assert (c["walks"], c["invlpg"]) == (walks + 1, 1)


def test_invlpg_drops_psc_entries_of_its_pcid_only():
    pt = mmucore.PageTable()
    pt.map(VA, 1)
    pt.map(OTHER, 1)
    tlb = mmucore.TLB("skylake", pcid=1)
    access(pt, tlb, VA, READ)
    tlb.switch_pcid(2, False)
    access(pt, tlb, VA, READ)
    psc = [e for e in entries(tlb) if e["level"] >= 2]
    assert sorted((e["level"], e["pcid"]) for e in psc) == [(2, 1), (2, 2), (3, 1), (3, 2),
                                                            (4, 1), (4, 2)]
    tlb.invlpg(OTHER)                     # an unrelated address, current PCID 2
    psc = [e for e in entries(tlb) if e["level"] >= 2]
    assert sorted((e["level"], e["pcid"]) for e in psc) == [(2, 1), (3, 1), (4, 1)]
    # VA's own translation in PCID 2 was not touched
    assert tlb.probe(VA, pcid=2) is not None
    before = counters(tlb)
    access(pt, tlb, VA, READ)
    assert counters(tlb)["l1_hits"] == before["l1_hits"] + 1


def test_psc_entries_name_the_tables_and_shorten_walks():
    pt = mmucore.PageTable()
    pt.map(VA, 1)
    pt.map(VA + (1 << 21), 1)                   # same PUD entry, next PMD entry
    pt.map(VA + (1 << 30), 1)                   # same PGD entry, next PUD entry
    pt.map(VA + (1 << 39), 1)                   # next PGD entry
    pt.map(VA + 4096, 1)                        # same PTE table
    tlb = mmucore.TLB("skylake")
    access(pt, tlb, VA, READ)
    c = counters(tlb)
    assert (c["walks"], c["walk_refs"], c["psc_misses"]) == (1, 4, 1)
    pgd, pud, pmd = pt.upper_entries(VA)
    psc = {e["level"]: e for e in entries(tlb) if e["level"] >= 2}
    assert psc[2]["data"] & PFN_MASK == pgd & PFN_MASK      # PML4E cache -> PUD table
    assert psc[3]["data"] & PFN_MASK == pud & PFN_MASK      # PDPTE cache -> PMD table
    assert psc[4]["data"] & PFN_MASK == pmd & PFN_MASK      # PDE cache -> PTE table
    assert all(e["data"] & (RW | US) == RW | US and not e["data"] & NX for e in psc.values())
    assert (psc[2]["va"], psc[3]["va"], psc[4]["va"]) == (VA, VA, VA)
    # upper entries carry A (the kernel writes _PAGE_TABLE with A set; the walk keeps it)
    assert all(e & A for e in (pgd, pud, pmd))
    steps = [(VA + 4096, "psc_pde_hits", 1), (VA + (1 << 21), "psc_pdpt_hits", 2),
             (VA + (1 << 30), "psc_pml4_hits", 3), (VA + (1 << 39), "psc_misses", 4)]
    for va, counter, refs in steps:
        before = counters(tlb)
        assert access(pt, tlb, va, READ) == FAULT_NONE
        after = counters(tlb)
        assert after[counter] == before[counter] + 1, counter
        assert after["walk_refs"] - before["walk_refs"] == refs, counter


# ------------------------------------------------------------------ PCIDs and globals
def test_pcid_isolation():
    pt = mmucore.PageTable()
    pt.map(VA, 1)
    tlb = mmucore.TLB("skylake", pcid=1)
    access(pt, tlb, VA, READ)
    tlb.switch_pcid(2, False)
    before = counters(tlb)
    access(pt, tlb, VA, READ)                 # PCID 1's entry must not serve PCID 2
    after = counters(tlb)
    assert after["l1_hits"] == before["l1_hits"] and after["stlb_hits"] == before["stlb_hits"]
    assert after["walks"] == before["walks"] + 1
    tlb.flush_pcid(2)
    assert tlb.probe(VA, pcid=2) is None
    assert tlb.probe(VA, pcid=1) is not None
    tlb.switch_pcid(1, False)
    before = counters(tlb)
    access(pt, tlb, VA, READ)
    assert counters(tlb)["l1_hits"] == before["l1_hits"] + 1
    assert counters(tlb)["cr3_noflush"] == 2
    # a switch with flush drops the new PCID's entries and counts a flush_pcid
    tlb.switch_pcid(1, True)
    assert tlb.probe(VA, pcid=1) is None and counters(tlb)["flush_pcid"] == 2


def test_global_entries():
    pt = mmucore.PageTable()
    pt.map(VA, 1, flags=RW | US | A | D | G)
    tlb = mmucore.TLB("skylake", pcid=1)
    access(pt, tlb, VA, READ)
    tlb_entries = [e for e in entries(tlb) if e["level"] < 2]
    assert tlb_entries and all(e["glob"] and e["pcid"] == 0 for e in tlb_entries)
    tlb.switch_pcid(2, False)
    before = counters(tlb)
    access(pt, tlb, VA, READ)                 # hit from another PCID
    assert counters(tlb)["l1_hits"] == before["l1_hits"] + 1
    tlb.flush_pcid(1)
    tlb.flush_pcid(2)
    tlb.invpcid_single(VA, 2)                 # INVPCID single keeps globals too
    tlb.flush_all(include_global=False)
    assert tlb.probe(VA) is not None
    tlb.flush_all()
    assert tlb.probe(VA) is None and tlb.occupancy()["stlb"] == 0
    walks = counters(tlb)["walks"]
    access(pt, tlb, VA, READ)
    assert counters(tlb)["walks"] == walks + 1
    tlb.invlpg(VA)                            # INVLPG drops globals
    assert tlb.probe(VA) is None


# ------------------------------------------------------------------ replacement
def test_lru_replacement_order_in_a_set():
    pt = mmucore.PageTable()
    pages = [VA + i * 4096 for i in range(6)]
    pt.map(VA, 6)
    tlb = tiny()                                    # L1 4K: 1 set x 2 ways, STLB 1 x 4
    a, b, c, d, e, f = pages

    def l1():
        return [x["va"] for x in entries(tlb) if x["level"] == 0]

    def stlb():
        return [x["va"] for x in entries(tlb) if x["level"] == 1]

    access(pt, tlb, a, READ)
    access(pt, tlb, b, READ)
    assert l1() == [a, b]
    access(pt, tlb, a, READ)                        # A is now the most recent
    access(pt, tlb, c, READ)                        # evicts B, the least recently used
    assert l1() == [a, c] and counters(tlb)["l1_evictions"] == 1
    access(pt, tlb, b, READ)                        # STLB hit; the L1 fill evicts A
    assert counters(tlb)["stlb_hits"] == 1
    assert l1() == [b, c] and counters(tlb)["l1_evictions"] == 2
    assert stlb() == [a, b, c]
    access(pt, tlb, d, READ)                        # fourth STLB way; L1 evicts C
    assert l1() == [b, d] and stlb() == [a, b, c, d]
    access(pt, tlb, e, READ)                        # STLB LRU is A (B was hit after it)
    assert l1() == [e, d] and stlb() == [e, b, c, d]
    assert (counters(tlb)["l1_evictions"], counters(tlb)["stlb_evictions"]) == (4, 1)
    # a fill of a key already cached overwrites it in place, evicting nothing there
    tlb.fill(c, pt.get(c)[0])
    assert stlb() == [e, b, c, d] and counters(tlb)["stlb_evictions"] == 1
    assert l1() == [e, c] and counters(tlb)["l1_evictions"] == 5     # D was the L1 LRU
    # an invalidated way is reused before anything is evicted
    tlb.invlpg(b)
    assert stlb() == [e, c, d]
    access(pt, tlb, f, READ)
    assert stlb() == [e, f, c, d] and counters(tlb)["stlb_evictions"] == 1
    assert l1() == [f, c] and counters(tlb)["l1_evictions"] == 6
    tlb.invlpg(f)
    assert l1() == [c] and entries(tlb)[0]["va"] == c   # L1 way 0 empty, way 1 holds C
    access(pt, tlb, b, READ)
    assert l1() == [b, c] and stlb() == [e, b, c, d]
    assert (counters(tlb)["l1_evictions"], counters(tlb)["stlb_evictions"]) == (6, 1)


def test_stlb_hit_refills_l1():
    pt = mmucore.PageTable()
    pt.map(VA, 2)
    tlb = tiny(l1_4k=(1, 1))
    access(pt, tlb, VA, READ)
    access(pt, tlb, VA + 4096, READ)              # evicts VA from the 1-entry L1
    assert tlb.probe(VA)[0] == "stlb"
    before = counters(tlb)
    assert access(pt, tlb, VA, READ) == FAULT_NONE
    after = counters(tlb)
    assert after["stlb_hits"] == before["stlb_hits"] + 1
    assert after["walks"] == before["walks"]
    assert tlb.probe(VA)[0] == "l1"
    assert tlb.probe(VA + 4096)[0] == "stlb"


def test_unified_l1_holds_both_page_sizes():
    pt = mmucore.PageTable()
    pt.map(VA, 1)
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    tlb = mmucore.TLB("zen3")
    access(pt, tlb, VA, READ)
    access(pt, tlb, HVA + 0x3000, READ)
    l1 = [e for e in entries(tlb) if e["level"] == 0]
    assert sorted((e["va"], e["huge"]) for e in l1) == [(VA, False), (HVA, True)]
    assert tlb.occupancy()["l1_4k"] == 2 and tlb.occupancy()["l1_2m"] == 0
    before = counters(tlb)
    access(pt, tlb, HVA + 0x1FF000, READ)
    assert counters(tlb)["l1_hits"] == before["l1_hits"] + 1


@pytest.mark.parametrize("stlb", [(128, 12), (192, 8)])
def test_1536_entry_stlb(stlb):
    """Skylake's 1536-entry 12-way STLB (128 sets), and 1536 entries in 192 sets (not a
    power of two: the set is vpn % 192)."""
    pt = mmucore.PageTable()
    base = 0x7F0000000000
    pt.map(base, 1536 + 1)
    tlb = mmucore.TLB(mmucore.geometry("skylake", stlb=stlb))
    vas = base + np.arange(1536, dtype=np.uint64) * np.uint64(4096)
    res = mmucore.access_stream(pt, tlb, vas, np.zeros(1536, dtype=np.uint8))
    assert (res.walks, res.faults) == (1536, 0)
    assert tlb.occupancy()["stlb"] == 1536
    assert counters(tlb)["stlb_evictions"] == 0
    # one more page lands in the set of page 0 (1536 is a multiple of both set counts)
    # and evicts the least recently used entry there: page 0
    access(pt, tlb, base + 1536 * 4096, READ)
    assert counters(tlb)["stlb_evictions"] == 1
    assert tlb.occupancy()["stlb"] == 1536
    assert tlb.probe(base) is None
    assert tlb.probe(base + 4096) is not None


# ------------------------------------------------------------------ A/D and faults
@pytest.mark.parametrize("huge", [False, True])
def test_write_through_clean_entry_rewalks_and_sets_dirty(huge):
    pt = mmucore.PageTable()
    va = HVA if huge else VA
    pt.map(va, 512 if huge else 1, flags=RW | US | A, huge=huge, pfn=0x40000 if huge else None)
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, va + 64, READ) == FAULT_NONE
    assert not tlb.probe(va)[1] & D and not pt.get(va)[0] & D
    assert access(pt, tlb, va + 128, WRITE) == FAULT_NONE
    c = counters(tlb)
    assert (c["l1_hits"], c["dirty_walks"], c["walks"]) == (1, 1, 2)
    assert pt.get(va)[0] & D and tlb.probe(va)[1] & D
    assert access(pt, tlb, va + 256, WRITE) == FAULT_NONE
    c = counters(tlb)
    assert (c["l1_hits"], c["dirty_walks"], c["walks"]) == (2, 1, 2)


def test_walk_sets_accessed_and_dirty_only_when_allowed():
    pt = mmucore.PageTable()
    pt.map(VA, 2, flags=US)                       # read-only, A and D clear
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, VA, WRITE) == FAULT_WRITE
    assert pt.get(VA)[0] & (A | D) == 0           # a faulting walk sets nothing
    assert access(pt, tlb, VA, READ) == FAULT_NONE
    assert pt.get(VA)[0] & (A | D) == A
    assert access(pt, tlb, VA + 4096, FETCH) == FAULT_NONE      # NX clear: fetch allowed
    assert pt.get(VA + 4096)[0] & (A | D) == A


def test_pf_from_a_stale_tlb_entry_drops_it():
    pt = mmucore.PageTable()
    pt.map(VA, 1, flags=US | A | D)                          # read-only
    pt.map(OTHER, 1)
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, VA, READ) == FAULT_NONE
    assert access(pt, tlb, OTHER, READ) == FAULT_NONE
    pt.change_range(VA, 1, mmucore.PAGE_SHARED)              # now writable, no flush
    assert not tlb.probe(VA)[1] & RW                         # the stale read-only entry
    assert access(pt, tlb, VA, WRITE) == FAULT_WRITE         # spurious fault
    c = counters(tlb)
    assert (c["faults"], c["fault_write"], c["fault_from_tlb"]) == (1, 1, 1)
    assert tlb.probe(VA) is None
    psc = [e for e in entries(tlb) if e["level"] >= 2]
    # VA's PML4E/PDPTE/PDE cache entries went, OTHER's (another PGD slot) stayed
    assert sorted((e["level"], e["va"]) for e in psc) == [(2, 0), (3, OTHER), (4, OTHER)]
    walks = c["walks"]
    assert access(pt, tlb, VA, WRITE) == FAULT_NONE          # the retry walks and succeeds
    c = counters(tlb)
    assert (c["walks"], c["fault_from_tlb"], c["faults"]) == (walks + 1, 1, 1)
    assert c["psc_misses"] == 3 and tlb.probe(VA)[1] & (RW | D) == RW | D


def test_write_through_stale_writable_entry_succeeds():
    """The danger a missing flush causes: the TLB still grants what the PTE no longer does."""
    pt = mmucore.PageTable()
    pt.map(VA, 1)
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, VA, WRITE) == FAULT_NONE
    pt.change_range(VA, 1, mmucore.PAGE_READONLY)            # no flush
    assert access(pt, tlb, VA, WRITE) == FAULT_NONE
    assert counters(tlb)["walks"] == 1
    tlb.invlpg(VA)
    assert access(pt, tlb, VA, WRITE) == FAULT_WRITE
    assert counters(tlb)["fault_from_tlb"] == 0


def test_fault_classes():
    pt = mmucore.PageTable()
    pt.map(VA, 1, flags=RW | NX)                  # supervisor-only, not executable
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, VA, READ, user=True) == mmucore.FAULT_USER
    assert access(pt, tlb, VA, READ, user=False) == FAULT_NONE
    assert access(pt, tlb, VA, FETCH, user=False) == mmucore.FAULT_NX
    assert access(pt, tlb, VA + 4096, READ) == FAULT_NOT_PRESENT
    c = counters(tlb)
    assert (c["faults"], c["fault_user"], c["fault_nx"], c["fault_not_present"]) == (3, 1, 1, 1)
    assert c["fault_from_tlb"] == 1               # the fetch hit the cached NX entry
    assert (c["reads"], c["fetches"], c["accesses"]) == (3, 1, 4)


def test_pf_drops_stale_global_entry():
    """SDM 4.10.4.1: a #PF invalidates the TLB entries for the faulting page number so that
    a fault caused only by a stale cached entry does not recur on the retry.  A global
    entry is an entry for that page too."""
    pt = mmucore.PageTable()
    pt.map(VA, 1, flags=US | A | D | G)           # read-only, global
    tlb = mmucore.TLB("skylake")
    assert access(pt, tlb, VA, READ) == FAULT_NONE
    pt.set_pte(VA, pt.get(VA)[0] | RW)            # the kernel makes it writable, no flush
    assert access(pt, tlb, VA, WRITE) == FAULT_WRITE            # spurious fault, from the TLB
    assert tlb.probe(VA) is None, (
        "MMUCORE BUG (tlb.pyx raise_pf): a #PF keeps the stale *global* TLB entry of the "
        "faulting page (drop_va(..., include_global=False)), so the retry faults again "
        "forever; it should drop global entries for the page too")
    assert access(pt, tlb, VA, WRITE) == FAULT_NONE


def test_walk_through_stale_psc_into_reused_table_is_memory_safe():
    """A PDPTE-cache entry left stale by a table free (no flush) names a PMD table id that is
    reused as a PTE table; the walk then reads a PTE as a PDE and must not index the table
    pool with that PTE's frame number.  Run in a subprocess: the bug is a segfault."""
    script = textwrap.dedent("""
        import mmucore
        pt = mmucore.PageTable()
        tlb = mmucore.TLB("skylake")
        pt.map(0x7F0000000000, 1)                  # tables for another region
        pt.map(0x40000000, 1)                      # PGD 0 -> PUD table -> PMD table M
        assert mmucore.access(pt, tlb, 0x40000000, mmucore.READ) == 0   # PDPTE cache -> M
        g = mmucore.Gather()
        pt.zap_range(0x40000000, 1, g, 0x40000000, 0x80000000)   # frees PTE table and M
        assert g.freed_tables
        pt.map(0x7F0000201000, 1, pfn=0xABCDE)     # new PTE table reuses M; M[1] = a PTE
        # 0x40200000: PDE cache misses, PDPTE cache hits (stale) -> reads M[1] as a PDE
        print(mmucore.access(pt, tlb, 0x40200000, mmucore.READ))
    """)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=repo, env=env)
    assert proc.returncode == 0, (
        f"MMUCORE BUG (tlb.pyx walk / pagetable.pxd pt_table): a walk through a stale PSC "
        f"entry into a reused table indexes the table pool with a frame number and crashes "
        f"(exit code {proc.returncode}); table ids must be bounds-checked (an id outside "
        f"the pool should read as an empty table)\n{proc.stderr[-2000:]}")
    assert proc.stdout.strip() == str(FAULT_NOT_PRESENT)


def test_stale_psc_entry_walks_the_freed_table():
    """Without a flush after a PTE table is freed, the PDE cache still names it and the walk
    reads the freed table's old content (what the hardware would do)."""
    pt = mmucore.PageTable()
    pt.map(VA, 2)
    tlb = mmucore.TLB("skylake")
    access(pt, tlb, VA, READ)
    old = pt.get(VA + 4096)[0]
    pt.set_pmd(VA, 0)                             # frees the PTE table, no flush
    assert pt.get(VA + 4096) == (0, 0)
    before = counters(tlb)
    assert access(pt, tlb, VA + 4096, READ) == FAULT_NONE    # stale PDE-cache hit
    assert counters(tlb)["psc_pde_hits"] == before["psc_pde_hits"] + 1
    assert tlb.probe(VA + 4096)[1] >> 12 == old >> 12 & 0xFFFFFFFFFF
    tlb.invlpg(VA + 4096)                         # also drops every PSC entry of the PCID
    assert access(pt, tlb, VA + 4096, READ) == FAULT_NOT_PRESENT


# ------------------------------------------------------------------ nested walks
@pytest.mark.parametrize("geo,cold,pde_hit", [("skylake", 4, 1), ("skylake-kvm", 24, 9),
                                              ("zen3-kvm", 24, 9)])
def test_walk_references(geo, cold, pde_hit):
    pt = mmucore.PageTable()
    pt.map(VA, 2)
    tlb = mmucore.TLB(geo)
    access(pt, tlb, VA, READ)
    assert counters(tlb)["walk_refs"] == cold
    access(pt, tlb, VA + 4096, READ)
    assert counters(tlb)["walk_refs"] == cold + pde_hit


def test_nested_walk_with_five_host_levels_and_a_fault():
    pt = mmucore.PageTable()
    tlb = mmucore.TLB(mmucore.geometry("skylake", nested_levels=5))
    pt.map(VA, 1)
    access(pt, tlb, VA, READ)
    assert counters(tlb)["walk_refs"] == 4 * 6 + 5
    tlb2 = mmucore.TLB("skylake-kvm")
    assert access(pt, tlb2, OTHER, READ) == FAULT_NOT_PRESENT     # empty PGD slot: 1 ref
    assert counters(tlb2)["walk_refs"] == 1 * 5 + 4


def test_cycles_follow_events():
    costs = mmucore.CostModel(l1_hit=1, stlb_hit=10, walk_base=30, walk_ref=5, invlpg=100,
                              fault_hw=1000)
    pt = mmucore.PageTable()
    pt.map(VA, 1)
    tlb = mmucore.TLB("skylake", costs=costs)
    access(pt, tlb, VA, READ)                     # cold walk: 30 + 4 * 5
    access(pt, tlb, VA, READ)                     # L1 hit: 1
    tlb.invlpg(VA)                                # 100
    access(pt, tlb, OTHER, READ)                  # fault: walk 30 + 1 * 5, fault 1000
    d = tlb.counter_dict()
    assert (d["cycles_tlb_hit"], d["cycles_walk"], d["cycles_invalidate"],
            d["cycles_fault_hw"]) == (1, 85, 100, 1000)


# ------------------------------------------------------------------ geometry validation
@pytest.mark.parametrize("name,overrides", [
    ("haswell", {}),
    ("skylake", dict(l1_4k=(0, 4))),
    ("skylake", dict(l1_4k=(4,))),
    ("skylake", dict(l1_4k=(4, 5000))),
    ("skylake", dict(l1_4k=(2.0, 4))),
    ("skylake", dict(stlb=((1 << 16) + 1, 1))),
    ("skylake", dict(l1_2m=None)),
    ("skylake", dict(psc=(2, 4))),
    ("skylake", dict(psc=(2, 4, -1))),
    ("skylake", dict(psc=(2, 4, 5000))),
    ("skylake", dict(psc=(2, 4, (0, 4)))),
    ("skylake", dict(psc=(2, 4, "8"))),
    ("skylake", dict(nested_levels=3)),
    ("skylake", dict(bogus=1)),
])
def test_geometry_validation_errors(name, overrides):
    with pytest.raises(ValueError):
        mmucore.geometry(name, **overrides)


def test_geometry_validation_other_errors():
    with pytest.raises(ValueError, match="lacks field"):
        mmucore.geometry({"l1_4k": (2, 2)})
    with pytest.raises(ValueError):
        mmucore.TLB("skylake", pcid=4096)
    with pytest.raises(ValueError):
        mmucore.TLB(dict(l1_4k=(2, 2), stlb=(0, 2)))
    tlb = mmucore.TLB("skylake")
    for bad in (lambda: tlb.switch_pcid(4096, False), lambda: tlb.flush_pcid(-1),
                lambda: tlb.invlpg(VA, 5000)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        tlb.fill(VA, 0x1234 << 12)                # a not-present entry is never cached


def test_geometry_presets():
    sky = mmucore.geometry("skylake")
    assert sky["stlb"] == (128, 12) and sky["l1_4k"] == (16, 4) and sky["nested_levels"] == 0
    assert mmucore.geometry("zen3")["l1_unified"] is True
    assert mmucore.geometry("skylake-kvm")["nested_levels"] == 4
    assert mmucore.geometry("skylake", stlb=(3, 5))["stlb"] == (3, 5)
    assert mmucore.TLB(dict(l1_4k=(3, 2))).geometry["l1_4k"] == (3, 2)   # partial dict


# ------------------------------------------------------------------ access / access_stream input
def _untouched_setup():
    pt = mmucore.PageTable()
    pt.map(VA, 4, flags=RW | US)                  # A clear: any access would set it
    return pt, mmucore.TLB("skylake")


def _u64(xs):
    return np.array(xs, dtype=np.uint64)


def _u8(xs):
    return np.array(xs, dtype=np.uint8)


@pytest.mark.parametrize("vas,kinds,kw", [
    (np.array([VA, VA], dtype=np.int64), _u8([0, 0]), {}),
    (_u64([VA, VA]), np.array([0, 0], dtype=np.int32), {}),
    ([VA, VA], _u8([0, 0]), {}),
    (_u64([[VA, VA]]), _u8([[0, 0]]), {}),
    (_u64([VA, VA, VA]), _u8([0, 0]), {}),
    (_u64([VA, VA + 4096, VA]), _u8([0, 1, 3]), {}),
    (_u64([VA, VA + 4096, 1 << 47]), _u8([0, 0, 0]), {}),
    (_u64([VA, VA]), _u8([0, 0]), dict(start=3)),
    (_u64([VA, VA]), _u8([0, 0]), dict(start=-1)),
])
def test_access_stream_input_validation_runs_nothing(vas, kinds, kw):
    pt, tlb = _untouched_setup()
    with pytest.raises(ValueError):
        mmucore.access_stream(pt, tlb, vas, kinds, **kw)
    assert not any(int(x) for x in tlb.counters), "an access ran before the input was rejected"
    assert all(not int(e) & A for e in pt.read_range(VA, 4))


def test_access_stream_edges():
    pt, tlb = _untouched_setup()
    res = mmucore.access_stream(pt, tlb, _u64([VA, VA]), _u8([0, 0]), start=2)
    assert (res.accesses, res.stopped_at, res.faults, res.fault_va) == (0, 2, 0, None)
    # only vas[start:] and kinds[start:] are run and checked
    res = mmucore.access_stream(pt, tlb, _u64([1 << 47, VA]), _u8([3, 1]), start=1)
    assert (res.accesses, res.walks, res.stopped_at) == (1, 1, 2)
    assert pt.get(VA)[0] & (A | D) == A | D
    # supervisor streams may use addresses above the user range (they fault: nothing there)
    res = mmucore.access_stream(pt, tlb, _u64([VA, 0xFFFF888000000000]), _u8([0, 0]),
                                user=False)
    assert (res.stopped_at, res.fault_class, res.fault_va) == (1, FAULT_NOT_PRESENT,
                                                              0xFFFF888000000000)
    assert (res.fault_kind, res.fault_from_tlb, res.accesses) == (0, False, 2)


def test_access_input_validation():
    pt, tlb = _untouched_setup()
    with pytest.raises(ValueError):
        access(pt, tlb, VA, 3)
    with pytest.raises(ValueError):
        access(pt, tlb, 1 << 47, READ, True)
    assert not any(int(x) for x in tlb.counters)


# ------------------------------------------------------------------ TLB.check
def test_check_reports_stale_rw_entry_until_invlpg():
    pt = mmucore.PageTable()
    pt.map(VA, 2)
    tlb = mmucore.TLB("skylake")
    access(pt, tlb, VA, WRITE)
    access(pt, tlb, VA + 4096, WRITE)
    assert tlb.check(pt) == []
    g = mmucore.Gather()
    pt.change_range(VA, 1, mmucore.PAGE_READONLY, mmucore.CP_RECORD_NEEDED, g)
    report = tlb.check(pt)
    # the entry sits in L1 and in the STLB: both are reported
    assert len(report) == 2
    for va, huge, cached, pte, reason in report:
        assert (va, huge) == (VA, False)
        assert cached & RW and not pte & RW and "writable" in reason
    assert tlb.check(pt, pcid=1) == []            # other PCIDs hold nothing stale
    tlb.invlpg(VA)
    assert tlb.check(pt) == []


def test_check_reports_huge_and_frame_and_unmapped():
    pt = mmucore.PageTable()
    pt.map(HVA, 512, huge=True, pfn=0x40000)
    pt.map(VA, 2)
    tlb = mmucore.TLB(mmucore.geometry("skylake", stlb=(1, 1)))   # keep entries in L1 only
    for va in (HVA, VA, VA + 4096):
        access(pt, tlb, va, READ)
    pt.change_range(HVA, 512, mmucore.PAGE_NONE)
    pt.set_pte(VA, mmucore.mk_pte(0x999, mmucore.PAGE_SHARED))
    pt.zap_range(VA + 4096, 1, mmucore.Gather())
    reasons = {(va, huge): reason for va, huge, _, _, reason in tlb.check(pt)}
    assert set(reasons) == {(HVA, True), (VA, False), (VA + 4096, False)}
    assert "not present" in reasons[(HVA, True)]
    assert "stale frame" in reasons[(VA, False)]
    assert "not present" in reasons[(VA + 4096, False)]


@pytest.mark.parametrize("name, call", [
    ("invlpg", lambda t, pt: t.invlpg(-4096)),
    ("invpcid_single", lambda t, pt: t.invpcid_single(-4096, 1)),
    ("fill", lambda t, pt: t.fill(-4096, 0x1067)),
    ("probe", lambda t, pt: t.probe(-1)),
    ("access", lambda t, pt: access(pt, t, -4096, READ))])
def test_negative_addresses_are_named_value_errors(name, call):
    tlb = mmucore.TLB(mmucore.geometry("skylake"))
    with pytest.raises(ValueError, match=f"{name}: va -0x[0-9a-f]+ is not an unsigned 64-bit"):
        call(tlb, mmucore.PageTable())


def test_geometry_rejects_unknown_fields_even_when_complete():
    geo = dict(mmucore.GEOMETRIES["skylake"], stlb_ways=16)
    for make in (mmucore.geometry, mmucore.TLB):
        with pytest.raises(ValueError, match=r"unknown geometry field\(s\) \['stlb_ways'\]"):
            make(geo)
    with pytest.raises(ValueError, match="unknown geometry field"):
        mmucore.geometry("zen3", sets=4)


def test_psc_evictions_are_counted():
    """A 1-entry PDE cache: walks through two different PMD tables evict each other."""
    geo = mmucore.geometry("skylake", psc=(0, 0, 1))
    tlb = mmucore.TLB(geo)
    pt = mmucore.PageTable()
    a, b = 0x7F0000000000, 0x7F0000200000                   # two PTE tables
    pt.map(a, 2)
    pt.map(b, 1)
    for va in (a, b, a + 4096):              # three walks, PDE entries a, b, a again
        assert access(pt, tlb, va) == FAULT_NONE
    c = tlb.counter_dict()
    assert (c["walks"], c["psc_pde_hits"], c["psc_evictions"]) == (3, 0, 2)


def test_access_stream_checked_skips_the_value_scan_but_never_misindexes():
    pt, tlb = _untouched_setup()
    # checked=True: the caller vouches for the values; a bad kind still stops the loop
    # (with a ValueError naming it) instead of indexing counters out of range
    with pytest.raises(ValueError, match=r"kinds\[1\] = 7"):
        mmucore.access_stream(pt, tlb, _u64([VA, VA]), _u8([0, 7]), checked=True)
    assert int(tlb.counters[mmucore.COUNTER_INDEX["accesses"]]) == 1
    # types are checked either way
    with pytest.raises(ValueError, match="uint8"):
        mmucore.access_stream(pt, tlb, _u64([VA]), np.array([0], dtype=np.int32), checked=True)
