# cython: language_level=3
"""Per-CPU hardware counters and the hardware cycle-cost struct.

Counts never depend on costs: the loops bump counters, and cycles are accumulated
separately from the costs a preset put in cost_t.
"""

cdef enum:
    C_ACCESSES = 0
    C_READS
    C_WRITES
    C_FETCHES
    C_L1_HITS
    C_L1_MISSES
    C_STLB_HITS
    C_STLB_MISSES
    C_WALKS
    C_WALK_REFS
    C_PSC_PML4_HITS
    C_PSC_PDPT_HITS
    C_PSC_PDE_HITS
    C_PSC_MISSES
    C_DIRTY_WALKS
    C_L1_EVICTIONS
    C_STLB_EVICTIONS
    C_PSC_EVICTIONS
    C_INVLPG
    C_INVPCID_SINGLE
    C_FLUSH_PCID
    C_FLUSH_ALL
    C_CR3_NOFLUSH
    C_FAULTS
    C_FAULT_NOT_PRESENT
    C_FAULT_WRITE
    C_FAULT_NX
    C_FAULT_USER
    C_FAULT_FROM_TLB
    N_COUNTERS

cdef enum:
    Y_TLB_HIT = 0     # L1 and STLB hit latencies
    Y_WALK            # page walks (fixed part + memory references)
    Y_INVALIDATE      # INVLPG / INVPCID / CR3 writes
    Y_FAULT_HW        # #PF delivery (the kernel's handler is costed in pysim)
    N_CYCLE_KINDS

cdef struct cost_t:
    double l1_hit
    double stlb_hit
    double walk_base
    double walk_ref
    double invlpg
    double invpcid_single
    double cr3_flush
    double cr3_noflush
    double flush_global
    double fault_hw
    double invlpg_remote    # INVLPG run by a remote target's flush_tlb_func (IPI handler)

cdef class CostModel:
    cdef cost_t c
