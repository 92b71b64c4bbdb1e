# cython: language_level=3
"""The x86-64 4-level radix page table over pooled numpy storage."""
from libc.stdint cimport uint64_t
from mmucore.pte cimport MMU_P, MMU_PSE, MMU_PFN_MASK
from mmucore.gather cimport gather_t

cdef enum:
    PT_CHUNK_TABLES = 1024      # tables per pooled numpy chunk (4 MiB: numpy asks for THP)
    PT_LEVELS = 4

cdef struct change_stats_t:
    uint64_t pages           # the kernel's `pages`: present PTEs visited, +512 per huge PMD
    uint64_t changed         # entries whose value changed
    uint64_t flagged         # entries recorded in the gather
    uint64_t nthp            # huge PMDs changed (their addresses go to the thp buffer)
    uint64_t nsplit          # huge PMDs split because the range cut them
    uint64_t ntables         # PTE tables walked (each one pte_offset_map_lock in the kernel)
    uint64_t nnone           # empty PTE slots scanned in those tables
    uint64_t nwrcheck        # can_change_pte_writable() calls (TRY_WRITABLE, entry not RW)

cdef struct zap_stats_t:
    uint64_t n4k             # present 4K entries cleared (the zero page included)
    uint64_t nhuge           # huge PMDs cleared
    uint64_t nnone           # empty (or non-present) PTE slots scanned
    uint64_t ntables         # PTE tables walked (each one pte_offset_map_lock)
    uint64_t addr            # where the pass stopped
    int stop                 # why: done, page batch full, force_flush (pagetable.pyx)

cdef class PageTable:
    cdef uint64_t** tables
    cdef uint64_t ntables
    cdef uint64_t cap
    cdef list chunks
    cdef uint64_t* freelist
    cdef uint64_t nfree
    cdef uint64_t freecap
    cdef uint64_t root
    cdef public uint64_t next_pfn
    cdef uint64_t live[PT_LEVELS]

    cdef uint64_t alloc_table(self, int level) except 0
    cdef void free_table(self, uint64_t tid, int level) noexcept
    cdef uint64_t* pmd_slot(self, uint64_t va, bint alloc) except? NULL
    cdef uint64_t* pte_table_for(self, uint64_t* pmd, uint64_t va) except NULL
    cdef uint64_t* leaf_slot(self, uint64_t va, int* shift) noexcept nogil
    cdef int _split(self, uint64_t* pmd) except -1
    cdef uint64_t _fill(self, uint64_t va, uint64_t npages, uint64_t flags, uint64_t pfn,
                        bint huge, bint only_empty, bint same_pfn) except? 0xFFFFFFFFFFFFFFFF
    cdef int _change(self, uint64_t start, uint64_t end, uint64_t newprot, int mode,
                     gather_t* g, uint64_t zero_pfn, change_stats_t* st,
                     uint64_t* thp, uint64_t* splits) except -1
    cdef int _zap(self, uint64_t start, uint64_t end, gather_t* g, zap_stats_t* st,
                  bint batched, list split_addrs) except -1
    cdef int _free_pgtables(self, uint64_t fs, uint64_t fe, gather_t* g,
                            bint batched) except -1


cdef inline uint64_t* pt_table(PageTable pt, uint64_t entry) noexcept nogil:
    """The table a non-leaf entry points to (its PFN field holds a table id).  An id
    beyond the pool (a stale PSC entry walking into a freed and reused table, whose
    entries are leaves) reads the reserved, always-empty table 0: memory-safe, and the
    walk then sees not-present entries."""
    cdef uint64_t tid = (entry & MMU_PFN_MASK) >> 12
    if tid >= pt.ntables:
        tid = 0
    return pt.tables[tid]
