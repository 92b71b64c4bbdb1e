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
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.stdlib cimport free, malloc

from mmucore.cost cimport N_CYCLE_KINDS
from mmucore.stats cimport (B_CONTEXT_SWITCH, B_FLUSH, B_IPI, B_IPI_HANDLER,
                            K_CONTEXT_SWITCHES, K_FLUSH_TLB_MM_RANGE, K_IPI_SENT,
                            K_NR_TLB_LOCAL_FLUSH_ALL, K_NR_TLB_LOCAL_FLUSH_ONE,
                            K_NR_TLB_REMOTE_FLUSH, K_NR_TLB_REMOTE_FLUSH_RECEIVED,
                            K_REMOTE_FLUSH_ALL, K_REMOTE_FLUSH_ONE, K_TLB_FLUSH_ON_SWITCH,
                            K_USER_PCID_FLUSH, CpuStats, stats_add, stats_spend, stats_touch)
from mmucore.tlb cimport (TLB, c_flush_nonglobal, c_flush_pcid, c_invlpg, c_invlpg_remote,
                          c_invpcid_single,
                          c_tlb_pcid, c_write_cr3)

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


cdef inline double tlb_cycles(cpu_tlbstate* cpu) noexcept nogil:
    """All hardware cycles the CPU's TLB has accumulated."""
    cdef double s = 0.0
    cdef int i
    for i in range(N_CYCLE_KINDS):
        s += cpu.stats.hw_cycles[i]
    return s


# ------------------------------------------------------------------ mm context
cdef inline void cpumask_set_cpu(mm_context* mm, int cpu) noexcept nogil:
    mm.cpumask[cpu >> 6] |= (<uint64_t>1) << (cpu & 63)


cdef inline void cpumask_clear_cpu(mm_context* mm, int cpu) noexcept nogil:
    mm.cpumask[cpu >> 6] &= ~((<uint64_t>1) << (cpu & 63))


cdef inline bint cpumask_test_cpu(mm_context* mm, int cpu) noexcept nogil:
    return (mm.cpumask[cpu >> 6] >> (cpu & 63)) & 1


cdef class MMContext:
    """mm->context (ctx_id, tlb_gen) and mm_cpumask(mm) as a bitmap."""

    def __cinit__(self, int64_t ctx_id, int nr_cpus, uint64_t tlb_gen=0):
        if nr_cpus < 1:
            raise ValueError(f"nr_cpus must be >= 1, got {nr_cpus}")
        self.c.ctx_id = ctx_id
        self.c.tlb_gen = tlb_gen
        self.c.nr_cpus = nr_cpus
        self.c.nwords = (nr_cpus + 63) // 64
        self._maskbuf = np.zeros(self.c.nwords, dtype=np.uint64)
        self.c.cpumask = <uint64_t*>cnp.PyArray_DATA(self._maskbuf)
        self.c.obj = <void*>self
        self.owner = None

    def __reduce__(self):
        return (_rebuild_context, (self.c.ctx_id, self.c.nr_cpus, self.c.tlb_gen,
                                   self._maskbuf.copy()))

    @property
    def ctx_id(self) -> int:
        return self.c.ctx_id

    @property
    def nr_cpus(self) -> int:
        return self.c.nr_cpus

    @property
    def tlb_gen(self) -> int:
        return self.c.tlb_gen

    @tlb_gen.setter
    def tlb_gen(self, uint64_t value):
        self.c.tlb_gen = value

    def __contains__(self, cpu):
        return 0 <= cpu < self.c.nr_cpus and cpumask_test_cpu(&self.c, cpu)

    @property
    def cpumask(self) -> frozenset:
        """The CPUs in mm_cpumask, as a set of ids."""
        cdef int w, b
        out = []
        for w in range(self.c.nwords):
            if self.c.cpumask[w]:
                for b in range(64):
                    if (self.c.cpumask[w] >> b) & 1:
                        out.append(w * 64 + b)
        return frozenset(out)

    def __repr__(self):
        return (f"MMContext(ctx {self.c.ctx_id}, gen {self.c.tlb_gen}, "
                f"cpus {sorted(self.cpumask)})")


def _rebuild_context(ctx_id, nr_cpus, tlb_gen, mask):
    cdef MMContext m = MMContext(ctx_id, nr_cpus, tlb_gen)
    m._maskbuf[:] = mask
    return m


# ------------------------------------------------------------------ per-CPU state
cdef void keep_loaded(CpuTlbState c):
    """Hold a reference to the loaded mm's object (the C side holds only a pointer);
    called under the GIL after every switch.  A flush that moves a lazy CPU to init_mm
    leaves the old reference in place, which only keeps that object alive longer."""
    c._loaded = <MMContext>c.s.loaded_mm.obj if c.s.loaded_mm != NULL else None


cdef class CpuTlbState:
    """cpu_tlbstate of one CPU: loaded mm and ASID, the ASID slots, laziness and the
    PTI user-PCID flush flags; with its TLB and its kernel counters."""

    def __cinit__(self, int cpu, TLB tlb, CpuStats stats, int nr_asids):
        if nr_asids < 1:
            raise ValueError(f"nr_asids must be >= 1, got {nr_asids}")
        if tlb is None or stats is None or stats.tlb is not tlb:
            raise ValueError("CpuTlbState needs a TLB and that TLB's CpuStats")
        self.tlb = tlb
        self.stats = stats
        self._loaded = None
        self.s.cpu = cpu
        self.s.loaded_mm = NULL
        self.s.loaded_mm_asid = 0
        self.s.next_asid = 0
        self.s.nr_asids = nr_asids
        self.s.is_lazy = False
        self.s.running_user = False
        self.s.in_user = False
        self.s.tlb = <void*>tlb
        self.s.stats = &stats.st
        ctxs = np.zeros(2 * nr_asids, dtype=np.int64)
        ctxs[0::2] = -1
        flags = np.zeros(nr_asids, dtype=np.uint8)
        self._bufs = (ctxs, flags)
        self.s.ctxs = <tlb_context*>cnp.PyArray_DATA(ctxs)
        self.s.user_pcid_flush_mask = <uint8_t*>cnp.PyArray_DATA(flags)

    def __reduce__(self):
        ctxs, flags = self._bufs
        return (_rebuild_cpu, (self.s.cpu, self.tlb, self.stats, self.s.nr_asids,
                               self.loaded_mm, self.s.loaded_mm_asid, self.s.next_asid,
                               self.s.is_lazy, self.s.running_user, ctxs.copy(),
                               flags.copy(), self.s.in_user))

    @property
    def cpu(self) -> int:
        return self.s.cpu

    @property
    def loaded_mm(self):
        """The MMContext loaded here (None: init_mm)."""
        return <MMContext>self.s.loaded_mm.obj if self.s.loaded_mm != NULL else None

    @property
    def loaded_mm_asid(self) -> int:
        return self.s.loaded_mm_asid

    @property
    def next_asid(self) -> int:
        return self.s.next_asid

    @property
    def nr_asids(self) -> int:
        return self.s.nr_asids

    @property
    def is_lazy(self) -> bool:
        return self.s.is_lazy

    @property
    def running_user(self) -> bool:
        return self.s.running_user

    @running_user.setter
    def running_user(self, bint value):
        self.s.running_user = value

    @property
    def asids(self) -> list:
        """The ASID slots as [ctx_id, tlb_gen] pairs (ctx_id -1: empty)."""
        return [[self.s.ctxs[i].ctx_id, <int64_t>self.s.ctxs[i].tlb_gen]
                for i in range(self.s.nr_asids)]

    @property
    def user_flush_pending(self) -> set:
        """ASIDs whose user PCID is flushed on the next exit to user space with them."""
        return {i for i in range(self.s.nr_asids) if self.s.user_pcid_flush_mask[i]}

    def user_flush_is_pending(self, int asid) -> bool:
        """Whether asid's user PCID will be flushed before user code runs with it."""
        if not 0 <= asid < self.s.nr_asids:
            raise ValueError(f"asid {asid} outside 0..{self.s.nr_asids - 1}")
        return bool(self.s.user_pcid_flush_mask[asid])

    @property
    def kern_pcid(self) -> int:
        """The PCID kernel code runs under with the loaded ASID."""
        return kern_pcid(self.s.loaded_mm_asid)

    @property
    def user_pcid(self) -> int:
        """The PCID of the loaded ASID's user copy (PTI)."""
        return user_pcid(self.s.loaded_mm_asid)

    def __repr__(self):
        mm = self.loaded_mm
        name = f"ctx {mm.ctx_id}" if mm is not None else "init_mm"
        return f"CpuTlbState(cpu {self.s.cpu}, {name}{' lazy' if self.s.is_lazy else ''})"


def _rebuild_cpu(cpu, tlb, stats, nr_asids, MMContext loaded_mm, asid, next_asid, lazy,
                 running, ctxs, flags, in_user=False):
    cdef CpuTlbState s = CpuTlbState(cpu, tlb, stats, nr_asids)
    s.s.loaded_mm = &loaded_mm.c if loaded_mm is not None else NULL
    keep_loaded(s)
    s.s.loaded_mm_asid = asid
    s.s.next_asid = next_asid
    s.s.is_lazy = lazy
    s.s.running_user = running
    s.s.in_user = in_user
    s._bufs[0][:] = ctxs
    s._bufs[1][:] = flags
    return s


# ------------------------------------------------------------------ context switching
cdef int choose_new_asid(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                         bint* need_flush) noexcept nogil:
    """choose_new_asid(): mm's slot if it has one (flush iff stale), else the next slot
    round robin (always flush).  Without PCIDs: ASID 0, always flush."""
    cdef int asid
    if not e.p.pcid:
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


cdef inline void switch_pcid(cpu_tlbstate* cpu, int pcid, bint flush) noexcept nogil:
    """A CR3 write: with flush, the PCID's non-global entries go; else NOFLUSH."""
    c_write_cr3(<TLB>cpu.tlb, pcid, flush)


cdef void load_cr3(flush_env* e, cpu_tlbstate* cpu, int asid, bint flush) noexcept nogil:
    """load_new_mm_cr3(): CR3 for asid, flushing or not; with PTI a flush also marks the
    user PCID (invalidate_user_asid), flushed on the way back to user space."""
    switch_pcid(cpu, kern_pcid(asid), flush)
    if flush:
        if e.p.pti:
            cpu.user_pcid_flush_mask[asid] = 1
        stats_add(cpu.stats, K_TLB_FLUSH_ON_SWITCH, 1)


cdef void switch_mm_irqs_off(flush_env* e, cpu_tlbstate* cpu, mm_context* mm) noexcept nogil:
    """Make cpu run mm (NULL: init_mm, a kernel thread): cpumask, ASID choice, CR3."""
    cdef mm_context* prev = cpu.loaded_mm
    cdef int asid
    cdef bint need_flush = False
    stats_touch(cpu.stats)
    if mm == prev:
        if mm != NULL and cpu.is_lazy:
            # leaving lazy mode: catch up if a flush skipped this CPU meanwhile
            cpu.is_lazy = False
            asid = cpu.loaded_mm_asid
            if cpu.ctxs[asid].tlb_gen < mm.tlb_gen:
                cpu.ctxs[asid].ctx_id = mm.ctx_id
                cpu.ctxs[asid].tlb_gen = mm.tlb_gen
                load_cr3(e, cpu, asid, True)
        return
    stats_add(cpu.stats, K_CONTEXT_SWITCHES, 1)
    stats_spend(cpu.stats, B_CONTEXT_SWITCH, e.c.context_switch)
    if prev != NULL:
        cpumask_clear_cpu(prev, cpu.cpu)    # 5.17: cleared when switching to another mm
    cpu.is_lazy = False
    if mm == NULL:
        cpu.loaded_mm = NULL
        switch_pcid(cpu, 0, False)          # init_mm: kernel mappings only
        return
    cpumask_set_cpu(mm, cpu.cpu)
    asid = choose_new_asid(e, cpu, mm, &need_flush)
    cpu.ctxs[asid].ctx_id = mm.ctx_id
    cpu.ctxs[asid].tlb_gen = mm.tlb_gen
    cpu.loaded_mm = mm
    cpu.loaded_mm_asid = asid
    load_cr3(e, cpu, asid, need_flush)


cdef void enter_lazy_tlb(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """A kernel thread borrows the mm: keep CR3 and the cpumask bit, mark the CPU lazy
    (or, without lazy TLB, switch to init_mm)."""
    if cpu.loaded_mm == NULL:
        return
    if e.p.lazy_tlb:
        cpu.is_lazy = True
    else:
        switch_mm_irqs_off(e, cpu, NULL)


cdef void kernel_entry(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """Entry from user mode (syscall, fault, interrupt).  With PTI the entry code writes
    the kernel CR3; without PCIDs that write flushes every non-global entry."""
    if not cpu.in_user:
        return
    cpu.in_user = False
    if e.p.pti and not e.p.pcid:
        stats_touch(cpu.stats)
        c_flush_nonglobal(<TLB>cpu.tlb)


cdef void return_to_user(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """The exit to user space: with PTI, the deferred flush of the loaded ASID's user
    PCID (SWITCH_TO_USER_CR3 tests and clears that ASID's bit only); without PCIDs the
    user CR3 write itself flushes every non-global entry (once per real exit)."""
    cdef int asid = cpu.loaded_mm_asid
    if cpu.loaded_mm == NULL:
        return
    if cpu.user_pcid_flush_mask[asid]:
        stats_touch(cpu.stats)
        c_flush_pcid(<TLB>cpu.tlb, user_pcid(asid))
        cpu.user_pcid_flush_mask[asid] = 0
        stats_add(cpu.stats, K_USER_PCID_FLUSH, 1)
    if not cpu.in_user:
        cpu.in_user = True
        if e.p.pti and not e.p.pcid:
            stats_touch(cpu.stats)
            c_flush_nonglobal(<TLB>cpu.tlb)


# ------------------------------------------------------------------ the flush itself
cdef inline void flush_tlb_one_user(flush_env* e, cpu_tlbstate* cpu,
                                    uint64_t addr, bint local) noexcept nogil:
    """INVLPG addr in the current PCID (at the remote price on an IPI target); with PTI
    also the user PCID (INVPCID if the CPU has it, else the ASID is marked for a user
    flush on return to user space)."""
    if local:
        c_invlpg(<TLB>cpu.tlb, addr, c_tlb_pcid(<TLB>cpu.tlb))
    else:
        c_invlpg_remote(<TLB>cpu.tlb, addr, c_tlb_pcid(<TLB>cpu.tlb))
    if e.p.pti:
        if e.p.invpcid:
            c_invpcid_single(<TLB>cpu.tlb, addr, user_pcid(cpu.loaded_mm_asid))
        else:
            cpu.user_pcid_flush_mask[cpu.loaded_mm_asid] = 1


cdef inline void flush_tlb_local(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """Full flush of the loaded ASID's non-global entries (a CR3 reload)."""
    c_flush_pcid(<TLB>cpu.tlb, kern_pcid(cpu.loaded_mm_asid))
    if e.p.pti:
        cpu.user_pcid_flush_mask[cpu.loaded_mm_asid] = 1


cdef double flush_tlb_func(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                           flush_tlb_info* f, bint local) noexcept nogil:
    """flush_tlb_func() on one target; returns the kernel cycles it spent (hardware
    invalidation cycles land on the CPU's TLB counters)."""
    cdef uint64_t local_gen, mm_gen, n, i
    cdef int asid
    if not local:
        stats_add(cpu.stats, K_NR_TLB_REMOTE_FLUSH_RECEIVED, 1)
    if mm != cpu.loaded_mm:
        return 0.0
    if cpu.is_lazy:
        switch_mm_irqs_off(e, cpu, NULL)    # a lazy CPU reached (tables freed) leaves the mm
        return 0.0
    asid = cpu.loaded_mm_asid
    local_gen = cpu.ctxs[asid].tlb_gen
    mm_gen = mm.tlb_gen
    if e.p.early_exit and f.new_tlb_gen <= local_gen:
        return 0.0
    if local_gen == mm_gen:
        return 0.0
    # The partial flush is enough only for the CPU's next generation, and only if no
    # later request is in flight: were f one of two back-to-back requests, a CPU at
    # gen g doing f = g + 2's range alone would miss request g + 1's range.
    if f.end != FLUSH_ALL and f.new_tlb_gen == local_gen + 1 and f.new_tlb_gen == mm_gen:
        n = (f.end - f.start) >> f.stride_shift
        for i in range(n):
            flush_tlb_one_user(e, cpu, f.start + (i << f.stride_shift), local)
        stats_add(cpu.stats, K_NR_TLB_LOCAL_FLUSH_ONE if local else K_REMOTE_FLUSH_ONE,
                  <int64_t>n)
        cpu.ctxs[asid].tlb_gen = mm_gen
        return n * e.c.flush_per_page
    flush_tlb_local(e, cpu)
    stats_add(cpu.stats, K_NR_TLB_LOCAL_FLUSH_ALL if local else K_REMOTE_FLUSH_ALL, 1)
    cpu.ctxs[asid].tlb_gen = mm_gen
    return 0.0


cdef int native_flush_tlb_multi(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                                flush_tlb_info* f, double local_cycles) except -1 nogil:
    """The IPI backend: every other CPU of mm_cpumask that is not lazy (lazy ones too
    when tables were freed) gets an IPI running flush_tlb_func; the initiator pays the
    sends and waits for the slowest acknowledgement beyond its own local flush."""
    cdef int w, b, cpu_id, n = 0, nothers = 0, i
    cdef uint64_t word
    cdef cpu_tlbstate* c
    cdef double rtt = 0.0, hw0, kernel, work
    for w in range(mm.nwords):
        word = mm.cpumask[w]
        while word:
            b = __builtin_ctzll(word)
            word &= word - 1
            cpu_id = w * 64 + b
            if cpu_id == initiator.cpu or cpu_id >= e.ncpus:
                continue
            nothers += 1
            if f.freed_tables or not e.cpus[cpu_id].is_lazy:
                e.targets[n] = cpu_id
                n += 1
    if nothers:
        # native_flush_tlb_multi counts before lazy CPUs are filtered out
        stats_add(initiator.stats, K_NR_TLB_REMOTE_FLUSH, 1)
    if n == 0:
        return 0
    stats_add(initiator.stats, K_IPI_SENT, n)
    for i in range(n):
        c = e.cpus[e.targets[i]]
        stats_touch(c.stats)
        hw0 = tlb_cycles(c)
        if c.running_user:
            kernel_entry(e, c)              # the interrupt arrives in user mode
        kernel = e.c.ipi_handler + flush_tlb_func(e, c, mm, f, False)
        if c.running_user:
            return_to_user(e, c)            # the busy thread goes back to user space
        stats_spend(c.stats, B_IPI_HANDLER, kernel)
        work = kernel + (tlb_cycles(c) - hw0)
        if e.c.ipi_deliver + work + e.c.ipi_ack > rtt:
            rtt = e.c.ipi_deliver + work + e.c.ipi_ack
    stats_spend(initiator.stats, B_IPI,
                e.c.ipi_send + e.c.ipi_extra_target * (n - 1)
                + (rtt - local_cycles if rtt > local_cycles else 0.0))
    return 0


cdef int flush_tlb_mm_range(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                            uint64_t start, uint64_t end, int stride_shift,
                            bint freed_tables, flush_tlb_info* f) except -1 nogil:
    """flush_tlb_mm_range(): the ceiling rule, the tlb_gen bump, the local flush and
    the remote one through the backend; f receives the request."""
    cdef double hw0, kernel = 0.0
    if end != FLUSH_ALL and ((end - start) >> stride_shift) > e.p.ceiling:
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
    stats_spend(cpu.stats, B_FLUSH, e.c.flush_base)
    hw0 = tlb_cycles(cpu)
    if cpu.loaded_mm == mm:
        kernel = flush_tlb_func(e, cpu, mm, f, True)
        stats_spend(cpu.stats, B_FLUSH, kernel)
    return e.flush_tlb_multi(e, cpu, mm, f, kernel + (tlb_cycles(cpu) - hw0))


# ------------------------------------------------------------------ Python face
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


cdef void info_struct(FlushInfo info, flush_tlb_info* f) noexcept:
    f.start, f.end, f.new_tlb_gen = info.start, info.end, info.new_tlb_gen
    f.stride_shift, f.initiator, f.freed_tables = info.stride_shift, info.initiator, \
        info.freed_tables


cdef int python_flush_tlb_multi(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                                flush_tlb_info* f, double local_cycles) except -1 nogil:
    """The "python" backend: a callable prototypes a remote-flush mechanism (or breaks
    one on purpose, for the checker's tests) with the C pieces exposed on X86Flush."""
    with gil:
        x = <X86Flush>e.owner
        x.py_backend(x, x.cpus[initiator.cpu], <MMContext>mm.obj, info_object(f),
                     local_cycles)
    return 0


cdef inline CpuTlbState _own(X86Flush x, CpuTlbState cpu):
    """cpu, checked to be one of x's CPUs (Python callers only)."""
    if cpu is None or cpu.s.cpu >= x.e.ncpus or x.cpus[cpu.s.cpu] is not cpu:
        raise ValueError(f"{cpu!r} is not a CPU of this machine")
    return cpu


cdef inline mm_context* _fits(X86Flush x, MMContext mm) except? NULL:
    """mm's struct (NULL for None), checked to be as wide as x's machine."""
    if mm is None:
        return NULL
    if mm.c.nr_cpus != x.e.ncpus:
        raise ValueError(f"{mm!r} was made for {mm.c.nr_cpus} CPUs, not {x.e.ncpus}")
    return &mm.c


cdef class X86Flush:
    """The machine-wide side of arch/x86/mm/tlb.c: the CPUs' states, the kernel's knobs
    and flush costs, and the flush_tlb_multi backend ("ipi": native_flush_tlb_multi)."""

    def __cinit__(self, list cpus, dict params, dict costs, str backend="ipi"):
        cdef int i
        cdef CpuTlbState c
        self.e.cpus = NULL
        self.e.targets = NULL
        for i, obj in enumerate(cpus):
            if not isinstance(obj, CpuTlbState) or (<CpuTlbState>obj).s.cpu != i:
                raise ValueError(f"cpus[{i}] must be the CpuTlbState of CPU {i}")
        unknown = sorted(set(params) ^ set(PARAM_FIELDS))
        if unknown:
            raise ValueError(f"params must name exactly {PARAM_FIELDS}; odd: {unknown}")
        unknown = sorted(set(costs) ^ set(COST_FIELDS))
        if unknown:
            raise ValueError(f"costs must name exactly {COST_FIELDS}; odd: {unknown}")
        if backend != "ipi":
            raise ValueError(f"flush_tlb_multi backend {backend!r} unknown; "
                             f"known: ipi (set_python_backend installs a callable)")
        self.e.p.pcid = params["pcid"]
        self.e.p.invpcid = params["invpcid"]
        self.e.p.pti = params["pti"]
        self.e.p.lazy_tlb = params["lazy_tlb"]
        self.e.p.early_exit = params["early_exit"]
        self.e.p.ceiling = params["ceiling"]
        self.e.p.nr_asids = params["nr_asids"]
        for obj in cpus:
            if (<CpuTlbState>obj).s.nr_asids != self.e.p.nr_asids:
                raise ValueError("every CPU needs nr_asids ASID slots")
        self.e.c.flush_base = costs["flush_base"]
        self.e.c.flush_per_page = costs["flush_per_page"]
        self.e.c.ipi_send = costs["ipi_send"]
        self.e.c.ipi_extra_target = costs["ipi_extra_target"]
        self.e.c.ipi_deliver = costs["ipi_deliver"]
        self.e.c.ipi_handler = costs["ipi_handler"]
        self.e.c.ipi_ack = costs["ipi_ack"]
        self.e.c.context_switch = costs["context_switch"]
        self.cpus = list(cpus)
        self.e.ncpus = len(cpus)
        self.e.cpus = <cpu_tlbstate**>malloc(max(1, self.e.ncpus) * sizeof(cpu_tlbstate*))
        self.e.targets = <int*>malloc(max(1, self.e.ncpus) * sizeof(int))
        if self.e.cpus == NULL or self.e.targets == NULL:
            raise MemoryError()
        for i in range(self.e.ncpus):
            c = self.cpus[i]
            self.e.cpus[i] = &c.s
        self.e.flush_tlb_multi = native_flush_tlb_multi
        self.e.owner = <void*>self
        self.backend = backend
        self.py_backend = None

    def __dealloc__(self):
        free(self.e.cpus)
        free(self.e.targets)

    def __reduce__(self):
        if self.py_backend is not None:
            raise TypeError("an X86Flush with a python backend cannot be pickled")
        return (X86Flush, (self.cpus, self.params, self.costs, self.backend))

    def set_python_backend(self, fn):
        """Route remote flushes through fn(x, initiator, mm, info, local_cycles) instead
        of the IPI loop (None restores it).  fn may call x.flush_tlb_func() and
        x.native_flush_tlb_multi(); whatever it skips stays cached."""
        if fn is None:
            self.e.flush_tlb_multi = native_flush_tlb_multi
            self.backend = "ipi"
        elif not callable(fn):
            raise TypeError("the python backend must be callable")
        else:
            self.e.flush_tlb_multi = python_flush_tlb_multi
            self.backend = "python"
        self.py_backend = fn

    def flush_tlb_func(self, CpuTlbState cpu, MMContext mm, FlushInfo info, bint local):
        """flush_tlb_func() of one request on cpu; returns its kernel cycles (charge them
        to cpu's B_IPI_HANDLER or B_FLUSH as the caller sees fit)."""
        cdef flush_tlb_info f
        info_struct(info, &f)
        _own(self, cpu)
        cdef mm_context* m = _fits(self, mm)
        stats_touch(cpu.s.stats)
        cdef double cycles = flush_tlb_func(&self.e, &cpu.s, m, &f, local)
        keep_loaded(cpu)
        return cycles

    def native_flush_tlb_multi(self, CpuTlbState cpu, MMContext mm, FlushInfo info,
                               double local_cycles):
        """The IPI backend's work for one request initiated on cpu."""
        cdef flush_tlb_info f
        info_struct(info, &f)
        _own(self, cpu)
        native_flush_tlb_multi(&self.e, &cpu.s, _fits(self, mm), &f, local_cycles)

    @property
    def params(self) -> dict:
        return {"pcid": self.e.p.pcid, "invpcid": self.e.p.invpcid, "pti": self.e.p.pti,
                "lazy_tlb": self.e.p.lazy_tlb, "early_exit": self.e.p.early_exit,
                "ceiling": self.e.p.ceiling, "nr_asids": self.e.p.nr_asids}

    @property
    def costs(self) -> dict:
        return {"flush_base": self.e.c.flush_base,
                "flush_per_page": self.e.c.flush_per_page,
                "ipi_send": self.e.c.ipi_send, "ipi_extra_target": self.e.c.ipi_extra_target,
                "ipi_deliver": self.e.c.ipi_deliver, "ipi_handler": self.e.c.ipi_handler,
                "ipi_ack": self.e.c.ipi_ack, "context_switch": self.e.c.context_switch}

    def cpu(self, int i) -> CpuTlbState:
        return self.cpus[i]

    def slots_caching(self, MMContext mm) -> list:
        """(cpu, asid, slot generation) of every ASID slot, on any CPU, that holds mm's
        context id: the only places an operation on mm can leave a stale translation."""
        cdef int i, a
        cdef cpu_tlbstate* c
        out = []
        for i in range(self.e.ncpus):
            c = self.e.cpus[i]
            for a in range(c.nr_asids):
                if c.ctxs[a].ctx_id == mm.c.ctx_id:
                    out.append((i, a, c.ctxs[a].tlb_gen))
        return out

    def switch_mm(self, CpuTlbState cpu, MMContext mm):
        """switch_mm_irqs_off(): run mm (None: init_mm) on cpu."""
        _own(self, cpu)
        switch_mm_irqs_off(&self.e, &cpu.s, _fits(self, mm))
        keep_loaded(cpu)

    def enter_lazy_tlb(self, CpuTlbState cpu):
        """enter_lazy_tlb(): the CPU goes idle keeping its mm (lazy TLB mode)."""
        _own(self, cpu)
        enter_lazy_tlb(&self.e, &cpu.s)
        keep_loaded(cpu)

    def return_to_user(self, CpuTlbState cpu):
        """The exit to user space on cpu (the PTI deferred user-PCID flush)."""
        _own(self, cpu)
        return_to_user(&self.e, &cpu.s)

    def kernel_entry(self, CpuTlbState cpu):
        """An entry from user mode on cpu (syscall or fault)."""
        _own(self, cpu)
        kernel_entry(&self.e, &cpu.s)

    def kernel_entry_of(self, cpu):
        """kernel_entry() for an object with a .tlbstate (the machine's CPU): one call
        on the syscall path instead of two."""
        cdef CpuTlbState s = _own(self, cpu.tlbstate)
        kernel_entry(&self.e, &s.s)

    def return_to_user_of(self, cpu):
        """return_to_user() for an object with a .tlbstate (the machine's CPU)."""
        cdef CpuTlbState s = _own(self, cpu.tlbstate)
        return_to_user(&self.e, &s.s)

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
        _own(self, cpu)
        flush_tlb_mm_range(&self.e, &cpu.s, _fits(self, mm), s, e, stride_shift,
                           freed_tables, &f)
        return info_object(&f)
