"""Python access to one mmu_gather's state; the kernel-facing API lives in
pysim.mm.mmu_gather, and gather.pxd explains the page and table batches."""
cimport cython
from libc.stdint cimport uint64_t, uint32_t

from mmucore.pte cimport u64

TASK_SIZE = GATHER_EMPTY_START

_STATE_FIELDS = ("start", "end", "fullmm", "need_flush_all", "freed_tables", "cleared_ptes",
                 "cleared_pmds", "cleared_puds", "cleared_p4ds")
_BATCH_FIELDS = ("active", "active_nr", "batch_count", "batch_reserve", "nr_pages",
                 "table_nr")
# the kernel's constants (include/asm-generic/tlb.h; see gather.pxd for the arithmetic)
GATHER_BUNDLE = MMU_GATHER_BUNDLE
GATHER_BATCH = MAX_GATHER_BATCH
GATHER_BATCH_COUNT = MAX_GATHER_BATCH_COUNT
TABLE_BATCH = MAX_TABLE_BATCH


cdef object _bad_reserve(int batch_reserve):
    """The error for a batch_reserve that is neither 0 nor 1 (kept off gather_init's
    path: bench/check_annotate.py scans it)."""
    return ValueError(f"Gather: batch_reserve must be 0 (up to 6.8) or 1 (6.9 on), "
                      f"got {batch_reserve}")


cdef int gather_init(Gather self, bint fullmm, int batch_reserve) except -1:
    """__tlb_gather_mmu()'s state part: the bits, an empty range, empty batches (what
    Gather(fullmm, batch_reserve) starts with), batch_reserve checked."""
    if batch_reserve != 0 and batch_reserve != 1:
        raise _bad_reserve(batch_reserve)
    self.g.fullmm = fullmm
    self.g.need_flush_all = False
    c_tlb_reset_range(&self.g)
    c_tlb_init_batches(&self.g, batch_reserve)
    return 0


@cython.freelist(8)
cdef class Gather:
    """One struct mmu_gather: the range and level bits, and the page and table batch
    counts.  batch_reserve is 0 for kernels up to 6.8 and 1 from 6.9 (gather.pxd)."""

    def __cinit__(self, bint fullmm=False, int batch_reserve=0):
        gather_init(self, fullmm, batch_reserve)

    # ---------------------------------------------------------------- the batches
    def remove_page(self) -> bool:
        """__tlb_remove_page(): queue one page; True when the caller must flush now."""
        return c_tlb_remove_page(&self.g)

    def batch_pages_flush(self):
        """tlb_batch_pages_flush(): free the queued pages (after the TLB flush)."""
        c_tlb_batch_pages_flush(&self.g)

    def remove_table(self) -> bool:
        """tlb_remove_table(): queue one page table; True when the table batch is full."""
        return c_tlb_remove_table(&self.g)

    def table_flush(self):
        """tlb_table_flush()'s bookkeeping: the queued tables go (to RCU)."""
        self.g.table_nr = 0

    @property
    def nr_pages(self) -> int:
        """Pages queued since the last tlb_batch_pages_flush()."""
        return self.g.nr_pages

    @property
    def table_nr(self) -> int:
        """Page tables queued since the last tlb_table_flush()."""
        return self.g.table_nr

    @property
    def batch_count(self) -> int:
        """Batches allocated beyond the on-stack bundle (at most MAX_GATHER_BATCH_COUNT)."""
        return self.g.batch_count

    @property
    def batch_reserve(self) -> int:
        return self.g.batch_reserve

    @property
    def batch_state(self) -> dict:
        """The batch counts (the `state` holds the range and bits)."""
        return dict(active=self.g.active, active_nr=self.g.active_nr,
                    batch_count=self.g.batch_count, batch_reserve=self.g.batch_reserve,
                    nr_pages=self.g.nr_pages, table_nr=self.g.table_nr)

    @batch_state.setter
    def batch_state(self, dict value):
        """Restore the batch counts, checked against the kernel's limits."""
        if set(value) != set(_BATCH_FIELDS):
            raise ValueError(f"Gather batch_state needs exactly the fields "
                             f"{', '.join(_BATCH_FIELDS)}; got {', '.join(sorted(value))}")
        if value["batch_reserve"] not in (0, 1):
            raise ValueError("Gather batch_state: batch_reserve must be 0 or 1")
        if not 0 <= value["batch_count"] <= MAX_GATHER_BATCH_COUNT \
                or not 0 <= value["active"] <= value["batch_count"] \
                or not 0 <= value["active_nr"] <= (MMU_GATHER_BUNDLE if value["active"] == 0
                                                   else MAX_GATHER_BATCH) \
                or not 0 <= value["table_nr"] < MAX_TABLE_BATCH or value["nr_pages"] < 0:
            raise ValueError(f"Gather batch_state: counts outside the kernel's limits: "
                             f"{value}")
        self.g.active = value["active"]
        self.g.active_nr = value["active_nr"]
        self.g.batch_count = value["batch_count"]
        self.g.batch_reserve = value["batch_reserve"]
        self.g.nr_pages = value["nr_pages"]
        self.g.table_nr = value["table_nr"]

    # ---------------------------------------------------------------- the range

    def reset_range(self):
        """__tlb_reset_range()."""
        c_tlb_reset_range(&self.g)

    def flush_pte_range(self, addr, size):
        """tlb_flush_pte_range(): record [addr, addr+size) of 4K entries."""
        cdef uint64_t c_addr = u64(addr, "flush_pte_range: addr")
        cdef uint64_t c_size = u64(size, "flush_pte_range: size")
        c_tlb_flush_pte_range(&self.g, c_addr, c_size)

    def flush_pmd_range(self, addr, size):
        """tlb_flush_pmd_range(): record [addr, addr+size) of 2M entries."""
        cdef uint64_t c_addr = u64(addr, "flush_pmd_range: addr")
        cdef uint64_t c_size = u64(size, "flush_pmd_range: size")
        c_tlb_flush_pmd_range(&self.g, c_addr, c_size)

    def flush_pud_range(self, addr, size):
        """tlb_flush_pud_range(): record [addr, addr+size) of 1G entries."""
        cdef uint64_t c_addr = u64(addr, "flush_pud_range: addr")
        cdef uint64_t c_size = u64(size, "flush_pud_range: size")
        c_tlb_adjust_range(&self.g, c_addr, c_size)
        self.g.cleared_puds = True

    @property
    def needs_flush(self) -> bool:
        return c_tlb_needs_flush(&self.g)

    @property
    def stride_shift(self) -> int:
        return c_tlb_get_unmap_shift(&self.g)

    @property
    def empty(self) -> bool:
        return not c_tlb_needs_flush(&self.g)

    @property
    def start(self) -> int:
        return self.g.start

    @property
    def end(self) -> int:
        return self.g.end

    @property
    def fullmm(self): return self.g.fullmm
    @fullmm.setter
    def fullmm(self, bint v): self.g.fullmm = v

    @property
    def need_flush_all(self): return self.g.need_flush_all
    @need_flush_all.setter
    def need_flush_all(self, bint v): self.g.need_flush_all = v

    @property
    def freed_tables(self): return self.g.freed_tables
    @freed_tables.setter
    def freed_tables(self, bint v): self.g.freed_tables = v

    @property
    def cleared_ptes(self): return self.g.cleared_ptes
    @property
    def cleared_pmds(self): return self.g.cleared_pmds
    @property
    def cleared_puds(self): return self.g.cleared_puds

    def as_dict(self) -> dict:
        return dict(start=self.g.start, end=self.g.end, fullmm=self.g.fullmm,
                    need_flush_all=self.g.need_flush_all, freed_tables=self.g.freed_tables,
                    cleared_ptes=self.g.cleared_ptes, cleared_pmds=self.g.cleared_pmds,
                    cleared_puds=self.g.cleared_puds)

    @property
    def state(self) -> dict:
        """Every field of the gather (as_dict plus cleared_p4ds): what pickle stores."""
        return dict(start=self.g.start, end=self.g.end, fullmm=self.g.fullmm,
                    need_flush_all=self.g.need_flush_all, freed_tables=self.g.freed_tables,
                    cleared_ptes=self.g.cleared_ptes, cleared_pmds=self.g.cleared_pmds,
                    cleared_puds=self.g.cleared_puds, cleared_p4ds=self.g.cleared_p4ds)

    @state.setter
    def state(self, dict value):
        """Restore every field from a `state` dict; a missing or unknown key is an error."""
        if set(value) != set(_STATE_FIELDS):
            raise ValueError(f"Gather state needs exactly the fields {', '.join(_STATE_FIELDS)}; "
                             f"got {', '.join(sorted(value))}")
        cdef uint64_t c_start = u64(value["start"], "Gather state: start")
        cdef uint64_t c_end = u64(value["end"], "Gather state: end")
        self.g.start = c_start
        self.g.end = c_end
        self.g.fullmm = value["fullmm"]
        self.g.need_flush_all = value["need_flush_all"]
        self.g.freed_tables = value["freed_tables"]
        self.g.cleared_ptes = value["cleared_ptes"]
        self.g.cleared_pmds = value["cleared_pmds"]
        self.g.cleared_puds = value["cleared_puds"]
        self.g.cleared_p4ds = value["cleared_p4ds"]

    def __reduce__(self):
        """Pickle as a new Gather plus its range state and batch counts (exact)."""
        return (Gather, (self.g.fullmm, self.g.batch_reserve),
                (self.state, self.batch_state))

    def __setstate__(self, state):
        """Unpickle: apply the stored range state and batch counts."""
        self.state, self.batch_state = state

    def __repr__(self):
        if self.empty:
            return "Gather(empty)"
        return (f"Gather([0x{self.g.start:x}, 0x{self.g.end:x}) stride={self.stride_shift}"
                f"{' freed_tables' if self.g.freed_tables else ''}"
                f"{' fullmm' if self.g.fullmm else ''})")
