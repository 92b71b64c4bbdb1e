# cython: language_level=3
"""mmu_gather state (include/asm-generic/tlb.h): the range and bits a batch must flush."""
from libc.stdint cimport uint64_t

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


cdef class Gather:
    cdef gather_t g
