"""The x86 shootdown path (arch/x86/mm/tlb.c) over per-CPU state in C.

State has one owner each, named as in the kernel: `CpuTlbState` is a CPU's
cpu_tlbstate (loaded_mm, loaded_mm_asid, ctxs[] of {ctx_id, tlb_gen}, is_lazy,
user_pcid_flush_mask), `MMContext` is mm->context plus mm_cpumask(mm), and `X86Flush`
holds what is machine-wide: the CPUs, the kernel's knobs, the kernel costs of the flush
path and the flush_tlb_multi backend.

Three generations decide what a CPU does in flush_tlb_func(): the mm's tlb_gen (bumped
once per request), the CPU's slot generation (what its entries are known clean up to)
and the request's new_tlb_gen.  Flushes here complete before the initiator goes on, so
a CPU exactly one generation behind does the requested partial flush; a CPU that missed
a request (it was lazy, or another flusher bumped tlb_gen first) is more than one behind
and must flush its whole ASID, because a partial flush for the latest request would not
cover the earlier one's range.

ASIDs: TLB_NR_DYN_ASIDS slots per CPU.  Switching to an mm reuses its slot (flushing
only if the slot is stale) or takes the next slot round robin (always flushing).  With
PTI each ASID has a user PCID (kernel PCID | bit 11) that kernel code cannot flush
with INVLPG; without INVPCID a flush marks the ASID in user_pcid_flush_mask and the
exit to user space flushes that ASID's user PCID (SWITCH_TO_USER_CR3), clearing only
that ASID's flag.
"""
import weakref

import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.stdlib cimport free, malloc

from mmucore.cost cimport C_CR3_NOFLUSH, N_CYCLE_KINDS, Y_INVALIDATE
from mmucore.stats cimport (B_CONTEXT_SWITCH, B_FLUSH, B_IPI, B_IPI_HANDLER,
                            K_CONTEXT_SWITCHES, K_FLUSH_TLB_MM_RANGE, K_IPI_SENT,
                            K_NR_TLB_LOCAL_FLUSH_ALL, K_NR_TLB_LOCAL_FLUSH_ONE,
                            K_NR_TLB_REMOTE_FLUSH, K_NR_TLB_REMOTE_FLUSH_RECEIVED,
                            K_REMOTE_FLUSH_ALL, K_REMOTE_FLUSH_ONE, K_TLB_FLUSH_ON_SWITCH,
                            K_USER_PCID_FLUSH, CpuStats, stats_add, stats_spend, stats_touch)
from mmucore.tlb cimport TLB, c_flush_pcid, c_invlpg, c_invpcid_single

cnp.import_array()

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil

cdef uint64_t FLUSH_ALL = <uint64_t>0xFFFFFFFFFFFFFFFF
TLB_FLUSH_ALL = (1 << 64) - 1
USER_PCID_BIT = 1 << 11
BACKENDS = ("ipi", "python")
PARAM_FIELDS = ("pcid", "invpcid", "pti", "lazy_tlb", "early_exit", "ceiling", "nr_asids")
COST_FIELDS = ("flush_base", "flush_per_page", "ipi_send", "ipi_extra_target",
               "ipi_deliver", "ipi_handler", "ipi_ack", "context_switch")


cdef inline int kern_pcid(int asid) noexcept nogil:
    """The hardware PCID of a kernel ASID (ASID + 1: PCID 0 is never a dynamic one)."""
    return asid + 1


cdef inline int user_pcid(int asid) noexcept nogil:
    """The PCID of the ASID's user copy under PTI."""
    return (asid + 1) | (1 << 11)


cdef inline double tlb_cycles(TLB t) noexcept:
    cdef double s = 0.0
    cdef int i
    for i in range(N_CYCLE_KINDS):
        s += t.cycles[i]
    return s


# ------------------------------------------------------------------ mm context
cdef inline void cpumask_set_cpu(MMContext mm, int cpu) noexcept:
    mm.mask[cpu >> 6] |= (<uint64_t>1) << (cpu & 63)


cdef inline void cpumask_clear_cpu(MMContext mm, int cpu) noexcept:
    mm.mask[cpu >> 6] &= ~((<uint64_t>1) << (cpu & 63))


cdef inline bint cpumask_test_cpu(MMContext mm, int cpu) noexcept:
    return (mm.mask[cpu >> 6] >> (cpu & 63)) & 1


cdef class MMContext:
    """mm->context (ctx_id, tlb_gen) and mm_cpumask(mm) as a bitmap."""

    def __cinit__(self, int64_t ctx_id, int nr_cpus, uint64_t tlb_gen=0):
        if nr_cpus < 1:
            raise ValueError(f"nr_cpus must be >= 1, got {nr_cpus}")
        self.ctx_id = ctx_id
        self.tlb_gen = tlb_gen
        self.nr_cpus = nr_cpus
        self.nwords = (nr_cpus + 63) // 64
        self._maskbuf = np.zeros(self.nwords, dtype=np.uint64)
        self.mask = <uint64_t*>cnp.PyArray_DATA(self._maskbuf)
        self.owner = None

    def __reduce__(self):
        return (_rebuild_context, (self.ctx_id, self.nr_cpus, self.tlb_gen,
                                   self._maskbuf.copy()))

    def __contains__(self, cpu):
        return 0 <= cpu < self.nr_cpus and cpumask_test_cpu(self, cpu)

    @property
    def cpumask(self) -> frozenset:
        """The CPUs in mm_cpumask, as a set of ids."""
        cdef int w, b
        out = []
        for w in range(self.nwords):
            if self.mask[w]:
                for b in range(64):
                    if (self.mask[w] >> b) & 1:
                        out.append(w * 64 + b)
        return frozenset(out)

    def __repr__(self):
        return f"MMContext(ctx {self.ctx_id}, gen {self.tlb_gen}, cpus {sorted(self.cpumask)})"


def _rebuild_context(ctx_id, nr_cpus, tlb_gen, mask):
    cdef MMContext m = MMContext(ctx_id, nr_cpus, tlb_gen)
    m._maskbuf[:] = mask
    return m


# ------------------------------------------------------------------ per-CPU state
cdef class CpuTlbState:
    """cpu_tlbstate of one CPU: loaded mm and ASID, the ASID slots, laziness and the
    PTI user-PCID flush flags; with its TLB and its kernel counters."""

    def __cinit__(self, int cpu, TLB tlb, CpuStats stats, int nr_asids):
        if nr_asids < 1:
            raise ValueError(f"nr_asids must be >= 1, got {nr_asids}")
        self.cpu = cpu
        self.tlb = tlb
        self.stats = stats
        self.loaded_mm = None
        self.loaded_mm_asid = 0
        self.next_asid = 0
        self.is_lazy = False
        self.running_user = False
        self.nr_asids = nr_asids
        ctxs = np.zeros(2 * nr_asids, dtype=np.int64)
        ctxs[0::2] = -1
        flags = np.zeros(nr_asids, dtype=np.uint8)
        self._bufs = (ctxs, flags)
        self.ctxs = <tlb_context*>cnp.PyArray_DATA(ctxs)
        self.user_pcid_flush_mask = <uint8_t*>cnp.PyArray_DATA(flags)

    def __reduce__(self):
        ctxs, flags = self._bufs
        return (_rebuild_cpu, (self.cpu, self.tlb, self.stats, self.nr_asids,
                               self.loaded_mm, self.loaded_mm_asid, self.next_asid,
                               self.is_lazy, self.running_user, ctxs.copy(), flags.copy()))

    @property
    def loaded_mm(self):
        """The MMContext loaded here (None: init_mm)."""
        return self.loaded_mm

    @property
    def asids(self) -> list:
        """The ASID slots as [ctx_id, tlb_gen] pairs (ctx_id -1: empty)."""
        return [[self.ctxs[i].ctx_id, <int64_t>self.ctxs[i].tlb_gen]
                for i in range(self.nr_asids)]

    @property
    def user_flush_pending(self) -> set:
        """ASIDs whose user PCID is flushed on the next exit to user space with them."""
        return {i for i in range(self.nr_asids) if self.user_pcid_flush_mask[i]}

    def user_flush_is_pending(self, int asid) -> bool:
        """Whether asid's user PCID will be flushed before user code runs with it."""
        if not 0 <= asid < self.nr_asids:
            raise ValueError(f"asid {asid} outside 0..{self.nr_asids - 1}")
        return bool(self.user_pcid_flush_mask[asid])

    @property
    def kern_pcid(self) -> int:
        """The PCID kernel code runs under with the loaded ASID."""
        return kern_pcid(self.loaded_mm_asid)

    @property
    def user_pcid(self) -> int:
        """The PCID of the loaded ASID's user copy (PTI)."""
        return user_pcid(self.loaded_mm_asid)

    def __repr__(self):
        mm = f"ctx {self.loaded_mm.ctx_id}" if self.loaded_mm is not None else "init_mm"
        return f"CpuTlbState(cpu {self.cpu}, {mm}{' lazy' if self.is_lazy else ''})"


def _rebuild_cpu(cpu, tlb, stats, nr_asids, loaded_mm, asid, next_asid, lazy, running,
                 ctxs, flags):
    cdef CpuTlbState s = CpuTlbState(cpu, tlb, stats, nr_asids)
    s.loaded_mm = loaded_mm
    s.loaded_mm_asid = asid
    s.next_asid = next_asid
    s.is_lazy = lazy
    s.running_user = running
    s._bufs[0][:] = ctxs
    s._bufs[1][:] = flags
    return s


# ------------------------------------------------------------------ context switching
cdef int choose_new_asid(X86Flush x, CpuTlbState cpu, MMContext mm,
                         bint* need_flush) noexcept:
    """choose_new_asid(): mm's slot if it has one (flush iff stale), else the next slot
    round robin (always flush).  Without PCIDs: ASID 0, always flush."""
    cdef int asid
    if not x.p.pcid:
        need_flush[0] = True
        return 0
    for asid in range(cpu.nr_asids):
        if cpu.ctxs[asid].ctx_id == mm.ctx_id:
            need_flush[0] = cpu.ctxs[asid].tlb_gen < mm.tlb_gen
            return asid
    asid = cpu.next_asid
    cpu.next_asid = (cpu.next_asid + 1) % cpu.nr_asids
    need_flush[0] = True
    return asid


cdef int switch_pcid(CpuTlbState cpu, int pcid, bint flush) except -1:
    """A CR3 write: with flush, the PCID's non-global entries go; else NOFLUSH."""
    cdef TLB t = cpu.tlb
    t.pcid = pcid
    if flush:
        c_flush_pcid(t, pcid)
    else:
        t.counters[C_CR3_NOFLUSH] += 1
        t.cycles[Y_INVALIDATE] += t.cost.cr3_noflush
    return 0


cdef int load_cr3(X86Flush x, CpuTlbState cpu, int asid, bint flush) except -1:
    """load_new_mm_cr3(): CR3 for asid, flushing or not; with PTI a flush also marks the
    user PCID (invalidate_user_asid), flushed on the way back to user space."""
    switch_pcid(cpu, kern_pcid(asid), flush)
    if flush:
        if x.p.pti:
            cpu.user_pcid_flush_mask[asid] = 1
        stats_add(cpu.stats, K_TLB_FLUSH_ON_SWITCH, 1)
    return 0


cdef int switch_mm_irqs_off(X86Flush x, CpuTlbState cpu, MMContext mm) except -1:
    """Make cpu run mm (None: init_mm, a kernel thread): cpumask, ASID choice, CR3."""
    cdef MMContext prev = cpu.loaded_mm
    cdef int asid
    cdef bint need_flush = False
    stats_touch(cpu.stats)
    if mm is prev:
        if mm is not None and cpu.is_lazy:
            # leaving lazy mode: catch up if a flush skipped this CPU meanwhile
            cpu.is_lazy = False
            asid = cpu.loaded_mm_asid
            if cpu.ctxs[asid].tlb_gen < mm.tlb_gen:
                cpu.ctxs[asid].ctx_id = mm.ctx_id
                cpu.ctxs[asid].tlb_gen = mm.tlb_gen
                load_cr3(x, cpu, asid, True)
        return 0
    stats_add(cpu.stats, K_CONTEXT_SWITCHES, 1)
    stats_spend(cpu.stats, B_CONTEXT_SWITCH, x.c.context_switch)
    if prev is not None:
        cpumask_clear_cpu(prev, cpu.cpu)              # 5.17: cleared when switching to another mm
    cpu.is_lazy = False
    if mm is None:
        cpu.loaded_mm = None
        switch_pcid(cpu, 0, False)           # init_mm: kernel mappings only
        return 0
    cpumask_set_cpu(mm, cpu.cpu)
    asid = choose_new_asid(x, cpu, mm, &need_flush)
    cpu.ctxs[asid].ctx_id = mm.ctx_id
    cpu.ctxs[asid].tlb_gen = mm.tlb_gen
    cpu.loaded_mm = mm
    cpu.loaded_mm_asid = asid
    load_cr3(x, cpu, asid, need_flush)
    return 0


cdef int enter_lazy_tlb(X86Flush x, CpuTlbState cpu) except -1:
    """A kernel thread borrows the mm: keep CR3 and the cpumask bit, mark the CPU lazy
    (or, without lazy TLB, switch to init_mm)."""
    if cpu.loaded_mm is None:
        return 0
    if x.p.lazy_tlb:
        cpu.is_lazy = True
    else:
        switch_mm_irqs_off(x, cpu, None)
    return 0


cdef int return_to_user(X86Flush x, CpuTlbState cpu) except -1:
    """The exit to user space: with PTI, the deferred flush of the loaded ASID's user
    PCID (SWITCH_TO_USER_CR3 tests and clears that ASID's bit only)."""
    cdef int asid = cpu.loaded_mm_asid
    if cpu.loaded_mm is None or not cpu.user_pcid_flush_mask[asid]:
        return 0
    stats_touch(cpu.stats)
    c_flush_pcid(cpu.tlb, user_pcid(asid))
    cpu.user_pcid_flush_mask[asid] = 0
    stats_add(cpu.stats, K_USER_PCID_FLUSH, 1)
    return 0


# ------------------------------------------------------------------ the flush itself
cdef inline void flush_tlb_one_user(X86Flush x, CpuTlbState cpu, uint64_t addr) noexcept:
    """INVLPG addr in the current PCID; with PTI also the user PCID (INVPCID if the CPU
    has it, else the ASID is marked for a user flush on return to user space)."""
    c_invlpg(cpu.tlb, addr, cpu.tlb.pcid)
    if x.p.pti:
        if x.p.invpcid:
            c_invpcid_single(cpu.tlb, addr, user_pcid(cpu.loaded_mm_asid))
        else:
            cpu.user_pcid_flush_mask[cpu.loaded_mm_asid] = 1


cdef inline void flush_tlb_local(X86Flush x, CpuTlbState cpu) noexcept:
    """Full flush of the loaded ASID's non-global entries (a CR3 reload)."""
    c_flush_pcid(cpu.tlb, kern_pcid(cpu.loaded_mm_asid))
    if x.p.pti:
        cpu.user_pcid_flush_mask[cpu.loaded_mm_asid] = 1


cdef double flush_tlb_func(X86Flush x, CpuTlbState cpu, MMContext mm, flush_tlb_info* f,
                           bint local) except -1.0:
    """flush_tlb_func() on one target; returns the kernel cycles it spent (hardware
    invalidation cycles land on the CPU's TLB counters)."""
    cdef uint64_t local_gen, mm_gen, n, i
    cdef int asid
    if not local:
        stats_add(cpu.stats, K_NR_TLB_REMOTE_FLUSH_RECEIVED, 1)
    if mm is not cpu.loaded_mm:
        return 0.0
    if cpu.is_lazy:
        switch_mm_irqs_off(x, cpu, None)    # a lazy CPU reached (tables freed) leaves the mm
        return 0.0
    asid = cpu.loaded_mm_asid
    local_gen = cpu.ctxs[asid].tlb_gen
    mm_gen = mm.tlb_gen
    if x.p.early_exit and f.new_tlb_gen <= local_gen:
        return 0.0
    if local_gen == mm_gen:
        return 0.0
    # The partial flush is enough only for the CPU's next generation, and only if no
    # later request is in flight: were f one of two back-to-back requests, a CPU at
    # gen g doing f = g + 2's range alone would miss request g + 1's range.
    if f.end != FLUSH_ALL and f.new_tlb_gen == local_gen + 1 and f.new_tlb_gen == mm_gen:
        n = (f.end - f.start) >> f.stride_shift
        for i in range(n):
            flush_tlb_one_user(x, cpu, f.start + (i << f.stride_shift))
        stats_add(cpu.stats, K_NR_TLB_LOCAL_FLUSH_ONE if local else K_REMOTE_FLUSH_ONE,
                  <int64_t>n)
        cpu.ctxs[asid].tlb_gen = mm_gen
        return n * x.c.flush_per_page
    flush_tlb_local(x, cpu)
    stats_add(cpu.stats, K_NR_TLB_LOCAL_FLUSH_ALL if local else K_REMOTE_FLUSH_ALL, 1)
    cpu.ctxs[asid].tlb_gen = mm_gen
    return 0.0


cdef int native_flush_tlb_multi(X86Flush x, CpuTlbState initiator, MMContext mm,
                                flush_tlb_info* f, double local_cycles) except -1:
    """The IPI backend: every other CPU of mm_cpumask that is not lazy (lazy ones too
    when tables were freed) gets an IPI running flush_tlb_func; the initiator pays the
    sends and waits for the slowest acknowledgement beyond its own local flush."""
    cdef int w, b, cpu_id, n = 0, nothers = 0, i
    cdef uint64_t word
    cdef CpuTlbState c
    cdef double rtt = 0.0, hw0, kernel, work
    for w in range(mm.nwords):
        word = mm.mask[w]
        while word:
            b = __builtin_ctzll(word)
            word &= word - 1
            cpu_id = w * 64 + b
            if cpu_id == initiator.cpu or cpu_id >= x.ncpus:
                continue
            nothers += 1
            c = <CpuTlbState>x.cpus[cpu_id]
            if f.freed_tables or not c.is_lazy:
                x.targets[n] = cpu_id
                n += 1
    if nothers:
        # native_flush_tlb_multi counts before lazy CPUs are filtered out
        stats_add(initiator.stats, K_NR_TLB_REMOTE_FLUSH, 1)
    if n == 0:
        return 0
    stats_add(initiator.stats, K_IPI_SENT, n)
    for i in range(n):
        c = <CpuTlbState>x.cpus[x.targets[i]]
        stats_touch(c.stats)
        hw0 = tlb_cycles(c.tlb)
        kernel = x.c.ipi_handler + flush_tlb_func(x, c, mm, f, False)
        if c.running_user:
            return_to_user(x, c)            # the busy thread goes back to user space
        stats_spend(c.stats, B_IPI_HANDLER, kernel)
        work = kernel + (tlb_cycles(c.tlb) - hw0)
        if x.c.ipi_deliver + work + x.c.ipi_ack > rtt:
            rtt = x.c.ipi_deliver + work + x.c.ipi_ack
    stats_spend(initiator.stats, B_IPI,
                x.c.ipi_send + x.c.ipi_extra_target * (n - 1)
                + (rtt - local_cycles if rtt > local_cycles else 0.0))
    return 0


cdef class FlushInfo:
    """struct flush_tlb_info of one request, as flush_tlb_mm_range() built it."""

    @property
    def full(self) -> bool:
        return self.end == FLUSH_ALL

    @property
    def nr_pages(self) -> int:
        return 0 if self.end == FLUSH_ALL else (self.end - self.start) >> self.stride_shift

    def __repr__(self):
        rng = "all" if self.end == FLUSH_ALL else f"0x{self.start:x}-0x{self.end:x}"
        return (f"FlushInfo({rng}, stride {self.stride_shift}, gen {self.new_tlb_gen}"
                f"{', freed tables' if self.freed_tables else ''})")


cdef FlushInfo info_object(flush_tlb_info* f):
    cdef FlushInfo out = FlushInfo.__new__(FlushInfo)
    out.start, out.end, out.new_tlb_gen = f.start, f.end, f.new_tlb_gen
    out.stride_shift, out.initiator, out.freed_tables = f.stride_shift, f.initiator, \
        f.freed_tables
    return out


cdef int python_flush_tlb_multi(X86Flush x, CpuTlbState initiator, MMContext mm,
                                flush_tlb_info* f, double local_cycles) except -1:
    """The "python" backend: a callable prototypes a remote-flush mechanism (or breaks
    one on purpose, for the checker's tests) with the C pieces exposed on X86Flush."""
    x.py_backend(x, initiator, mm, info_object(f), local_cycles)
    return 0


cdef uint64_t flush_tlb_mm_range(X86Flush x, CpuTlbState cpu, MMContext mm,
                                 uint64_t start, uint64_t end, int stride_shift,
                                 bint freed_tables, flush_tlb_info* f) except? 0:
    """flush_tlb_mm_range(): the ceiling rule, the tlb_gen bump, the local flush and
    the remote one through the backend; returns the new generation."""
    cdef double hw0, kernel = 0.0
    if end != FLUSH_ALL and ((end - start) >> stride_shift) > x.p.ceiling:
        start = 0
        end = FLUSH_ALL
    mm.tlb_gen += 1
    f.start = start
    f.end = end
    f.stride_shift = stride_shift
    f.freed_tables = freed_tables
    f.new_tlb_gen = mm.tlb_gen
    f.initiator = cpu.cpu
    stats_add(cpu.stats, K_FLUSH_TLB_MM_RANGE, 1)
    stats_spend(cpu.stats, B_FLUSH, x.c.flush_base)
    hw0 = tlb_cycles(cpu.tlb)
    if cpu.loaded_mm is mm:
        kernel = flush_tlb_func(x, cpu, mm, f, True)
        stats_spend(cpu.stats, B_FLUSH, kernel)
    x.flush_tlb_multi(x, cpu, mm, f, kernel + (tlb_cycles(cpu.tlb) - hw0))
    return f.new_tlb_gen


# ------------------------------------------------------------------ Python face
cdef inline CpuTlbState _own(X86Flush x, CpuTlbState cpu):
    """cpu, checked to be one of x's CPUs (Python callers only)."""
    if cpu is None or cpu.cpu >= x.ncpus or x.cpus[cpu.cpu] is not cpu:
        raise ValueError(f"{cpu!r} is not a CPU of this machine")
    return cpu


cdef inline MMContext _fits(X86Flush x, MMContext mm):
    """mm, checked to have a cpumask as wide as x's machine (Python callers only)."""
    if mm is not None and mm.nr_cpus != x.ncpus:
        raise ValueError(f"{mm!r} was made for {mm.nr_cpus} CPUs, not {x.ncpus}")
    return mm


cdef class X86Flush:
    """The machine-wide side of arch/x86/mm/tlb.c: the CPUs' states, the kernel's knobs
    and flush costs, and the flush_tlb_multi backend ("ipi": native_flush_tlb_multi)."""

    def __cinit__(self, list cpus, dict params, dict costs, str backend="ipi"):
        cdef int i
        for i, c in enumerate(cpus):
            if not isinstance(c, CpuTlbState) or (<CpuTlbState>c).cpu != i:
                raise ValueError(f"cpus[{i}] must be the CpuTlbState of CPU {i}")
        self.cpus = list(cpus)
        self.ncpus = len(cpus)
        unknown = sorted(set(params) ^ set(PARAM_FIELDS))
        if unknown:
            raise ValueError(f"params must name exactly {PARAM_FIELDS}; odd: {unknown}")
        unknown = sorted(set(costs) ^ set(COST_FIELDS))
        if unknown:
            raise ValueError(f"costs must name exactly {COST_FIELDS}; odd: {unknown}")
        self.p.pcid = params["pcid"]
        self.p.invpcid = params["invpcid"]
        self.p.pti = params["pti"]
        self.p.lazy_tlb = params["lazy_tlb"]
        self.p.early_exit = params["early_exit"]
        self.p.ceiling = params["ceiling"]
        self.p.nr_asids = params["nr_asids"]
        for c in cpus:
            if (<CpuTlbState>c).nr_asids != self.p.nr_asids:
                raise ValueError("every CPU needs nr_asids ASID slots")
        self.c.flush_base = costs["flush_base"]
        self.c.flush_per_page = costs["flush_per_page"]
        self.c.ipi_send = costs["ipi_send"]
        self.c.ipi_extra_target = costs["ipi_extra_target"]
        self.c.ipi_deliver = costs["ipi_deliver"]
        self.c.ipi_handler = costs["ipi_handler"]
        self.c.ipi_ack = costs["ipi_ack"]
        self.c.context_switch = costs["context_switch"]
        if backend != "ipi":
            raise ValueError(f"flush_tlb_multi backend {backend!r} unknown; "
                             f"known: ipi (set_python_backend installs a callable)")
        self.flush_tlb_multi = native_flush_tlb_multi
        self.backend = backend
        self.py_backend = None
        self.targets = <int*>malloc(max(1, self.ncpus) * sizeof(int))
        if self.targets == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.targets)

    def __reduce__(self):
        if self.py_backend is not None:
            raise TypeError("an X86Flush with a python backend cannot be pickled")
        return (X86Flush, (self.cpus, self.params, self.costs, self.backend))

    def set_python_backend(self, fn):
        """Route remote flushes through fn(x, initiator, mm, info, local_cycles) instead
        of the IPI loop (None restores it).  fn may call x.flush_tlb_func() and
        x.native_flush_tlb_multi(); whatever it skips stays cached."""
        if fn is None:
            self.flush_tlb_multi = native_flush_tlb_multi
            self.backend = "ipi"
        elif not callable(fn):
            raise TypeError("the python backend must be callable")
        else:
            self.flush_tlb_multi = python_flush_tlb_multi
            self.backend = "python"
        self.py_backend = fn

    def flush_tlb_func(self, CpuTlbState cpu, MMContext mm, FlushInfo info, bint local):
        """flush_tlb_func() of one request on cpu; returns its kernel cycles (charge them
        to cpu's B_IPI_HANDLER or B_FLUSH as the caller sees fit)."""
        cdef flush_tlb_info f
        f.start, f.end, f.new_tlb_gen = info.start, info.end, info.new_tlb_gen
        f.stride_shift, f.initiator, f.freed_tables = info.stride_shift, info.initiator, \
            info.freed_tables
        stats_touch(_own(self, cpu).stats)
        return flush_tlb_func(self, cpu, _fits(self, mm), &f, local)

    def native_flush_tlb_multi(self, CpuTlbState cpu, MMContext mm, FlushInfo info,
                               double local_cycles):
        """The IPI backend's work for one request initiated on cpu."""
        cdef flush_tlb_info f
        f.start, f.end, f.new_tlb_gen = info.start, info.end, info.new_tlb_gen
        f.stride_shift, f.initiator, f.freed_tables = info.stride_shift, info.initiator, \
            info.freed_tables
        native_flush_tlb_multi(self, _own(self, cpu), _fits(self, mm), &f, local_cycles)

    @property
    def params(self) -> dict:
        return {"pcid": self.p.pcid, "invpcid": self.p.invpcid, "pti": self.p.pti,
                "lazy_tlb": self.p.lazy_tlb, "early_exit": self.p.early_exit,
                "ceiling": self.p.ceiling, "nr_asids": self.p.nr_asids}

    @property
    def costs(self) -> dict:
        return {"flush_base": self.c.flush_base, "flush_per_page": self.c.flush_per_page,
                "ipi_send": self.c.ipi_send, "ipi_extra_target": self.c.ipi_extra_target,
                "ipi_deliver": self.c.ipi_deliver, "ipi_handler": self.c.ipi_handler,
                "ipi_ack": self.c.ipi_ack, "context_switch": self.c.context_switch}

    def cpu(self, int i) -> CpuTlbState:
        return self.cpus[i]

    def switch_mm(self, CpuTlbState cpu, MMContext mm):
        """switch_mm_irqs_off(): run mm (None: init_mm) on cpu."""
        switch_mm_irqs_off(self, _own(self, cpu), _fits(self, mm))

    def enter_lazy_tlb(self, CpuTlbState cpu):
        """enter_lazy_tlb(): the CPU goes idle keeping its mm (lazy TLB mode)."""
        enter_lazy_tlb(self, _own(self, cpu))

    def return_to_user(self, CpuTlbState cpu):
        """The exit to user space on cpu (the PTI deferred user-PCID flush)."""
        return_to_user(self, _own(self, cpu))

    def flush_tlb_mm_range(self, CpuTlbState cpu, MMContext mm, start, end,
                           int stride_shift, bint freed_tables) -> FlushInfo:
        """flush_tlb_mm_range() from cpu over [start, end) of mm (end = TLB_FLUSH_ALL
        for everything); returns the request as every target saw it."""
        cdef flush_tlb_info f
        cdef uint64_t s = start, e = end
        if stride_shift not in (12, 21, 30, 39):
            raise ValueError(f"stride_shift {stride_shift} must be 12, 21, 30 or 39")
        if e != FLUSH_ALL and e < s:
            raise ValueError(f"flush range end 0x{e:x} below start 0x{s:x}")
        if mm is None:
            raise ValueError("flush_tlb_mm_range needs an mm")
        flush_tlb_mm_range(self, _own(self, cpu), _fits(self, mm), s, e, stride_shift,
                           freed_tables, &f)
        return info_object(&f)
