"""Per-CPU TLBs, paging-structure caches, the page walk, INVLPG and flushes, and the
batched access-stream loop.

A TLB here is what one CPU caches: a first level per page size (Intel-style) or one
fully-associative first level for all sizes (AMD-style), a unified second level (STLB),
and PCID-tagged paging-structure caches (PSCs) for the PML4E, PDPTE and PDE levels.
Every array is set-associative with LRU replacement; any number of sets and ways works.

The access loop: look up L1, then the STLB (filling L1 on a hit), then walk from the
deepest PSC hit, setting A (and D on a write) in the page table and filling both levels.
A permission failure raises a #PF: the model drops the address's TLB and PSC entries and
reports the fault class; handling it is the kernel model's job.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint64_t, uint8_t, int64_t
from libc.string cimport memcpy, memset

from mmucore.pte cimport *
from mmucore.cost cimport *
from mmucore.cost import COST_FIELDS, COUNTER_NAMES, CYCLE_NAMES, _rebuild_cost
from mmucore.cost cimport CostModel
from mmucore.pagetable cimport PageTable, pt_table

cnp.import_array()

# access kinds and fault classes (the Python layer reads these)
READ = 0
WRITE = 1
FETCH = 2
FAULT_NONE = 0
FAULT_NOT_PRESENT = 1
FAULT_WRITE = 2
FAULT_NX = 3
FAULT_USER = 4
FAULT_NAMES = ("none", "not_present", "write_protect", "nx", "user")

cdef enum:
    K_READ = 0
    K_WRITE = 1
    K_FETCH = 2
    F_NONE = 0
    F_NOT_PRESENT = 1
    F_WRITE = 2
    F_NX = 3
    F_USER = 4

cdef enum:
    T_VALID = 1
    T_HUGE = 2
    T_GLOBAL = 4

cdef uint64_t VA48 = (<uint64_t>1 << 48) - 1
cdef uint64_t PERM_BITS = MMU_P | MMU_RW | MMU_US | MMU_A | MMU_D | MMU_G | MMU_NX
cdef uint64_t PCID_FIELD = <uint64_t>0xFFF << 3

PCID_MAX = 4095

# the TLB's arrays in the order of TLB._buffers (three buffers each: tag, data, stamp)
ARRAY_NAMES = ("l1_4k", "l1_2m", "stlb", "psc_pml4", "psc_pdpt", "psc_pde")
_STATE_KEYS = ("geometry", "costs", "cost", "pcid", "clock", "last_fault_tlb", "counters",
               "cycles", "arrays")
_ARRAY_KEYS = ("tag", "data", "stamp", "nvalid", "nhuge", "nglobal")

GEOMETRIES = {
    # Skylake client/server (Intel optimization manual table "TLB parameters"): L1 DTLB
    # 64 x 4K 4-way, 32 x 2M 4-way; STLB 1536 entries 12-way shared by 4K and 2M.
    # PSC sizes are not documented; 2 PML4E, 4 PDPTE and 32 PDE entries (the PDE cache
    # 4-way) follow sizes reported for Intel cores in the literature - assumed.
    "skylake": {"l1_4k": (16, 4), "l1_2m": (8, 4), "l1_unified": False,
                "stlb": (128, 12), "psc": (2, 4, (8, 4)), "nested_levels": 0},
    # Zen 3 (AMD PPR / optimization guide): L1 DTLB 64 entries fully associative, all page
    # sizes; L2 DTLB 2048 entries (associativity assumed 16-way); PSC sizes assumed.
    "zen3": {"l1_4k": (1, 64), "l1_2m": None, "l1_unified": True,
             "stlb": (128, 16), "psc": (2, 4, (8, 4)), "nested_levels": 0},
    # Skylake TLBs in a KVM guest with EPT: each guest walk is a 2D walk (4 host levels).
    "skylake-kvm": {"l1_4k": (16, 4), "l1_2m": (8, 4), "l1_unified": False,
                    "stlb": (128, 12), "psc": (2, 4, (8, 4)), "nested_levels": 4},
}
GEOMETRIES["zen3-kvm"] = dict(GEOMETRIES["zen3"], nested_levels=4)
# Arm Neoverse N1 (Neoverse N1 TRM, "Memory management unit"): L1 data TLB 48 entries
# fully associative, all page sizes; L2 unified TLB 1280 entries 5-way.  The walk cache
# sizes are not given per level: the x86 PSC sizes are reused (assumed).  The arm64
# arch uses the PCID tag of every entry as the ASID.
GEOMETRIES["neoverse-n1"] = {"l1_4k": (1, 48), "l1_2m": None, "l1_unified": True,
                             "stlb": (256, 5), "psc": (2, 4, (8, 4)), "nested_levels": 0}


def geometry(name=None, **overrides) -> dict:
    """A TLB geometry by preset name ("skylake", "zen3", "skylake-kvm", "zen3-kvm"),
    optionally with fields replaced; or a custom one from keywords alone."""
    if name is None:
        geo = dict(GEOMETRIES["skylake"])
    elif isinstance(name, dict):
        geo = dict(name)
    else:
        if name not in GEOMETRIES:
            raise ValueError(f"unknown TLB geometry {name!r}; known: {sorted(GEOMETRIES)}")
        geo = dict(GEOMETRIES[name])
    unknown = sorted(set(overrides) - set(GEOMETRIES["skylake"]))
    if unknown:
        raise ValueError(f"unknown geometry field(s) {unknown}; "
                         f"allowed: {sorted(GEOMETRIES['skylake'])}")
    geo.update(overrides)
    _validate_geometry(geo)
    return geo


def _sets_ways(geo, key):
    v = geo[key]
    if (not isinstance(v, (tuple, list)) or len(v) != 2
            or not all(isinstance(x, (int, np.integer)) for x in v)):
        raise ValueError(f"geometry {key} must be (sets, ways), got {v!r}")
    sets, ways = int(v[0]), int(v[1])
    if not (1 <= sets <= 1 << 16 and 1 <= ways <= 4096):
        raise ValueError(f"geometry {key}=({sets}, {ways}): sets must be 1..65536, "
                         f"ways 1..4096")
    return sets, ways


def _psc_sets_ways(v):
    """A PSC level: an entry count (fully associative, 0 = none) or (sets, ways)."""
    if isinstance(v, (int, np.integer)):
        if not 0 <= v <= 4096:
            raise ValueError(f"geometry psc entry count {v} outside 0..4096")
        return (1, int(v))
    if (isinstance(v, (tuple, list)) and len(v) == 2
            and all(isinstance(x, (int, np.integer)) and 1 <= x <= 4096 for x in v)):
        return (int(v[0]), int(v[1]))
    raise ValueError(f"geometry psc level must be an entry count or (sets, ways), got {v!r}")


def _validate_geometry(geo):
    fields = ("l1_4k", "l1_2m", "l1_unified", "stlb", "psc", "nested_levels")
    for key in fields:
        if key not in geo:
            raise ValueError(f"geometry lacks field {key!r}")
    unknown = sorted(set(geo) - set(fields))
    if unknown:
        raise ValueError(f"unknown geometry field(s) {unknown}; allowed: {sorted(fields)}")
    _sets_ways(geo, "l1_4k")
    _sets_ways(geo, "stlb")
    if not geo["l1_unified"]:
        if geo["l1_2m"] is None:
            raise ValueError("geometry l1_2m must be (sets, ways) unless l1_unified is true")
        _sets_ways(geo, "l1_2m")
    psc = geo["psc"]
    if not isinstance(psc, (tuple, list)) or len(psc) != 3:
        raise ValueError(f"geometry psc must give (pml4, pdpt, pde) caches, got {psc!r}")
    for level in psc:
        _psc_sets_ways(level)
    if geo["nested_levels"] not in (0, 4, 5):
        raise ValueError(f"geometry nested_levels must be 0 (native), 4 or 5, "
                         f"got {geo['nested_levels']!r}")


# ------------------------------------------------------------------ array primitives
cdef inline uint64_t mk_tag(uint64_t vpn, uint64_t pcid, uint64_t flags) noexcept nogil:
    return (vpn << 15) | (pcid << 3) | flags


cdef inline uint64_t set_of(tlb_array_t* a, uint64_t vpn) noexcept nogil:
    if a.set_mask or a.sets == 1:
        return vpn & a.set_mask
    return vpn % <uint64_t>a.sets


cdef inline void account(tlb_array_t* a, uint64_t tag, int64_t d) noexcept nogil:
    """Keep the array's occupancy counts (all, huge, global) in step with a tag change."""
    a.nvalid += d
    if tag & T_HUGE:
        a.nhuge += d
    if tag & T_GLOBAL:
        a.nglobal += d


cdef inline int64_t array_find(tlb_array_t* a, uint64_t vpn, uint64_t key,
                               uint64_t gkey) noexcept nogil:
    """Slot holding key (or the global key) in vpn's set, -1 if none."""
    cdef uint64_t base = set_of(a, vpn) * <uint64_t>a.ways
    cdef uint64_t* tags = a.tag + base
    cdef int w
    cdef uint64_t t
    if a.nglobal == 0:
        for w in range(a.ways):
            if tags[w] == key:
                return <int64_t>(base + w)
        return -1
    for w in range(a.ways):
        t = tags[w]
        if t == key or t == gkey:
            return <int64_t>(base + w)
    return -1


cdef inline int64_t array_fill(tlb_array_t* a, uint64_t vpn, uint64_t key, uint64_t data,
                               uint64_t now, uint64_t* evicted) noexcept nogil:
    """Insert key into vpn's set: over the same key, else the first invalid way, else LRU."""
    cdef uint64_t base = set_of(a, vpn) * <uint64_t>a.ways
    cdef uint64_t* tags = a.tag + base
    cdef uint64_t* stamps = a.stamp + base
    cdef int w, victim = 0, invalid = -1
    cdef uint64_t oldest = <uint64_t>0xFFFFFFFFFFFFFFFF
    cdef uint64_t t
    for w in range(a.ways):
        t = tags[w]
        if t == key:
            a.data[base + w] = data
            stamps[w] = now
            return <int64_t>(base + w)
        if not (t & T_VALID):
            if invalid < 0:
                invalid = w
        elif stamps[w] < oldest:
            oldest = stamps[w]
            victim = w
    if invalid >= 0:
        victim = invalid
        account(a, key, 1)
    else:
        evicted[0] += 1
        t = tags[victim]
        if (t ^ key) & (T_HUGE | T_GLOBAL):   # occupancy by kind changes (all stays)
            account(a, t, -1)
            account(a, key, 1)
    tags[victim] = key
    a.data[base + victim] = data
    stamps[victim] = now
    return <int64_t>(base + victim)


cdef inline void slot_drop(tlb_array_t* a, int64_t s) noexcept nogil:
    account(a, a.tag[s], -1)
    a.tag[s] = 0


cdef inline void array_drop_key(tlb_array_t* a, uint64_t vpn, uint64_t key) noexcept nogil:
    cdef int64_t s
    if a.nvalid == 0:
        return
    if (key & T_HUGE) and a.nhuge == 0:
        return
    if (key & T_GLOBAL) and a.nglobal == 0:
        return
    s = array_find(a, vpn, key, key)
    if s >= 0:
        slot_drop(a, s)


cdef void array_drop_pcid(tlb_array_t* a, uint64_t pcid, bint keep_global) noexcept nogil:
    """Drop every entry of pcid (all PCIDs when pcid is ~0), keeping globals if asked."""
    cdef uint64_t i, n = <uint64_t>a.sets * <uint64_t>a.ways, t
    if a.nvalid == 0:
        return
    for i in range(n):
        t = a.tag[i]
        if not (t & T_VALID):
            continue
        if t & T_GLOBAL:
            if keep_global:
                continue
        elif pcid != <uint64_t>0xFFFFFFFFFFFFFFFF and ((t >> 3) & 0xFFF) != pcid:
            continue
        account(a, t, -1)
        a.tag[i] = 0


# ------------------------------------------------------------------ the TLB object
cdef class TLB:
    """One CPU's translation caches; `pcid` is the PCID of the current CR3."""

    def __init__(self, geo=None, CostModel costs=None, int pcid=0):
        geo = geometry(geo) if not isinstance(geo, dict) else geometry(None, **geo) \
            if set(geo) <= set(GEOMETRIES["skylake"]) else geometry(geo)
        self._geometry = geo
        self._buffers = []
        self.unified_l1 = bool(geo["l1_unified"])
        self.nested_levels = int(geo["nested_levels"])
        sets, ways = _sets_ways(geo, "l1_4k")
        self._init_array(&self.l1_4k, sets, ways)
        if self.unified_l1:
            self._init_array(&self.l1_2m, 1, 1)
        else:
            sets, ways = _sets_ways(geo, "l1_2m")
            self._init_array(&self.l1_2m, sets, ways)
        sets, ways = _sets_ways(geo, "stlb")
        self._init_array(&self.stlb, sets, ways)
        for i in range(3):
            sets, ways = _psc_sets_ways(geo["psc"][i])
            self._init_array(&self.psc[i], sets, max(1, ways))
            if ways == 0:
                self.psc[i].ways = 0
        if not 0 <= pcid <= PCID_MAX:
            raise ValueError(f"pcid {pcid} outside 0..{PCID_MAX}")
        self.pcid = pcid
        self.clock = 0
        self.costs = costs if costs is not None else CostModel()
        self.reset_counters()

    cdef _init_array(self, tlb_array_t* a, int sets, int ways):
        tag = np.zeros(sets * ways, dtype=np.uint64)
        data = np.zeros(sets * ways, dtype=np.uint64)
        stamp = np.zeros(sets * ways, dtype=np.uint64)
        self._buffers += [tag, data, stamp]
        a.sets = sets
        a.ways = ways
        a.set_mask = (sets - 1) if (sets & (sets - 1)) == 0 else 0
        a.tag = <uint64_t*>cnp.PyArray_DATA(tag)
        a.data = <uint64_t*>cnp.PyArray_DATA(data)
        a.stamp = <uint64_t*>cnp.PyArray_DATA(stamp)
        a.nvalid = 0
        a.nhuge = 0
        a.nglobal = 0

    @property
    def geometry(self) -> dict:
        return dict(self._geometry)

    @property
    def costs(self) -> CostModel:
        return self._costmodel

    @costs.setter
    def costs(self, CostModel c):
        if c is None:
            raise ValueError("costs must be a CostModel")
        self._costmodel = c
        self.cost = c.c

    # -------------------------------------------------------------- counters
    def reset_counters(self):
        memset(self.counters, 0, sizeof(self.counters))
        memset(self.cycles, 0, sizeof(self.cycles))

    @property
    def counters(self) -> np.ndarray:
        """A copy of the event counters (names in mmucore.COUNTER_NAMES)."""
        return _copy_counters(self)

    @property
    def cycles(self) -> np.ndarray:
        """Cycles accumulated per kind (names in mmucore.CYCLE_NAMES)."""
        return _copy_cycles(self)

    def counter_dict(self) -> dict:
        c = self.counters
        d = {n: int(c[i]) for i, n in enumerate(COUNTER_NAMES)}
        cy = self.cycles
        d.update({"cycles_" + n: float(cy[i]) for i, n in enumerate(CYCLE_NAMES)})
        return d

    def add_cycles(self, str kind, double cycles):
        """Charge cycles of a hardware event done outside the loops (used by the kernel model)."""
        self.cycles[CYCLE_NAMES.index(kind)] += cycles

    # -------------------------------------------------------------- state
    @property
    def state(self) -> dict:
        """A copy of everything the TLB holds, as numpy arrays and scalars: what pickle stores."""
        cdef tlb_array_t* a
        cdef int i
        arrays = {}
        for i in range(6):
            a = _array_at(self, i)
            arrays[ARRAY_NAMES[i]] = {
                "tag": self._buffers[3 * i].copy(), "data": self._buffers[3 * i + 1].copy(),
                "stamp": self._buffers[3 * i + 2].copy(),
                "nvalid": a.nvalid, "nhuge": a.nhuge, "nglobal": a.nglobal}
        # costs: the CostModel's fields; cost: what the loops charge (copied when set)
        return {"geometry": dict(self._geometry), "costs": self._costmodel.as_dict(),
                "cost": self.cost, "pcid": self.pcid, "clock": self.clock,
                "last_fault_tlb": bool(self.last_fault_tlb), "counters": _copy_counters(self),
                "cycles": _copy_cycles(self), "arrays": arrays}

    @state.setter
    def state(self, dict value):
        """Restore a state of a TLB of this geometry; all is checked before anything changes."""
        cdef tlb_array_t* a
        cdef int i
        _check_keys(value, _STATE_KEYS, "TLB state")
        if value["geometry"] != self._geometry:
            raise ValueError(f"TLB state: geometry {value['geometry']!r} is not this TLB's "
                             f"{self._geometry!r}")
        cdef int pcid = value["pcid"]
        if not 0 <= pcid <= PCID_MAX:
            raise ValueError(f"TLB state: pcid {pcid} outside 0..{PCID_MAX}")
        cdef uint64_t clock = u64(value["clock"], "TLB state: clock")
        counters = _state_array(value["counters"], np.uint64, (N_COUNTERS,), "counters")
        cycles = _state_array(value["cycles"], np.float64, (N_CYCLE_KINDS,), "cycles")
        _check_keys(value["cost"], COST_FIELDS, "TLB state: cost")
        cdef cost_t cost = value["cost"]
        costs = _rebuild_cost(value["costs"])
        arrays = value["arrays"]
        _check_keys(arrays, ARRAY_NAMES, "TLB state: arrays")
        checked = []
        for i in range(6):
            checked.append(_checked_array_state(arrays[ARRAY_NAMES[i]], self._buffers[3 * i],
                                                ARRAY_NAMES[i]))
        # everything is valid: copy in place (the C structs keep pointing at the same buffers)
        for i in range(6):
            a = _array_at(self, i)
            tag, data, stamp, counts = checked[i]
            np.copyto(self._buffers[3 * i], tag)
            np.copyto(self._buffers[3 * i + 1], data)
            np.copyto(self._buffers[3 * i + 2], stamp)
            a.nvalid, a.nhuge, a.nglobal = counts
        self._costmodel = costs
        self.cost = cost
        self.pcid = pcid
        self.clock = clock
        self.last_fault_tlb = bool(value["last_fault_tlb"])
        memcpy(self.counters, cnp.PyArray_DATA(counters), sizeof(self.counters))
        memcpy(self.cycles, cnp.PyArray_DATA(cycles), sizeof(self.cycles))

    def __reduce__(self):
        """Pickle as a new TLB of the same geometry plus its state (exact round trip)."""
        return (TLB, (self.geometry,), self.state)

    def __setstate__(self, state):
        """Unpickle: apply the stored state."""
        self.state = state

    # -------------------------------------------------------------- operations
    def _pcid_arg(self, pcid):
        if pcid is None:
            return self.pcid
        if not 0 <= pcid <= PCID_MAX:
            raise ValueError(f"pcid {pcid} outside 0..{PCID_MAX}")
        return pcid

    def invlpg(self, va, pcid=None):
        """INVLPG va: drop the 4K and covering 2M entries of the PCID (globals too) and
        every PSC entry of that PCID."""
        cdef uint64_t c_va = u64(va, "invlpg: va")
        c_invlpg(self, c_va, self._pcid_arg(pcid))

    def invpcid_single(self, va, int pcid):
        """INVPCID type 0: drop va's non-global entries of pcid and pcid's PSC entries."""
        cdef uint64_t c_va = u64(va, "invpcid_single: va")
        c_invpcid_single(self, c_va, self._pcid_arg(pcid))

    def flush_pcid(self, pcid=None):
        """CR3 write without NOFLUSH (or INVPCID type 1): drop pcid's non-global entries."""
        c_flush_pcid(self, self._pcid_arg(pcid))

    def flush_all(self, bint include_global=True):
        """Drop every entry of every PCID (INVPCID type 2 / CR4.PGE toggle)."""
        c_flush_everything(self, include_global)

    def switch_pcid(self, int pcid, bint flush):
        """Write CR3 with a new PCID; flush=False sets the NOFLUSH bit."""
        self._pcid_arg(pcid)
        c_write_cr3(self, pcid, flush)

    def tlbi_va(self, start, uint64_t nr, int stride_shift, int asid):
        """The receiving side of arm64 TLBI VAE1IS / VALE1IS (and the range forms):
        drop the entries of asid covering nr strides of 1 << stride_shift bytes from
        start, and asid's walk-cache entries (the PSCs; kept by a last-level TLBI on
        real hardware, dropped here: a few more refills, never a stale entry).  Nothing
        is counted or charged on this TLB: the issuing CPU pays (pysim.arch.arm64)."""
        cdef uint64_t va = u64(start, "tlbi_va: start") & VA48
        cdef uint64_t i, step = <uint64_t>1 << stride_shift
        if not 12 <= stride_shift <= 30:
            raise ValueError(f"tlbi_va: stride_shift {stride_shift} outside 12..30")
        self._pcid_arg(asid)
        with nogil:
            tlbi_va_loop(self, va, nr, step, asid)

    def tlbi_asid(self, int asid):
        """The receiving side of arm64 TLBI ASIDE1IS: drop every entry of asid."""
        self._pcid_arg(asid)
        c_invlpgb_pcid(self, asid)

    def fill(self, va, entry, bint huge=False, pcid=None):
        """Insert a translation into the STLB and L1 (as a walk would), for tests and tools.
        entry is a leaf entry (its permission bits and frame are what gets cached)."""
        cdef uint64_t c_va = u64(va, "fill: va")
        cdef uint64_t c_entry = u64(entry, "fill: entry")
        if not c_entry & MMU_P:
            raise ValueError("fill: a not-present entry is never cached")
        c_fill(self, c_va & VA48, c_entry, huge, self._pcid_arg(pcid))

    def probe(self, va, pcid=None):
        """What the TLB holds for va, without side effects: (level, entry, huge) or None.
        level is 'l1' or 'stlb'; entry is the cached frame and permission bits."""
        cdef uint64_t c_va = u64(va, "probe: va")
        cdef uint64_t p = self._pcid_arg(pcid)
        cdef int64_t s
        cdef uint64_t v4 = (c_va & VA48) >> 12, v2 = (c_va & VA48) >> 21
        for name, arr in (("l1", 0), ("stlb", 1)):
            for huge in (False, True):
                s = self._find(arr, huge, v2 if huge else v4, p)
                if s >= 0:
                    return (name, int(self._data(arr, huge, s)), huge)
        return None

    cdef tlb_array_t* _array_ptr(self, int arr, bint huge):
        if arr == 1:
            return &self.stlb
        if self.unified_l1 or not huge:
            return &self.l1_4k
        return &self.l1_2m

    def _find(self, int arr, bint huge, uint64_t vpn, uint64_t pcid):
        cdef tlb_array_t* a = self._array_ptr(arr, huge)
        cdef uint64_t h = T_HUGE if huge else 0
        return array_find(a, vpn, mk_tag(vpn, pcid, T_VALID | h),
                          mk_tag(vpn, 0, T_VALID | T_GLOBAL | h))

    def _data(self, int arr, bint huge, int64_t s):
        return self._array_ptr(arr, huge).data[s]

    def entries(self) -> dict:
        """Every valid entry as numpy columns: level (0 L1, 1 STLB, 2-4 PSC pml4/pdpt/pde),
        va, pcid, huge, global, data."""
        cols = {k: [] for k in ("level", "va", "pcid", "huge", "global", "data")}
        cdef tlb_array_t* a
        cdef uint64_t i, t
        arrays = [(0, 0), (0, 1), (1, 0)] if not self.unified_l1 else [(0, 0), (1, 0)]
        for level, which in arrays + [(2, 2), (3, 3), (4, 4)]:
            if level == 0:
                a = &self.l1_4k if which == 0 else &self.l1_2m
            elif level == 1:
                a = &self.stlb
            else:
                a = &self.psc[level - 2]
            for i in range(<uint64_t>a.sets * <uint64_t>a.ways):
                t = a.tag[i]
                if not (t & T_VALID):
                    continue
                cols["level"].append(level)
                if level >= 2:
                    shift = (39, 30, 21)[level - 2]
                    cols["va"].append(int(t >> 15) << shift)
                    cols["huge"].append(False)
                else:
                    cols["va"].append(int(t >> 15) << (21 if t & T_HUGE else 12))
                    cols["huge"].append(bool(t & T_HUGE))
                cols["pcid"].append(int((t >> 3) & 0xFFF))
                cols["global"].append(bool(t & T_GLOBAL))
                cols["data"].append(int(a.data[i]))
        return {
            "level": np.array(cols["level"], dtype=np.int8),
            "va": np.array(cols["va"], dtype=np.uint64),
            "pcid": np.array(cols["pcid"], dtype=np.int16),
            "huge": np.array(cols["huge"], dtype=bool),
            "global": np.array(cols["global"], dtype=bool),
            "data": np.array(cols["data"], dtype=np.uint64),
        }

    def occupancy(self) -> dict:
        """Valid entries per array."""
        return {"l1_4k": self.l1_4k.nvalid, "l1_2m": 0 if self.unified_l1 else self.l1_2m.nvalid,
                "stlb": self.stlb.nvalid, "psc_pml4": self.psc[0].nvalid,
                "psc_pdpt": self.psc[1].nvalid, "psc_pde": self.psc[2].nvalid}

    def check(self, PageTable pt, pcid=None):
        """Safety check: TLB entries of pcid, and global ones, that grant more than pt now
        does.  Returns a list of (va, huge, cached_entry, pte, reason)."""
        cdef uint64_t p = self._pcid_arg(pcid)
        out = []
        arrays = [0, 1, 2] if not self.unified_l1 else [0, 2]
        cdef tlb_array_t* a
        cdef uint64_t i, t, data, va
        for which in arrays:
            a = &self.l1_4k if which == 0 else (&self.l1_2m if which == 1 else &self.stlb)
            for i in range(<uint64_t>a.sets * <uint64_t>a.ways):
                t = a.tag[i]
                if not (t & T_VALID):
                    continue
                if not (t & T_GLOBAL) and ((t >> 3) & 0xFFF) != p:
                    continue
                data = a.data[i]
                if t & T_HUGE:
                    va = (t >> 15) << 21
                    for k in range(512):
                        r = _stale_reason(pt, va + (k << 12), data + (k << 12))
                        if r is not None:
                            out.append((va, True, int(data), r[0], r[1]))
                            break
                else:
                    va = (t >> 15) << 12
                    r = _stale_reason(pt, va, data)
                    if r is not None:
                        out.append((va, False, int(data), r[0], r[1]))
        return out


cdef tlb_array_t* _array_at(TLB t, int i) noexcept:
    """The i-th array in ARRAY_NAMES order (the order of TLB._buffers)."""
    if i == 0:
        return &t.l1_4k
    if i == 1:
        return &t.l1_2m
    if i == 2:
        return &t.stlb
    return &t.psc[i - 3]


def _check_keys(d, keys, str what):
    """A state dict must have exactly these keys: name what is missing or extra."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} must be a dict, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    extra = sorted(set(d) - set(keys))
    if missing or extra:
        raise ValueError(f"{what}: missing {missing}, unknown {extra}; "
                         f"expected exactly {', '.join(keys)}")


def _state_array(x, dtype, shape, str what):
    """A state array of this dtype and shape, as a C-contiguous array (a copy if needed)."""
    if not isinstance(x, np.ndarray) or x.dtype != dtype or x.shape != shape:
        raise ValueError(f"TLB state: {what} must be a {np.dtype(dtype)} array of shape "
                         f"{shape}, got {x!r:.80}")
    return np.ascontiguousarray(x)


def _checked_array_state(d, buf, str name):
    """One array's (tag, data, stamp, counts), checked against its buffer and its tags."""
    _check_keys(d, _ARRAY_KEYS, f"TLB state: arrays[{name!r}]")
    tag = _state_array(d["tag"], np.uint64, buf.shape, f"{name} tag")
    data = _state_array(d["data"], np.uint64, buf.shape, f"{name} data")
    stamp = _state_array(d["stamp"], np.uint64, buf.shape, f"{name} stamp")
    valid = (tag & T_VALID) != 0
    if np.any(tag[~valid]):
        raise ValueError(f"TLB state: {name} has an invalid tag that is not 0")
    counts = (int(valid.sum()), int(((tag & T_HUGE) != 0).sum()),
              int(((tag & T_GLOBAL) != 0).sum()))
    if counts != (d["nvalid"], d["nhuge"], d["nglobal"]):
        raise ValueError(f"TLB state: {name} counts (nvalid, nhuge, nglobal) = "
                         f"{(d['nvalid'], d['nhuge'], d['nglobal'])} but its tags hold {counts}")
    return tag, data, stamp, counts


cdef cnp.ndarray _copy_counters(TLB t):
    """The counters as a new uint64 array: one allocation and one memcpy."""
    cdef cnp.npy_intp n = N_COUNTERS
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_UINT64, 0)
    memcpy(cnp.PyArray_DATA(out), t.counters, sizeof(t.counters))
    return out


cdef cnp.ndarray _copy_cycles(TLB t):
    """The cycle sums as a new float64 array: one allocation and one memcpy."""
    cdef cnp.npy_intp n = N_CYCLE_KINDS
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_FLOAT64, 0)
    memcpy(cnp.PyArray_DATA(out), t.cycles, sizeof(t.cycles))
    return out


def _stale_reason(PageTable pt, uint64_t va, uint64_t cached):
    """Why a cached translation of va grants more than the page table does, or None."""
    if va >= (1 << 47):
        return None
    cdef int shift = 0
    cdef uint64_t* slot = pt.leaf_slot(va, &shift)
    cdef uint64_t e = slot[0] if slot != NULL else 0
    cdef uint64_t pfn
    if not (e & MMU_P):
        return (int(e), "not present in the page table")
    pfn = c_pte_pfn(e) if shift == 12 else c_pmd_pfn(e) + ((va >> 12) & 511)
    if pfn != c_pte_pfn(cached):
        return (int(e), f"stale frame 0x{c_pte_pfn(cached):x}, page table has 0x{pfn:x}")
    if (cached & MMU_RW) and not (e & MMU_RW):
        return (int(e), "writable in the TLB, read-only in the page table")
    if (cached & MMU_US) and not (e & MMU_US):
        return (int(e), "user-accessible in the TLB, supervisor-only in the page table")
    if not (cached & MMU_NX) and (e & MMU_NX):
        return (int(e), "executable in the TLB, NX in the page table")
    if (cached & MMU_D) and (cached & MMU_RW) and not (e & MMU_D):
        return (int(e), "dirty in the TLB, clean in the page table (writes would not set D)")
    return None


# ------------------------------------------------------------------ C operations
cdef inline void drop_va(TLB t, uint64_t va, uint64_t pcid, bint include_global) noexcept nogil:
    """Remove the 4K and 2M entries covering va for pcid from every TLB array."""
    cdef uint64_t v4 = (va & VA48) >> 12, v2 = (va & VA48) >> 21
    array_drop_key(&t.l1_4k, v4, mk_tag(v4, pcid, T_VALID))
    array_drop_key(&t.stlb, v4, mk_tag(v4, pcid, T_VALID))
    if t.unified_l1:
        array_drop_key(&t.l1_4k, v2, mk_tag(v2, pcid, T_VALID | T_HUGE))
    else:
        array_drop_key(&t.l1_2m, v2, mk_tag(v2, pcid, T_VALID | T_HUGE))
    array_drop_key(&t.stlb, v2, mk_tag(v2, pcid, T_VALID | T_HUGE))
    if include_global:
        array_drop_key(&t.l1_4k, v4, mk_tag(v4, 0, T_VALID | T_GLOBAL))
        array_drop_key(&t.stlb, v4, mk_tag(v4, 0, T_VALID | T_GLOBAL))
        if t.unified_l1:
            array_drop_key(&t.l1_4k, v2, mk_tag(v2, 0, T_VALID | T_GLOBAL | T_HUGE))
        else:
            array_drop_key(&t.l1_2m, v2, mk_tag(v2, 0, T_VALID | T_GLOBAL | T_HUGE))
        array_drop_key(&t.stlb, v2, mk_tag(v2, 0, T_VALID | T_GLOBAL | T_HUGE))


cdef inline void drop_psc_pcid(TLB t, uint64_t pcid) noexcept nogil:
    cdef int i
    for i in range(3):
        array_drop_pcid(&t.psc[i], pcid, False)


cdef inline void drop_psc_va(TLB t, uint64_t va, uint64_t pcid) noexcept nogil:
    cdef uint64_t v
    v = (va & VA48) >> 39
    array_drop_key(&t.psc[0], v, mk_tag(v, pcid, T_VALID))
    v = (va & VA48) >> 30
    array_drop_key(&t.psc[1], v, mk_tag(v, pcid, T_VALID))
    v = (va & VA48) >> 21
    array_drop_key(&t.psc[2], v, mk_tag(v, pcid, T_VALID))


cdef void c_invlpg(TLB t, uint64_t va, uint64_t pcid) noexcept nogil:
    drop_va(t, va, pcid, True)
    drop_psc_pcid(t, pcid)
    t.counters[C_INVLPG] += 1
    t.cycles[Y_INVALIDATE] += t.cost.invlpg


cdef void c_invlpg_remote(TLB t, uint64_t va, uint64_t pcid) noexcept nogil:
    """INVLPG as a flush IPI's handler runs it on its CPU: the same invalidation and
    count as c_invlpg, at the remote price (measured lower than a local one in a KVM
    guest, issue 13)."""
    drop_va(t, va, pcid, True)
    drop_psc_pcid(t, pcid)
    t.counters[C_INVLPG] += 1
    t.cycles[Y_INVALIDATE] += t.cost.invlpg_remote


cdef void c_invpcid_single(TLB t, uint64_t va, uint64_t pcid) noexcept nogil:
    drop_va(t, va, pcid, False)
    drop_psc_pcid(t, pcid)
    t.counters[C_INVPCID_SINGLE] += 1
    t.cycles[Y_INVALIDATE] += t.cost.invpcid_single


cdef void c_flush_pcid(TLB t, uint64_t pcid) noexcept nogil:
    array_drop_pcid(&t.l1_4k, pcid, True)
    if not t.unified_l1:
        array_drop_pcid(&t.l1_2m, pcid, True)
    array_drop_pcid(&t.stlb, pcid, True)
    drop_psc_pcid(t, pcid)
    t.counters[C_FLUSH_PCID] += 1
    t.cycles[Y_INVALIDATE] += t.cost.cr3_flush


cdef void c_write_cr3(TLB t, int pcid, bint flush) noexcept nogil:
    """A CR3 write for pcid: flush drops the PCID's non-global entries, else NOFLUSH."""
    t.pcid = pcid
    if flush:
        c_flush_pcid(t, pcid)
    else:
        t.counters[C_CR3_NOFLUSH] += 1
        t.cycles[Y_INVALIDATE] += t.cost.cr3_noflush


cdef void c_flush_everything(TLB t, bint include_global) noexcept nogil:
    cdef uint64_t every = <uint64_t>0xFFFFFFFFFFFFFFFF
    array_drop_pcid(&t.l1_4k, every, not include_global)
    if not t.unified_l1:
        array_drop_pcid(&t.l1_2m, every, not include_global)
    array_drop_pcid(&t.stlb, every, not include_global)
    drop_psc_pcid(t, every)
    t.counters[C_FLUSH_ALL] += 1
    t.cycles[Y_INVALIDATE] += t.cost.flush_global


cdef void c_flush_nonglobal(TLB t) noexcept nogil:
    """A CR3 write on a CPU without PCIDs: every non-global entry goes, whatever its tag
    (the model's PCID tags are only labels there), and every PSC entry."""
    c_flush_pcid(t, <uint64_t>0xFFFFFFFFFFFFFFFF)      # every PCID, globals kept


# ------------------------------------------------------------------ broadcast receipt
# AMD INVLPGB invalidates on every CPU of the system; the targets execute nothing, so
# these drop entries (non-global ones, and the PCID's paging-structure caches: the
# kernel never passes INVLPGB_FLAG_FINAL_ONLY) without counting an instruction or
# charging cycles here.  The issuer's INVLPGB and TLBSYNC are counted and charged by
# mmucore.tlbstate.
cdef void c_invlpgb_va(TLB t, uint64_t va, uint64_t pcid) noexcept nogil:
    """A broadcast invalidation of va's non-global entries of pcid reaching this TLB."""
    drop_va(t, va, pcid, False)
    drop_psc_pcid(t, pcid)


cdef void c_invlpgb_pcid(TLB t, uint64_t pcid) noexcept nogil:
    """A broadcast invalidation of every non-global entry of pcid (~0: every PCID)."""
    array_drop_pcid(&t.l1_4k, pcid, True)
    if not t.unified_l1:
        array_drop_pcid(&t.l1_2m, pcid, True)
    array_drop_pcid(&t.stlb, pcid, True)
    drop_psc_pcid(t, pcid)


cdef void tlbi_va_loop(TLB t, uint64_t va, uint64_t nr, uint64_t step,
                       uint64_t asid) noexcept nogil:
    """nr broadcast invalidations by VA of asid, step bytes apart (TLB.tlbi_va); a
    2M-or-larger step also drops the 4K entries inside each step (a block TLBI names
    the whole block)."""
    cdef uint64_t i, j, sub = step >> 12 if step > 4096 else 1
    if sub > 512:
        sub = 512
    for i in range(nr):
        if sub == 1:
            c_invlpgb_va(t, va + i * step, asid)
        else:
            for j in range(sub):
                c_invlpgb_va(t, va + i * step + (j << 12), asid)


cdef inline void c_fill(TLB t, uint64_t va, uint64_t entry, bint huge,
                        uint64_t pcid) noexcept nogil:
    """Fill STLB and L1 with the translation of va (a walk's result)."""
    cdef uint64_t vpn, key, data, flags = T_VALID
    cdef tlb_array_t* l1
    if huge:
        vpn = va >> 21
        flags |= T_HUGE
        data = (c_pmd_pfn(entry) << 12) | (entry & PERM_BITS)
        l1 = &t.l1_4k if t.unified_l1 else &t.l1_2m
    else:
        vpn = va >> 12
        data = (entry & MMU_PFN_MASK) | (entry & PERM_BITS)
        l1 = &t.l1_4k
    if entry & MMU_G:
        key = mk_tag(vpn, 0, flags | T_GLOBAL)
    else:
        key = mk_tag(vpn, pcid, flags)
    t.clock += 1
    array_fill(&t.stlb, vpn, key, data, t.clock, &t.counters[C_STLB_EVICTIONS])
    array_fill(l1, vpn, key, data, t.clock, &t.counters[C_L1_EVICTIONS])


cdef inline int permission(uint64_t e, int kind, bint user) noexcept nogil:
    """Fault class of `kind` through effective entry e (0 when allowed)."""
    if user and not (e & MMU_US):
        return F_USER
    if kind == K_WRITE and not (e & MMU_RW):
        return F_WRITE
    if kind == K_FETCH and (e & MMU_NX):
        return F_NX
    return F_NONE


cdef inline int raise_pf(TLB t, uint64_t va, int cls, bint from_tlb) noexcept nogil:
    """#PF: drop va's TLB and PSC entries for the current PCID, count, return the class."""
    drop_va(t, va, t.pcid, True)
    drop_psc_va(t, va, t.pcid)
    t.counters[C_FAULTS] += 1
    t.counters[C_FAULTS + cls] += 1
    t.last_fault_tlb = from_tlb
    if from_tlb:
        t.counters[C_FAULT_FROM_TLB] += 1
    t.cycles[Y_FAULT_HW] += t.cost.fault_hw
    return cls


cdef int walk(TLB t, PageTable pt, uint64_t va, int kind, bint user) noexcept nogil:
    """Page walk from the deepest PSC hit; sets A/D, fills the TLB, or raises #PF."""
    cdef uint64_t pcid = <uint64_t>t.pcid
    cdef uint64_t e = 0, eff, v, key
    cdef uint64_t* tbl = NULL
    cdef uint64_t* slot
    cdef int level, start_level = 4, refs = 0, i, cls
    cdef int64_t s
    cdef uint64_t acc_rw_us = MMU_RW | MMU_US, acc_nx = 0
    cdef uint64_t psc_evictions = 0
    t.counters[C_WALKS] += 1
    # deepest PSC hit: PDE (level 1 left), PDPTE (2 left), PML4E (3 left)
    for i in range(2, -1, -1):
        if t.psc[i].ways == 0 or t.psc[i].nvalid == 0:
            continue
        v = va >> (39 - 9 * i)
        key = mk_tag(v, pcid, T_VALID)
        s = array_find(&t.psc[i], v, key, key)
        if s >= 0:
            t.clock += 1
            t.psc[i].stamp[s] = t.clock
            e = t.psc[i].data[s]
            acc_rw_us = e & (MMU_RW | MMU_US)
            acc_nx = e & MMU_NX
            tbl = pt_table(pt, e)
            start_level = 3 - i
            t.counters[C_PSC_PML4_HITS + i] += 1
            break
    if start_level == 4:
        t.counters[C_PSC_MISSES] += 1
        tbl = pt.tables[pt.root]
    level = start_level
    while True:
        slot = &tbl[(va >> (3 + 9 * level)) & 511]
        e = slot[0]
        refs += 1
        if not (e & MMU_P):
            cls = raise_pf(t, va, F_NOT_PRESENT, False)
            break
        acc_rw_us &= e
        acc_nx |= e & MMU_NX
        if level == 1 or (level == 2 and (e & MMU_PSE)):
            eff = (e & ~(MMU_RW | MMU_US | MMU_NX)) | acc_rw_us | acc_nx
            cls = permission(eff, kind, user)
            if cls != F_NONE:
                cls = raise_pf(t, va, cls, False)
                break
            e |= MMU_A
            if kind == K_WRITE:
                e |= MMU_D
            slot[0] = e
            eff |= e & (MMU_A | MMU_D)
            c_fill(t, va, eff, level == 2, pcid)
            cls = F_NONE
            break
        # a non-leaf entry: mark accessed, cache it in the PSC of its level, descend
        slot[0] = e | MMU_A
        i = 4 - level          # level 4 (PML4E) -> psc[0], 3 -> psc[1], 2 -> psc[2]
        if t.psc[i].ways:
            v = va >> (39 - 9 * i)
            t.clock += 1
            array_fill(&t.psc[i], v, mk_tag(v, pcid, T_VALID),
                       (e & MMU_PFN_MASK) | acc_rw_us | acc_nx, t.clock, &psc_evictions)
        tbl = pt_table(pt, e)
        level -= 1
    if t.nested_levels:
        refs = refs * (t.nested_levels + 1) + t.nested_levels
    t.counters[C_WALK_REFS] += refs
    t.counters[C_PSC_EVICTIONS] += psc_evictions
    t.cycles[Y_WALK] += t.cost.walk_base + refs * t.cost.walk_ref
    return cls


cdef int c_access(TLB t, PageTable pt, uint64_t va, int kind, bint user) noexcept nogil:
    """One access: L1, STLB, walk; returns the fault class (0 = done)."""
    cdef uint64_t v = va & VA48
    cdef uint64_t v4 = v >> 12, v2 = v >> 21
    cdef uint64_t pcid = <uint64_t>t.pcid
    cdef int64_t s
    cdef uint64_t data
    cdef tlb_array_t* l1
    cdef bint huge = False
    cdef int cls
    t.counters[C_ACCESSES] += 1
    t.counters[C_READS + kind] += 1
    t.clock += 1
    # L1
    s = array_find(&t.l1_4k, v4, mk_tag(v4, pcid, T_VALID), mk_tag(v4, 0, T_VALID | T_GLOBAL))
    l1 = &t.l1_4k
    if s < 0:
        l1 = &t.l1_4k if t.unified_l1 else &t.l1_2m
        if l1.nhuge:
            s = array_find(l1, v2, mk_tag(v2, pcid, T_VALID | T_HUGE),
                           mk_tag(v2, 0, T_VALID | T_GLOBAL | T_HUGE))
            huge = True
    if s >= 0:
        t.counters[C_L1_HITS] += 1
        t.cycles[Y_TLB_HIT] += t.cost.l1_hit
        l1.stamp[s] = t.clock
        data = l1.data[s]
    else:
        t.counters[C_L1_MISSES] += 1
        huge = False
        s = array_find(&t.stlb, v4, mk_tag(v4, pcid, T_VALID), mk_tag(v4, 0, T_VALID | T_GLOBAL))
        if s < 0 and t.stlb.nhuge:
            s = array_find(&t.stlb, v2, mk_tag(v2, pcid, T_VALID | T_HUGE),
                           mk_tag(v2, 0, T_VALID | T_GLOBAL | T_HUGE))
            huge = True
        if s < 0:
            t.counters[C_STLB_MISSES] += 1
            return walk(t, pt, v, kind, user)
        t.counters[C_STLB_HITS] += 1
        t.cycles[Y_TLB_HIT] += t.cost.stlb_hit
        t.stlb.stamp[s] = t.clock
        data = t.stlb.data[s]
        l1 = &t.l1_4k if (t.unified_l1 or not huge) else &t.l1_2m
        array_fill(l1, v2 if huge else v4, t.stlb.tag[s], data, t.clock,
                   &t.counters[C_L1_EVICTIONS])
    cls = permission(data, kind, user)
    if cls != F_NONE:
        return raise_pf(t, v, cls, True)
    if kind == K_WRITE and not (data & MMU_D):
        # the cached entry is clean: the CPU re-walks to set D in the page table
        t.counters[C_DIRTY_WALKS] += 1
        return walk(t, pt, v, kind, user)
    return F_NONE


def access(PageTable pt, TLB tlb, va, int kind=READ, bint user=True) -> int:
    """One access through tlb against pt; returns the fault class (FAULT_NONE when done)."""
    cdef uint64_t c_va = u64(va, "access: va")
    if kind not in (READ, WRITE, FETCH):
        raise ValueError(f"access kind {kind} unknown: 0 read, 1 write, 2 fetch")
    if c_va >= (1 << 47) and user:
        raise ValueError(f"user access to 0x{c_va:x} beyond the 47-bit user address space")
    return c_access(tlb, pt, c_va, kind, user)


class StreamResult:
    """What one access_stream call did: counts of this call and where it stopped."""
    __slots__ = ("accesses", "l1_hits", "stlb_hits", "walks", "faults", "stopped_at",
                 "fault_class", "fault_from_tlb", "fault_va", "fault_kind", "cycles")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def __repr__(self):
        return ("StreamResult(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
                + ")")


def access_stream(PageTable pt, TLB tlb, vas, kinds, Py_ssize_t start=0, bint user=True,
                  bint checked=False):
    """Run accesses vas[start:] (uint64) with kinds (uint8: 0 read, 1 write, 2 fetch) on one
    CPU's TLB, all in C, stopping at the first access that faults.

    stopped_at is that access's index (len(vas) when none faulted); the kernel model
    handles the fault and calls again with start=stopped_at to retry it.  The values of
    vas[start:] and kinds[start:] are scanned before the loop runs; checked=True skips
    that scan when the caller already validated these same arrays (a retry), so a stream
    with many faults is not rescanned after each one.  Types and shapes are always checked.
    """
    if not isinstance(vas, np.ndarray) or vas.dtype != np.uint64 or vas.ndim != 1:
        raise ValueError("access_stream: vas must be a 1-D numpy uint64 array")
    if not isinstance(kinds, np.ndarray) or kinds.dtype != np.uint8 or kinds.ndim != 1:
        raise ValueError("access_stream: kinds must be a 1-D numpy uint8 array")
    if vas.shape[0] != kinds.shape[0]:
        raise ValueError(f"access_stream: {vas.shape[0]} addresses but {kinds.shape[0]} kinds")
    cdef Py_ssize_t n = vas.shape[0]
    if not 0 <= start <= n:
        raise ValueError(f"access_stream: start {start} outside 0..{n}")
    if n > start and not checked:
        if kinds[start:].max() > 2:
            raise ValueError("access_stream: kinds must be 0 (read), 1 (write) or 2 (fetch)")
        if user and vas[start:].max() >= (1 << 47):
            raise ValueError("access_stream: an address is beyond the 47-bit user space")
    cdef const uint64_t[::1] va = np.ascontiguousarray(vas)
    cdef const uint8_t[::1] kd = np.ascontiguousarray(kinds)
    cdef uint64_t c0_acc = tlb.counters[C_ACCESSES], c0_l1 = tlb.counters[C_L1_HITS]
    cdef uint64_t c0_stlb = tlb.counters[C_STLB_HITS], c0_walk = tlb.counters[C_WALKS]
    cdef double y0 = 0.0
    cdef int k
    for k in range(N_CYCLE_KINDS):
        y0 += tlb.cycles[k]
    cdef Py_ssize_t i = start
    cdef int cls = F_NONE
    cdef bint bad_kind = False
    with nogil:
        while i < n:
            if kd[i] > 2:                 # only reachable with checked=True: stop, never index
                bad_kind = True
                break
            cls = c_access(tlb, pt, va[i], kd[i], user)
            if cls != F_NONE:
                break
            i += 1
    if bad_kind:
        raise ValueError(f"access_stream: kinds[{i}] = {kd[i]} is not 0 (read), 1 (write) or "
                         f"2 (fetch); accesses {start}..{i - 1} ran (checked=True skipped the "
                         f"scan that rejects this before running anything)")
    cdef double y1 = 0.0
    for k in range(N_CYCLE_KINDS):
        y1 += tlb.cycles[k]
    return StreamResult(
        accesses=int(tlb.counters[C_ACCESSES] - c0_acc),
        l1_hits=int(tlb.counters[C_L1_HITS] - c0_l1),
        stlb_hits=int(tlb.counters[C_STLB_HITS] - c0_stlb),
        walks=int(tlb.counters[C_WALKS] - c0_walk),
        faults=int(cls != F_NONE),
        stopped_at=int(i),
        fault_class=int(cls),
        fault_from_tlb=bool(cls != F_NONE and tlb.last_fault_tlb),
        fault_va=int(va[i]) if cls != F_NONE else None,
        fault_kind=int(kd[i]) if cls != F_NONE else None,
        cycles=y1 - y0,
    )
