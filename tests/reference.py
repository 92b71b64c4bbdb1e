"""A plain-Python reference of the mmucore page table, TLB hierarchy and walker.

Written from /work/shared/SPEC.md sections 2-3 with dicts and lists only, so the
differential tests (tests/test_differential.py) can check the Cython core against it
operation by operation.  Nothing here imports mmucore: bit positions, entry rules and
counter names are restated below (tests/test_pte.py checks they agree with mmucore's).

Page table (RefPageTable)
-------------------------
* A 4-level radix of tables.  Each table is a Python dict {index: value} (absent == 0)
  held in ``tables[table_id]``.  A non-leaf entry is ``table_id << 12 | TABLE_FLAGS``
  (P|RW|US|A|D, the kernel's _PAGE_TABLE), so its "frame" is the id of the next table.
  Table identity has to be modelled because the paging-structure caches (PSCs) cache
  it: after a table is freed without a flush, a stale PSC entry still walks into that
  table id, whatever it holds now.
* Rule T1 (allocation): id 0 is never used; the root is id 1; a new table takes the most
  recently freed id (LIFO free list), else the next unused id.  A table is emptied when
  it is allocated, NOT when it is freed (a freed table keeps its old entries).
* Rule T2: allocation order is top-down along a path (PUD table for the PGD entry, then
  PMD table, then PTE table); _free_pgtables frees in ascending address order, a PMD
  table after the PTE tables under it, a PUD table after everything under it.
* Rule T3: reading a table id that was never allocated (a walk through a stale PSC
  entry can take a leaf's frame number for a table id) reads as an all-zero table, so
  the walk ends in a not-present fault (mmucore reads its reserved empty table 0).
* ``leaves()`` gives the flat view {va: (entry, shift)} of every non-zero 4K PTE
  (shift 12) and huge PMD (shift 21) reachable from the root.
* Range operations (map, populate, change_range, zap_range, clear_young_dirty) go 2M
  chunk by 2M chunk, with the rules of mmucore.pagetable's docstrings:
  - map (4K) over a huge PMD replaces the PMD by a fresh empty PTE table; map (huge) or
    set_pmd over a PTE table frees that PTE table (level 0).
  - populate skips chunks under a huge PMD and fills only entries equal to 0; it writes
    ``pfn << 12 | flags`` exactly (P is not added).
  - change_range: a huge PMD covered entirely is changed with pmd_modify (+512 pages,
    its address listed as a THP); a huge PMD the range only cuts is split first (split
    address listed) and the part in range changed as PTEs.  A PTE is visited when P or
    PROTNONE is set.  Recording: CP_RECORD_ALL records every visited entry,
    CP_RECORD_NEEDED only those for which pte_needs_flush/huge_pmd_needs_flush hold.
  - zap_range clears every PTE in range (present ones, incl. PROT_NONE, are counted and
    recorded), a fully covered huge PMD (any PSE value) is cleared and recorded as a PMD,
    a cut one is split first.  Then tables whose whole span lies in [free_start,
    free_end) are freed (PTE tables regardless of content, PMD/PUD tables only when
    empty): a PTE table records [base, +4K) and cleared_pmds, a PMD table [base, +4K) and
    cleared_puds, a PUD table [base, +4K) and cleared_p4ds,
    and freed_tables if anything was freed.
  - clear_young_dirty: 4K entries with P, any of the bits and no SPECIAL bit (the zero
    page has no normal page); a huge PMD covered entirely is cleared as a whole, one the
    range only cuts is split first (split address listed).

TLB (RefTLB)
------------
* Every array (L1 4K, L1 2M, STLB, PSC per level) is a list of sets; a set is a list of
  ``ways`` slots, each None or an Entry(key, data, stamp).  Set = vpn % sets.
* Key = (vpn, pcid, huge, global).  A translation from an entry with G set is stored
  with pcid 0 and global True and matches every PCID; others match only their PCID.
  PSC keys are (va >> shift, pcid, False, False) with shift 39/30/21.
* Rule L1 (lookup): in the set, the first way (lowest index) whose key is the PCID key
  or the global key.  Order of lookups: L1 4K, L1 2M, STLB 4K, STLB 2M; a 4K entry wins
  over a 2M one.  With a unified L1 ("zen3") both page sizes live in the one L1 array.
* Rule L2 (fill): a slot holding the same key is overwritten in place; else the first
  empty way; else the way with the smallest stamp (first one on a tie) is evicted and
  counted (l1_evictions / stlb_evictions / psc_evictions).
* Rule L3 (LRU clock): one global counter, incremented every time an entry is stamped
  (a hit, a PSC hit, a fill).  Stamps within one array are then strictly increasing in
  time, which is all LRU needs.
* Access: count accesses and reads/writes/fetches; L1 hit -> stamp; L1 miss -> STLB;
  STLB hit -> stamp and fill the entry (same key, same data) into the L1 of its size;
  STLB miss -> walk.  After a hit the cached permissions are checked: user without US ->
  user fault, else write without RW -> write fault, else fetch with NX -> nx fault
  (fault_from_tlb).  A write through an entry without D re-walks (dirty_walks).
* Walk: count walks; probe the PSCs deepest first (PDE, PDPT, PML4E); a hit starts the
  walk at the table the PSC entry names, with its cached RW/US (ANDed so far) and NX
  (ORed so far); no hit counts psc_misses and starts at the root.  Each entry read is
  one memory reference.  Not present -> not_present fault.  A non-leaf entry gets A and
  is filled into the PSC of its level with data ``table_id << 12 | RW/US/NX so far``.
  A leaf (PTE, or PMD with PSE) is checked with the accumulated permissions; on success
  it gets A (and D for a write), and STLB then L1 are filled with data = frame | (P RW
  US A D G NX of the effective entry).  Nested paging with n host levels: refs become
  refs * (n + 1) + n.
* Rule F1 (#PF): drops va's non-global 4K and 2M entries of the current PCID from every
  array and the current PCID's PSC entries for va (PML4E, PDPTE, PDE).  Global entries
  are NOT dropped (mirrors mmucore; see test_tlb.py::test_pf_drops_stale_global_entry,
  which pins this as a bug against the SDM) -- switch with PF_DROPS_GLOBAL.
* INVLPG(va, pcid): drops va's 4K and 2M entries of pcid and the global ones, and every
  PSC entry of pcid.  INVPCID single: the same without global entries.  flush_pcid:
  every non-global entry of pcid and its PSC entries.  flush_all: every entry of every
  PCID (globals unless include_global=False) and every PSC entry.  switch_pcid: set the
  PCID, then flush_pcid (counted as flush_pcid) or count cr3_noflush.
"""
from __future__ import annotations

import numbers

# ----------------------------------------------------------------------------- bits
P = 1 << 0
RW = 1 << 1
US = 1 << 2
PWT = 1 << 3
PCD = 1 << 4
A = 1 << 5
D = 1 << 6
PSE = 1 << 7          # PMD: page size; 4K PTE: PAT
PAT = 1 << 7
G = 1 << 8
PROTNONE = 1 << 8     # when P is clear
SPECIAL = 1 << 9
UFFD_WP = 1 << 10
SOFT_DIRTY = 1 << 11
PAT_LARGE = 1 << 12
DEVMAP = 1 << 57
SAVED_DIRTY = 1 << 58
PKEY_MASK = 0xF << 59
NX = 1 << 63
PFN_MASK = ((1 << 52) - 1) & ~((1 << 12) - 1)        # bits 12..51
PMD_PFN_MASK = ((1 << 52) - 1) & ~((1 << 21) - 1)    # bits 21..51
SOFTW_MASK = SPECIAL | UFFD_WP | SOFT_DIRTY | DEVMAP | SAVED_DIRTY
TABLE_FLAGS = P | RW | US | A | D
CACHED_BITS = P | RW | US | A | D | G | NX            # what a TLB entry keeps besides the frame
U64 = (1 << 64) - 1
VA48 = (1 << 48) - 1

# bits pte_modify keeps from the old entry (the rest comes from the new protection)
KEEP_4K = PFN_MASK | PCD | PWT | A | D | SOFTW_MASK
KEEP_2M = KEEP_4K | PSE | PAT_LARGE
FLUSH_ON_CLEAR = D | P | A
FLUSH_ON_CHANGE = RW | US | PWT | PCD | PSE | G | PAT_LARGE | PKEY_MASK | NX

PAGE = 1 << 12
HPAGE = 1 << 21
FILE_PFN_BASE = 1 << 39          # page-cache frames start here (the model's PageAnon test)
GATHER_EMPTY_START = (1 << 47) - PAGE

READ, WRITE, FETCH = 0, 1, 2
FAULT_NONE, FAULT_NOT_PRESENT, FAULT_WRITE, FAULT_NX, FAULT_USER = 0, 1, 2, 3, 4

CP_RECORD_ALL = 1
CP_RECORD_NEEDED = 2
CP_TRY_WRITABLE = 4
CP_WRITABLE_NEEDS_DIRTY = 8
CP_UFFD_WP = 16
CP_UFFD_WP_RESOLVE = 32
CP_DIRTY_ACCT = 64

COUNTER_NAMES = (
    "accesses", "reads", "writes", "fetches",
    "l1_hits", "l1_misses", "stlb_hits", "stlb_misses",
    "walks", "walk_refs", "psc_pml4_hits", "psc_pdpt_hits", "psc_pde_hits", "psc_misses",
    "dirty_walks", "l1_evictions", "stlb_evictions", "psc_evictions",
    "invlpg", "invpcid_single", "flush_pcid", "flush_all", "cr3_noflush",
    "faults", "fault_not_present", "fault_write", "fault_nx", "fault_user", "fault_from_tlb",
)
_FAULT_COUNTER = {FAULT_NOT_PRESENT: "fault_not_present", FAULT_WRITE: "fault_write",
                  FAULT_NX: "fault_nx", FAULT_USER: "fault_user"}
_KIND_COUNTER = ("reads", "writes", "fetches")

# Rule F1: does a #PF drop the faulting address's *global* TLB entries too?  mmucore
# does not (tlb.pyx raise_pf); the SDM says a #PF invalidates every TLB entry for the
# page number.  The reference follows mmucore so the differential tests stay green.
PF_DROPS_GLOBAL = True


# ---------------------------------------------------------------- entry rules (SPEC 2, 4)
def is_protnone(v):
    return not (v & P) and bool(v & PROTNONE)


def present(v):
    """pte_present(): P, or PROT_NONE."""
    return bool(v & P) or bool(v & PROTNONE)


def _invert(v, mask):
    return (v & ~mask) | (~v & mask)


def pfn_4k(v):
    """Frame of a PTE; a PROT_NONE entry stores its frame bits inverted."""
    if is_protnone(v):
        v = _invert(v, PFN_MASK)
    return (v & PFN_MASK) >> 12


def pfn_2m(v):
    """4K frame number of a huge PMD's first page."""
    if is_protnone(v):
        v = _invert(v, PMD_PFN_MASK)
    return (v & PMD_PFN_MASK) >> 12


def _fix_protnone(old, new, mask):
    """Entering or leaving PROT_NONE inverts the frame bits."""
    if is_protnone(old) != is_protnone(new):
        new = _invert(new, mask)
    return new


def pte_modify(old, prot):
    return _fix_protnone(old, (old & KEEP_4K) | (prot & ~KEEP_4K & U64), PFN_MASK)


def pmd_modify(old, prot):
    return _fix_protnone(old, (old & KEEP_2M) | (prot & ~KEEP_2M & U64), PMD_PFN_MASK)


def _flags_need_flush(old, new, a_counts):
    clear_bits = FLUSH_ON_CLEAR if a_counts else (FLUSH_ON_CLEAR & ~A)
    for bit in range(64):
        m = 1 << bit
        if (m & clear_bits) and (old & m) and not (new & m):
            return True
        if (m & FLUSH_ON_CHANGE) and (old & m) != (new & m):
            return True
    return False


def pte_needs_flush(old, new):
    if not old & P:
        return False
    if pfn_4k(old) != pfn_4k(new):
        return True
    return _flags_need_flush(old & ~PFN_MASK, new & ~PFN_MASK, a_counts=False)


def huge_pmd_needs_flush(old, new):
    if not old & P:
        return False
    if pfn_2m(old) != pfn_2m(new):
        return True
    return _flags_need_flush(old & ~PMD_PFN_MASK, new & ~PMD_PFN_MASK, a_counts=True)


def apply_cp_rules(new, mode, pfn, zero_pfn):
    """The per-entry extras of change_pte_range: uffd-wp, DIRTY_ACCT, TRY_CHANGE_WRITABLE."""
    if mode & CP_UFFD_WP:
        new = (new & ~RW) | UFFD_WP
    elif mode & CP_UFFD_WP_RESOLVE:
        new &= ~UFFD_WP
    if mode & CP_DIRTY_ACCT and new & D and new & P:
        new |= RW
    if (mode & CP_TRY_WRITABLE and new & P and not new & RW and not new & UFFD_WP
            and pfn != zero_pfn and pfn < FILE_PFN_BASE):      # PageAnon: below the file frames
        if not mode & CP_WRITABLE_NEEDS_DIRTY or new & D:
            new |= RW
    return new


def permission(entry, kind, user):
    """Fault class of `kind` through a (cached or walked) entry, 0 when allowed."""
    if user and not entry & US:
        return FAULT_USER
    if kind == WRITE and not entry & RW:
        return FAULT_WRITE
    if kind == FETCH and entry & NX:
        return FAULT_NX
    return FAULT_NONE


def _idx(va, shift):
    return (va >> shift) & 511


# ---------------------------------------------------------------------------- gather
class RefGather:
    """struct mmu_gather's range and level bits."""

    def __init__(self):
        self.start = GATHER_EMPTY_START
        self.end = 0
        self.fullmm = False
        self.need_flush_all = False
        self.freed_tables = False
        self.cleared_ptes = False
        self.cleared_pmds = False
        self.cleared_puds = False
        self.cleared_p4ds = False

    def adjust(self, addr, size):
        self.start = min(self.start, addr)
        self.end = max(self.end, addr + size)

    def pte(self, addr):
        self.adjust(addr, PAGE)
        self.cleared_ptes = True

    def pmd(self, addr):
        self.adjust(addr, HPAGE)
        self.cleared_pmds = True

    @property
    def needs_flush(self):
        return (self.freed_tables or self.cleared_ptes or self.cleared_pmds
                or self.cleared_puds or self.cleared_p4ds)

    @property
    def stride_shift(self):
        for flag, shift in ((self.cleared_ptes, 12), (self.cleared_pmds, 21),
                            (self.cleared_puds, 30), (self.cleared_p4ds, 39)):
            if flag:
                return shift
        return 12

    def as_dict(self):
        return dict(start=self.start, end=self.end, fullmm=self.fullmm,
                    need_flush_all=self.need_flush_all, freed_tables=self.freed_tables,
                    cleared_ptes=self.cleared_ptes, cleared_pmds=self.cleared_pmds,
                    cleared_puds=self.cleared_puds)


# ------------------------------------------------------------------------ page table
class RefPageTable:
    """The x86-64 4-level page table as dict tables keyed by table id (see module doc)."""

    def __init__(self):
        self.tables = {}                 # table id -> {index: value}
        self.freed = []                  # LIFO free list of table ids
        self.next_id = 1
        self.live = [0, 0, 0, 0]         # pte, pmd, pud, pgd tables in use
        self.next_pfn = 0x1000
        self.root = self._alloc(3)

    # -- tables
    def _alloc(self, level):
        if self.freed:
            tid = self.freed.pop()
        else:
            tid = self.next_id
            self.next_id += 1
        self.tables[tid] = {}
        self.live[level] += 1
        return tid

    def _free(self, tid, level):
        self.freed.append(tid)           # content is kept until the id is reused
        self.live[level] -= 1

    def read(self, tid, i):
        return self.tables.get(tid, {}).get(i, 0)

    def write(self, tid, i, value):
        t = self.tables.setdefault(tid, {})
        if value:
            t[i] = value
        else:
            t.pop(i, None)

    @staticmethod
    def table_of(entry):
        return (entry & PFN_MASK) >> 12

    def _empty(self, tid):
        return not any(self.tables.get(tid, {}).values())

    def _pmd_slot(self, va, alloc):
        """(table id, index) of the PMD entry for va; None when the path is missing."""
        tid = self.root
        for shift, level in ((39, 2), (30, 1)):
            e = self.read(tid, _idx(va, shift))
            if not e & P:
                if not alloc:
                    return None
                e = (self._alloc(level) << 12) | TABLE_FLAGS
                self.write(tid, _idx(va, shift), e)
            tid = self.table_of(e)
        return tid, _idx(va, 21)

    def _pte_table(self, slot):
        """PTE table under a PMD slot; a fresh one replaces an empty or huge PMD."""
        e = self.read(*slot)
        if not e & P or e & PSE:
            e = (self._alloc(0) << 12) | TABLE_FLAGS
            self.write(*slot, e)
        return self.table_of(e)

    def _split(self, slot):
        old = self.read(*slot)
        pfn = pfn_2m(old)
        flags = old & ~PMD_PFN_MASK & ~PSE & ~PAT_LARGE
        if old & PAT_LARGE:
            flags |= PAT
        tid = self._alloc(0)
        for i in range(512):
            self.write(tid, i, _fix_protnone(0, ((pfn + i) << 12) | flags, PFN_MASK))
        self.write(*slot, (tid << 12) | TABLE_FLAGS)

    @staticmethod
    def _chunks(start, end):
        """[addr, nxt) pieces of [start, end) that do not cross a 2M boundary."""
        addr = start
        while addr < end:
            nxt = min((addr | (HPAGE - 1)) + 1, end)
            yield addr, nxt
            addr = nxt

    # -- inspection
    def get(self, va):
        slot = self._pmd_slot(va, False)
        if slot is None:
            return (0, 0)
        e = self.read(*slot)
        if e & PSE:
            return (e, 21) if e else (0, 0)
        if not e & P:
            return (0, 0)
        v = self.read(self.table_of(e), _idx(va, 12))
        return (v, 12) if v else (0, 0)

    def upper_entries(self, va):
        out = [self.read(self.root, _idx(va, 39))]
        if out[0] & P:
            out.append(self.read(self.table_of(out[0]), _idx(va, 30)))
            if out[1] & P:
                out.append(self.read(self.table_of(out[1]), _idx(va, 21)))
        return tuple(out + [0] * (3 - len(out)))

    def read_range(self, va, npages):
        out = []
        for addr, nxt in self._chunks(va, va + npages * PAGE):
            n = (nxt - addr) // PAGE
            slot = self._pmd_slot(addr, False)
            pmd = self.read(*slot) if slot else 0
            if not pmd & P or pmd & PSE:
                out += [pmd] * n
            else:
                t = self.table_of(pmd)
                out += [self.read(t, _idx(a, 12)) for a in range(addr, nxt, PAGE)]
        return out

    @property
    def table_counts(self):
        return {"pte": self.live[0], "pmd": self.live[1], "pud": self.live[2],
                "pgd": self.live[3]}

    def leaves(self):
        """{va: (entry, shift)} for every non-zero leaf reachable from the root."""
        out = {}
        for a, e1 in sorted(self.tables[self.root].items()):
            if not e1 & P:
                continue
            for b, e2 in sorted(self.tables[self.table_of(e1)].items()):
                if not e2 & P:
                    continue
                for c, e3 in sorted(self.tables[self.table_of(e2)].items()):
                    base = (a << 39) | (b << 30) | (c << 21)
                    if e3 & PSE:
                        out[base] = (e3, 21)
                    elif e3 & P:
                        for d, e4 in sorted(self.tables[self.table_of(e3)].items()):
                            if e4:
                                out[base | (d << 12)] = (e4, 12)
        return out

    # -- writes
    def set_pte(self, va, value):
        slot = self._pmd_slot(va, True)
        if self.read(*slot) & PSE:
            raise ValueError("set_pte inside a huge PMD")
        self.write(self._pte_table(slot), _idx(va, 12), value)

    def set_pmd(self, va, value):
        slot = self._pmd_slot(va, True)
        old = self.read(*slot)
        if old & P and not old & PSE:
            self._free(self.table_of(old), 0)
        self.write(*slot, (value | PSE) if value else 0)

    def split_huge_pmd(self, va):
        slot = self._pmd_slot(va, False)
        if slot is None or not self.read(*slot) & PSE:
            return False
        self._split(slot)
        return True

    def map(self, va, npages, flags=P | RW | US | A | D, pfn=None, huge=False):
        first = self.next_pfn if pfn is None else pfn
        f = first
        flags |= P
        for addr, nxt in self._chunks(va, va + npages * PAGE):
            slot = self._pmd_slot(addr, True)
            if huge:
                old = self.read(*slot)
                if old & P and not old & PSE:
                    self._free(self.table_of(old), 0)
                self.write(*slot, (f << 12) | flags | PSE)
                f += 512
            else:
                t = self._pte_table(slot)
                for a in range(addr, nxt, PAGE):
                    self.write(t, _idx(a, 12), (f << 12) | flags)
                    f += 1
        if pfn is None:
            self.next_pfn = first + npages
        return first

    def populate(self, va, npages, flags, pfn=None, same_pfn=False):
        first = self.next_pfn if pfn is None else pfn
        f = first
        n = 0
        for addr, nxt in self._chunks(va, va + npages * PAGE):
            slot = self._pmd_slot(addr, True)
            if self.read(*slot) & PSE:
                continue
            t = self._pte_table(slot)
            for a in range(addr, nxt, PAGE):
                if self.read(t, _idx(a, 12)) == 0:
                    self.write(t, _idx(a, 12), (f << 12) | flags)
                    n += 1
                    if not same_pfn:
                        f += 1
        if pfn is None and not same_pfn:
            self.next_pfn = first + n
        return n

    def change_range(self, va, npages, prot, mode=0, gather=None, zero_pfn=0):
        """Returns (pages, changed, flagged, thp_addrs, split_addrs, PTE tables walked)."""
        g = gather if gather is not None else RefGather()
        pages = changed = flagged = tables = 0
        thp, splits = [], []
        extras = mode & (CP_UFFD_WP | CP_UFFD_WP_RESOLVE | CP_DIRTY_ACCT | CP_TRY_WRITABLE)
        for addr, nxt in self._chunks(va, va + npages * PAGE):
            slot = self._pmd_slot(addr, False)
            if slot is None:
                continue
            pmd = self.read(*slot)
            if pmd & PSE:
                if nxt - addr == HPAGE:
                    new = pmd_modify(pmd, prot)
                    if extras:
                        new = apply_cp_rules(new, mode, pfn_2m(pmd), zero_pfn)
                    if new != pmd:
                        self.write(*slot, new)
                        changed += 1
                    pages += 512
                    thp.append(addr)
                    if mode & CP_RECORD_ALL or (mode & CP_RECORD_NEEDED
                                                and huge_pmd_needs_flush(pmd, new)):
                        g.pmd(addr)
                        flagged += 1
                    continue
                splits.append(addr & ~(HPAGE - 1))
                self._split(slot)
                pmd = self.read(*slot)
            if not pmd & P:
                continue
            t = self.table_of(pmd)
            tables += 1
            for a in range(addr, nxt, PAGE):
                old = self.read(t, _idx(a, 12))
                if not present(old):
                    continue
                pages += 1
                new = pte_modify(old, prot)
                if extras:
                    new = apply_cp_rules(new, mode, pfn_4k(old), zero_pfn)
                if new != old:
                    self.write(t, _idx(a, 12), new)
                    changed += 1
                if mode & CP_RECORD_ALL or (mode & CP_RECORD_NEEDED
                                            and pte_needs_flush(old, new)):
                    g.pte(a)
                    flagged += 1
        return pages, changed, flagged, thp, splits, tables

    def zap_range(self, va, npages, gather, free_start=None, free_end=None):
        """Returns (zapped 4K pages, zapped huge PMDs, split addresses)."""
        start, end = va, va + npages * PAGE
        n4k = nhuge = 0
        splits = []
        for addr, nxt in self._chunks(start, end):
            slot = self._pmd_slot(addr, False)
            if slot is None:
                continue
            pmd = self.read(*slot)
            if pmd & PSE:
                if nxt - addr == HPAGE:
                    self.write(*slot, 0)
                    gather.pmd(addr)
                    nhuge += 1
                    continue
                splits.append(addr & ~(HPAGE - 1))
                self._split(slot)
                pmd = self.read(*slot)
            if not pmd & P:
                continue
            t = self.table_of(pmd)
            for a in range(addr, nxt, PAGE):
                if present(self.read(t, _idx(a, 12))):
                    gather.pte(a)
                    n4k += 1
                self.write(t, _idx(a, 12), 0)
        fs = start if free_start is None else free_start
        fe = end if free_end is None else free_end
        if fe > fs:
            self._free_pgtables(fs & ~(PAGE - 1), fe, gather)
        return n4k, nhuge, splits

    def _free_pgtables(self, fs, fe, g):
        freed = False
        for a in range(_idx(fs, 39), _idx(fe - 1, 39) + 1):
            e1 = self.read(self.root, a)
            if not e1 & P:
                continue
            base_a = a << 39
            pud_t = self.table_of(e1)
            for b in sorted(self.tables[pud_t]):
                base_b = base_a + (b << 30)
                e2 = self.read(pud_t, b)
                if base_b + (1 << 30) <= fs or base_b >= fe or not e2 & P:
                    continue
                pmd_t = self.table_of(e2)
                for c in sorted(self.tables[pmd_t]):
                    base_c = base_b + (c << 21)
                    e3 = self.read(pmd_t, c)
                    if base_c < fs or base_c + HPAGE > fe or not e3 & P or e3 & PSE:
                        continue
                    self._free(self.table_of(e3), 0)
                    self.write(pmd_t, c, 0)
                    g.adjust(base_c, PAGE)
                    g.cleared_pmds = True
                    freed = True
                if base_b >= fs and base_b + (1 << 30) <= fe and self._empty(pmd_t):
                    self._free(pmd_t, 1)
                    self.write(pud_t, b, 0)
                    g.adjust(base_b, PAGE)
                    g.cleared_puds = True
                    freed = True
            if base_a >= fs and base_a + (1 << 39) <= fe and self._empty(pud_t):
                self._free(pud_t, 2)
                self.write(self.root, a, 0)
                g.adjust(base_a, PAGE)
                g.cleared_p4ds = True
                freed = True
        if freed:
            g.freed_tables = True

    def clear_young_dirty(self, va, npages, gather, clear_dirty=False):
        bits = A | (D if clear_dirty else 0)
        n = nh = 0
        splits = []
        for addr, nxt in self._chunks(va, va + npages * PAGE):
            slot = self._pmd_slot(addr, False)
            pmd = self.read(*slot) if slot else 0
            if not pmd & P:
                continue
            if pmd & PSE:
                if addr % HPAGE == 0 and nxt - addr == HPAGE:
                    if pmd & bits:
                        self.write(*slot, pmd & ~bits)
                        gather.pmd(addr)
                        nh += 1
                    continue
                splits.append(addr & ~(HPAGE - 1))
                self._split(slot)
                pmd = self.read(*slot)
            t = self.table_of(pmd)
            for a in range(addr, nxt, PAGE):
                e = self.read(t, _idx(a, 12))
                if e & P and e & bits and not e & SPECIAL:
                    self.write(t, _idx(a, 12), e & ~bits)
                    gather.pte(a)
                    n += 1
        return n, nh, splits


# ------------------------------------------------------------------------------- TLB
class Entry:
    __slots__ = ("key", "data", "stamp")

    def __init__(self, key, data, stamp):
        self.key, self.data, self.stamp = key, data, stamp


class RefArray:
    """One set-associative array: sets x ways slots, LRU by stamp."""

    def __init__(self, sets, ways):
        self.sets, self.ways = sets, ways
        self.slots = [[None] * ways for _ in range(sets)]

    def set_for(self, vpn):
        return self.slots[vpn % self.sets]

    def find(self, vpn, keys):
        for e in self.set_for(vpn):
            if e is not None and e.key in keys:
                return e
        return None

    def fill(self, vpn, key, data, stamp):
        """Insert (rule L2); returns True when a valid entry was evicted."""
        s = self.set_for(vpn)
        for e in s:
            if e is not None and e.key == key:
                e.data, e.stamp = data, stamp
                return False
        for w, e in enumerate(s):
            if e is None:
                s[w] = Entry(key, data, stamp)
                return False
        victim = min(range(self.ways), key=lambda w: s[w].stamp)
        s[victim] = Entry(key, data, stamp)
        return True

    def drop_key(self, vpn, key):
        s = self.set_for(vpn)
        for w, e in enumerate(s):
            if e is not None and e.key == key:
                s[w] = None

    def drop_if(self, pred):
        for s in self.slots:
            for w, e in enumerate(s):
                if e is not None and pred(e.key):
                    s[w] = None

    def valid(self):
        """(set, way, entry) of every valid slot in slot order."""
        for si, s in enumerate(self.slots):
            for w, e in enumerate(s):
                if e is not None:
                    yield si, w, e


def _psc_shape(v):
    """A PSC level is an entry count (one fully associative set) or (sets, ways)."""
    if isinstance(v, numbers.Integral):
        return (1, int(v))
    return (int(v[0]), int(v[1]))


PSC_SHIFTS = (39, 30, 21)            # PML4E, PDPTE, PDE caches
_PSC_HIT_COUNTER = ("psc_pml4_hits", "psc_pdpt_hits", "psc_pde_hits")


class RefTLB:
    """One CPU's TLBs and PSCs (see module doc for the rules)."""

    def __init__(self, geo, pcid=0):
        self.unified = bool(geo["l1_unified"])
        self.nested = int(geo["nested_levels"])
        self.l1_4k = RefArray(*geo["l1_4k"])
        self.l1_2m = None if self.unified else RefArray(*geo["l1_2m"])
        self.stlb = RefArray(*geo["stlb"])
        self.psc = []
        for v in geo["psc"]:
            sets, ways = _psc_shape(v)
            self.psc.append(RefArray(sets, ways) if ways else None)
        self.pcid = pcid
        self.clock = 0
        self.counters = dict.fromkeys(COUNTER_NAMES, 0)
        self.last_fault_from_tlb = False

    # -- helpers
    def tick(self):
        self.clock += 1
        return self.clock

    def l1(self, huge):
        return self.l1_2m if huge and not self.unified else self.l1_4k

    def tlb_arrays(self):
        return [a for a in (self.l1_4k, self.l1_2m, self.stlb) if a is not None]

    @staticmethod
    def keys(vpn, pcid, huge):
        return {(vpn, pcid, huge, False), (vpn, 0, huge, True)}

    def _lookup(self, which, va):
        """(array, entry, huge) of the first hit in L1 (which=0) or the STLB (which=1)."""
        for huge, vpn in ((False, va >> 12), (True, va >> 21)):
            arr = self.l1(huge) if which == 0 else self.stlb
            e = arr.find(vpn, self.keys(vpn, self.pcid, huge))
            if e is not None:
                return arr, e, huge
        return None

    def _drop_va(self, va, pcid, include_global):
        va &= VA48
        for arr in self.tlb_arrays():
            for huge, vpn in ((False, va >> 12), (True, va >> 21)):
                if arr is self.l1_2m and not huge:
                    continue
                if arr is self.l1_4k and huge and not self.unified:
                    continue
                arr.drop_key(vpn, (vpn, pcid, huge, False))
                if include_global:
                    arr.drop_key(vpn, (vpn, 0, huge, True))

    def _drop_psc_pcid(self, pcid):
        for arr in self.psc:
            if arr is not None:
                arr.drop_if(lambda k: pcid is None or k[1] == pcid)

    # -- hardware operations
    def invlpg(self, va, pcid=None):
        pcid = self.pcid if pcid is None else pcid
        self._drop_va(va, pcid, True)
        self._drop_psc_pcid(pcid)
        self.counters["invlpg"] += 1

    def invpcid_single(self, va, pcid):
        self._drop_va(va, pcid, False)
        self._drop_psc_pcid(pcid)
        self.counters["invpcid_single"] += 1

    def flush_pcid(self, pcid=None):
        pcid = self.pcid if pcid is None else pcid
        for arr in self.tlb_arrays():
            arr.drop_if(lambda k: not k[3] and k[1] == pcid)
        self._drop_psc_pcid(pcid)
        self.counters["flush_pcid"] += 1

    def flush_all(self, include_global=True):
        for arr in self.tlb_arrays():
            arr.drop_if(lambda k: include_global or not k[3])
        self._drop_psc_pcid(None)
        self.counters["flush_all"] += 1

    def switch_pcid(self, pcid, flush):
        self.pcid = pcid
        if flush:
            self.flush_pcid(pcid)
        else:
            self.counters["cr3_noflush"] += 1

    def fill(self, va, entry, huge=False, pcid=None):
        self._fill(va & VA48, entry, huge, self.pcid if pcid is None else pcid)

    def _fill(self, va, eff, huge, pcid):
        if huge:
            vpn = va >> 21
            data = (pfn_2m(eff) << 12) | (eff & CACHED_BITS)
        else:
            vpn = va >> 12
            data = (eff & PFN_MASK) | (eff & CACHED_BITS)
        key = (vpn, 0, huge, True) if eff & G else (vpn, pcid, huge, False)
        if self.stlb.fill(vpn, key, data, self.tick()):
            self.counters["stlb_evictions"] += 1
        if self.l1(huge).fill(vpn, key, data, self.tick()):
            self.counters["l1_evictions"] += 1

    def _fault(self, va, cls, from_tlb):
        self._drop_va(va, self.pcid, PF_DROPS_GLOBAL)
        for arr, shift in zip(self.psc, PSC_SHIFTS):
            if arr is not None:
                arr.drop_key(va >> shift, (va >> shift, self.pcid, False, False))
        c = self.counters
        c["faults"] += 1
        c[_FAULT_COUNTER[cls]] += 1
        if from_tlb:
            c["fault_from_tlb"] += 1
        self.last_fault_from_tlb = from_tlb
        return cls

    def access(self, pt, va, kind, user=True):
        c = self.counters
        va &= VA48
        c["accesses"] += 1
        c[_KIND_COUNTER[kind]] += 1
        hit = self._lookup(0, va)
        if hit is not None:
            c["l1_hits"] += 1
            hit[1].stamp = self.tick()
            data = hit[1].data
        else:
            c["l1_misses"] += 1
            hit = self._lookup(1, va)
            if hit is None:
                c["stlb_misses"] += 1
                return self.walk(pt, va, kind, user)
            c["stlb_hits"] += 1
            _, e, huge = hit
            e.stamp = self.tick()
            data = e.data
            vpn = va >> (21 if huge else 12)
            if self.l1(huge).fill(vpn, e.key, data, self.tick()):
                c["l1_evictions"] += 1
        cls = permission(data, kind, user)
        if cls:
            return self._fault(va, cls, True)
        if kind == WRITE and not data & D:
            c["dirty_walks"] += 1
            return self.walk(pt, va, kind, user)
        return FAULT_NONE

    def walk(self, pt, va, kind, user):
        c = self.counters
        c["walks"] += 1
        pcid = self.pcid
        tid, level, rw_us, nx = pt.root, 4, RW | US, 0
        for i in (2, 1, 0):                         # deepest cache first
            arr = self.psc[i]
            if arr is None:
                continue
            v = va >> PSC_SHIFTS[i]
            e = arr.find(v, {(v, pcid, False, False)})
            if e is not None:
                e.stamp = self.tick()
                tid = pt.table_of(e.data)
                rw_us, nx = e.data & (RW | US), e.data & NX
                level = 3 - i
                c[_PSC_HIT_COUNTER[i]] += 1
                break
        else:
            c["psc_misses"] += 1
        refs = 0
        cls = FAULT_NONE
        while True:
            i = _idx(va, 12 + 9 * (level - 1))
            e = pt.read(tid, i)
            refs += 1
            if not e & P:
                cls = self._fault(va, FAULT_NOT_PRESENT, False)
                break
            rw_us &= e
            nx |= e & NX
            if level == 1 or (level == 2 and e & PSE):
                eff = (e & ~(RW | US | NX)) | rw_us | nx
                cls = permission(eff, kind, user)
                if cls:
                    self._fault(va, cls, False)
                    break
                e |= A | (D if kind == WRITE else 0)
                pt.write(tid, i, e)
                eff |= e & (A | D)
                self._fill(va, eff, level == 2, pcid)
                break
            pt.write(tid, i, e | A)
            arr = self.psc[4 - level]
            if arr is not None:
                v = va >> PSC_SHIFTS[4 - level]
                if arr.fill(v, (v, pcid, False, False), (e & PFN_MASK) | rw_us | nx,
                            self.tick()):
                    c["psc_evictions"] += 1
            tid = pt.table_of(e)
            level -= 1
        if self.nested:
            refs = refs * (self.nested + 1) + self.nested
        c["walk_refs"] += refs
        return cls

    # -- inspection
    def entries(self):
        """(level, va, pcid, huge, global, data) of every valid entry, in mmucore's order:
        L1 4K array, L1 2M array, STLB, PSC PML4E/PDPTE/PDE; slots set-major."""
        out = []
        arrays = [(0, self.l1_4k), (0, self.l1_2m), (1, self.stlb)]
        for level, arr in arrays:
            if arr is None:
                continue
            for _, _, e in arr.valid():
                vpn, pcid, huge, glob = e.key
                out.append((level, vpn << (21 if huge else 12), pcid, huge, glob, e.data))
        for i, arr in enumerate(self.psc):
            if arr is None:
                continue
            for _, _, e in arr.valid():
                out.append((2 + i, e.key[0] << PSC_SHIFTS[i], e.key[1], False, False, e.data))
        return out

    def occupancy(self):
        def n(arr):
            return 0 if arr is None else sum(1 for _ in arr.valid())
        return {"l1_4k": n(self.l1_4k), "l1_2m": n(self.l1_2m), "stlb": n(self.stlb),
                "psc_pml4": n(self.psc[0]), "psc_pdpt": n(self.psc[1]),
                "psc_pde": n(self.psc[2])}

    def probe(self, va, pcid=None):
        pcid = self.pcid if pcid is None else pcid
        va &= VA48
        for name, which in (("l1", 0), ("stlb", 1)):
            for huge, vpn in ((False, va >> 12), (True, va >> 21)):
                arr = self.l1(huge) if which == 0 else self.stlb
                e = arr.find(vpn, self.keys(vpn, pcid, huge))
                if e is not None:
                    return (name, e.data, huge)
        return None


def ref_access(pt: RefPageTable, tlb: RefTLB, va: int, kind: int, user: bool = True) -> int:
    """One access through the reference TLB; returns the fault class (0 = done)."""
    return tlb.access(pt, va, kind, user)
