"""PTI's deferred user-PCID flushes (issue 9, part 7).

Without INVPCID a flush cannot reach the user copy of an ASID from the kernel, so
invalidate_user_asid() (arch/x86/mm/tlb.c) sets the ASID's bit in the per-CPU
user_pcid_flush_mask and SWITCH_TO_USER_CR3 (arch/x86/entry/calling.h) flushes the user
PCID when it next returns to user space under that ASID.  The exit path tests and clears
only the bit of the ASID it returns to; a bit left for a switched-out or lazy ASID must
survive until that ASID returns to user space, and the entries it covers are not live in
the meantime, so the checker must not report them.
"""
import numpy as np
import pytest

import mmucore
import pysim
from pysim import MADV_DONTNEED, PROT_READ, PROT_WRITE

PAGE = 4096
RW = PROT_READ | PROT_WRITE
USER_PCID_BIT = 1 << 11          # PTI: the user copy of an ASID is its kernel PCID | bit 11


def user_copies(cpu, va):
    """The L1/STLB entries of cpu's TLB that translate va under a PTI user PCID:
    a list of (pcid, cached entry)."""
    e = cpu.tlb.entries()
    hit = (e["level"] <= 1) & (e["va"] == np.uint64(va)) \
        & ((e["pcid"] & USER_PCID_BIT) != 0)
    return [(int(p), int(d)) for p, d in zip(e["pcid"][hit], e["data"][hit])]


def two_mms_on_cpu0(checker):
    """Process A with threads on CPUs 0 and 1, process B with a thread on CPU 0 (which
    leaves CPU 0 running B); PTI on, no INVPCID."""
    m = pysim.Machine(cpus=2, pti=True, invpcid=False, checker=checker)
    a = m.process()
    a0, a1 = a.thread(cpu=0), a.thread(cpu=1)
    b = m.process()
    b0 = b.thread(cpu=0)
    return m, a0, a1, b0


def b_syscall(b0, which):
    """One syscall of B's thread on CPU 0 (B's own memory; nothing A can see)."""
    if which == "mmap":
        b0.mmap(PAGE, RW)
    elif which == "mprotect":
        q = b0.mmap(PAGE, RW)
        b0.mprotect(q, PAGE, PROT_READ)
    elif which == "madvise":
        q = b0.mmap(PAGE, RW)
        b0.madvise(q, PAGE, MADV_DONTNEED)
    else:
        raise AssertionError(which)


# ------------------------------------------------------------------ defect 1
@pytest.mark.parametrize("which", ["mmap", "mprotect", "madvise"])
@pytest.mark.parametrize("checker", ["off", "raise"])
def test_other_asids_return_to_user_keeps_the_pending_user_flush(checker, which):
    """Regression: the return to user space of B's ASID on CPU 0 cleared the pending
    user-PCID flush of A's ASID too, so A's next write on CPU 0 went through the stale
    writable user-PCID entry the mprotect(PROT_READ) on CPU 1 had asked to be flushed.
    The write must SIGSEGV (the VMA is read-only now), and CPU 0 must flush A's user
    PCID exactly once, on the way back to A's user space."""
    m, a0, a1, b0 = two_mms_on_cpu0(checker)
    p = a0.mmap(PAGE, RW)
    assert [f[3] for f in a0.write(p).faults] == ["anon"]     # RW entry in A's user PCID
    r = a1.mprotect(p, PAGE, PROT_READ)
    # the shootdown reached CPU 0, which could only defer its user-PCID flush
    assert r.events["ipi_sent"] == 1
    assert r.cpu_events[0].get("invlpg") == 1 and not r.cpu_events[0].get("invpcid_single")
    assert r.cpu_events[0].get("user_pcid_flush", 0) == 0
    b_syscall(b0, which)                     # B returns to user space on CPU 0
    flushes0 = m.counter_array()["user_pcid_flush"][0]
    r = a0.write(p)                          # back to A on CPU 0
    assert r.faults == [(0, p, mmucore.WRITE, "sigsegv")]
    assert r.value == 0                      # the write did not complete
    assert r.events["sigsegv"] == 1 and r.events["fault_spurious"] == 0
    assert m.counter_array()["user_pcid_flush"][0] - flushes0 == 1
    assert not [d for _, d in user_copies(m.cpus[0], p) if d & mmucore.PTE_RW]
    assert a0.read(p).faults == []           # still readable
    assert m.check() == []
    if checker == "raise":
        assert m.checker.violations == []


# ------------------------------------------------------------------ defect 2
@pytest.mark.parametrize("how", ["switched_out", "lazy"])
def test_checker_ignores_user_entries_whose_flush_is_pending(how):
    """An entry in a user PCID whose flush is pending on its CPU is not live: the checker
    must not report it for a slot that is not running (switched out for another mm, or
    lazy), while the stale entry really is still in the TLB.  Once the ASID returns to
    user space the entry is gone and the write faults."""
    m, a0, a1, b0 = two_mms_on_cpu0("raise")
    p = a0.mmap(PAGE, RW)
    a0.write(p)
    a1.mprotect(p, PAGE, PROT_READ)          # CPU 0's flush of A's user PCID is deferred
    if how == "switched_out":
        b0.run()                             # CPU 0 switches to B and returns to user
        cpu0 = m.cpus[0]
        assert cpu0.loaded_mm is b0.mm and not cpu0.is_lazy
    else:
        a0.sleep()                           # CPU 0 goes idle, lazily keeping A loaded
        cpu0 = m.cpus[0]
        assert cpu0.loaded_mm is a0.mm and cpu0.is_lazy
    stale = [d for _, d in user_copies(cpu0, p) if d & mmucore.PTE_RW]
    assert stale, "the stale writable user-PCID entry should still be cached"
    assert m.check() == []
    r = a0.write(p)
    assert r.faults == [(0, p, mmucore.WRITE, "sigsegv")]
    assert not [d for _, d in user_copies(cpu0, p) if d & mmucore.PTE_RW]
    assert m.check() == [] and m.checker.violations == []



@pytest.mark.parametrize("pcid", [True, False])
def test_without_pcid_every_kernel_entry_and_exit_flushes(pcid):
    """With PTI the entry and exit code write CR3 (SWITCH_TO_KERNEL_CR3 /
    SWITCH_TO_USER_CR3).  With PCIDs the writes keep the TLB (NOFLUSH); without them
    each write drops every non-global entry, so a syscall between two writes of a page
    costs the second one a walk, and a busy CPU reached by an IPI loses its entries."""
    m = pysim.Machine(cpus=2, pti=True, pcid=pcid, invpcid=True)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(2 * 4096, pysim.PROT_READ | pysim.PROT_WRITE)
    t0.write(p)
    t0.mmap(4096, pysim.PROT_READ)                    # any syscall
    r = t0.write(p)
    assert (r.events["l1_hits"], r.events["walks"]) == ((1, 0) if pcid else (0, 1))
    t1.write(p + 4096)
    t1.busy()
    flushes0 = m.cpus[1].tlb.counters[mmucore.COUNTER_INDEX["flush_pcid"]]
    t0.mprotect(p, 4096, pysim.PROT_READ)            # IPI to CPU 1 in user mode: INVLPG
                                                     # and INVPCID of p only
    flushes = m.cpus[1].tlb.counters[mmucore.COUNTER_INDEX["flush_pcid"]] - flushes0
    held = m.cpus[1].tlb.probe(p + 4096, pcid=m.cpus[1].user_pcid) is not None
    assert (flushes, held) == ((0, True) if pcid else (2, False))
    assert m.check() == []
