# cython: language_level=3
"""x86 per-CPU TLB state (struct tlb_state), the mm's flush context and the shootdown
path of arch/x86/mm/tlb.c, as C structs and nogil C functions."""
from libc.stdint cimport int64_t, uint64_t, uint8_t
from mmucore.tlb cimport TLB
from mmucore.stats cimport CpuStats, cpu_stats
from mmucore.calendar cimport calendar

cdef struct tlb_context:
    int64_t ctx_id          # the mm (its context.ctx_id) this ASID slot caches, -1 if none
    uint64_t tlb_gen        # the mm's generation this CPU's entries are known clean up to

cdef struct mm_context:
    int64_t ctx_id          # mm->context.ctx_id, never reused
    uint64_t tlb_gen        # mm->context.tlb_gen
    uint64_t* cpumask       # mm_cpumask(mm) as a bitmap of nwords 64-bit words
    int nwords
    int nr_cpus             # bits the bitmap holds (the machine's CPU count)
    calendar gen_line       # the cache line of tlb_gen, written by every flusher
    calendar mask_line      # the cache line(s) of mm_cpumask, written at switches
    void* obj               # the MMContext object holding this struct (borrowed)
    uint64_t next_trim_cpumask  # 6.14: jiffies after which a flush may trim the mask
    int global_asid         # 6.15: mm->context.global_asid (0: none, CPU-local ASIDs)
    bint asid_transition    # 6.15: some CPU may still run the mm on a local ASID
    int64_t pid             # the pid consider_global_asid() samples (see MMContext)

cdef struct invlpgb_op:
    int kind                # INVLPGB_VA (addr, nr, pmd of pcid), _PCID, _ALL_NONGLOBAL
    int pcid                # the PCID the invalidation names
    uint64_t addr           # first address (INVLPGB_VA)
    int nr                  # pages (INVLPGB_VA), at most invlpgb_count_max
    bint pmd                # 2M stride instead of 4K

cdef struct cpu_tlbstate:
    int cpu                         # CPU id
    int llc                         # the last-level cache (CCX, socket) it shares
    mm_context* loaded_mm           # cpu_tlbstate.loaded_mm (NULL: init_mm)
    int loaded_mm_asid              # cpu_tlbstate.loaded_mm_asid
    int next_asid                   # cpu_tlbstate.next_asid (round robin)
    int nr_asids                    # TLB_NR_DYN_ASIDS: slots in ctxs[]
    bint is_lazy                    # cpu_tlbstate_shared.is_lazy
    bint running_user               # a thread spins in user mode here
    bint in_user                    # the CPU last went to user mode (not yet back in)
    tlb_context* ctxs               # cpu_tlbstate.ctxs[]
    uint8_t* user_pcid_flush_mask   # one flag per ASID: a user-PCID flush is pending
    void* tlb                       # the CPU's TLB object (borrowed)
    cpu_stats* stats                # its kernel counters (in its CpuStats)
    # the timeline (pysim.machine.timeline): simulated time = t_off + cycles spent
    double t_off                    # idle time before this CPU's first work
    calendar irqs                   # when its IPI handlers run (they queue)
    double wait_from, wait_until    # its last wait for acks still open to handlers
    double idle_until               # it sleeps in an idle state until then (timeline)
    double idle_exit_lat            # that state's exit latency (< 0: the preset's idle_exit)
    double smt_slow                 # 1/smt_speed - 1 while its SMT sibling's thread is awake
    invlpgb_op* pending             # INVLPGBs issued here, not yet waited for (TLBSYNC)
    int npending                    # entries in pending
    int cap_pending                 # room in pending (malloc'd, grown as needed)
    bint need_tlbsync               # cpu_tlbstate.need_tlbsync (6.15): a batched unmap
                                    # issued INVLPGBs here that no TLBSYNC waited for yet
    # 6.14 on the timeline: a wrong-CPU flush IPI clears this CPU's bit when its handler
    # runs, not when it is sent (flush_tlb_func, mask_settle)
    int64_t leave_ctx               # the mm (ctx_id) whose bit a handler clears, -1: none
    double leave_at                 # when the first such handler ends (INFINITY: unknown)
    # on the timeline: a flush IPI sent while the CPU ran the mm, handled after it went
    # lazy, finds it lazy and switches it to init_mm then (late_lazy_ipi)
    double flush_ipi_start          # the latest such handler's start (-INFINITY: none)
    int64_t flush_ipi_ctx           # the mm (ctx_id) it flushes
    double lazy_switch_at           # a pending switch to init_mm then (INFINITY: none)

cdef struct flush_tlb_info:
    uint64_t start          # first address to flush (0 with TLB_FLUSH_ALL)
    uint64_t end            # one past the last, or TLB_FLUSH_ALL for a full flush
    int stride_shift        # 12 for 4K steps, 21 for 2M steps
    bint freed_tables       # page tables were freed: lazy CPUs must flush too
    uint64_t new_tlb_gen    # mm->context.tlb_gen after this request's increment
    int initiator           # the CPU that asked
    bint trim_cpumask       # 6.14: CPUs of the mask not running the mm get the IPI too

cdef struct tlb_params:
    bint pcid               # CPU feature: PCIDs (else every switch flushes, ASID 0)
    bint invpcid            # CPU feature: INVPCID (PTI flushes user PCIDs at once)
    bint pti                # kernel option: page-table isolation (a user PCID per ASID)
    bint lazy_tlb           # kernel threads borrow the mm (enter_lazy_tlb keeps it)
    bint early_exit         # 6.0: flush_tlb_func returns if new_tlb_gen <= local gen
    uint64_t ceiling        # tlb_single_page_flush_ceiling
    int nr_asids            # TLB_NR_DYN_ASIDS
    bint lazy_cpumask       # 6.14: the mask bit is not cleared at switch (209954cbc7d0)
    bint trim_cpumask       # 6.14: should_flush_tlb / should_trim_cpumask (6db2526c1d69)
    int hz                  # jiffies per second (CONFIG_HZ), for the trim interval
    bint invlpgb            # 6.15: broadcast flushes with global ASIDs (CPU has INVLPGB
                            #       and the kernel uses it)
    int invlpgb_count_max   # pages one INVLPGB may name (CPUID 0x80000008 EDX + 1)
    int max_asid_available  # MAX_ASID_AVAILABLE: global ASIDs lie in [nr_asids, this)
    bint rar                # rar-rfc: Intel RAR flushes mms with a global ASID (CPU has
                            #          RAR and the kernel uses it); exclusive with invlpgb

cdef struct flush_costs:
    double flush_base       # kernel cycles of one flush_tlb_mm_range
    double flush_per_page   # kernel cycles per INVLPG step (besides the instruction)
    double ipi_send         # initiator: the first target's IPI
    double ipi_extra_target # initiator: each further target
    double ipi_deliver      # latency until the target's handler runs
    double ipi_handler      # target: interrupt entry/exit and the generation checks
    double ipi_ack          # target -> initiator acknowledgement
    double context_switch   # kernel cycles of a switch_mm to another mm
    double cacheline_transfer  # a contended cache line moving to another CPU (timeline)
    double cacheline_per_writer  # ... slower by this per writer queued for it (timeline)
    double cacheline_remote  # ... from a CPU of another last-level cache (timeline)
    double idle_exit        # an IPI reaching a sleeping CPU waits for it to wake (timeline)
    double invlpgb_issue    # issuer: one INVLPGB instruction
    double tlbsync_wait     # issuer: TLBSYNC waiting for its INVLPGBs everywhere
    double rar_send         # initiator: payload write, action entries, the APIC command
    double rar_extra_target # initiator: each further target (arm its entry, poll it)
    double rar_deliver      # APIC signal until the target's microcode takes the action
    double rar_handle       # target: microcode work per payload, besides invalidating

cdef struct rar_payload:
    int type                # RAR_TYPE_INVPCID: the only type the RFC's TLB code sends
    int subtype             # RAR_INVPCID_ADDR (num_pages from linear_address) or
                            # RAR_INVPCID_PCID (every non-global entry of pcid)
    int pcid                # the PCID the action names
    uint64_t linear_address # first address (RAR_INVPCID_ADDR)
    int num_pages           # 4K pages from linear_address, below RAR_INVLPG_MAX_PAGES

cdef struct flush_env

ctypedef int (*flush_tlb_multi_fn)(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                                   flush_tlb_info* f, double local_cycles) except -1 nogil

cdef struct flush_env:
    tlb_params p
    flush_costs c
    cpu_tlbstate** cpus                 # every CPU's state, by id
    int ncpus
    int* targets                        # scratch: the CPUs of one request
    flush_tlb_multi_fn flush_tlb_multi  # the remote-flush backend
    bint timeline                       # CPUs run at once: IPIs queue, lines contend
    bint late_lazy_ipis                 # timeline: a late flush IPI finds its CPU lazy
    void* owner                         # the X86Flush (borrowed), for the python backend
    uint64_t jiffies                    # the kernel's tick count, set per operation
    uint8_t* global_asid_used           # global_asid_used bitmap, one byte per ASID
    uint8_t* global_asid_freed          # global_asid_freed: reusable after a reset
    int last_global_asid                # where allocate_global_asid() searches from
    int global_asid_available           # global ASIDs left
    bint skip_tlbsync                   # debug: broadcast_tlb_flush forgets TLBSYNC
    double kvm_pv_preempt               # KVM PV TLB flush: chance a target vCPU is found
                                        #   preempted (0: off; set_kvm_pv_flush)
    uint64_t kvm_pv_rng                 # its generator's state (xorshift64*)
    # Intel RAR (rar-rfc): the action table in memory, set up at boot (rar_boot_cpu_init)
    rar_payload* rar_payloads           # RAR_MAX_PAYLOADS payload entries
    uint8_t* rar_action                 # per CPU, one status byte per payload (its action
                                        # vector): ncpus * RAR_MAX_PAYLOADS bytes
    bint rar_skip_new_cpu_flush         # debug: a CPU joining mm_cpumask keeps its stale
                                        # global-ASID entries (the rule RAR needs, broken)


cdef double cpu_now(cpu_tlbstate* cpu) noexcept nogil


cdef class MMContext:
    cdef mm_context c
    cdef object _maskbuf            # owner of c.cpumask
    cdef public object owner        # a weakref to the Python mm, for reporting


cdef class CpuTlbState:
    cdef cpu_tlbstate s
    cdef readonly TLB tlb           # what s.tlb points to
    cdef readonly CpuStats stats    # what s.stats points to
    cdef MMContext _loaded          # keeps s.loaded_mm's object alive (set under the GIL)
    cdef object _bufs               # owners of s.ctxs and s.user_pcid_flush_mask


cdef class FlushInfo:
    cdef readonly uint64_t start, end, new_tlb_gen
    cdef readonly int stride_shift, initiator
    cdef readonly bint freed_tables
    cdef readonly bint trim_cpumask


cdef class X86Flush:
    cdef flush_env e
    cdef list cpus                  # the CpuTlbState objects e.cpus points into
    cdef readonly str backend       # the backend's name
    cdef object py_backend          # the "python" backend's callable
    cdef object _asidbufs           # owners of e.global_asid_used / _freed
    cdef object _rarbufs            # owners of e.rar_payloads / e.rar_action
