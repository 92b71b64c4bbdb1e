# cython: language_level=3
"""Per-CPU kernel counters and kernel cycles by category, beside the hardware counters
of the CPU's TLB, and the accounting window of one operation.

An operation's result is the delta of these arrays over the CPUs it touched: a CPU is
snapshotted the first time the operation charges or counts anything on it, so an
operation costs in proportion to the CPUs it involves, not to the size of the machine.
"""
from libc.stdint cimport int64_t, uint64_t
from mmucore.cost cimport N_COUNTERS, N_CYCLE_KINDS
from mmucore.tlb cimport TLB

# Kernel counters (names in KERNEL_COUNTER_NAMES; the kernel's own where it has one).
cdef enum:
    K_SYSCALLS = 0
    K_NR_TLB_LOCAL_FLUSH_ONE
    K_NR_TLB_LOCAL_FLUSH_ALL
    K_NR_TLB_REMOTE_FLUSH
    K_NR_TLB_REMOTE_FLUSH_RECEIVED
    K_REMOTE_FLUSH_ONE
    K_REMOTE_FLUSH_ALL
    K_IPI_SENT
    K_FLUSH_TLB_MM_RANGE
    K_TLB_FLUSH_ON_SWITCH
    K_USER_PCID_FLUSH
    K_CONTEXT_SWITCHES
    K_FAULT_ANON
    K_FAULT_ZERO_PAGE
    K_FAULT_THP
    K_FAULT_WP_REUSE
    K_FAULT_COW
    K_FAULT_SPURIOUS
    K_SIGSEGV
    K_VMA_SPLIT
    K_VMA_MERGE
    # 6.14+ (2815a56e4b72 tracepoint reason TLB_REMOTE_WRONG_CPU): a flush IPI reached
    # a CPU of mm_cpumask not running the mm, which clears its bit (lazy mm_cpumask)
    K_TLB_REMOTE_WRONG_CPU
    # 6.15+ AMD broadcast invalidation, on the issuing CPU: INVLPGB instructions and
    # TLBSYNC waits (the kernel has no counter; the instructions themselves)
    K_INVLPGB
    K_TLBSYNC
    # mid-zap flushes: the mmu_gather page batch / table batch filled (gather.pxd)
    K_GATHER_BATCH_FULL
    K_GATHER_TABLE_FULL
    # pages zapped: 4K entries cleared, and huge PMDs cleared
    K_ZAP_PTE
    K_ZAP_HUGE_PMD
    # an access past the end of a mapped file (filemap_fault: VM_FAULT_SIGBUS)
    K_SIGBUS
    # KVM's paravirtual TLB flush: a flush found this vCPU preempted and left it the
    # KVM_VCPU_FLUSH_TLB flag instead of an IPI (kvm_flush_tlb_multi)
    K_KVM_PV_FLUSH
    # Intel RAR (the RFC series, profile rar-rfc): remote action requests signalled by
    # the initiator (one per target CPU) and payloads a target's microcode carried out
    K_RAR_SENT
    K_RAR_RECEIVED
    # reclaim's batched unmap flush: arch_tlbbatch_flush() calls (try_to_unmap_flush)
    K_TLBBATCH_FLUSH
    # arm64 broadcast invalidation, on the issuing CPU: TLBI ...IS instructions, the
    # CPUs of the inner-shareable domain each one reached (no IPIs: the interconnect
    # delivers them), and DSB ISH waits that completed them (pysim.arch.arm64)
    K_TLBI
    K_TLBI_RECEIVED
    K_DSB
    # a flush IPI's handler found its CPU in lazy TLB mode (freed page tables reach
    # lazy CPUs; on the timeline, an IPI the CPU took after it went idle) and switched
    # it to init_mm (flush_tlb_func)
    K_TLB_LAZY_IPI
    N_KCOUNTERS

# Cycle categories of an operation's breakdown.  Kernel paths charge the kernel ones;
# the TLB's hardware cycle kinds fold into B_WALKS, B_INVALIDATE and B_FAULT.
cdef enum:
    B_SYSCALL = 0
    B_PTE
    B_FLUSH
    B_INVALIDATE
    B_IPI
    B_IPI_HANDLER
    B_FAULT
    B_WALKS
    B_CONTEXT_SWITCH
    B_VMA
    B_USER              # user-mode work a program asked for (the timeline's compute())
    B_LOCK              # waiting for a lock or a contended cache line (the timeline)
    N_BREAKDOWN

# Columns of an operation's delta rows: one row per touched CPU.
cdef enum:
    COL_CPU = 0                                   # the CPU id (-1 in the totals row)
    COL_HW = 1                                    # N_COUNTERS hardware counters
    COL_HWY = COL_HW + N_COUNTERS                 # N_CYCLE_KINDS hardware cycle kinds
    COL_K = COL_HWY + N_CYCLE_KINDS               # N_KCOUNTERS kernel counters
    COL_B = COL_K + N_KCOUNTERS                   # N_BREAKDOWN kernel cycle categories
    COL_CYCLES = COL_B + N_BREAKDOWN              # all cycles of the row
    N_COLS


cdef struct op_account:
    uint64_t epoch           # bumped by every begin(); a CPU snapshotted in this epoch
                             # is part of the operation
    bint active              # an operation is open
    int ntouched             # CPUs in touched[]
    int cap                  # room in touched[]: one per CpuStats made on this account
    cpu_stats** touched      # the touched CPUs' counters, in the order reached

cdef struct cpu_stats:
    int cpu                          # CPU id
    int64_t kcount[N_KCOUNTERS]      # kernel counters since the last reset
    double kcycles[N_BREAKDOWN]      # kernel cycles since the last reset
    uint64_t epoch                   # the account's epoch of the snapshot below
    double snap[N_COLS]              # this CPU's values when the op first touched it
    uint64_t* hw_counters            # the TLB's counters[N_COUNTERS]
    double* hw_cycles                # the TLB's cycles[N_CYCLE_KINDS]
    op_account* acct                 # the machine's accounting window


cdef class OpRecord:
    """The raw result of one operation (pysim.results.OpResult adds the views)."""
    cdef public object op            # the operation's name
    cdef public int cpu              # the initiating CPU
    cdef public object value         # the syscall's return value
    cdef public object rows          # delta rows (see OpAccount.finish)
    cdef public object faults        # (index, va, kind, outcome) per page fault


cdef class OpAccount:
    """The accounting window of the operation in flight on a machine (at most one)."""
    cdef op_account a
    cdef int reserve(self) except -1
    cdef int open_window(self, CpuStats initiator) except -1
    cdef int open_entry(self, CpuStats initiator, int counter, int category,
                        double cycles) except -1
    cdef object close_record(self, type cls, op, int cpu, value, faults)


cdef class CpuStats:
    """One CPU's kernel counters and kernel cycles, and its snapshot for the open op."""
    cdef cpu_stats st
    cdef readonly TLB tlb            # whose counters st.hw_counters / hw_cycles point at
    cdef readonly OpAccount acct     # whose struct st.acct points at
    cpdef count(self, int counter, int64_t n=*)
    cpdef charge(self, int category, double cycles)
    cpdef enter(self, int counter, int category, double cycles)


cdef inline void fill_row(cpu_stats* s, double* row) noexcept nogil:
    """Current totals of one CPU in delta-row layout."""
    cdef int i
    cdef double total = 0.0
    row[COL_CPU] = s.cpu
    for i in range(N_COUNTERS):
        row[COL_HW + i] = <double>s.hw_counters[i]
    for i in range(N_CYCLE_KINDS):
        row[COL_HWY + i] = s.hw_cycles[i]
        total += s.hw_cycles[i]
    for i in range(N_KCOUNTERS):
        row[COL_K + i] = <double>s.kcount[i]
    for i in range(N_BREAKDOWN):
        row[COL_B + i] = s.kcycles[i]
        total += s.kcycles[i]
    row[COL_CYCLES] = total


cdef inline double stats_clock(cpu_stats* s) noexcept nogil:
    """All cycles the CPU has spent: its kernel categories plus its TLB's hardware kinds."""
    cdef double total = 0.0
    cdef int i
    for i in range(N_CYCLE_KINDS):
        total += s.hw_cycles[i]
    for i in range(N_BREAKDOWN):
        total += s.kcycles[i]
    return total


cdef inline void stats_touch(cpu_stats* s) noexcept nogil:
    """Make a CPU part of the open operation (snapshot it on first touch)."""
    cdef op_account* a = s.acct
    if a.active and s.epoch != a.epoch:
        # reserve() made room for every CpuStats of this account: never overflows
        a.touched[a.ntouched] = s
        a.ntouched += 1
        s.epoch = a.epoch
        fill_row(s, s.snap)


cdef inline void stats_add(cpu_stats* s, int counter, int64_t n) noexcept nogil:
    """Count n events of a kernel counter (C callers pass valid enums)."""
    stats_touch(s)
    s.kcount[counter] += n


cdef inline void stats_spend(cpu_stats* s, int category, double cycles) noexcept nogil:
    """Charge kernel cycles of a category."""
    if cycles != 0.0:
        stats_touch(s)
        s.kcycles[category] += cycles
