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


cdef class CpuStats


cdef class OpRecord:
    """The raw result of one operation (pysim.results.OpResult adds the views)."""
    cdef public object op            # the operation's name
    cdef public int cpu              # the initiating CPU
    cdef public object value         # the syscall's return value
    cdef public object rows          # delta rows (see OpAccount.finish)
    cdef public object faults        # (index, va, kind, outcome) per page fault


cdef class OpAccount:
    """The accounting window of the operation in flight on a machine (at most one)."""
    cdef readonly uint64_t epoch     # bumped by every begin(); a CPU snapshotted in this
                                     # epoch is part of the operation
    cdef readonly bint active        # an operation is open
    cdef int ntouched                # CPUs in touched[]
    cdef int cap                     # room in touched[]
    cdef void** touched              # borrowed CpuStats pointers (the machine owns them)
    cdef int touch_slow(self, CpuStats s) except -1


cdef class CpuStats:
    """One CPU's kernel counters and kernel cycles, and its snapshot for the open op."""
    cdef readonly int cpu            # CPU id
    cdef readonly TLB tlb            # whose hardware counters and cycles are read
    cdef readonly OpAccount acct     # the machine's accounting window
    cdef int64_t kcount[N_KCOUNTERS]     # kernel counters since the last reset
    cdef double kcycles[N_BREAKDOWN]     # kernel cycles since the last reset
    cdef uint64_t epoch                  # acct epoch of the snapshot below
    cdef double snap[N_COLS]             # this CPU's values when the op first touched it
    cdef void fill_row(self, double* row) noexcept
    cpdef count(self, int counter, int64_t n=*)
    cpdef charge(self, int category, double cycles)
    cpdef enter(self, int counter, int category, double cycles)


cdef inline int stats_touch(CpuStats s) except -1:
    """Make s part of the open operation (snapshot it on first touch)."""
    if s.acct.active and s.epoch != s.acct.epoch:
        s.acct.touch_slow(s)
    return 0


cdef inline int stats_add(CpuStats s, int counter, int64_t n) except -1:
    """Count n events of a kernel counter on s (C callers pass valid enums)."""
    stats_touch(s)
    s.kcount[counter] += n
    return 0


cdef inline int stats_spend(CpuStats s, int category, double cycles) except -1:
    """Charge kernel cycles of a category to s."""
    if cycles != 0.0:
        stats_touch(s)
        s.kcycles[category] += cycles
    return 0
