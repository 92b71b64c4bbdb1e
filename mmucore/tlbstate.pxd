# cython: language_level=3
"""x86 per-CPU TLB state (struct tlb_state), the mm's flush context and the shootdown
path of arch/x86/mm/tlb.c, in C."""
from libc.stdint cimport int64_t, uint64_t, uint8_t
from mmucore.tlb cimport TLB
from mmucore.stats cimport CpuStats

cdef struct tlb_context:
    int64_t ctx_id          # the mm (its context.ctx_id) this ASID slot caches, -1 if none
    uint64_t tlb_gen        # the mm's generation this CPU's entries are known clean up to

cdef struct flush_tlb_info:
    uint64_t start          # first address to flush (0 with TLB_FLUSH_ALL)
    uint64_t end            # one past the last, or TLB_FLUSH_ALL for a full flush
    int stride_shift        # 12 for 4K steps, 21 for 2M steps
    bint freed_tables       # page tables were freed: lazy CPUs must flush too
    uint64_t new_tlb_gen    # mm->context.tlb_gen after this request's increment
    int initiator           # the CPU that asked

cdef struct tlb_params:
    bint pcid               # CPU feature: PCIDs (else every switch flushes, ASID 0)
    bint invpcid            # CPU feature: INVPCID (PTI flushes user PCIDs at once)
    bint pti                # kernel option: page-table isolation (a user PCID per ASID)
    bint lazy_tlb           # kernel threads borrow the mm (enter_lazy_tlb keeps it)
    bint early_exit         # 6.0: flush_tlb_func returns if new_tlb_gen <= local gen
    uint64_t ceiling        # tlb_single_page_flush_ceiling
    int nr_asids            # TLB_NR_DYN_ASIDS

cdef struct flush_costs:
    double flush_base       # kernel cycles of one flush_tlb_mm_range
    double flush_per_page   # kernel cycles per INVLPG step (besides the instruction)
    double ipi_send         # initiator: the first target's IPI
    double ipi_extra_target # initiator: each further target
    double ipi_deliver      # latency until the target's handler runs
    double ipi_handler      # target: interrupt entry/exit and the generation checks
    double ipi_ack          # target -> initiator acknowledgement
    double context_switch   # kernel cycles of a switch_mm to another mm


cdef class MMContext:
    cdef readonly int64_t ctx_id    # mm->context.ctx_id, never reused
    cdef public uint64_t tlb_gen    # mm->context.tlb_gen
    cdef uint64_t* mask             # mm_cpumask(mm) as a bitmap
    cdef int nwords                 # 64-bit words of the bitmap
    cdef readonly int nr_cpus       # bits the bitmap holds
    cdef object _maskbuf            # owner of mask
    cdef public object owner        # a weakref to the Python mm, for reporting


cdef class CpuTlbState:
    cdef readonly int cpu                   # CPU id
    cdef readonly TLB tlb                   # the CPU's TLB hierarchy and PSCs
    cdef readonly CpuStats stats            # its kernel counters and cycles
    cdef MMContext loaded_mm                # cpu_tlbstate.loaded_mm (None: init_mm)
    cdef readonly int loaded_mm_asid        # cpu_tlbstate.loaded_mm_asid
    cdef readonly int next_asid             # cpu_tlbstate.next_asid (round robin)
    cdef readonly bint is_lazy              # cpu_tlbstate_shared.is_lazy
    cdef public bint running_user           # a thread spins in user mode here
    cdef int nr_asids                       # slots in ctxs[]
    cdef tlb_context* ctxs                  # cpu_tlbstate.ctxs[TLB_NR_DYN_ASIDS]
    cdef uint8_t* user_pcid_flush_mask      # one flag per ASID: user PCID flush pending
    cdef object _bufs                       # owners of ctxs and the flush mask


cdef class FlushInfo:
    cdef readonly uint64_t start, end, new_tlb_gen
    cdef readonly int stride_shift, initiator
    cdef readonly bint freed_tables


ctypedef int (*flush_tlb_multi_fn)(X86Flush x, CpuTlbState initiator, MMContext mm,
                                   flush_tlb_info* f, double local_cycles) except -1


cdef class X86Flush:
    cdef list cpus                          # CpuTlbState by CPU id
    cdef int ncpus
    cdef tlb_params p
    cdef flush_costs c
    cdef flush_tlb_multi_fn flush_tlb_multi # the remote-flush backend
    cdef readonly str backend               # its name
    cdef object py_backend                  # the "python" backend's callable
    cdef int* targets                       # scratch: CPUs of one request
