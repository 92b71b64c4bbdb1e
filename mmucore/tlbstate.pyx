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

Lazy mm_cpumask (6.14, 209954cbc7d0 and 6db2526c1d69; params lazy_cpumask and
trim_cpumask).  A CPU's bit is set when it switches to an mm and no longer cleared when
it switches away, so the mask over-approximates the CPUs that run the mm.  A flush
chooses its IPI targets with should_flush_tlb(): every CPU of the mask when page tables
were freed or the mm is moving to a global ASID; otherwise never a lazy CPU, always a
CPU running the mm, and a CPU of the mask running something else only when the request
trims the mask (info->trim_cpumask, set by should_trim_cpumask() at most once per HZ
jiffies per mm).  The first flush IPI that reaches a CPU not running the mm clears its
bit in flush_tlb_func().  A CPU left out keeps a behind slot for the mm, which the next
switch to it flushes (choose_new_asid compares generations), so no flush is lost.

Global ASIDs and INVLPGB (6.15, Rik van Riel's series; param invlpgb).  An mm that
flushes while active on four or more CPUs (sampled when pid & 0x1f == jiffies & 0x1f)
gets a global ASID from [nr_asids, max_asid_available): the same ASID, hence the same
PCID, on every CPU.  Its flushes then skip IPIs: broadcast_tlb_flush() issues INVLPGBs
that invalidate that PCID on every CPU of the machine (one per PCID for a full flush; a
range in runs of at most invlpgb_count_max pages, 2M-strided for PMD flushes), IPIs
only the CPUs still on a local ASID while the mm is in transition
(finish_asid_transition), then waits with TLBSYNC.  An INVLPGB is asynchronous: here
it is queued on the issuing CPU and takes effect at that CPU's TLBSYNC, so a path that
forgets TLBSYNC leaves real stale entries for the checker to find.  A global ASID needs
no flush at context switch: every flush of the mm reached every CPU.

Intel RAR (the RFC, params rar, backend "rar"): the same global ASIDs, flushed by
Remote Action Requests to the CPUs of mm_cpumask through an action table set up at
boot; such an ASID is current only on the mask's CPUs, so a CPU that rejoins the mask
flushes.  Reclaim's batched unmap flush (arch_tlbbatch_add_pending / _flush): see the
blocks "Intel RAR (RFC)" and "reclaim's batch" below.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t, uint8_t
from libc.math cimport INFINITY, copysign, floor, fmod
from libc.stdlib cimport free, malloc, realloc

from mmucore.calendar cimport calendar_fit, calendar_reset, line_write
from mmucore.cost cimport N_CYCLE_KINDS
from mmucore.stats cimport (B_CONTEXT_SWITCH, B_FLUSH, B_IPI, B_IPI_HANDLER,
                            K_CONTEXT_SWITCHES, K_FLUSH_TLB_MM_RANGE, K_IPI_SENT,
                            K_NR_TLB_LOCAL_FLUSH_ALL, K_NR_TLB_LOCAL_FLUSH_ONE,
                            K_NR_TLB_REMOTE_FLUSH, K_NR_TLB_REMOTE_FLUSH_RECEIVED,
                            K_REMOTE_FLUSH_ALL, K_REMOTE_FLUSH_ONE, K_TLB_FLUSH_ON_SWITCH,
                            K_USER_PCID_FLUSH, B_LOCK, CpuStats, stats_add, stats_clock,
                            stats_spend, stats_touch)
from mmucore.stats cimport K_INVLPGB, K_TLB_REMOTE_WRONG_CPU, K_TLBSYNC
from mmucore.stats cimport K_KVM_PV_FLUSH
from mmucore.stats cimport B_SYSCALL, K_SYSCALLS
from mmucore.stats cimport K_RAR_RECEIVED, K_RAR_SENT, K_TLBBATCH_FLUSH, K_TLB_LAZY_IPI
from mmucore.tlb cimport (TLB, c_flush_nonglobal, c_flush_pcid, c_invlpg, c_invlpg_remote,
                          c_invpcid_single,
                          c_tlb_pcid, c_write_cr3)
from mmucore.tlb cimport c_invlpgb_pcid, c_invlpgb_va

cnp.import_array()

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil
    int __builtin_popcountll(unsigned long long) nogil

cdef uint64_t FLUSH_ALL = <uint64_t>0xFFFFFFFFFFFFFFFF
TLB_FLUSH_ALL = (1 << 64) - 1
USER_PCID_BIT = 1 << 11
BACKENDS = ("ipi", "python", "rar")
PARAM_FIELDS = ("pcid", "invpcid", "pti", "lazy_tlb", "early_exit", "ceiling", "nr_asids",
                "lazy_cpumask", "trim_cpumask", "hz", "invlpgb", "invlpgb_count_max",
                "max_asid_available", "rar")
COST_FIELDS = ("flush_base", "flush_per_page", "ipi_send", "ipi_extra_target",
               "ipi_deliver", "ipi_handler", "ipi_ack", "context_switch",
               "cacheline_transfer", "cacheline_per_writer", "cacheline_remote", "idle_exit",
               "invlpgb_issue",
               "tlbsync_wait", "rar_send", "rar_extra_target", "rar_deliver", "rar_handle")
# MAX_ASID_AVAILABLE of a kernel built with CONFIG_MITIGATION_PAGE_TABLE_ISOLATION (as
# distribution kernels are, PTI on or off at boot): (1 << 11) - 2
MAX_ASID_AVAILABLE = (1 << 11) - 2
# invlpgb_op kinds
cdef enum:
    INVLPGB_VA = 0              # invlpgb_flush_user_nr_nosync(pcid, addr, nr, pmd)
    INVLPGB_PCID = 1            # invlpgb_flush_single_pcid_nosync(pcid)
    INVLPGB_ALL_NONGLOBAL = 2   # invlpgb_flush_all_nonglobals()
# Intel RAR (arch/x86/include/asm/rar.h of the RFC): payload type and subtypes, the
# per-CPU action status values, the table size and the per-payload page limit
cdef enum:
    RAR_TYPE_INVPCID = 2
    RAR_INVPCID_ADDR = 0        # num_pages 4K pages of one PCID from linear_address
    RAR_INVPCID_PCID = 1        # every non-global entry of one PCID
    RAR_INVPCID_ALL = 2         # every PCID (pcid 0: the RFC's kernel flushes)
    RAR_SUCCESS = 0x00
    RAR_PENDING = 0x01
    RAR_MAX_PAYLOADS = 64
    RAR_INVLPG_MAX_PAGES = 63
RAR_TABLE_SIZE = RAR_MAX_PAYLOADS


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


# ------------------------------------------------------------------ the timeline
# With e.timeline set, CPUs run at once (pysim.machine.timeline): each CPU's simulated
# time is t_off plus every cycle charged to it, so work charged to a CPU delays
# whatever it runs next.  Two things then queue: IPI handlers on their target
# (irqs), and writes to a cache line several CPUs write (the writer pays one transfer
# if another CPU wrote it last, at the line's first free gap: mmucore.calendar).
cdef double cpu_now(cpu_tlbstate* cpu) noexcept nogil:
    """The CPU's simulated time in cycles."""
    return cpu.t_off + stats_clock(cpu.stats)


cdef inline void shared_line_write(flush_env* e, cpu_tlbstate* cpu,
                                   calendar* line) noexcept nogil:
    """An atomic write by cpu to a cache line every CPU of an mm writes (tlb_gen,
    mm_cpumask): on the timeline it contends (mmucore.calendar), else it is free."""
    if e.timeline:
        stats_spend(cpu.stats, B_LOCK, line_write(line, cpu.cpu, cpu.llc, cpu_now(cpu),
                                                  e.c.cacheline_transfer,
                                                  e.c.cacheline_remote,
                                                  e.c.cacheline_per_writer, 0.0))


cdef inline void mask_write(flush_env* e, cpu_tlbstate* cpu, mm_context* mm) noexcept nogil:
    """An atomic write to mm_cpumask (a bit set or cleared)."""
    shared_line_write(e, cpu, &mm.mask_line)


# The wrong-CPU exit of flush_tlb_func (6.14) on the timeline.  A CPU that left the mm
# (leave_mm() into C6, or a switch to another mm) keeps its bit until a flush IPI's
# handler finds it running something else and clears it.  That handler runs when the
# IPI reaches the CPU: after the CPU leaves its idle state (C6: tens of microseconds)
# and the handlers queued before it.  Until then the bit is still set, so every flush
# of the mm sent meanwhile targets the CPU too, and each of those handlers clears the
# bit again (an atomic on the contended mask line).  The clear is therefore kept
# pending (leave_ctx, leave_at: the first such handler's end) and takes effect for
# the flushes and switches that come after that time (mask_settle).
cdef inline bint mask_settle(cpu_tlbstate* c, mm_context* mm, double now) noexcept nogil:
    """c's pending wrong-CPU clear of mm's bit takes effect if its handler ran by now
    (True: the bit is gone).  A pending clear names its mm by ctx_id, so one whose mm
    is gone is never applied to another."""
    if c.leave_ctx != mm.ctx_id or c.leave_at > now:
        return False
    c.leave_ctx = -1
    c.leave_at = INFINITY
    cpumask_clear_cpu(mm, c.cpu)
    return True


# A flush IPI taken late (the timeline).  native_flush_tlb_multi() decides to send a
# CPU the IPI when it checks the CPU (should_flush_tlb: not lazy), then queues the
# call on every other target before the IPIs go out together; the handler runs when
# the IPI arrives and the handlers queued before it are done.  A CPU whose thread
# blocked in between (schedule() to the idle task: enter_lazy_tlb) takes that IPI in
# lazy TLB mode, and flush_tlb_func() then leaves the mm for init_mm ("This should be
# rare, with native_flush_tlb_multi() skipping IPIs to lazy TLB mode CPUs").  Before
# 6.14 that switch clears the CPU's bit, and its next wake-up is a full switch back;
# with the lazy mask the bit stays and every later flush reaches the idle CPU until a
# handler finds it elsewhere.  The flush itself was done at the send (what it
# invalidates is the same); the switch is kept pending (lazy_switch_at, the handler's
# start) and happens for whatever looks at the CPU after that time (lazy_settle).
cdef inline void lazy_settle(flush_env* e, cpu_tlbstate* c, double now) noexcept nogil:
    """c's pending late-IPI switch to init_mm takes effect if its handler ran by now
    and c is still lazy (woken before it, c took the IPI running the mm: no switch)."""
    if c.lazy_switch_at > now:
        return
    c.lazy_switch_at = INFINITY
    if c.is_lazy and c.loaded_mm != NULL:
        stats_add(c.stats, K_TLB_LAZY_IPI, 1)
        switch_mm_irqs_off(e, c, NULL)


cdef inline uint64_t inc_mm_tlb_gen(flush_env* e, cpu_tlbstate* cpu,
                                    mm_context* mm) noexcept nogil:
    """inc_mm_tlb_gen(): atomic64_inc_return(&mm->context.tlb_gen) from cpu."""
    mm.tlb_gen += 1
    shared_line_write(e, cpu, &mm.gen_line)
    return mm.tlb_gen


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
        calendar_reset(&self.c.gen_line)
        calendar_reset(&self.c.mask_line)
        self.c.next_trim_cpumask = 0
        self.c.global_asid = 0
        self.c.asid_transition = False
        self.c.pid = ctx_id
        self.owner = None

    def reset_time(self):
        """Start a timeline: nobody holds tlb_gen's cache line yet."""
        calendar_reset(&self.c.gen_line)
        calendar_reset(&self.c.mask_line)

    def __reduce__(self):
        return (_rebuild_context, (self.c.ctx_id, self.c.nr_cpus, self.c.tlb_gen,
                                   self._maskbuf.copy(), self.c.next_trim_cpumask,
                                   self.c.global_asid, self.c.asid_transition, self.c.pid))

    @property
    def next_trim_cpumask(self) -> int:
        """mm->context.next_trim_cpumask: the jiffies after which a flush trims the mask
        (X86 sets it to jiffies + HZ at creation, as init_new_context does)."""
        return self.c.next_trim_cpumask

    @next_trim_cpumask.setter
    def next_trim_cpumask(self, uint64_t value):
        self.c.next_trim_cpumask = value

    @property
    def global_asid(self) -> int:
        """mm->context.global_asid: 0, or the ASID the mm has on every CPU (6.15)."""
        return self.c.global_asid

    @property
    def asid_transition(self) -> bool:
        """mm->context.asid_transition: CPUs may still run the mm on a local ASID."""
        return self.c.asid_transition

    @property
    def pid(self) -> int:
        """The pid consider_global_asid() compares with jiffies: current->pid, the
        flushing thread's id.  The machine sets it to the calling thread's tid at each
        syscall; on its own it is the mm's ctx_id."""
        return self.c.pid

    @pid.setter
    def pid(self, int64_t value):
        self.c.pid = value

    def clear_cpu(self, int cpu):
        """Clear cpu's bit in mm_cpumask, as flush_tlb_func does when the mm is not
        loaded there: for tests and prototype backends (clearing it while the CPU runs
        the mm is the bug the checker must catch)."""
        if not 0 <= cpu < self.c.nr_cpus:
            raise ValueError(f"cpu {cpu} outside 0..{self.c.nr_cpus - 1}")
        cpumask_clear_cpu(&self.c, cpu)

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


def _rebuild_context(ctx_id, nr_cpus, tlb_gen, mask, next_trim=0, global_asid=0,
                     transition=False, pid=None):
    cdef MMContext m = MMContext(ctx_id, nr_cpus, tlb_gen)
    m._maskbuf[:] = mask
    m.c.next_trim_cpumask = next_trim
    m.c.global_asid = global_asid
    m.c.asid_transition = transition
    m.c.pid = ctx_id if pid is None else pid
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
        self.s.llc = 0
        self.s.loaded_mm = NULL
        self.s.loaded_mm_asid = 0
        self.s.next_asid = 0
        self.s.nr_asids = nr_asids
        self.s.is_lazy = False
        self.s.running_user = False
        self.s.in_user = False
        self.s.tlb = <void*>tlb
        self.s.stats = &stats.st
        self.s.t_off = 0.0
        calendar_reset(&self.s.irqs)
        self.s.wait_from = 0.0
        self.s.wait_until = 0.0
        self.s.idle_until = 0.0
        self.s.idle_exit_lat = -1.0
        self.s.smt_slow = 0.0
        ctxs = np.zeros(2 * nr_asids, dtype=np.int64)
        ctxs[0::2] = -1
        flags = np.zeros(nr_asids, dtype=np.uint8)
        self._bufs = (ctxs, flags)
        self.s.ctxs = <tlb_context*>cnp.PyArray_DATA(ctxs)
        self.s.user_pcid_flush_mask = <uint8_t*>cnp.PyArray_DATA(flags)
        self.s.pending = NULL
        self.s.npending = 0
        self.s.cap_pending = 0
        self.s.need_tlbsync = False
        self.s.leave_ctx = -1
        self.s.leave_at = INFINITY
        self.s.flush_ipi_start = -INFINITY
        self.s.flush_ipi_ctx = -1
        self.s.lazy_switch_at = INFINITY

    def __dealloc__(self):
        free(self.s.pending)

    def __reduce__(self):
        ctxs, flags = self._bufs
        return (_rebuild_cpu, (self.s.cpu, self.tlb, self.stats, self.s.nr_asids,
                               self.loaded_mm, self.s.loaded_mm_asid, self.s.next_asid,
                               self.s.is_lazy, self.s.running_user, ctxs.copy(),
                               flags.copy(), self.s.in_user, self._pending_tuples(),
                               (self.s.t_off, self.s.wait_from, self.s.wait_until),
                               self.s.llc))

    def _pending_tuples(self):
        cdef int i
        return [(self.s.pending[i].kind, self.s.pending[i].pcid, self.s.pending[i].addr,
                 self.s.pending[i].nr, bool(self.s.pending[i].pmd))
                for i in range(self.s.npending)]

    @property
    def pending_invlpgb(self) -> list:
        """INVLPGBs issued on this CPU that no TLBSYNC has waited for yet, as
        (kind, pcid, addr, nr, pmd) with kind "va", "pcid" or "all": they have not taken
        effect anywhere (the checker names them when it finds what they would drop)."""
        names = ("va", "pcid", "all")
        return [(names[k], pcid, addr, nr, pmd)
                for k, pcid, addr, nr, pmd in self._pending_tuples()]

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
    def t_off(self) -> float:
        """Simulated cycles this CPU sat idle before its first work (the timeline)."""
        return self.s.t_off

    @t_off.setter
    def t_off(self, double value):
        self.s.t_off = value

    @property
    def now(self) -> float:
        """The CPU's simulated time in cycles: t_off plus every cycle charged to it."""
        return cpu_now(&self.s)

    @property
    def irq_bookings(self) -> list:
        """The busy intervals of this CPU's IPI handlers held (the timeline)."""
        return [(self.s.irqs.start[i], self.s.irqs.end[i]) for i in range(self.s.irqs.n)]

    def reset_time(self, double t_off):
        """Start a timeline: time is t_off plus cycles spent; no handler or wait open."""
        self.s.t_off = t_off
        calendar_reset(&self.s.irqs)
        self.s.wait_from = 0.0
        self.s.wait_until = 0.0
        self.s.idle_until = 0.0
        self.s.idle_exit_lat = -1.0

    @property
    def idle_until(self) -> float:
        """Until when the CPU sleeps in an idle state (an IPI then waits idle_exit)."""
        return self.s.idle_until

    @idle_until.setter
    def idle_until(self, double t):
        self.s.idle_until = t
        self.s.idle_exit_lat = -1.0

    def sleep_until(self, double t, double exit_latency=-1.0):
        """The CPU idles from now until t (the timeline): its time jumps to t.  An IPI
        arriving meanwhile waits exit_latency cycles for the CPU to leave its idle
        state (below 0: the preset's idle_exit, one state for every sleep)."""
        cdef double now = cpu_now(&self.s)
        if t > now:
            self.s.t_off += t - now
            self.s.idle_until = t
            self.s.idle_exit_lat = exit_latency

    @property
    def smt_slow(self) -> float:
        """How much longer an IPI handler's work takes here because the core's other
        SMT thread is busy: 1/smt_speed - 1 while it is, 0 otherwise (the timeline
        keeps it)."""
        return self.s.smt_slow

    @smt_slow.setter
    def smt_slow(self, double value):
        self.s.smt_slow = value

    @property
    def llc(self) -> int:
        """The last-level cache (CCX or socket) this CPU shares with others: a cache
        line coming from a CPU of another one costs cacheline_remote (timeline)."""
        return self.s.llc

    @llc.setter
    def llc(self, int value):
        self.s.llc = value

    def idle_from_now(self, double exit_latency=-1.0):
        """The CPU idles from now until wake() (the timeline, a sleep whose end nobody
        knows yet): an IPI meanwhile waits exit_latency cycles for it to leave its idle
        state (below 0: the preset's idle_exit)."""
        self.s.idle_until = INFINITY
        self.s.idle_exit_lat = exit_latency

    def wake(self, double t):
        """The idle CPU runs again from t: its time jumps to t unless work charged
        while it slept (IPI handlers) already took it further."""
        cdef double now = cpu_now(&self.s)
        if t > now:
            self.s.t_off += t - now
        self.s.idle_until = t

    @property
    def user_flush_pending(self) -> set:
        """ASIDs whose user PCID is flushed on the next exit to user space with them."""
        return {i for i in range(self.s.nr_asids) if self.s.user_pcid_flush_mask[i]}

    def user_flush_is_pending(self, int asid) -> bool:
        """Whether asid's user PCID will be flushed before user code runs with it (never
        for a global ASID: its flushes reach the user PCID by INVLPGB at once)."""
        if self.s.nr_asids <= asid < MAX_ASID_AVAILABLE:
            return False
        if not 0 <= asid < self.s.nr_asids:
            raise ValueError(f"asid {asid} outside 0..{MAX_ASID_AVAILABLE - 1}")
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
                 running, ctxs, flags, in_user=False, pending=(), times=(0.0, 0.0, 0.0),
                 llc=0):
    cdef CpuTlbState s = CpuTlbState(cpu, tlb, stats, nr_asids)
    s.s.llc = llc
    s.s.loaded_mm = &loaded_mm.c if loaded_mm is not None else NULL
    keep_loaded(s)
    s.s.loaded_mm_asid = asid
    s.s.next_asid = next_asid
    s.s.is_lazy = lazy
    s.s.running_user = running
    s.s.in_user = in_user
    s.s.t_off, s.s.wait_from, s.s.wait_until = times
    s._bufs[0][:] = ctxs
    s._bufs[1][:] = flags
    for kind, pcid, addr, nr, pmd in pending:
        invlpgb_queue(&s.s, kind, pcid, addr, nr, pmd)
    return s


# ------------------------------------------------------------------ global ASIDs
cdef inline bint is_global_asid(cpu_tlbstate* cpu, int asid) noexcept nogil:
    """is_global_asid(): ASIDs from TLB_NR_DYN_ASIDS up are global ones."""
    return asid >= cpu.nr_asids


cdef inline bint uses_global_asids(flush_env* e) noexcept nogil:
    """The kernel hands out global ASIDs: with INVLPGB (6.15) or, in the RAR RFC, with
    RAR (its mm_global_asid() tests X86_FEATURE_INVLPGB || X86_FEATURE_RAR)."""
    return e.p.invlpgb or e.p.rar


cdef inline bint mm_needs_global_asid(flush_env* e, mm_context* mm, int asid) noexcept nogil:
    """mm_needs_global_asid(): the mm has a global ASID and this CPU runs it on another."""
    return uses_global_asids(e) and mm.global_asid != 0 and asid != mm.global_asid


cdef void reset_global_asid_space(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """reset_global_asid_space(): at the end of the global ASID space, flush every
    non-global entry everywhere (INVLPGB + TLBSYNC), after which freed global ASIDs
    may be reused; the search starts again at TLB_NR_DYN_ASIDS.  The first allocation
    starts here too (last_global_asid begins at MAX_ASID_AVAILABLE).  With RAR the RFC
    calls flush_tlb_all() instead, which it sends as a RAR to every CPU."""
    cdef int i
    if e.p.rar:
        rar_flush_tlb_all(e, cpu)
    else:
        invlpgb_issue(e, cpu, INVLPGB_ALL_NONGLOBAL, 0, 0, 0, False)
        tlbsync(e, cpu)
    for i in range(e.p.max_asid_available):
        if e.global_asid_freed[i]:
            e.global_asid_used[i] = 0
            e.global_asid_freed[i] = 0
    e.last_global_asid = e.p.nr_asids


cdef int allocate_global_asid(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """allocate_global_asid(): the next unused global ASID at or after the last one
    handed out (0 if none is left)."""
    cdef int asid
    if e.last_global_asid >= e.p.max_asid_available - 1:
        reset_global_asid_space(e, cpu)
    asid = e.last_global_asid
    while asid < e.p.max_asid_available and e.global_asid_used[asid]:
        asid += 1
    if asid >= e.p.max_asid_available:
        return 0                            # the kernel warns: "Unable to allocate"
    e.global_asid_used[asid] = 1
    e.last_global_asid = asid
    e.global_asid_available -= 1
    return asid


cdef inline int cpumask_next(int n, uint64_t* mask, int nwords) noexcept nogil:
    """cpumask_next(): the first CPU of mask above n, nwords * 64 if there is none
    (for_each_cpu is `c = cpumask_next(-1, ...)` then `c = cpumask_next(c, ...)`)."""
    cdef int w
    cdef uint64_t word
    n += 1
    w = n >> 6
    if w >= nwords:
        return nwords * 64
    word = mask[w] & (~<uint64_t>0 << (n & 63))
    while not word:
        w += 1
        if w >= nwords:
            return nwords * 64
        word = mask[w]
    return w * 64 + __builtin_ctzll(word)


cdef bint mm_active_cpus_exceeds(flush_env* e, mm_context* mm, int threshold) noexcept nogil:
    """mm_active_cpus_exceeds(): more than threshold CPUs of mm_cpumask run the mm and
    are not lazy (the mask's weight is the cheap first test)."""
    cdef int w, cpu_id, weight = 0, count = 0
    cdef cpu_tlbstate* c
    for w in range(mm.nwords):
        weight += __builtin_popcountll(mm.cpumask[w])
    if weight <= threshold:
        return False
    cpu_id = cpumask_next(-1, mm.cpumask, mm.nwords)
    while cpu_id < e.ncpus:
        c = e.cpus[cpu_id]
        if c.loaded_mm == mm and not c.is_lazy:
            count += 1
            if count > threshold:
                return True
        cpu_id = cpumask_next(cpu_id, mm.cpumask, mm.nwords)
    return False


cdef void use_global_asid(flush_env* e, cpu_tlbstate* cpu, mm_context* mm) noexcept nogil:
    """use_global_asid(): give mm a global ASID (mm_assign_global_asid marks it in
    transition: CPUs running it keep their local ASID until an IPI or switch moves
    them)."""
    cdef int asid
    if mm.global_asid or not e.global_asid_available:
        return
    asid = allocate_global_asid(e, cpu)
    if not asid:
        return
    mm.asid_transition = True
    mm.global_asid = asid


cdef void mm_free_global_asid(flush_env* e, mm_context* mm) noexcept nogil:
    """mm_free_global_asid() (destroy_context): the ASID becomes reusable only after
    the next reset_global_asid_space() flushed it everywhere."""
    if not uses_global_asids(e) or not mm.global_asid:
        return
    e.global_asid_freed[mm.global_asid] = 1
    mm.global_asid = 0
    e.global_asid_available += 1


cdef void consider_global_asid(flush_env* e, cpu_tlbstate* cpu, mm_context* mm) noexcept nogil:
    """consider_global_asid(): once in 32 jiffies per pid (pid & 0x1f == jiffies &
    0x1f), an mm active on 4 or more CPUs gets a global ASID.  The kernel's reason for
    the threshold: 4k ASIDs (2k with PTI) against machines of over 8k CPUs."""
    if not uses_global_asids(e):
        return
    if (<uint64_t>mm.pid & 0x1f) != (e.jiffies & 0x1f):
        return
    if mm_active_cpus_exceeds(e, mm, 3):
        use_global_asid(e, cpu, mm)


# ------------------------------------------------------------------ INVLPGB / TLBSYNC
cdef void invlpgb_apply(flush_env* e, invlpgb_op* op) noexcept nogil:
    """What one INVLPGB does once it completes: drop its entries on every CPU."""
    cdef int i, j
    cdef int shift = 21 if op.pmd else 12
    for i in range(e.ncpus):
        if op.kind == INVLPGB_VA:
            for j in range(op.nr):
                c_invlpgb_va(<TLB>e.cpus[i].tlb, op.addr + ((<uint64_t>j) << shift),
                             op.pcid)
        elif op.kind == INVLPGB_PCID:
            c_invlpgb_pcid(<TLB>e.cpus[i].tlb, op.pcid)
        else:
            c_invlpgb_pcid(<TLB>e.cpus[i].tlb, <uint64_t>0xFFFFFFFFFFFFFFFF)


cdef bint invlpgb_queue(cpu_tlbstate* cpu, int kind, int pcid, uint64_t addr, int nr,
                        bint pmd) noexcept nogil:
    """Queue an issued INVLPGB on its CPU until TLBSYNC; False if there is no memory."""
    cdef invlpgb_op* grown
    cdef int cap
    if cpu.npending == cpu.cap_pending:
        cap = 8 if cpu.cap_pending == 0 else 2 * cpu.cap_pending
        grown = <invlpgb_op*>realloc(cpu.pending, cap * sizeof(invlpgb_op))
        if grown == NULL:
            return False
        cpu.pending = grown
        cpu.cap_pending = cap
    cpu.pending[cpu.npending].kind = kind
    cpu.pending[cpu.npending].pcid = pcid
    cpu.pending[cpu.npending].addr = addr
    cpu.pending[cpu.npending].nr = nr
    cpu.pending[cpu.npending].pmd = pmd
    cpu.npending += 1
    return True


cdef void invlpgb_issue(flush_env* e, cpu_tlbstate* cpu, int kind, int pcid, uint64_t addr,
                        int nr, bint pmd) noexcept nogil:
    """One INVLPGB on cpu (the *_nosync helpers): counted and charged here; it takes
    effect at cpu's next TLBSYNC (at once if it cannot be queued: the hardware may
    complete it any time before TLBSYNC)."""
    cdef invlpgb_op op
    stats_add(cpu.stats, K_INVLPGB, 1)
    stats_spend(cpu.stats, B_FLUSH, e.c.invlpgb_issue)
    if not invlpgb_queue(cpu, kind, pcid, addr, nr, pmd):
        op.kind, op.pcid, op.addr, op.nr, op.pmd = kind, pcid, addr, nr, pmd
        invlpgb_apply(e, &op)


cdef void tlbsync(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """__tlbsync(): wait until every INVLPGB this CPU issued has completed on every
    CPU.  The wait is charged as remote-flush time (B_IPI, like waiting for acks)."""
    cdef int i
    for i in range(cpu.npending):
        invlpgb_apply(e, &cpu.pending[i])
    cpu.npending = 0
    stats_add(cpu.stats, K_TLBSYNC, 1)
    stats_spend(cpu.stats, B_IPI, e.c.tlbsync_wait)


# ------------------------------------------------------------------ context switching
cdef int choose_new_asid(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                         bint* need_flush, bint new_cpu) noexcept nogil:
    """choose_new_asid(): the mm's global ASID if it has one (with INVLPGB never a
    flush; with RAR a flush iff the CPU was not in mm_cpumask, new_cpu), else its slot
    if it has one (flush iff stale), else the next slot round robin (always flush).
    Without PCIDs: ASID 0, always flush."""
    cdef int asid
    if not e.p.pcid:
        need_flush[0] = True
        return 0
    if uses_global_asids(e) and mm.global_asid:
        # INVLPGB kept it current on every CPU; RAR only on the CPUs of mm_cpumask
        need_flush[0] = e.p.rar and new_cpu and not e.rar_skip_new_cpu_flush
        return mm.global_asid
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
            if asid < cpu.nr_asids:
                cpu.user_pcid_flush_mask[asid] = 1
            else:
                # a global ASID (RAR): the model keeps user_pcid_flush_mask for the
                # dynamic ASIDs only, so the user PCID is flushed at once
                c_flush_pcid(<TLB>cpu.tlb, user_pcid(asid))
        stats_add(cpu.stats, K_TLB_FLUSH_ON_SWITCH, 1)


cdef void switch_mm_irqs_off(flush_env* e, cpu_tlbstate* cpu, mm_context* mm) noexcept nogil:
    """Make cpu run mm (NULL: init_mm, a kernel thread): cpumask, ASID choice, CR3.
    With lazy_cpumask (6.14) the previous mm keeps this CPU's bit; with a global ASID
    (6.15) a switch to the same mm reloads CR3 if the CPU still ran it on a local ASID,
    and never flushes."""
    cdef mm_context* prev
    cdef int asid
    cdef bint need_flush = False, was_lazy, new_cpu
    if cpu.lazy_switch_at != INFINITY:
        if cpu.lazy_switch_at <= cpu_now(cpu):
            lazy_settle(e, cpu, cpu_now(cpu))   # the late IPI ran first: from init_mm
        else:
            cpu.lazy_switch_at = INFINITY       # it will find the CPU running the mm
    prev = cpu.loaded_mm
    was_lazy = cpu.is_lazy
    stats_touch(cpu.stats)
    if cpu.need_tlbsync:
        tlbsync(e, cpu)                     # 6.15: a batch's INVLPGBs finish before a switch
        cpu.need_tlbsync = False
    if mm == prev:
        if mm == NULL:
            return
        cpu.is_lazy = False
        if mm_needs_global_asid(e, mm, cpu.loaded_mm_asid):
            # the mm moved to a global ASID: reload CR3 with it (INVLPGB: without a
            # flush; the RAR RFC passes new_cpu = true here, so with RAR it flushes)
            asid = choose_new_asid(e, cpu, mm, &need_flush, True)
            cpu.loaded_mm_asid = asid
            load_cr3(e, cpu, asid, need_flush)
            return
        if is_global_asid(cpu, cpu.loaded_mm_asid) or not was_lazy:
            return
        # leaving lazy mode: catch up if a flush skipped this CPU meanwhile
        asid = cpu.loaded_mm_asid
        if cpu.ctxs[asid].tlb_gen < mm.tlb_gen:
            cpu.ctxs[asid].ctx_id = mm.ctx_id
            cpu.ctxs[asid].tlb_gen = mm.tlb_gen
            load_cr3(e, cpu, asid, True)
        return
    stats_add(cpu.stats, K_CONTEXT_SWITCHES, 1)
    stats_spend(cpu.stats, B_CONTEXT_SWITCH, e.c.context_switch)
    if prev != NULL and not e.p.lazy_cpumask:
        cpumask_clear_cpu(prev, cpu.cpu)    # 5.17: cleared when switching to another mm
        mask_write(e, cpu, prev)
    cpu.is_lazy = False
    if mm == NULL:
        cpu.loaded_mm = NULL
        switch_pcid(cpu, 0, False)          # init_mm: kernel mappings only
        return
    if cpu.leave_ctx == mm.ctx_id and not mask_settle(cpu, mm, cpu_now(cpu)):
        cpu.leave_ctx = -1                  # back before the wrong-CPU handler ran:
        cpu.leave_at = INFINITY             # it would find the mm loaded, and keep the bit
    new_cpu = not cpumask_test_cpu(mm, cpu.cpu)
    # 6.14 tests the bit before setting it, so a CPU coming back writes nothing
    if not e.p.lazy_cpumask or new_cpu:
        mask_write(e, cpu, mm)
    cpumask_set_cpu(mm, cpu.cpu)
    asid = choose_new_asid(e, cpu, mm, &need_flush, new_cpu)
    if not is_global_asid(cpu, asid):
        cpu.ctxs[asid].ctx_id = mm.ctx_id
        cpu.ctxs[asid].tlb_gen = mm.tlb_gen
    cpu.loaded_mm = mm
    cpu.loaded_mm_asid = asid
    load_cr3(e, cpu, asid, need_flush)


cdef void enter_lazy_tlb(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """A kernel thread borrows the mm: keep CR3 and the cpumask bit, mark the CPU lazy
    (or, without lazy TLB, switch to init_mm).  6.15: a batch's pending INVLPGBs are
    waited for first (tlbsync())."""
    if cpu.need_tlbsync:
        tlbsync(e, cpu)
        cpu.need_tlbsync = False
    if cpu.loaded_mm == NULL:
        return
    if e.p.lazy_tlb:
        cpu.is_lazy = True
        if e.timeline and e.late_lazy_ipis and cpu.flush_ipi_start > cpu_now(cpu) \
                and cpu.flush_ipi_ctx == cpu.loaded_mm.ctx_id:
            cpu.lazy_switch_at = cpu.flush_ipi_start    # an IPI still to come (lazy_settle)
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
    if asid < cpu.nr_asids and cpu.user_pcid_flush_mask[asid]:
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
    invalidation cycles land on the CPU's TLB counters).  6.14: a CPU not running mm
    leaves its mask (lazy mm_cpumask); 6.15: a CPU still on a local ASID of an mm with
    a global one moves to it, and a global ASID needs nothing (INVLPGB covers it).
    mm NULL is arch_tlbbatch_flush()'s request (info->mm NULL, new_tlb_gen
    TLB_GENERATION_INVALID = 0): the CPU flushes whatever mm it has loaded.  RAR RFC: a
    lazy CPU reached leaves the mask, and a global ASID is flushed like a local one."""
    cdef uint64_t local_gen, mm_gen, n, i
    cdef int asid
    if not local:
        stats_add(cpu.stats, K_NR_TLB_REMOTE_FLUSH_RECEIVED, 1)
    if mm == NULL:
        mm = cpu.loaded_mm
        if mm == NULL:
            return 0.0                      # init_mm: no user translations
    elif mm != cpu.loaded_mm:
        if e.p.lazy_cpumask:
            mask_write(e, cpu, mm)          # the CPU was left in the mask: clear it
            stats_add(cpu.stats, K_TLB_REMOTE_WRONG_CPU, 1)
            if e.timeline:                  # at this handler's end (send_flush_ipis)
                if cpu.leave_ctx != mm.ctx_id:
                    cpu.leave_ctx = mm.ctx_id
                    cpu.leave_at = INFINITY
            else:
                cpumask_clear_cpu(mm, cpu.cpu)
        return 0.0
    if e.p.rar and cpu.is_lazy:
        cpumask_clear_cpu(mm, cpu.cpu)      # the RFC clears a lazy CPU's bit here
        switch_mm_irqs_off(e, cpu, NULL)
        return 0.0
    if mm_needs_global_asid(e, mm, cpu.loaded_mm_asid):
        switch_mm_irqs_off(e, cpu, mm)      # reload with the global ASID
    if is_global_asid(cpu, cpu.loaded_mm_asid):
        if e.p.rar:
            return rar_flush_global_asid(e, cpu, mm, f, local)
        return 0.0
    if cpu.is_lazy:
        stats_add(cpu.stats, K_TLB_LAZY_IPI, 1)
        switch_mm_irqs_off(e, cpu, NULL)    # a lazy CPU reached (tables freed) leaves the mm
        return 0.0
    asid = cpu.loaded_mm_asid
    local_gen = cpu.ctxs[asid].tlb_gen
    mm_gen = mm.tlb_gen
    if e.p.early_exit and f.new_tlb_gen != 0 and f.new_tlb_gen <= local_gen:
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


cdef double handle_ipi(flush_env* e, cpu_tlbstate* c, double arrive,
                       double work) noexcept nogil:
    """Place an IPI handler of `work` cycles (already charged to c) on c's timeline:
    it starts at the first gap in c's handlers at or after its arrival (after the
    CPU's wake-up from its idle state, if it was sleeping then); returns when it ends.
    If c was itself waiting for acks then, the handler ran in that wait, so the wait
    shrinks by the overlap instead of c's time growing."""
    if arrive < c.idle_until:
        arrive += c.idle_exit_lat if c.idle_exit_lat >= 0.0 else e.c.idle_exit
    cdef double start = calendar_fit(&c.irqs, arrive, work)
    cdef double end = start + work
    cdef double lo = start if start > c.wait_from else c.wait_from
    cdef double hi = end if end < c.wait_until else c.wait_until
    if hi > lo and c.stats.kcycles[B_IPI] >= hi - lo:
        c.stats.kcycles[B_IPI] -= hi - lo
        c.wait_from = hi
    return end


# Target selection.  Before 6.14 a CPU of mm_cpumask runs the mm (its bit went at the
# switch away), so the only question is laziness.  From 6.14 the mask also holds CPUs
# that ran the mm once; should_flush_tlb() leaves them out unless the request trims
# the mask, and flush_tlb_func() clears the bit of each one reached.
cdef inline bint should_flush_tlb(flush_env* e, cpu_tlbstate* c, mm_context* mm,
                                  flush_tlb_info* f) noexcept nogil:
    """Whether native_flush_tlb_multi() sends c the IPI: every CPU of the mask when
    page tables were freed or the mm is moving to a global ASID (on_each_cpu_mask);
    otherwise never a lazy CPU (it flushes at its next switch), always one running the
    mm, and one running something else only with info->trim_cpumask (should_flush_tlb
    of 6db2526c1d69).  Before that fix (209954cbc7d0 alone: lazy_cpumask without
    trim_cpumask) every CPU of the mask that is not lazy got it, running the mm or not.
    LOADED_MM_SWITCHING cannot be seen: switches here are atomic.
    RAR RFC (should_flush_all): a trimming request and any request for an mm with a
    global ASID (the IPI path only cleans up the mask or the transition) go to every
    CPU of the mask too."""
    if f.freed_tables or mm.asid_transition:
        return True
    if e.p.rar and (f.trim_cpumask or mm.global_asid):
        return True
    if c.is_lazy:
        return False
    if not e.p.lazy_cpumask or not e.p.trim_cpumask or c.loaded_mm == mm:
        return True
    return f.trim_cpumask


cdef inline bint should_trim_cpumask(flush_env* e, mm_context* mm) noexcept nogil:
    """should_trim_cpumask(): true at most once per HZ jiffies per mm (time_after(jiffies,
    next_trim_cpumask)), moving next_trim_cpumask to jiffies + HZ."""
    if <int64_t>(mm.next_trim_cpumask - e.jiffies) < 0:
        mm.next_trim_cpumask = e.jiffies + <uint64_t>e.p.hz
        return True
    return False


cdef inline bint cpumask_any_but(flush_env* e, mm_context* mm, int cpu) noexcept nogil:
    """cpumask_any_but(mm_cpumask(mm), cpu) < nr_cpu_ids: another CPU is in the mask."""
    cdef int w
    cdef uint64_t word
    for w in range(mm.nwords):
        word = mm.cpumask[w]
        if w == (cpu >> 6):
            word &= ~((<uint64_t>1) << (cpu & 63))
        if word:
            return True
    return False


# KVM's paravirtual TLB flush (arch/x86/kernel/kvm.c, kvm_flush_tlb_multi, the guest's
# flush_tlb_multi when the host offers KVM_FEATURE_PV_TLB_FLUSH): before the IPIs go out,
# each CPU of the mask whose steal-time record says KVM_VCPU_PREEMPTED gets the flag
# KVM_VCPU_FLUSH_TLB instead (a cmpxchg) and leaves the mask; the host flushes that
# vCPU's TLB (kvm_vcpu_flush_tlb_guest, all of the guest's entries) when it next enters
# it.  A preempted vCPU runs no guest instruction before that entry, so here the flush
# is done at once on its TLB: no IPI, no handler, no wait for an acknowledgement, and
# no flush_tlb_func (its tlb_gen stays behind, as in the kernel).  Whether a target is
# preempted is drawn with the preset's chance kvm_pv_preempt from a generator the
# machine seeds (X86Flush.set_kvm_pv_flush); 0 turns the check off.
cdef inline double kvm_pv_uniform(flush_env* e) noexcept nogil:
    """The next draw in [0, 1) of the PV-flush generator (xorshift64*, 53 bits)."""
    cdef uint64_t x = e.kvm_pv_rng
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    e.kvm_pv_rng = x
    return <double>((x * <uint64_t>0x2545F4914F6CDD1D) >> 11) * (1.0 / 9007199254740992.0)


cdef bint kvm_pv_flush_deferred(flush_env* e, cpu_tlbstate* c) noexcept nogil:
    """kvm_flush_tlb_multi() for one CPU of the mask: True when the vCPU is found
    preempted, and then its deferred flush (KVM_VCPU_FLUSH_TLB) is done on its TLB."""
    if e.kvm_pv_preempt <= 0.0 or kvm_pv_uniform(e) >= e.kvm_pv_preempt:
        return False
    stats_touch(c.stats)
    stats_add(c.stats, K_KVM_PV_FLUSH, 1)
    c_flush_nonglobal(<TLB>c.tlb)
    return True


cdef inline void wait_for_acks(flush_env* e, cpu_tlbstate* initiator, double sends,
                               double wait) noexcept nogil:
    """The initiator pays its sends and its wait for the last acknowledgement.  The
    sends are work (smp_call_function_many_cond() queueing each call and writing the
    ICR), charged as flush time, so a core shared with a busy SMT sibling does them
    slower; the wait is B_IPI.  On the timeline it waits with interrupts on, so
    handlers arriving meanwhile fill the wait (handle_ipi) instead of delaying it."""
    stats_spend(initiator.stats, B_FLUSH, sends)
    stats_spend(initiator.stats, B_IPI, wait)
    if e.timeline and wait > 0.0:
        initiator.wait_until = cpu_now(initiator)
        initiator.wait_from = initiator.wait_until - wait


cdef int send_flush_ipis(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                         flush_tlb_info* f, int n, double local_cycles) except -1 nogil:
    """smp_call_function_many_cond() for the n CPUs in e.targets: each runs
    flush_tlb_func(mm, f) in its IPI handler (mm NULL: a flush of whatever it has
    loaded); the initiator pays the sends and waits for the slowest acknowledgement
    beyond its own local flush (local_cycles)."""
    cdef int i
    cdef cpu_tlbstate* c
    cdef double rtt = 0.0, hw0, kernel, work, sends, wait, ack, hend, arrive = 0.0
    stats_add(initiator.stats, K_IPI_SENT, n)
    sends = e.c.ipi_send + e.c.ipi_extra_target * (n - 1)
    if e.timeline and e.c.cacheline_remote != e.c.cacheline_transfer:
        # each send queues the call on the target's call_single_queue, a line the
        # target wrote last: one from another last-level cache costs more to reach
        for i in range(n):
            if e.cpus[e.targets[i]].llc != initiator.llc:
                sends += e.c.cacheline_remote - e.c.cacheline_transfer
    if e.timeline:
        # the IPIs went out before the local flush: all arrive `sends + deliver` after
        # the flush began, and each waits for its target's earlier handlers
        arrive = cpu_now(initiator) - local_cycles + sends + e.c.ipi_deliver
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
        if c.smt_slow > 0.0:                # sharing its core with a busy sibling
            stats_spend(c.stats, B_IPI_HANDLER, work * c.smt_slow)
            work += work * c.smt_slow
        if e.timeline:
            hend = handle_ipi(e, c, arrive, work)
            if mm != NULL and c.leave_ctx == mm.ctx_id and hend < c.leave_at:
                c.leave_at = hend           # a wrong-CPU handler: its clear happens then
            elif mm != NULL and c.loaded_mm == mm and not c.is_lazy \
                    and hend - work > c.flush_ipi_start:
                c.flush_ipi_start = hend - work   # (see lazy_settle)
                c.flush_ipi_ctx = mm.ctx_id
            ack = hend + e.c.ipi_ack - (arrive - e.c.ipi_deliver)
        else:
            ack = e.c.ipi_deliver + work + e.c.ipi_ack
        if ack > rtt:
            rtt = ack
    wait_for_acks(e, initiator, sends, rtt - local_cycles if rtt > local_cycles else 0.0)
    return 0


cdef int native_flush_tlb_multi(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                                flush_tlb_info* f, double local_cycles) except -1 nogil:
    """The IPI backend: every other CPU of mm_cpumask that should_flush_tlb() picks
    gets an IPI running flush_tlb_func; the initiator pays the sends and waits for the
    slowest acknowledgement beyond its own local flush."""
    cdef int cpu_id, n = 0, nothers = 0
    cdef double now = cpu_now(initiator) if e.timeline else 0.0
    cpu_id = cpumask_next(-1, mm.cpumask, mm.nwords)
    while cpu_id < e.ncpus:
        if e.timeline and e.cpus[cpu_id].lazy_switch_at <= now:
            lazy_settle(e, e.cpus[cpu_id], now)
        if e.timeline and (mask_settle(e.cpus[cpu_id], mm, now)
                           or not cpumask_test_cpu(mm, cpu_id)):
            pass                            # a handler cleared the bit before this flush
        elif cpu_id != initiator.cpu:
            nothers += 1
            # a preempted vCPU is flushed on its next entry (kvm_pv_flush_deferred)
            if not (e.kvm_pv_preempt > 0.0 and kvm_pv_flush_deferred(e, e.cpus[cpu_id])) \
                    and should_flush_tlb(e, e.cpus[cpu_id], mm, f):
                e.targets[n] = cpu_id
                n += 1
        cpu_id = cpumask_next(cpu_id, mm.cpumask, mm.nwords)
    if nothers:
        # native_flush_tlb_multi counts before lazy CPUs are filtered out
        stats_add(initiator.stats, K_NR_TLB_REMOTE_FLUSH, 1)
    if n == 0:
        return 0
    return send_flush_ipis(e, initiator, mm, f, n, local_cycles)


cdef int finish_asid_transition(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                                flush_tlb_info* f) except -1 nogil:
    """finish_asid_transition(): while any CPU of the mask runs mm on a local ASID,
    flush_tlb_multi(mm_cpumask) (on_each_cpu_mask, so the initiator too) makes them
    move to the global ASID; once none does, the transition is over."""
    cdef int cpu_id
    cdef cpu_tlbstate* c
    cdef double hw0, kernel = 0.0
    if not mm.asid_transition:
        return 0
    cpu_id = cpumask_next(-1, mm.cpumask, mm.nwords)
    while cpu_id < e.ncpus:
        c = e.cpus[cpu_id]
        cpu_id = cpumask_next(cpu_id, mm.cpumask, mm.nwords)
        if c.loaded_mm == mm and c.loaded_mm_asid != mm.global_asid:
            if e.p.rar:
                f.trim_cpumask = True       # the RFC: IPIs, which move the stragglers
            hw0 = tlb_cycles(cpu)
            if cpu.loaded_mm == mm:
                kernel = flush_tlb_func(e, cpu, mm, f, True)
                stats_spend(cpu.stats, B_FLUSH, kernel)
            return e.flush_tlb_multi(e, cpu, mm, f, kernel + (tlb_cycles(cpu) - hw0))
    mm.asid_transition = False
    return 0


cdef int broadcast_tlb_flush(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                             flush_tlb_info* f) except -1 nogil:
    """broadcast_tlb_flush(): INVLPGBs for mm's global ASID (kernel PCID, and the user
    PCID with PTI): one per PCID for a full flush, else runs of at most
    invlpgb_count_max pages (one step per run for strides above 2M), PMD-strided for
    2M strides; then the transition IPIs, then TLBSYNC."""
    cdef int asid = mm.global_asid
    cdef bint pmd = f.stride_shift == 21
    cdef uint64_t addr = f.start, nr
    if f.end == FLUSH_ALL:
        invlpgb_issue(e, cpu, INVLPGB_PCID, kern_pcid(asid), 0, 0, False)
        if e.p.pti:
            invlpgb_issue(e, cpu, INVLPGB_PCID, user_pcid(asid), 0, 0, False)
    else:
        while True:
            nr = 1
            if f.stride_shift <= 21:
                nr = (f.end - addr) >> f.stride_shift
                if nr < 1:
                    nr = 1
                if nr > <uint64_t>e.p.invlpgb_count_max:
                    nr = e.p.invlpgb_count_max
            invlpgb_issue(e, cpu, INVLPGB_VA, kern_pcid(asid), addr, <int>nr, pmd)
            if e.p.pti:
                invlpgb_issue(e, cpu, INVLPGB_VA, user_pcid(asid), addr, <int>nr, pmd)
            addr += nr << f.stride_shift
            if addr >= f.end:
                break
    finish_asid_transition(e, cpu, mm, f)
    if not e.skip_tlbsync:
        tlbsync(e, cpu)                     # wait for the INVLPGBs kicked off above
    return 0


# ------------------------------------------------------------------ Intel RAR (RFC)
# Remote Action Request (Rik van Riel's RFC v1-v4, 2025, not merged; patches "x86/mm:
# Introduce Remote Action Request" and "userspace & pageout flushing using Intel RAR").
# RAR is a hardware shootdown: the initiator writes a payload (what to invalidate) into
# an action table in memory that every CPU was pointed at during boot
# (MSR_IA32_RAR_PAYLOAD_BASE, 64 entries), marks the entry RAR_PENDING in each target's
# per-CPU action vector, sends one APIC command to the cpumask and spins until every
# target's status byte reads RAR_SUCCESS.  The targets' microcode does the
# invalidation; no interrupt handler runs, and RAR_CTRL_IGNORE_IF lets it happen with
# interrupts off.
#
# The kernel's rules in the RFC, as modelled here (params.rar, backend "rar"):
# - RAR is only used for mms with a global ASID (the INVLPGB series' allocator, used on
#   Intel too): the action names one PCID, the same on every CPU.  Dynamic ASIDs differ
#   per CPU and keep using IPIs (native_flush_tlb_multi).
# - Targets are every CPU of mm_cpumask but the initiator, lazy or running another mm
#   (RAR skips should_flush_tlb(): it keeps no tlb_gen per CPU).  So a global ASID is
#   current only on CPUs in mm_cpumask; a CPU that left the mask (trimmed) keeps stale
#   entries under that PCID and must flush when it switches back in (choose_new_asid's
#   new_cpu).  The checker counts a global ASID as current on the mask's CPUs only.
# - Once per HZ a request trims the mask: it goes by IPIs to every CPU of the mask
#   (should_flush_all), as do finish_asid_transition()'s IPIs.
# - A payload names up to RAR_INVLPG_MAX_PAGES - 1 4K pages ((end - start + PAGE_SIZE) /
#   PAGE_SIZE, the RFC's arithmetic: one page past the range) or else the whole PCID;
#   with PTI a second RAR names the user PCID.
# Costs (preset, assumptions): rar_send + rar_extra_target per further target on the
# initiator, rar_deliver until a target acts, rar_handle per payload on the target plus
# its invalidations (invpcid_single per page, cr3_flush for a PCID), ipi_ack for the
# status line coming back.  On the timeline the target's work starts at arrival: the
# microcode does not queue behind interrupt handlers (handle_rar, not handle_ipi).
# Left out: the payload slot's spinlock (slot = cpu % 64: no sharing up to 64 CPUs).

cdef double handle_rar(cpu_tlbstate* c, double arrive, double work) noexcept nogil:
    """Place a RAR action of `work` cycles (already charged to c) on c's timeline: it
    starts on arrival, interrupts or not; returns when it ends.  Overlap with c's own
    wait for acks shrinks that wait, as handle_ipi() does."""
    cdef double end = arrive + work
    cdef double lo = arrive if arrive > c.wait_from else c.wait_from
    cdef double hi = end if end < c.wait_until else c.wait_until
    if hi > lo and c.stats.kcycles[B_IPI] >= hi - lo:
        c.stats.kcycles[B_IPI] -= hi - lo
        c.wait_from = hi
    return end


cdef void rar_set_payload(rar_payload* p, int pcid, uint64_t start,
                          uint64_t end) noexcept nogil:
    """set_payload(): a PCID's pages when fewer than RAR_INVLPG_MAX_PAGES, else the
    whole PCID; pcid 0 (kernel flushes) invalidates every PCID."""
    cdef uint64_t pages = RAR_INVLPG_MAX_PAGES + 1
    if end != FLUSH_ALL:
        pages = (end - start + 4096) >> 12
    p.type = RAR_TYPE_INVPCID
    p.pcid = pcid
    p.linear_address = start
    p.num_pages = 0
    if pcid == 0:
        p.subtype = RAR_INVPCID_ALL
    elif pages < RAR_INVLPG_MAX_PAGES:
        p.subtype = RAR_INVPCID_ADDR
        p.num_pages = <int>pages
    else:
        p.subtype = RAR_INVPCID_PCID


cdef void rar_do_payload(cpu_tlbstate* c, rar_payload* p) noexcept nogil:
    """The target's microcode carrying out one payload on its TLB."""
    cdef int j
    if p.subtype == RAR_INVPCID_ADDR:
        for j in range(p.num_pages):
            c_invpcid_single(<TLB>c.tlb, p.linear_address + ((<uint64_t>j) << 12), p.pcid)
    elif p.subtype == RAR_INVPCID_PCID:
        c_flush_pcid(<TLB>c.tlb, p.pcid)
    else:
        # INVPCID all: the model drops every non-global entry (user translations);
        # the kernel's global entries would go too, with refills the model omits
        c_flush_pcid(<TLB>c.tlb, <uint64_t>0xFFFFFFFFFFFFFFFF)


cdef double rar_service(flush_env* e, cpu_tlbstate* c) noexcept nogil:
    """What a RAR signal makes c's microcode do: every action-vector entry marked
    RAR_PENDING, its payload carried out and the entry set to RAR_SUCCESS; returns the
    cycles (rar_handle per payload, charged to c, plus its TLB's invalidation cycles)."""
    cdef int slot
    cdef uint8_t* vec = e.rar_action + c.cpu * RAR_MAX_PAYLOADS
    cdef double hw0 = tlb_cycles(c), kernel = 0.0
    stats_touch(c.stats)
    for slot in range(RAR_MAX_PAYLOADS):
        if vec[slot] == RAR_PENDING:
            rar_do_payload(c, &e.rar_payloads[slot])
            vec[slot] = RAR_SUCCESS
            stats_add(c.stats, K_RAR_RECEIVED, 1)
            kernel += e.c.rar_handle
    stats_spend(c.stats, B_IPI_HANDLER, kernel)   # remote-flush work done on c
    return kernel + (tlb_cycles(c) - hw0)


cdef int smp_call_rar_many(flush_env* e, cpu_tlbstate* initiator, int n, int pcid,
                           uint64_t start, uint64_t end) except -1 nogil:
    """smp_call_rar_many() to the n CPUs in e.targets: write the initiator's payload
    slot (cpu % RAR_MAX_PAYLOADS), arm each target's action entry, signal them all,
    wait until every entry reads RAR_SUCCESS.  The initiator pays the sends and waits
    for the slowest target; the action table's state is left as the hardware leaves
    it (the payload in place, every entry RAR_SUCCESS)."""
    cdef int slot = initiator.cpu % RAR_MAX_PAYLOADS, i
    cdef cpu_tlbstate* c
    cdef double sends, sent, work, ack, rtt = 0.0
    if n == 0:
        return 0
    rar_set_payload(&e.rar_payloads[slot], pcid, start, end)
    for i in range(n):
        e.rar_action[e.targets[i] * RAR_MAX_PAYLOADS + slot] = RAR_PENDING
    stats_add(initiator.stats, K_RAR_SENT, n)
    sends = e.c.rar_send + e.c.rar_extra_target * (n - 1)
    sent = cpu_now(initiator) + sends
    for i in range(n):
        c = e.cpus[e.targets[i]]
        work = rar_service(e, c)
        if e.timeline:
            ack = handle_rar(c, sent + e.c.rar_deliver, work) + e.c.ipi_ack - sent
        else:
            ack = e.c.rar_deliver + work + e.c.ipi_ack
        if ack > rtt:
            rtt = ack
    wait_for_acks(e, initiator, sends, rtt)      # spinning on the status bytes
    return 0


cdef int rar_mask_targets(flush_env* e, cpu_tlbstate* initiator, uint64_t* mask,
                          int nwords) noexcept nogil:
    """Fill e.targets with the CPUs of mask but the initiator; returns how many."""
    cdef int cpu_id, n = 0
    cpu_id = cpumask_next(-1, mask, nwords)
    while cpu_id < e.ncpus:
        if cpu_id != initiator.cpu:
            e.targets[n] = cpu_id
            n += 1
        cpu_id = cpumask_next(cpu_id, mask, nwords)
    return n


cdef int rar_flush_tlb_multi(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                             flush_tlb_info* f, double local_cycles) except -1 nogil:
    """The "rar" backend: for an mm with a global ASID and a request that does not
    trim, RARs naming its PCID (and the user PCID with PTI) to every other CPU of
    mm_cpumask; anything else (dynamic ASIDs, trimming, the ASID transition) by IPIs."""
    cdef int n, asid = mm.global_asid
    if not asid or f.trim_cpumask:
        return native_flush_tlb_multi(e, initiator, mm, f, local_cycles)
    n = rar_mask_targets(e, initiator, mm.cpumask, mm.nwords)
    smp_call_rar_many(e, initiator, n, kern_pcid(asid), f.start, f.end)
    if e.p.pti:
        smp_call_rar_many(e, initiator, n, user_pcid(asid), f.start, f.end)
    return 0


cdef int rar_tlb_flush(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                       flush_tlb_info* f) except -1 nogil:
    """rar_tlb_flush() + finish_asid_transition() (the RFC's broadcast_tlb_flush() on
    Intel): the remote CPUs through the backend, then flush_tlb_func() here if this CPU
    is in mm_cpumask, then the transition IPIs."""
    cdef double kernel
    e.flush_tlb_multi(e, cpu, mm, f, 0.0)
    if cpumask_test_cpu(mm, cpu.cpu):
        kernel = flush_tlb_func(e, cpu, mm, f, True)
        stats_spend(cpu.stats, B_FLUSH, kernel)
    finish_asid_transition(e, cpu, mm, f)
    return 0


cdef double rar_flush_global_asid(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                                  flush_tlb_info* f, bint local) noexcept nogil:
    """flush_tlb_func() on a global ASID under RAR (the RFC processes it instead of
    returning): no slot holds its generation (local_tlb_gen = 0), so only the very
    first request (new_tlb_gen == mm gen == 1) flushes its pages; any other flushes the
    PCID, the user PCID too with PTI (at once: see load_cr3)."""
    cdef int asid = cpu.loaded_mm_asid
    cdef uint64_t n, i, mm_gen = mm.tlb_gen
    cdef int pcid = c_tlb_pcid(<TLB>cpu.tlb)
    if mm_gen == 0:
        return 0.0
    if f.end != FLUSH_ALL and f.new_tlb_gen == 1 and mm_gen == 1:
        n = (f.end - f.start) >> f.stride_shift
        for i in range(n):
            if local:
                c_invlpg(<TLB>cpu.tlb, f.start + (i << f.stride_shift), pcid)
            else:
                c_invlpg_remote(<TLB>cpu.tlb, f.start + (i << f.stride_shift), pcid)
            if e.p.pti:
                c_invpcid_single(<TLB>cpu.tlb, f.start + (i << f.stride_shift),
                                 user_pcid(asid))
        stats_add(cpu.stats, K_NR_TLB_LOCAL_FLUSH_ONE if local else K_REMOTE_FLUSH_ONE,
                  <int64_t>n)
        return n * e.c.flush_per_page
    c_flush_pcid(<TLB>cpu.tlb, kern_pcid(asid))
    if e.p.pti:
        c_flush_pcid(<TLB>cpu.tlb, user_pcid(asid))
    stats_add(cpu.stats, K_NR_TLB_LOCAL_FLUSH_ALL if local else K_REMOTE_FLUSH_ALL, 1)
    return 0.0


cdef void rar_flush_tlb_all(flush_env* e, cpu_tlbstate* cpu) noexcept nogil:
    """flush_tlb_all() under RAR (rar_full_flush of the RFC's kernel-flush patch): a RAR
    with PCID 0 (every PCID) to every other CPU, and the same flush here."""
    cdef int i, n = 0
    for i in range(e.ncpus):
        if i != cpu.cpu:
            e.targets[n] = i
            n += 1
    smp_call_rar_many(e, cpu, n, 0, 0, FLUSH_ALL)
    stats_touch(cpu.stats)
    c_flush_pcid(<TLB>cpu.tlb, <uint64_t>0xFFFFFFFFFFFFFFFF)


# ------------------------------------------------------------------ reclaim's batch
# Reclaim unmaps pages through try_to_unmap(TTU_BATCH_FLUSH) (mm/rmap.c): instead of a
# flush per page, set_tlb_ubc_flush_pending() records the page in the task's
# tlbflush_unmap_batch and try_to_unmap_flush() flushes once, before the pages are
# written out or freed.  The x86 half of the batch (struct arch_tlbflush_unmap_batch) is
# a cpumask, here a bitmap the Python side owns:
# - arch_tlbbatch_add_pending(): bump the mm's tlb_gen and OR its mm_cpumask into the
#   batch's.  6.15 with INVLPGB (20250226030129.530345-12): an mm with a global ASID
#   gets an asynchronous targeted INVLPGB for the page (both PCIDs with PTI) and stays
#   out of the cpumask, unless it is still in its ASID transition (then both).
# - arch_tlbbatch_flush(): a request with no mm and new_tlb_gen TLB_GENERATION_INVALID:
#   flush_tlb_multi() to the cpumask when another CPU is in it (each non-lazy target
#   flushes its loaded mm if that mm's generation moved), else flush_tlb_func() here if
#   this CPU is in it; then tlbsync() for the INVLPGBs.  RAR RFC: a RAR full flush of
#   the cpumask, and a flush of every non-global entry here if this CPU is in it.
cdef int ipi_flush_tlb_multi_mask(flush_env* e, cpu_tlbstate* initiator, uint64_t* mask,
                                  int nwords, flush_tlb_info* f,
                                  double local_cycles) except -1 nogil:
    """native_flush_tlb_multi(cpumask, info) for a request with no mm (the batch's):
    every non-lazy CPU of mask but the initiator gets the IPI (should_flush_tlb: no mm
    means flush); costs and timeline as the IPI backend."""
    cdef int n, m = 0, i
    n = rar_mask_targets(e, initiator, mask, nwords)
    if n == 0:
        return 0
    stats_add(initiator.stats, K_NR_TLB_REMOTE_FLUSH, 1)
    for i in range(n):
        if e.kvm_pv_preempt > 0.0 and kvm_pv_flush_deferred(e, e.cpus[e.targets[i]]):
            continue                        # preempted vCPU: flushed on its next entry
        if not e.cpus[e.targets[i]].is_lazy:
            e.targets[m] = e.targets[i]
            m += 1
    if m == 0:
        return 0
    return send_flush_ipis(e, initiator, NULL, f, m, local_cycles)


cdef bint arch_tlbbatch_add_pending(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                                    uint64_t* mask, uint64_t uaddr) noexcept nogil:
    """arch_tlbbatch_add_pending(batch, mm, uaddr); returns whether it issued INVLPGBs
    (the page of a global-ASID mm, flushed asynchronously until tlbsync())."""
    cdef int asid = mm.global_asid if e.p.invlpgb else 0
    cdef int w
    cdef bint issued = False
    if asid:
        invlpgb_issue(e, cpu, INVLPGB_VA, kern_pcid(asid), uaddr, 1, False)
        if e.p.pti:
            invlpgb_issue(e, cpu, INVLPGB_VA, user_pcid(asid), uaddr, 1, False)
        cpu.need_tlbsync = True
        issued = True
        if mm.asid_transition:
            asid = 0                        # stragglers on a local ASID need IPIs too
    if not asid:
        inc_mm_tlb_gen(e, cpu, mm)
        for w in range(mm.nwords):
            mask[w] |= mm.cpumask[w]
    return issued


cdef int arch_tlbbatch_flush(flush_env* e, cpu_tlbstate* cpu, uint64_t* mask,
                             int nwords) except -1 nogil:
    """arch_tlbbatch_flush(): the batch's one flush (see the block above); the cpumask
    is cleared."""
    cdef flush_tlb_info f
    cdef int w
    cdef bint others = False, mine = (mask[cpu.cpu >> 6] >> (cpu.cpu & 63)) & 1
    cdef double hw0, kernel = 0.0
    for w in range(nwords):
        if mask[w] & ~((<uint64_t>1) << (cpu.cpu & 63) if w == (cpu.cpu >> 6) else 0):
            others = True
    f.start = 0
    f.end = FLUSH_ALL
    f.stride_shift = 12
    f.freed_tables = False
    f.new_tlb_gen = 0                       # TLB_GENERATION_INVALID
    f.initiator = cpu.cpu
    f.trim_cpumask = False
    stats_add(cpu.stats, K_TLBBATCH_FLUSH, 1)
    stats_spend(cpu.stats, B_FLUSH, e.c.flush_base)
    stats_touch(cpu.stats)
    if e.p.rar and (others or mine):
        smp_call_rar_many(e, cpu, rar_mask_targets(e, cpu, mask, nwords), 0, 0, FLUSH_ALL)
        if mine:
            c_flush_pcid(<TLB>cpu.tlb, <uint64_t>0xFFFFFFFFFFFFFFFF)
    elif others:
        hw0 = tlb_cycles(cpu)
        if mine:                            # on_each_cpu_cond_mask runs it here too
            kernel = flush_tlb_func(e, cpu, NULL, &f, True)
            stats_spend(cpu.stats, B_FLUSH, kernel)
        ipi_flush_tlb_multi_mask(e, cpu, mask, nwords, &f,
                                 kernel + (tlb_cycles(cpu) - hw0))
    elif mine:
        stats_spend(cpu.stats, B_FLUSH, flush_tlb_func(e, cpu, NULL, &f, True))
    if cpu.need_tlbsync:
        tlbsync(e, cpu)
        cpu.need_tlbsync = False
    for w in range(nwords):
        mask[w] = 0
    return 0


cdef int flush_tlb_mm_range(flush_env* e, cpu_tlbstate* cpu, mm_context* mm,
                            uint64_t start, uint64_t end, int stride_shift,
                            bint freed_tables, flush_tlb_info* f) except -1 nogil:
    """flush_tlb_mm_range(): the ceiling rule, the tlb_gen bump, then for an mm with a
    global ASID broadcast_tlb_flush(), else the local flush, the remote one through
    the backend (trimming the mask once per HZ) and consider_global_asid(); f
    receives the request."""
    cdef double hw0, kernel = 0.0
    cdef bint others
    if end != FLUSH_ALL and ((end - start) >> stride_shift) > e.p.ceiling:
        start = 0
        end = FLUSH_ALL
    f.start = start
    f.end = end
    f.stride_shift = stride_shift
    f.freed_tables = freed_tables
    f.initiator = cpu.cpu
    f.trim_cpumask = False
    stats_add(cpu.stats, K_FLUSH_TLB_MM_RANGE, 1)
    stats_spend(cpu.stats, B_FLUSH, e.c.flush_base)
    f.new_tlb_gen = inc_mm_tlb_gen(e, cpu, mm)
    if e.p.invlpgb and mm.global_asid:
        return broadcast_tlb_flush(e, cpu, mm, f)
    if e.p.rar:
        # the RFC trims every mm's mask once per HZ, a global-ASID one too: then the
        # request goes by IPIs (should_flush_all), else by RAR
        f.trim_cpumask = e.p.trim_cpumask and should_trim_cpumask(e, mm)
        if mm.global_asid and not f.trim_cpumask:
            return rar_tlb_flush(e, cpu, mm, f)
    others = cpumask_any_but(e, mm, cpu.cpu)
    if e.p.trim_cpumask and others and not e.p.rar:
        f.trim_cpumask = should_trim_cpumask(e, mm)
    hw0 = tlb_cycles(cpu)
    if cpu.loaded_mm == mm:
        kernel = flush_tlb_func(e, cpu, mm, f, True)
        stats_spend(cpu.stats, B_FLUSH, kernel)
    e.flush_tlb_multi(e, cpu, mm, f, kernel + (tlb_cycles(cpu) - hw0))
    if others:
        consider_global_asid(e, cpu, mm)
    return 0


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
                f"{', freed tables' if self.freed_tables else ''}"
                f"{', trim' if self.trim_cpumask else ''})")


cdef FlushInfo info_object(flush_tlb_info* f):
    cdef FlushInfo out = FlushInfo.__new__(FlushInfo)
    out.start, out.end, out.new_tlb_gen = f.start, f.end, f.new_tlb_gen
    out.stride_shift, out.initiator, out.freed_tables = f.stride_shift, f.initiator, \
        f.freed_tables
    out.trim_cpumask = f.trim_cpumask
    return out


cdef void info_struct(FlushInfo info, flush_tlb_info* f) noexcept:
    f.start, f.end, f.new_tlb_gen = info.start, info.end, info.new_tlb_gen
    f.stride_shift, f.initiator, f.freed_tables = info.stride_shift, info.initiator, \
        info.freed_tables
    f.trim_cpumask = info.trim_cpumask


cdef int python_flush_tlb_multi(flush_env* e, cpu_tlbstate* initiator, mm_context* mm,
                                flush_tlb_info* f, double local_cycles) except -1 nogil:
    """The "python" backend: a callable prototypes a remote-flush mechanism (or breaks
    one on purpose, for the checker's tests) with the C pieces exposed on X86Flush."""
    with gil:
        x = <X86Flush>e.owner
        x.py_backend(x, x.cpus[initiator.cpu], <MMContext>mm.obj, info_object(f),
                     local_cycles)
    return 0


cdef inline double _py_floordiv(double vx, double wx) noexcept nogil:
    """Python's float floor division vx // wx (CPython's float_floor_div, step by
    step), so that jiffies computed here equal int(now // cycles_per_jiffy)."""
    cdef double mod = fmod(vx, wx)
    cdef double div = (vx - mod) / wx
    cdef double fd
    if mod:
        if (wx < 0) != (mod < 0):
            div -= 1.0
    if div:
        fd = floor(div)
        if div - fd > 0.5:
            fd += 1.0
        return fd
    return copysign(0.0, vx / wx)


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
    and flush costs, the flush_tlb_multi backend ("ipi": native_flush_tlb_multi), the
    jiffies clock and the global ASID allocator; with params["invlpgb"] an mm with a
    global ASID flushes by INVLPGB broadcast instead of the backend."""

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
        if backend not in ("ipi", "rar"):
            raise ValueError(f"flush_tlb_multi backend {backend!r} unknown; "
                             f"known: ipi, rar (set_python_backend installs a callable)")
        if (backend == "rar") != bool(params["rar"]):
            raise ValueError("backend 'rar' goes with params['rar'] = True and only with it")
        self.e.p.pcid = params["pcid"]
        self.e.p.invpcid = params["invpcid"]
        self.e.p.pti = params["pti"]
        self.e.p.lazy_tlb = params["lazy_tlb"]
        self.e.p.early_exit = params["early_exit"]
        self.e.p.ceiling = params["ceiling"]
        self.e.p.nr_asids = params["nr_asids"]
        self.e.p.lazy_cpumask = params["lazy_cpumask"]
        self.e.p.trim_cpumask = params["trim_cpumask"]
        self.e.p.hz = params["hz"]
        self.e.p.invlpgb = params["invlpgb"]
        self.e.p.invlpgb_count_max = params["invlpgb_count_max"]
        self.e.p.max_asid_available = params["max_asid_available"]
        if self.e.p.hz < 1 or self.e.p.invlpgb_count_max < 1:
            raise ValueError("hz and invlpgb_count_max must be >= 1")
        if not self.e.p.nr_asids < self.e.p.max_asid_available <= MAX_ASID_AVAILABLE:
            raise ValueError(f"max_asid_available must be in ({self.e.p.nr_asids}, "
                             f"{MAX_ASID_AVAILABLE}]")
        if self.e.p.invlpgb and not self.e.p.pcid:
            raise ValueError("invlpgb needs pcid (a global ASID is a PCID)")
        self.e.p.rar = params["rar"]
        if self.e.p.rar and (self.e.p.invlpgb or not self.e.p.pcid):
            raise ValueError("rar needs pcid and excludes invlpgb (an Intel or an AMD CPU)")
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
        self.e.c.cacheline_transfer = costs["cacheline_transfer"]
        self.e.c.cacheline_per_writer = costs["cacheline_per_writer"]
        self.e.c.cacheline_remote = costs["cacheline_remote"]
        self.e.c.idle_exit = costs["idle_exit"]
        self.e.timeline = False
        self.e.late_lazy_ipis = False
        self.e.c.invlpgb_issue = costs["invlpgb_issue"]
        self.e.c.tlbsync_wait = costs["tlbsync_wait"]
        self.e.c.rar_send = costs["rar_send"]
        self.e.c.rar_extra_target = costs["rar_extra_target"]
        self.e.c.rar_deliver = costs["rar_deliver"]
        self.e.c.rar_handle = costs["rar_handle"]
        used = np.zeros(self.e.p.max_asid_available, dtype=np.uint8)
        freed = np.zeros(self.e.p.max_asid_available, dtype=np.uint8)
        self._asidbufs = (used, freed)
        self.e.global_asid_used = <uint8_t*>cnp.PyArray_DATA(used)
        self.e.global_asid_freed = <uint8_t*>cnp.PyArray_DATA(freed)
        self.e.last_global_asid = self.e.p.max_asid_available
        self.e.global_asid_available = self.e.p.max_asid_available - self.e.p.nr_asids - 1
        self.e.jiffies = 0
        self.e.skip_tlbsync = False
        self.cpus = list(cpus)
        self.e.ncpus = len(cpus)
        self.e.cpus = <cpu_tlbstate**>malloc(max(1, self.e.ncpus) * sizeof(cpu_tlbstate*))
        self.e.targets = <int*>malloc(max(1, self.e.ncpus) * sizeof(int))
        if self.e.cpus == NULL or self.e.targets == NULL:
            raise MemoryError()
        for i in range(self.e.ncpus):
            c = self.cpus[i]
            self.e.cpus[i] = &c.s
        self.e.flush_tlb_multi = rar_flush_tlb_multi if self.e.p.rar else native_flush_tlb_multi
        self.e.owner = <void*>self
        # rar_boot_cpu_init(): the action table and every CPU's action vector (zeroed)
        payloads = np.zeros(RAR_MAX_PAYLOADS * sizeof(rar_payload), dtype=np.uint8)
        actions = np.zeros(max(1, self.e.ncpus) * RAR_MAX_PAYLOADS, dtype=np.uint8)
        self._rarbufs = (payloads, actions)
        self.e.rar_payloads = <rar_payload*>cnp.PyArray_DATA(payloads)
        self.e.rar_action = <uint8_t*>cnp.PyArray_DATA(actions)
        self.e.rar_skip_new_cpu_flush = False
        self.backend = backend
        self.py_backend = None

    def __dealloc__(self):
        free(self.e.cpus)
        free(self.e.targets)

    # -------------------------------------------------------------- RAR (rar-rfc)
    @property
    def rar_payloads(self) -> list:
        """The RAR action table (RAR_MAX_PAYLOADS entries) as dicts: type, subtype
        ("addr", "pcid", "all"), pcid, linear_address, num_pages; the payload an
        initiator last wrote stays in its slot (cpu % 64), zeroed ones read as "addr"."""
        cdef int i
        names = {RAR_INVPCID_ADDR: "addr", RAR_INVPCID_PCID: "pcid", RAR_INVPCID_ALL: "all"}
        return [{"type": self.e.rar_payloads[i].type,
                 "subtype": names.get(self.e.rar_payloads[i].subtype, "?"),
                 "pcid": self.e.rar_payloads[i].pcid,
                 "linear_address": self.e.rar_payloads[i].linear_address,
                 "num_pages": self.e.rar_payloads[i].num_pages}
                for i in range(RAR_MAX_PAYLOADS)]

    def rar_action(self, int cpu) -> bytes:
        """cpu's RAR action vector: one status byte per payload slot (0 RAR_SUCCESS, 1
        RAR_PENDING)."""
        if not 0 <= cpu < self.e.ncpus:
            raise ValueError(f"cpu {cpu} outside 0..{self.e.ncpus - 1}")
        return bytes(self._rarbufs[1][cpu * RAR_MAX_PAYLOADS:(cpu + 1) * RAR_MAX_PAYLOADS])

    @property
    def rar_skip_new_cpu_flush(self) -> bool:
        """Debug switch, False in every profile: with RAR, a CPU switching to a
        global-ASID mm whose mask it had left does not flush (the rule broken, for the
        checker's test)."""
        return self.e.rar_skip_new_cpu_flush

    @rar_skip_new_cpu_flush.setter
    def rar_skip_new_cpu_flush(self, bint value):
        self.e.rar_skip_new_cpu_flush = value

    # -------------------------------------------------------------- reclaim's batch
    def _batch_mask(self, mask):
        """mask checked to be a writable uint64 array of this machine's cpumask width."""
        if not isinstance(mask, np.ndarray) or mask.dtype != np.uint64 \
                or mask.shape != ((self.e.ncpus + 63) // 64,) or not mask.flags.writeable \
                or not mask.flags.c_contiguous:
            raise ValueError(f"a batch cpumask is a writable uint64 array of "
                             f"{(self.e.ncpus + 63) // 64} words")
        return mask

    def new_tlbbatch_mask(self):
        """An empty arch_tlbflush_unmap_batch cpumask for this machine."""
        return np.zeros((self.e.ncpus + 63) // 64, dtype=np.uint64)

    def arch_tlbbatch_add_pending(self, CpuTlbState cpu, MMContext mm, uint64_t uaddr,
                                  mask) -> bool:
        """arch_tlbbatch_add_pending() from cpu for mm's page uaddr into the batch
        cpumask mask; True if it issued INVLPGBs (6.15, global ASID)."""
        _own(self, cpu)
        cdef cnp.ndarray m = self._batch_mask(mask)
        stats_touch(cpu.s.stats)
        return arch_tlbbatch_add_pending(&self.e, &cpu.s, _fits(self, mm),
                                         <uint64_t*>cnp.PyArray_DATA(m), uaddr)

    def arch_tlbbatch_flush(self, CpuTlbState cpu, mask):
        """arch_tlbbatch_flush() on cpu for the batch cpumask mask (cleared after)."""
        _own(self, cpu)
        cdef cnp.ndarray m = self._batch_mask(mask)
        arch_tlbbatch_flush(&self.e, &cpu.s, <uint64_t*>cnp.PyArray_DATA(m),
                            <int>m.shape[0])
        keep_loaded(cpu)

    def cpu_need_tlbsync(self, CpuTlbState cpu) -> bool:
        """cpu_tlbstate.need_tlbsync: a batch issued INVLPGBs here not yet waited for."""
        return cpu.s.need_tlbsync

    def __reduce__(self):
        if self.py_backend is not None:
            raise TypeError("an X86Flush with a python backend cannot be pickled")
        used, freed = self._asidbufs
        return (X86Flush, (self.cpus, self.params, self.costs, self.backend),
                (self.e.jiffies, used.copy(), freed.copy(), self.e.last_global_asid,
                 self.e.global_asid_available, self.e.skip_tlbsync,
                 self.e.kvm_pv_preempt, self.e.kvm_pv_rng))

    def __setstate__(self, state):
        jiffies, used, freed, last, available, skip, pv_chance, pv_rng = state
        self.e.kvm_pv_preempt = pv_chance
        self.e.kvm_pv_rng = pv_rng
        self.e.jiffies = jiffies
        self._asidbufs[0][:] = used
        self._asidbufs[1][:] = freed
        self.e.last_global_asid = last
        self.e.global_asid_available = available
        self.e.skip_tlbsync = skip

    @property
    def jiffies(self) -> int:
        """The kernel's tick count the time-sampling rules read (should_trim_cpumask,
        consider_global_asid); the machine sets it at the start of every operation."""
        return self.e.jiffies

    @jiffies.setter
    def jiffies(self, uint64_t value):
        self.e.jiffies = value

    def set_kvm_pv_flush(self, double chance, uint64_t seed):
        """Turn on KVM's paravirtual TLB flush (kvm_flush_tlb_multi): each CPU of a
        flush's mask is found preempted with this chance and flushed on its next entry
        instead of getting an IPI; seed (from the machine's seeded generator) makes the
        draws reproducible.  chance 0 turns it off."""
        if not 0.0 <= chance < 1.0:
            raise ValueError(f"kvm_pv_preempt must be in [0, 1), got {chance!r}")
        self.e.kvm_pv_preempt = chance
        self.e.kvm_pv_rng = seed | 1                # xorshift needs a nonzero state

    @property
    def kvm_pv_preempt(self) -> float:
        """The chance a flush finds a target vCPU preempted (0: PV flush off)."""
        return self.e.kvm_pv_preempt

    @property
    def skip_tlbsync(self) -> bool:
        """Debug switch, False in every profile: broadcast_tlb_flush() issues its
        INVLPGBs and forgets the TLBSYNC, so they never take effect (the checker's test
        of a broken broadcast policy)."""
        return self.e.skip_tlbsync

    @skip_tlbsync.setter
    def skip_tlbsync(self, bint value):
        self.e.skip_tlbsync = value

    @property
    def global_asid_available(self) -> int:
        """Global ASIDs the allocator can still hand out."""
        return self.e.global_asid_available

    @property
    def last_global_asid(self) -> int:
        """Where allocate_global_asid() searches from (the last one handed out)."""
        return self.e.last_global_asid

    def use_global_asid(self, CpuTlbState cpu, MMContext mm):
        """use_global_asid(): give mm a global ASID now (allocating from cpu, which
        issues the reset's INVLPGB when the space wraps), as consider_global_asid()
        does when its sample hits; for tests and prototypes."""
        _own(self, cpu)
        if not uses_global_asids(&self.e):
            raise ValueError("use_global_asid needs invlpgb or rar (a preset with the "
                             "feature and a profile that uses it)")
        use_global_asid(&self.e, &cpu.s, _fits(self, mm))

    def mm_free_global_asid(self, MMContext mm):
        """mm_free_global_asid() (the mm is destroyed): its global ASID is reusable
        after the next wrap of the global ASID space."""
        mm_free_global_asid(&self.e, _fits(self, mm))

    def mm_active_cpus_exceeds(self, MMContext mm, int threshold) -> bool:
        """mm_active_cpus_exceeds(): more than threshold CPUs run mm, not lazily."""
        return mm_active_cpus_exceeds(&self.e, _fits(self, mm), threshold)

    def tlbsync(self, CpuTlbState cpu):
        """__tlbsync() on cpu: its pending INVLPGBs take effect everywhere."""
        _own(self, cpu)
        tlbsync(&self.e, &cpu.s)

    def global_slots(self, MMContext mm) -> list:
        """(cpu, global ASID, mm.tlb_gen) for every CPU when mm has a global ASID: its
        PCID can hold entries on any CPU, and with INVLPGB none is ever flushed at a
        switch, so the checker treats every CPU's copy as current.  With RAR only the
        CPUs of mm_cpumask are kept current (the others flush when they rejoin)."""
        if not uses_global_asids(&self.e) or mm.c.global_asid == 0:
            return []
        if self.e.p.rar:
            return [(i, mm.c.global_asid, mm.c.tlb_gen) for i in sorted(mm.cpumask)
                    if i < self.e.ncpus]
        return [(i, mm.c.global_asid, mm.c.tlb_gen) for i in range(self.e.ncpus)]

    def set_python_backend(self, fn):
        """Route remote flushes through fn(x, initiator, mm, info, local_cycles) instead
        of the IPI loop (None restores it).  fn may call x.flush_tlb_func() and
        x.native_flush_tlb_multi(); whatever it skips stays cached."""
        if fn is None:
            self.e.flush_tlb_multi = (rar_flush_tlb_multi if self.e.p.rar
                                      else native_flush_tlb_multi)
            self.backend = "rar" if self.e.p.rar else "ipi"
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
                "ceiling": self.e.p.ceiling, "nr_asids": self.e.p.nr_asids,
                "lazy_cpumask": self.e.p.lazy_cpumask, "trim_cpumask": self.e.p.trim_cpumask,
                "hz": self.e.p.hz, "invlpgb": self.e.p.invlpgb,
                "invlpgb_count_max": self.e.p.invlpgb_count_max,
                "max_asid_available": self.e.p.max_asid_available, "rar": self.e.p.rar}

    @property
    def costs(self) -> dict:
        return {"flush_base": self.e.c.flush_base,
                "flush_per_page": self.e.c.flush_per_page,
                "ipi_send": self.e.c.ipi_send, "ipi_extra_target": self.e.c.ipi_extra_target,
                "ipi_deliver": self.e.c.ipi_deliver, "ipi_handler": self.e.c.ipi_handler,
                "ipi_ack": self.e.c.ipi_ack, "context_switch": self.e.c.context_switch,
                "cacheline_transfer": self.e.c.cacheline_transfer,
                "cacheline_per_writer": self.e.c.cacheline_per_writer,
                "cacheline_remote": self.e.c.cacheline_remote,
                "idle_exit": self.e.c.idle_exit,
                "invlpgb_issue": self.e.c.invlpgb_issue,
                "tlbsync_wait": self.e.c.tlbsync_wait,
                "rar_send": self.e.c.rar_send, "rar_extra_target": self.e.c.rar_extra_target,
                "rar_deliver": self.e.c.rar_deliver, "rar_handle": self.e.c.rar_handle}

    @property
    def timeline(self) -> bool:
        """CPUs run at once: IPI handlers queue on their targets and the initiator waits
        for the real last ack; flushers contend for tlb_gen's cache line."""
        return self.e.timeline

    @timeline.setter
    def timeline(self, bint on):
        self.e.timeline = on

    @property
    def late_lazy_ipis(self) -> bool:
        """On the timeline, a flush IPI whose target went lazy between the send's check
        and the handler finds it lazy and switches it to init_mm (lazy_settle); off by
        default until the fitted entries are refitted with it."""
        return self.e.late_lazy_ipis

    @late_lazy_ipis.setter
    def late_lazy_ipis(self, bint on):
        self.e.late_lazy_ipis = on

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

    def leave_mm(self, CpuTlbState cpu):
        """leave_mm(): a lazy CPU switches to init_mm (cpuidle_enter_state() calls it
        before an idle state flagged CPUIDLE_FLAG_TLB_FLUSHED); nothing if it already
        runs init_mm.  Before 6.14 the switch clears the CPU's bit in the mm's mask;
        with the lazy mask the bit stays until a flush IPI finds the CPU elsewhere."""
        _own(self, cpu)
        if cpu.s.loaded_mm == NULL:
            return
        switch_mm_irqs_off(&self.e, &cpu.s, NULL)
        keep_loaded(cpu)

    def return_to_user(self, CpuTlbState cpu):
        """The exit to user space on cpu (the PTI deferred user-PCID flush)."""
        _own(self, cpu)
        return_to_user(&self.e, &cpu.s)

    def kernel_entry(self, CpuTlbState cpu):
        """An entry from user mode on cpu (syscall or fault)."""
        _own(self, cpu)
        kernel_entry(&self.e, &cpu.s)

    def syscall_enter_from_user_mode(self, cpu_of, MMContext mm, int64_t pid,
                                     double cost, double cycles_per_jiffy):
        """A syscall's entry on cpu_of (an object with a .tlbstate: the machine's CPU)
        in one call: the accounting window opened with the syscall counted and its
        entry cost charged, jiffies from the CPU's clock, mm's current->pid (which
        flush rules sample), then the entry from user mode; the steps Thread._syscall
        made one Python call each, in the same order."""
        cdef CpuTlbState cpu = _own(self, cpu_of.tlbstate)
        if mm is None:
            raise ValueError("a syscall needs an mm")
        if not cycles_per_jiffy > 0.0:
            raise ValueError(f"cycles_per_jiffy must be > 0, got {cycles_per_jiffy!r}")
        cpu.stats.acct.open_entry(cpu.stats, K_SYSCALLS, B_SYSCALL, cost)
        cdef double j = _py_floordiv(cpu_now(&cpu.s), cycles_per_jiffy)
        if not 0.0 <= j < 18446744073709551616.0:
            raise OverflowError(f"jiffies {j!r} out of range")
        self.e.jiffies = <uint64_t>j
        mm.c.pid = pid
        cpu.s.running_user = False
        kernel_entry(&self.e, &cpu.s)

    def syscall_exit_to_user_mode(self, cpu_of, bint to_user, type cls, name, value,
                                  faults):
        """A syscall's exit on cpu_of (an object with a .tlbstate) in one call: the
        exit to user space when a thread runs there (return_to_user), then the window
        closed into a new cls record (OpAccount.close) of the syscall's name, value
        and faults."""
        cdef CpuTlbState cpu = _own(self, cpu_of.tlbstate)
        if to_user:
            return_to_user(&self.e, &cpu.s)
        return cpu.stats.acct.close_record(cls, name, cpu.s.cpu, value, faults)

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
