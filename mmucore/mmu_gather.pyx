# cython: language_level=3
"""The mmu_gather life cycle (mm/mmu_gather.c, include/asm-generic/tlb.h) in C:
struct mmu_gather bound to its mm and to the CPU that flushes it, and the calls a kernel
path makes on it, from tlb_gather_mmu() to tlb_finish_mmu().

pysim.mm.mmu_gather is the user-facing module: it re-exports everything here, and its
docstring states the ordering rule (change and record the entries first, flush after).

Why a module of its own and not mmucore.gather: gather.pyx is the gather's C state, the
range, level bits and batch counts (gather_t) that pagetable.pyx's loops write through a
pointer and that knows no Python object at all.  This module is the other concept, the
batch's life cycle around that state: it works on pysim's Python CPU and mm objects
(their attributes: cpu.stats, cpu.gather_batch_reserve, cpu.gather_merges_vmas,
cpu.arch.tlb_flush, mm.tlb_flush_pending, mm.frames.lruvec), calls the architecture's
flush hook and opens and closes the CPU's accounting window.  Every attribute of cpu and
mm is read and written from C exactly where and in the order the Python code did; only
the gather's own fields and the accounting window's `active` bit are C reads.

mmucore never imports pysim (calls only go down).  What this module needs from it is
handed over once, when pysim.mm.mmu_gather is imported, through set_pysim(): the
OpResult class an own window's result is made of, ArgumentError and PysimError.  Until
then mmucore.stats.OpRecord, TypeError and RuntimeError stand in.  The flush itself is
the architecture's hook, cpu.arch.tlb_flush(tlb): that is the seam to replace (a test
that drops flushes replaces it there).
"""
cimport cython
from libc.stdint cimport uint64_t

from mmucore.gather cimport (Gather, gather_init, c_tlb_reset_range, c_tlb_needs_flush,
                             c_tlb_flush_pte_range, c_tlb_flush_pmd_range,
                             c_tlb_adjust_range, c_tlb_batch_pages_flush)
from mmucore.pte cimport u64
from mmucore.stats cimport OpAccount, OpRecord


# --- what pysim hands over ----------------------------------------------------------------

cdef object _OpResult = OpRecord         # pysim.results.OpResult once set_pysim() ran
cdef object _ArgumentError = None        # pysim.errors.ArgumentError (None: TypeError)
cdef object _PysimError = RuntimeError   # pysim.errors.PysimError


def set_pysim(op_result, argument_error, pysim_error):
    """Make an own window's result an op_result (pysim's OpResult), the argument checks
    raise argument_error(message, field=...) (ArgumentError) and misuse pysim_error
    (PysimError).  mmucore cannot import them."""
    global _OpResult, _ArgumentError, _PysimError
    _OpResult = op_result
    _ArgumentError = argument_error
    _PysimError = pysim_error


# --- struct mmu_gather --------------------------------------------------------------------

@cython.freelist(8)
cdef class MMUGather:
    """struct mmu_gather: the core's range/level state (`state`, a mmucore.Gather) plus
    the mm and the CPU flushing; `flushes` holds the FlushInfo of every flush the batch
    made, `own_window` says the batch opened the CPU's accounting window itself, and
    `result` is then its OpResult, once `finished`.  The attributes are read-only."""

    cdef readonly object cpu
    cdef readonly object mm
    cdef readonly Gather state
    cdef readonly list flushes
    cdef readonly bint finished
    cdef readonly bint own_window
    cdef readonly object result

    def __cinit__(self):
        # every MMUGather has a state and a flush list, however it was made (a __cinit__
        # without arguments ignores the constructor's, and builds no args/kwargs for them)
        self.state = Gather.__new__(Gather)
        self.flushes = []

    def __init__(self, cpu, mm, bint fullmm=False, int batch_reserve=0):
        """A gather on mm flushed by cpu (tlb_gather_mmu() makes one and opens it)."""
        self.cpu = cpu
        self.mm = mm
        gather_init(self.state, fullmm, batch_reserve)

    # context-manager form of tlb_gather_mmu ... tlb_finish_mmu
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if not self.finished:
            c_tlb_finish_mmu(self)

    def __repr__(self):
        return f"MMUGather({self.state!r}, {len(self.flushes)} flushes)"

    def __reduce__(self):
        """Pickle every attribute (the state pickles itself exactly)."""
        return (_rebuild, (self.cpu, self.mm, self.state, self.flushes, self.finished,
                           self.own_window, self.result))


def _rebuild(cpu, mm, Gather state not None, list flushes not None, bint finished,
             bint own_window, result):
    """Unpickle an MMUGather."""
    cdef MMUGather tlb = MMUGather.__new__(MMUGather)
    tlb.cpu, tlb.mm, tlb.state, tlb.flushes = cpu, mm, state, flushes
    tlb.finished, tlb.own_window, tlb.result = finished, own_window, result
    return tlb


# --- the API --------------------------------------------------------------------------------

def tlb_gather_mmu(cpu, mm, bint fullmm=False):
    """Start a batch on mm; mm.tlb_flush_pending counts it until tlb_finish_mmu().
    Outside an operation (no accounting window open on the CPU) the batch opens its own
    and tlb_finish_mmu() closes it into tlb.result."""
    return c_tlb_gather_mmu(cpu, mm, fullmm)


cdef MMUGather c_tlb_gather_mmu(cpu, mm, bint fullmm):
    """tlb_gather_mmu() (the C functions below are the API's, each under its def)."""
    cdef MMUGather tlb
    try:
        acct = cpu.stats.acct
        mm.tlb_flush_pending
    except AttributeError:
        raise _bad_arguments(cpu, mm) from None
    # gather_batch_reserve(cpu.cfg.profile), decided once per CPU
    tlb = MMUGather.__new__(MMUGather)
    tlb.cpu = cpu
    tlb.mm = mm
    gather_init(tlb.state, fullmm, cpu.gather_batch_reserve)
    if not _window_active(acct):
        _open_own_window(tlb, acct)
    mm.tlb_flush_pending += 1
    return tlb


cdef object _bad_arguments(cpu, mm):
    """The error for a tlb_gather_mmu() handed something else than a CPU and an mm."""
    bad = "cpu" if not hasattr(cpu, "stats") else "mm"
    msg = (f"tlb_gather_mmu(cpu, mm) needs a CPU (thread.cpu) and an mm (thread.mm), "
           f"got {type(cpu).__name__} and {type(mm).__name__}")
    if _ArgumentError is None:
        return TypeError(msg)
    return _ArgumentError(msg, field=bad)


cdef inline bint _window_active(acct) except -1:
    """acct.active: the C bit of an OpAccount, the attribute of anything else."""
    if type(acct) is OpAccount:
        return (<OpAccount>acct).a.active
    return bool(acct.active)


cdef int _open_own_window(MMUGather tlb, acct) except -1:
    """A user's kernel path run on its own: account it as one operation on the CPU
    (tlb.result); the machine's checker does not run for it (call m.check())."""
    cpu = tlb.cpu
    acct.begin(cpu.stats)
    cpu.faults = []
    tlb.own_window = True
    return 0


def tlb_start_vma(tlb, vma):
    """Nothing to do on x86 (flush_cache_range is a no-op)."""


def tlb_end_vma(MMUGather tlb not None, vma):
    """Flush now unless the architecture merges VMAs in one gather (x86 does, arm64
    does not) and the profile keeps MMU_GATHER_MERGE_VMAS."""
    c_tlb_end_vma(tlb, vma)


cdef int c_tlb_end_vma(MMUGather tlb, vma) except -1:
    if tlb.state.g.fullmm:
        return 0
    if not tlb.cpu.gather_merges_vmas:      # the profile's and the arch's, decided once
        c_tlb_flush_mmu_tlbonly(tlb)
    return 0


def tlb_flush_pte_range(MMUGather tlb not None, addr, size):
    """tlb_flush_pte_range(): record [addr, addr+size) of 4K entries."""
    cdef uint64_t c_addr = u64(addr, "flush_pte_range: addr")
    cdef uint64_t c_size = u64(size, "flush_pte_range: size")
    c_tlb_flush_pte_range(&tlb.state.g, c_addr, c_size)


def tlb_flush_pmd_range(MMUGather tlb not None, addr, size):
    """tlb_flush_pmd_range(): record [addr, addr+size) of 2M entries."""
    cdef uint64_t c_addr = u64(addr, "flush_pmd_range: addr")
    cdef uint64_t c_size = u64(size, "flush_pmd_range: size")
    c_tlb_flush_pmd_range(&tlb.state.g, c_addr, c_size)


def tlb_flush_pud_range(MMUGather tlb not None, addr, size):
    """tlb_flush_pud_range(): record [addr, addr+size) of 1G entries."""
    cdef uint64_t c_addr = u64(addr, "flush_pud_range: addr")
    cdef uint64_t c_size = u64(size, "flush_pud_range: size")
    c_tlb_adjust_range(&tlb.state.g, c_addr, c_size)
    tlb.state.g.cleared_puds = True


def tlb_flush(MMUGather tlb not None):
    """The architecture's tlb_flush() over what the batch recorded; its FlushInfo (if
    any) is kept in tlb.flushes and returned."""
    return c_tlb_flush(tlb)


cdef object c_tlb_flush(MMUGather tlb):
    f = tlb.cpu.arch.tlb_flush(tlb)
    if f is not None:                # (arm64: a full-mm teardown may need no flush)
        tlb.flushes.append(f)
    return f



def tlb_flush_mmu_tlbonly(MMUGather tlb not None):
    """Flush what was recorded (if anything) and reset the range."""
    c_tlb_flush_mmu_tlbonly(tlb)


cdef int c_tlb_flush_mmu_tlbonly(MMUGather tlb) except -1:
    if not c_tlb_needs_flush(&tlb.state.g):
        return 0
    c_tlb_flush(tlb)
    c_tlb_reset_range(&tlb.state.g)
    return 0


def tlb_table_flush(MMUGather tlb not None):
    """tlb_table_flush(): the table batch is full (or the gather ends): flush the TLB
    over what was recorded (tlb_table_invalidate), then the tables go to RCU."""
    c_tlb_table_flush(tlb)


cdef int c_tlb_table_flush(MMUGather tlb) except -1:
    c_tlb_flush_mmu_tlbonly(tlb)
    tlb.state.g.table_nr = 0
    return 0


def tlb_flush_mmu(MMUGather tlb not None):
    """tlb_flush_mmu(): flush, then free what the batches hold (tlb_flush_mmu_free: the
    table batch, then the queued pages; the model frees no memory, it empties them).
    tlb_flush_mmu_tlbonly() and tlb_table_flush() written out: the second tlbonly, in
    tlb_table_flush, would find the range just reset and do nothing."""
    c_tlb_flush_mmu(tlb)


cdef int c_tlb_flush_mmu(MMUGather tlb) except -1:
    cdef Gather g = tlb.state
    if c_tlb_needs_flush(&g.g):             # tlb_flush_mmu_tlbonly()
        c_tlb_flush(tlb)
        c_tlb_reset_range(&g.g)
    g.g.table_nr = 0                        # tlb_table_flush()
    lru = tlb.mm.frames.lruvec
    if lru.timed:                           # free_zapped() does nothing untimed
        _free_zapped(tlb, lru)
    c_tlb_batch_pages_flush(&g.g)
    return 0


cdef int _free_zapped(MMUGather tlb, lru) except -1:
    """The timed LRU's free_zapped() for the pages queued since the last flush."""
    lru.free_zapped(tlb.cpu, tlb.state.g.nr_pages)
    return 0


def tlb_finish_mmu(MMUGather tlb not None):
    """End the batch: nested batchers on the mm force a full flush that also reaches
    lazy CPUs; then the final flush and tlb_flush_pending--.  An exception on the way
    aborts a window the batch opened itself; the count goes down in any case."""
    c_tlb_finish_mmu(tlb)


cdef int c_tlb_finish_mmu(MMUGather tlb) except -1:
    cdef Gather g
    if tlb.finished:
        raise _finished_twice()
    tlb.finished = True
    mm, g = tlb.mm, tlb.state
    try:
        if mm.tlb_flush_pending > 1:
            g.g.fullmm = True
            c_tlb_reset_range(&g.g)
            g.g.freed_tables = True
        c_tlb_flush_mmu(tlb)         # flushes only if something was recorded
    except BaseException:
        if tlb.own_window:
            _abort_own_window(tlb)
        raise
    finally:
        mm.tlb_flush_pending -= 1
    if tlb.own_window:
        _close_own_window(tlb)
    return 0


cdef object _finished_twice():
    """The error for a second tlb_finish_mmu() on one gather."""
    return _PysimError("tlb_finish_mmu called twice on one gather")


cdef int _abort_own_window(MMUGather tlb) except -1:
    """An exception ended the batch: the window it opened closes without a result."""
    tlb.cpu.stats.acct.abort()
    return 0


cdef int _close_own_window(MMUGather tlb) except -1:
    """Close the window tlb_gather_mmu() opened: the batch's OpResult."""
    cpu = tlb.cpu
    tlb.result = cpu.stats.acct.close(_OpResult, "mmu_gather", cpu.id, tlb.flushes,
                                      cpu.faults)
    return 0
