"""Machines and helpers the x86 mechanism tests share (INVLPGB, the trim, RAR, the
reclaim batch): a pinned jiffies clock, per-CPU event lookup, and a process whose
threads all touched one page."""
import pysim
from pysim import PROT_READ, PROT_WRITE

PAGE = 4096
RW = PROT_READ | PROT_WRITE


class Clock:
    """Pins the jiffies every operation of machine m starts with to self.now."""

    def __init__(self, m, now=0):
        self.m, self.now = m, now
        m.arch.set_jiffies = lambda _from_clock: setattr(m.arch.flush, "jiffies", self.now)


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
