# cython: language_level=3
"""mmu_gather state (include/asm-generic/tlb.h): the range and bits a batch must flush,
and the two batches whose filling forces a flush in the middle of a zap.

The batches (mm/mmu_gather.c)
-----------------------------
A zap cannot free a page while a TLB may still map it, so zap_pte_range() queues each
page it unmaps in the gather and frees the lot after the flush.  The queue is a chain:
the on-stack bundle `tlb->local` of MMU_GATHER_BUNDLE entries, then up to
MAX_GATHER_BATCH_COUNT page-sized `struct mmu_gather_batch`es of MAX_GATHER_BATCH entries
each, allocated by tlb_next_batch() as the previous one fills.  When the last allowed
batch fills, __tlb_remove_page_size() (from 6.9: __tlb_remove_folio_pages_size())
returns true and the caller flushes on the spot: zap_pte_range() stops after that entry,
tlb_flush_mmu_tlbonly() flushes the range gathered so far and resets it, tlb_flush_mmu()
frees the queued pages (the active batch goes back to the bundle; allocated batches stay
for reuse), and the zap resumes where it stopped.  A huge PMD is one entry
(zap_huge_pmd -> tlb_remove_page_size: flush at once when full); the zero page is no
entry at all (vm_normal_page() is NULL for it).  A dirty page-cache page sets
force_flush without stopping: the flush happens when the PTE table's pass ends, before
its lock is dropped.

Freed page tables go to a second batch (`tlb->batch`, MMU_GATHER_RCU_TABLE_FREE, which
x86 selects): tlb_remove_table() queues MAX_TABLE_BATCH of them, and when it fills
tlb_table_flush() -> tlb_table_invalidate() flushes the range gathered so far
(tlb_flush_mmu_tlbonly) before the tables go to RCU.

Constants (include/asm-generic/tlb.h, 4 KiB pages, 64-bit):
  MMU_GATHER_BUNDLE       8
  MAX_GATHER_BATCH        (PAGE_SIZE - sizeof(struct mmu_gather_batch)) / sizeof(void *)
                          = (4096 - 16) / 8 = 510   (next pointer, nr, max: 16 bytes)
  MAX_GATHER_BATCH_COUNT  10000UL / MAX_GATHER_BATCH = 19
  MAX_TABLE_BATCH         (PAGE_SIZE - sizeof(struct mmu_table_batch)) / sizeof(void *)
                          = (4096 - 24) / 8 = 509   (rcu_head 16, nr 4, padding 4)
A batch is full when nr == max up to 6.8; from 6.9 (d7f861b9c4 "mm/mmu_gather: add
__tlb_remove_folio_pages()") when nr >= max - 1, keeping room for a two-entry
(page, nr_pages) record: the gather's `batch_reserve` is 0 or 1 accordingly.  So the
first mid-zap flush comes with the 8 + 19 x 510 = 9,698th queued page before 6.9 and the
7 + 19 x 509 = 9,678th from 6.9 on.
"""
from libc.stdint cimport uint64_t, uint32_t

cdef struct gather_t:
    uint64_t start          # lowest address recorded (TASK_SIZE-ish sentinel when empty)
    uint64_t end            # one past the highest address recorded (0 when empty)
    bint fullmm
    bint need_flush_all
    bint freed_tables
    bint cleared_ptes
    bint cleared_pmds
    bint cleared_puds
    bint cleared_p4ds
    # the page batch: counts only (the model frees no struct pages)
    uint32_t active         # 0: the bundle tlb->local; k >= 1: the k-th allocated batch
    uint32_t active_nr      # entries in the active batch
    uint32_t batch_count    # batches allocated (kept across flushes, as the kernel does)
    uint32_t batch_reserve  # entries kept free per batch: 0 up to 6.8, 1 from 6.9
    uint64_t nr_pages       # pages queued since the last tlb_batch_pages_flush()
    # the table batch (tlb->batch): tables queued since the last tlb_table_flush()
    uint32_t table_nr

cdef enum:
    MMU_GATHER_BUNDLE = 8           # include/asm-generic/tlb.h
    MAX_GATHER_BATCH = 510          # (4096 - 16) / 8, include/asm-generic/tlb.h
    MAX_GATHER_BATCH_COUNT = 19     # 10000UL / MAX_GATHER_BATCH, include/asm-generic/tlb.h
    MAX_TABLE_BATCH = 509           # (4096 - 24) / 8 with the rcu_head, asm-generic/tlb.h

cdef extern from *:
    """
    /* TASK_SIZE_MAX (4-level paging): an empty range starts above any user address. */
    #define GATHER_EMPTY_START 0x00007FFFFFFFF000ULL
    """
    const uint64_t GATHER_EMPTY_START

cdef inline void c_tlb_reset_range(gather_t* g) noexcept nogil:
    """__tlb_reset_range(): empty range, no level bits, no freed tables."""
    if g.fullmm:
        g.start = <uint64_t>0xFFFFFFFFFFFFFFFF
        g.end = <uint64_t>0xFFFFFFFFFFFFFFFF
    else:
        g.start = GATHER_EMPTY_START
        g.end = 0
    g.freed_tables = False
    g.cleared_ptes = False
    g.cleared_pmds = False
    g.cleared_puds = False
    g.cleared_p4ds = False

cdef inline void c_tlb_adjust_range(gather_t* g, uint64_t addr, uint64_t size) noexcept nogil:
    """__tlb_adjust_range(): grow [start, end) to cover [addr, addr+size)."""
    if addr < g.start:
        g.start = addr
    if addr + size > g.end:
        g.end = addr + size

cdef inline void c_tlb_flush_pte_range(gather_t* g, uint64_t addr, uint64_t size) noexcept nogil:
    c_tlb_adjust_range(g, addr, size)
    g.cleared_ptes = True

cdef inline void c_tlb_flush_pmd_range(gather_t* g, uint64_t addr, uint64_t size) noexcept nogil:
    c_tlb_adjust_range(g, addr, size)
    g.cleared_pmds = True

cdef inline int c_tlb_get_unmap_shift(gather_t* g) noexcept nogil:
    """tlb_get_unmap_shift(): the stride of the flush, from the finest level cleared."""
    if g.cleared_ptes:
        return 12
    if g.cleared_pmds:
        return 21
    if g.cleared_puds:
        return 30
    if g.cleared_p4ds:
        return 39
    return 12

cdef inline bint c_tlb_needs_flush(gather_t* g) noexcept nogil:
    """What tlb_flush_mmu_tlbonly() tests: was anything recorded at all?"""
    return (g.freed_tables or g.cleared_ptes or g.cleared_pmds or g.cleared_puds
            or g.cleared_p4ds)


cdef inline void c_tlb_init_batches(gather_t* g, uint32_t reserve) noexcept nogil:
    """__tlb_gather_mmu()'s batch part: the bundle active and empty, nothing allocated."""
    g.active = 0
    g.active_nr = 0
    g.batch_count = 0
    g.batch_reserve = reserve
    g.nr_pages = 0
    g.table_nr = 0

cdef inline bint c_tlb_next_batch(gather_t* g) noexcept nogil:
    """tlb_next_batch(): move to the next batch, reusing one allocated before a flush
    or allocating one while fewer than MAX_GATHER_BATCH_COUNT exist; False when the
    chain is at its limit (the caller must flush)."""
    if g.active < g.batch_count:
        g.active += 1
        g.active_nr = 0
        return True
    if g.batch_count == MAX_GATHER_BATCH_COUNT:
        return False
    g.batch_count += 1
    g.active += 1
    g.active_nr = 0
    return True

cdef inline bint c_tlb_remove_page(gather_t* g) noexcept nogil:
    """__tlb_remove_page_size() for one page (a 4K page or a whole THP): queue it and
    return True when the batches are full and the caller must flush now."""
    cdef uint32_t max_nr = MMU_GATHER_BUNDLE if g.active == 0 else MAX_GATHER_BATCH
    g.active_nr += 1
    g.nr_pages += 1
    if g.active_nr >= max_nr - g.batch_reserve:
        if not c_tlb_next_batch(g):
            return True
    return False

cdef inline void c_tlb_batch_pages_flush(gather_t* g) noexcept nogil:
    """tlb_batch_pages_flush(): the queued pages are freed, the bundle is active again;
    the allocated batches stay on the chain."""
    g.active = 0
    g.active_nr = 0
    g.nr_pages = 0

cdef inline bint c_tlb_remove_table(gather_t* g) noexcept nogil:
    """tlb_remove_table(): queue one freed page table; True when the table batch is full
    (tlb_table_flush: the caller flushes the TLB, then the batch starts empty)."""
    g.table_nr += 1
    return g.table_nr == MAX_TABLE_BATCH


cdef class Gather:
    cdef gather_t g

# Gather(fullmm, batch_reserve)'s state for C callers (mmucore.mmu_gather's
# tlb_gather_mmu re-initialises the Gather its MMUGather was made with): the same checks
cdef int gather_init(Gather self, bint fullmm, int batch_reserve) except -1
