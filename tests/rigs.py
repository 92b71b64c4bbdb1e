"""Machines and helpers the mechanism tests share (INVLPGB, the trim, RAR, the reclaim
batch, arm64): a pinned jiffies clock, per-CPU event lookup, a process whose threads
all touched one page, a counter of arm64's flush_tlb_mm() calls, and UFFDIO_WRITEPROTECT
as a user-written kernel path; a thread over written memory and the errno of a call
that must fail, for the syscall-contract tests."""
import pytest

import pysim
from pysim import PROT_READ, PROT_WRITE
from pysim.mm.mprotect import change_protection

PAGE = 4096
RW = PROT_READ | PROT_WRITE


class Clock:
    """Pins the jiffies every operation of machine m starts with to self.now (a syscall
    sets them inside Arch.syscall_enter, other operations through Arch.set_jiffies)."""

    def __init__(self, m, now=0):
        self.m, self.now = m, now
        m.arch.set_jiffies = lambda _from_clock: setattr(m.arch.flush, "jiffies", self.now)
        enter = m.arch.syscall_enter

        def syscall_enter(*args):
            enter(*args)
            m.arch.flush.jiffies = self.now
        m.arch.syscall_enter = syscall_enter


def ev(r, cpu, name):
    """Event `name` of an OpResult on one CPU (0 when the CPU was not touched)."""
    return r.cpu_events.get(cpu, {}).get(name, 0)


def shared_page_machine(preset, profile, ncpus, running, **kw):
    """ncpus CPUs; one process with t0 on CPU 0 and busy threads on CPUs 1..running-1,
    every thread having touched page p: (machine, process, t0, the others, p)."""
    m = pysim.Machine(cpus=ncpus, preset=preset, profile=profile, **kw)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    p = t0.mmap(64 * PAGE, RW)
    t0.write(p)
    others = []
    for c in range(1, running):
        t = proc.thread(cpu=c)
        t.write(p)
        t.busy()
        others.append(t)
    return m, proc, t0, others, p


def count_flush_tlb_mm(m):
    """Count the machine's arm64 flush_tlb_mm() calls (TLBI ASIDE1IS); a 1-item list."""
    n, inner = [0], m.arch.flush_tlb_mm

    def flush_tlb_mm(cpu, mm):
        """The wrapped flush_tlb_mm: count, then run the arch's own."""
        n[0] += 1
        return inner(cpu, mm)
    m.arch.flush_tlb_mm = flush_tlb_mm
    return n


def uffd_writeprotect(m, t, addr, length, mode):
    """UFFDIO_WRITEPROTECT (mm/userfaultfd.c, mwriteprotect_range -> uffd_wp_range) as
    a user-written kernel path: pysim has no userfaultfd syscall, but its
    change_protection() has the MM_CP_UFFD_WP / _RESOLVE modes; one gather around it,
    as one operation on t's CPU."""
    t.run()
    cpu, mm = t.cpu, t.mm
    op = m.begin(cpu, "uffdio_writeprotect")
    try:
        with pysim.tlb_gather_mmu(cpu, mm) as tlb:
            for vma in mm.vmas.vmas_in(addr, addr + length):
                s, e = max(vma.start, addr), min(vma.end, addr + length)
                change_protection(cpu, mm, vma, s, e, vma.page_prot, tlb, extra_mode=mode)
        assert tlb.finished
    except BaseException:
        m.abort(op)
        raise
    return m.end(op)


def written_thread(npages, flags=None, file=None, written=None, cpus=1):
    """A thread (checker raising) whose mapping of npages (private anonymous unless
    flags and file say otherwise) is at t.base, with the pages of `written` (default:
    all) written; t.process holds the process (a Thread holds it weakly)."""
    m = pysim.Machine(cpus=cpus, checker="raise")
    proc = m.process()
    t = proc.thread(cpu=0)
    t.process = proc
    t.base = t.mmap(npages * PAGE, RW, flags, file=file)
    for i in (range(npages) if written is None else written):
        t.write(t.base + i * PAGE)
    return t


def errno_of(fn, *args):
    """The errno of fn(*args), which must raise SyscallError."""
    with pytest.raises(pysim.SyscallError) as ei:
        fn(*args)
    return ei.value.errno
