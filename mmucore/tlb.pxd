# cython: language_level=3
"""Per-CPU TLB hierarchy, paging-structure caches, and the walker."""
from libc.stdint cimport uint64_t, int64_t
from mmucore.cost cimport cost_t, N_COUNTERS, N_CYCLE_KINDS
from mmucore.pagetable cimport PageTable

cdef struct tlb_array_t:
    int sets
    int ways
    uint64_t set_mask        # sets - 1 when sets is a power of two, else 0
    uint64_t* tag            # sets*ways tags: vpn<<15 | pcid<<3 | global<<2 | huge<<1 | valid
    uint64_t* data           # cached translation: pfn<<12 | P RW US A D G NX
    uint64_t* stamp          # LRU time of last use
    int64_t nvalid
    int64_t nhuge
    int64_t nglobal

cdef class TLB:
    cdef tlb_array_t l1_4k
    cdef tlb_array_t l1_2m
    cdef tlb_array_t stlb
    cdef tlb_array_t psc[3]      # PML4E, PDPTE, PDE caches (fully associative)
    cdef bint unified_l1
    cdef int nested_levels
    cdef uint64_t clock
    cdef public int pcid
    cdef bint last_fault_tlb
    cdef uint64_t counters[N_COUNTERS]
    cdef double cycles[N_CYCLE_KINDS]
    cdef cost_t cost
    cdef object _geometry
    cdef object _costmodel
    cdef list _buffers
    cdef _init_array(self, tlb_array_t* a, int sets, int ways)
    cdef tlb_array_t* _array_ptr(self, int arr, bint huge)

# TLB operations for other core modules (tlbstate's flush paths); defined in tlb.pyx.
# One user or kernel access through the TLB and walker (fastfault's access loop).
cdef int c_access(TLB t, PageTable pt, uint64_t va, int kind, bint user) noexcept nogil
cdef void c_invlpg(TLB t, uint64_t va, uint64_t pcid) noexcept nogil
cdef void c_invlpg_remote(TLB t, uint64_t va, uint64_t pcid) noexcept nogil
cdef void c_invpcid_single(TLB t, uint64_t va, uint64_t pcid) noexcept nogil
cdef void c_flush_pcid(TLB t, uint64_t pcid) noexcept nogil
cdef void c_write_cr3(TLB t, int pcid, bint flush) noexcept nogil
cdef void c_flush_nonglobal(TLB t) noexcept nogil
# The receiving side of AMD INVLPGB (tlbstate's broadcast_tlb_flush): drop entries
# without counting or charging an instruction on this TLB (nothing runs on the target).
cdef void c_invlpgb_va(TLB t, uint64_t va, uint64_t pcid) noexcept nogil
cdef void c_invlpgb_pcid(TLB t, uint64_t pcid) noexcept nogil


cdef inline int c_tlb_pcid(TLB t) noexcept nogil:
    """The PCID of the current CR3."""
    return t.pcid
