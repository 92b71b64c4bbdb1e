"""Per-CPU kernel counters and cycle categories, and one operation's delta rows.

    acct = OpAccount(); s = CpuStats(0, tlb, acct)
    acct.begin(s); s.count(K_SYSCALLS); s.charge(B_SYSCALL, 100.0)
    rows = acct.finish()          # (1 + touched, N_COLS) float64; row 0 holds the totals
"""
import numpy as np
cimport numpy as cnp
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset
from cpython.type cimport PyType_IsSubtype

from mmucore.cost import COUNTER_NAMES, CYCLE_NAMES

cnp.import_array()

KERNEL_COUNTER_NAMES = (
    "syscalls", "nr_tlb_local_flush_one", "nr_tlb_local_flush_all", "nr_tlb_remote_flush",
    "nr_tlb_remote_flush_received", "remote_flush_one", "remote_flush_all", "ipi_sent",
    "flush_tlb_mm_range", "tlb_flush_on_switch", "user_pcid_flush", "context_switches",
    "fault_anon", "fault_zero_page", "fault_thp", "fault_wp_reuse", "fault_cow",
    "fault_spurious", "sigsegv", "vma_split", "vma_merge",
    "tlb_remote_wrong_cpu", "invlpgb", "tlbsync",
    "gather_batch_full", "gather_table_full",
    "zap_pte", "zap_huge_pmd", "sigbus", "kvm_pv_flush",
    "rar_sent", "rar_received", "tlbbatch_flush",
    "tlbi", "tlbi_received", "dsb", "tlb_lazy_ipi",
)
assert len(KERNEL_COUNTER_NAMES) == N_KCOUNTERS
BREAKDOWN_NAMES = ("syscall", "pte", "flush", "invalidate", "ipi", "ipi_handler", "fault",
                   "walks", "context_switch", "vma", "user", "lock")
assert len(BREAKDOWN_NAMES) == N_BREAKDOWN
# which breakdown category each hardware cycle kind (CYCLE_NAMES) falls into
HW_CYCLE_CATEGORY = {"tlb_hit": "walks", "walk": "walks", "invalidate": "invalidate",
                     "fault_hw": "fault"}

# the enums for Python callers: K.SYSCALLS, B.PTE, ... as module ints
for _i, _n in enumerate(KERNEL_COUNTER_NAMES):
    globals()["K_" + _n.upper()] = _i
for _i, _n in enumerate(BREAKDOWN_NAMES):
    globals()["B_" + _n.upper()] = _i
KERNEL_COUNTER_INDEX = {n: i for i, n in enumerate(KERNEL_COUNTER_NAMES)}
BREAKDOWN_INDEX = {n: i for i, n in enumerate(BREAKDOWN_NAMES)}
N_KERNEL_COUNTERS = N_KCOUNTERS
N_CATEGORIES = N_BREAKDOWN

# the layout of a delta row, for the Python side (pysim.results)
COLUMNS = {"cpu": COL_CPU, "hw": COL_HW, "hw_cycles": COL_HWY, "kernel": COL_K,
           "breakdown": COL_B, "cycles": COL_CYCLES, "n": N_COLS}


cdef class OpRecord:
    """One operation's name, initiating CPU, return value, delta rows and faults."""

    def __init__(self, op, int cpu, value, rows, faults=None):
        self.op, self.cpu, self.value, self.rows = op, cpu, value, rows
        self.faults = faults if faults is not None else []

    def __reduce__(self):
        return (type(self), (self.op, self.cpu, self.value, self.rows, self.faults))


cdef class OpAccount:
    """Which CPUs the open operation touched, and when it began (its epoch)."""

    def __cinit__(self):
        self.a.epoch = 0
        self.a.active = False
        self.a.ntouched = 0
        self.a.cap = 0
        self.a.touched = NULL

    def __dealloc__(self):
        free(self.a.touched)

    def __reduce__(self):
        # an operation never spans a pickle: the window is rebuilt closed
        return (OpAccount, ())

    @property
    def active(self) -> bool:
        """An operation is open."""
        return self.a.active

    @property
    def epoch(self) -> int:
        return self.a.epoch

    cdef int reserve(self) except -1:
        """Room for one more CPU in the touched list (called as each CpuStats is made)."""
        cdef cpu_stats** grown = <cpu_stats**>realloc(self.a.touched,
                                                      (self.a.cap + 1) * sizeof(cpu_stats*))
        if grown == NULL:
            raise MemoryError()
        self.a.touched = grown
        self.a.cap += 1
        return 0

    cdef int open_window(self, CpuStats initiator) except -1:
        """Open a window; the initiating CPU is its first row."""
        if self.a.active:
            raise RuntimeError("an operation is already open on this machine")
        if initiator.acct is not self:
            raise ValueError(f"CPU {initiator.st.cpu}'s counters belong to another machine")
        self.a.epoch += 1
        self.a.active = True
        self.a.ntouched = 0
        stats_touch(&initiator.st)
        return 0

    def begin(self, CpuStats initiator):
        """Open a window; the initiating CPU is its first row."""
        self.open_window(initiator)

    cdef int open_entry(self, CpuStats initiator, int counter, int category,
                        double cycles) except -1:
        """begin_entry() for C callers (the syscall entry of mmucore.tlbstate)."""
        self.open_window(initiator)
        if not (0 <= counter < N_KCOUNTERS and 0 <= category < N_BREAKDOWN):
            raise ValueError(f"kernel counter {counter} or category {category} unknown")
        stats_add(&initiator.st, counter, 1)
        stats_spend(&initiator.st, category, cycles)
        return 0

    def begin_entry(self, CpuStats initiator, int counter, int category, double cycles):
        """begin(initiator), then initiator.enter(counter, category, cycles): a
        syscall's window and its entry (count and cost) in one call, the same steps
        and checks in the same order."""
        self.open_entry(initiator, counter, category, cycles)

    def close(self, type cls, op, int cpu, value, faults):
        """finish() and wrap the rows in a new cls (an OpRecord subclass) in one call
        (cls's tp_new called straight, as OpRecord.__new__(cls) would after its checks:
        no attribute lookup and wrapper call on every syscall)."""
        return self.close_record(cls, op, cpu, value, faults)

    cdef object close_record(self, type cls, op, int cpu, value, faults):
        """close() for C callers (the syscall exit of mmucore.tlbstate)."""
        if cls is None:
            raise TypeError("close needs an OpRecord subclass, got None")
        if not PyType_IsSubtype(cls, OpRecord):
            raise TypeError(f"OpRecord.__new__({cls.__name__}): {cls.__name__} is not a "
                            f"subtype of OpRecord")
        cdef OpRecord r = _tp_new(cls, ())
        r.rows = _finish(&self.a)
        r.op, r.cpu, r.value, r.faults = op, cpu, value, faults
        return r

    def finish(self):
        """Close the window: (1 + touched, N_COLS) float64 rows, totals first, then each
        touched CPU's delta in the order the operation reached it."""
        return _finish(&self.a)

    def abort(self):
        """Close the window without a result (the counts stay on the CPUs)."""
        self.a.active = False
        self.a.ntouched = 0


cdef extern from *:
    """
    /* t->tp_new(t, args, NULL): a new reference, or NULL with an exception set */
    static PyObject *mmucore_stats_tp_new(PyObject *t, PyObject *args) {
        return ((PyTypeObject *)t)->tp_new((PyTypeObject *)t, args, NULL);
    }
    """
    object _tp_new "mmucore_stats_tp_new" (object t, object args)


cdef object _finish(op_account* a):
    """OpAccount.finish() on its struct (close() calls it without a method call)."""
    if not a.active:
        raise RuntimeError("no operation is open")
    cdef Py_ssize_t n = a.ntouched, i, j
    cdef cnp.npy_intp dims[2]
    dims[0] = n + 1
    dims[1] = N_COLS
    cdef cnp.ndarray out = cnp.PyArray_ZEROS(2, dims, cnp.NPY_FLOAT64, 0)
    cdef double* base = <double*>cnp.PyArray_DATA(out)
    cdef double* row
    cdef cpu_stats* s
    for i in range(n):
        s = a.touched[i]
        row = base + (i + 1) * N_COLS
        fill_row(s, row)
        for j in range(N_COLS):
            row[j] -= s.snap[j]
            base[j] += row[j]
        row[COL_CPU] = s.cpu
    base[COL_CPU] = -1
    a.active = False
    a.ntouched = 0
    return out


cdef class CpuStats:
    """Kernel counters and cycle categories of one CPU, read beside its TLB's."""

    def __cinit__(self, int cpu, TLB tlb, OpAccount acct):
        if tlb is None or acct is None:
            raise ValueError("CpuStats needs a TLB and an OpAccount")
        acct.reserve()
        self.tlb = tlb
        self.acct = acct
        memset(&self.st, 0, sizeof(self.st))
        self.st.cpu = cpu
        self.st.hw_counters = &tlb.counters[0]
        self.st.hw_cycles = &tlb.cycles[0]
        self.st.acct = &acct.a

    def __reduce__(self):
        return (_rebuild_stats, (self.st.cpu, self.tlb, self.acct,
                                 self.kernel_counts_array(), self.kernel_cycles_array()))

    @property
    def cpu(self) -> int:
        return self.st.cpu

    cpdef count(self, int counter, int64_t n=1):
        """Count n events of kernel counter `counter` (an index of KERNEL_COUNTER_NAMES)."""
        if not 0 <= counter < N_KCOUNTERS:
            raise ValueError(f"kernel counter {counter} unknown (0..{N_KCOUNTERS - 1})")
        stats_add(&self.st, counter, n)

    cpdef charge(self, int category, double cycles):
        """Charge kernel cycles to a category (an index of BREAKDOWN_NAMES)."""
        if not 0 <= category < N_BREAKDOWN:
            raise ValueError(f"cycle category {category} unknown (0..{N_BREAKDOWN - 1})")
        stats_spend(&self.st, category, cycles)

    cpdef enter(self, int counter, int category, double cycles):
        """count(counter) and charge(category, cycles) in one call (a syscall's entry)."""
        if not (0 <= counter < N_KCOUNTERS and 0 <= category < N_BREAKDOWN):
            raise ValueError(f"kernel counter {counter} or category {category} unknown")
        stats_add(&self.st, counter, 1)
        stats_spend(&self.st, category, cycles)

    def kernel_counts_array(self):
        """The kernel counters as int64 (index = KERNEL_COUNTER_NAMES)."""
        cdef cnp.ndarray out = np.empty(N_KCOUNTERS, dtype=np.int64)
        memcpy(cnp.PyArray_DATA(out), self.st.kcount, sizeof(self.st.kcount))
        return out

    def kernel_cycles_array(self):
        """Kernel cycles per category as float64 (index = BREAKDOWN_NAMES)."""
        cdef cnp.ndarray out = np.empty(N_BREAKDOWN, dtype=np.float64)
        memcpy(cnp.PyArray_DATA(out), self.st.kcycles, sizeof(self.st.kcycles))
        return out

    def kernel_count(self, int counter):
        """One kernel counter's value."""
        if not 0 <= counter < N_KCOUNTERS:
            raise ValueError(f"kernel counter {counter} unknown (0..{N_KCOUNTERS - 1})")
        return self.st.kcount[counter]

    @property
    def kernel_cycles(self) -> float:
        """All kernel cycles charged to this CPU."""
        cdef double total = 0.0
        cdef int i
        for i in range(N_BREAKDOWN):
            total += self.st.kcycles[i]
        return total

    @property
    def clock(self) -> float:
        """Cycles this CPU has spent: kernel cycles plus its TLB's hardware cycles."""
        return stats_clock(&self.st)

    def reset(self):
        """Zero the kernel counters and cycles (the TLB's are reset by the TLB)."""
        if self.st.acct.active:
            raise RuntimeError("cannot reset counters while an operation is open")
        memset(self.st.kcount, 0, sizeof(self.st.kcount))
        memset(self.st.kcycles, 0, sizeof(self.st.kcycles))


def _rebuild_stats(cpu, tlb, acct, counts, cycles):
    cdef CpuStats s = CpuStats(cpu, tlb, acct)
    cdef Py_ssize_t i
    for i in range(N_KCOUNTERS):
        s.st.kcount[i] = counts[i]
    for i in range(N_BREAKDOWN):
        s.st.kcycles[i] = cycles[i]
    return s


cdef class TotalsLog:
    """The totals row (row 0) of many operations' delta rows in one growing buffer,
    and each one's initiating-CPU cycles: what a replay keeps of every call, without
    holding one rows array per call."""

    cdef double* buf                 # n rows of N_COLS, room for cap
    cdef Py_ssize_t n, cap

    def __cinit__(self):
        self.buf = NULL
        self.n = 0
        self.cap = 0

    def __dealloc__(self):
        free(self.buf)

    def __reduce__(self):
        return (_rebuild_log, (self.totals(),))

    def __len__(self):
        return self.n

    cdef double* _next_row(self) except NULL:
        """Room for one more row (the buffer doubles when full)."""
        cdef Py_ssize_t cap
        cdef double* grown
        if self.n == self.cap:
            cap = self.cap * 2 if self.cap else 1024
            grown = <double*>realloc(self.buf, cap * N_COLS * sizeof(double))
            if grown == NULL:
                raise MemoryError()
            self.buf, self.cap = grown, cap
        self.n += 1
        return self.buf + (self.n - 1) * N_COLS

    def add(self, cnp.ndarray rows not None):
        """Append rows[0] of an operation's delta rows; returns rows[1]'s cycles (the
        initiating CPU's, as OpResult.cycles)."""
        if rows.ndim != 2 or rows.shape[0] < 2 or rows.shape[1] != N_COLS \
                or cnp.PyArray_TYPE(rows) != cnp.NPY_FLOAT64 \
                or not cnp.PyArray_IS_C_CONTIGUOUS(rows):
            raise ValueError("rows must be C-contiguous float64 delta rows "
                             f"(2+ rows of {N_COLS} columns)")
        cdef double* src = <double*>cnp.PyArray_DATA(rows)
        memcpy(self._next_row(), src, N_COLS * sizeof(double))
        return src[N_COLS + COL_CYCLES]

    def add_zeros(self):
        """Append a row of zeros (a call that raised: no result)."""
        memset(self._next_row(), 0, N_COLS * sizeof(double))

    def totals(self):
        """The rows so far as a new (n, N_COLS) float64 array."""
        cdef cnp.ndarray out = np.empty((self.n, N_COLS), dtype=np.float64)
        if self.n:
            memcpy(cnp.PyArray_DATA(out), self.buf, self.n * N_COLS * sizeof(double))
        return out


def _rebuild_log(totals):
    """A TotalsLog holding the rows of totals (unpickling)."""
    cdef TotalsLog log = TotalsLog()
    cdef const double[:, ::1] t = np.ascontiguousarray(totals, dtype=np.float64)
    cdef Py_ssize_t i
    if t.shape[0] and t.shape[1] != N_COLS:
        raise ValueError(f"totals must have {N_COLS} columns")
    for i in range(t.shape[0]):
        memcpy(log._next_row(), &t[i, 0], N_COLS * sizeof(double))
    return log
