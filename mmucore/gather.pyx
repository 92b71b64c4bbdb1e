"""Python access to one mmu_gather's state; the kernel-facing API lives in pysim.gather."""
from libc.stdint cimport uint64_t

from mmucore.pte cimport u64

TASK_SIZE = GATHER_EMPTY_START

_STATE_FIELDS = ("start", "end", "fullmm", "need_flush_all", "freed_tables", "cleared_ptes",
                 "cleared_pmds", "cleared_puds", "cleared_p4ds")


cdef class Gather:
    """The range and level bits of one batch (struct mmu_gather minus the page batches)."""

    def __cinit__(self, bint fullmm=False):
        self.g.fullmm = fullmm
        self.g.need_flush_all = False
        c_tlb_reset_range(&self.g)

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
        """Pickle as a new Gather plus its state (exact round trip)."""
        return (Gather, (self.g.fullmm,), self.state)

    def __setstate__(self, state):
        """Unpickle: apply the stored state."""
        self.state = state

    def __repr__(self):
        if self.empty:
            return "Gather(empty)"
        return (f"Gather([0x{self.g.start:x}, 0x{self.g.end:x}) stride={self.stride_shift}"
                f"{' freed_tables' if self.g.freed_tables else ''}"
                f"{' fullmm' if self.g.fullmm else ''})")
