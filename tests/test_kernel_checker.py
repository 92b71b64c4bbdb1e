"""The TLB safety checker (SPEC section 7): a flush policy that skips one flush it needs
is caught, naming the CPU, the address and the operation; every built-in profile runs a
clean scenario without a violation."""
import numpy as np
import pytest

import mmucore
import pysim
import pysim.mm.mmu_gather
import pysim.mm.mprotect
from pysim import (MADV_COLD, MADV_DONTNEED, MADV_FREE, MAP_ANONYMOUS, MAP_POPULATE,
                   MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE)

PAGE = 4096
HPAGE = 2 << 20
RW = PROT_READ | PROT_WRITE


def two_cpus(profile, **kw):
    m = pysim.Machine(cpus=2, profile=profile, **kw)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    return m, proc, t0, t1


def assert_violation(ei, cpu, va, operation):
    e = ei.value
    assert isinstance(e, AssertionError) and isinstance(e, pysim.PysimError)
    hits = [v for v in e.violations if v.cpu == cpu and v.va == va]
    assert hits, [str(v) for v in e.violations]
    assert all(v.operation == operation for v in e.violations)
    text = str(e)
    assert f"cpu {cpu}" in text and f"0x{va:x}" in text and operation in text
    return hits[0]


# ------------------------------------------------------------------ broken policies
def skip_remote(x, initiator, mm, info, local_cycles):
    """A flush_tlb_multi backend that never reaches another CPU (the local flush ran)."""


def test_python_backend_that_does_the_ipi_work_is_safe():
    """The same seam with a backend that calls the native IPI loop: no violation, and
    the remote CPU really flushed (so the broken backends below are the only change)."""
    m, proc, t0, t1 = two_cpus("patched")
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    t1.busy()
    m.arch.flush.set_python_backend(
        lambda x, cpu, mm, info, local: x.native_flush_tlb_multi(cpu, mm, info, local))
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.events["ipi_sent"] == 1 and r.cpu_events[1]["invlpg"] == 1
    assert m.check() == []


def test_mmots_without_the_vma_flush_is_caught(monkeypatch):
    m, proc, t0, t1 = two_cpus("mmots")
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    monkeypatch.setattr(pysim.mm.mprotect, "flush_tlb_range", lambda *a, **k: None)
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, PAGE, PROT_READ)
    v = assert_violation(ei, 0, p, "mprotect")
    assert "writable" in v.reason
    assert mmucore.pte_pfn(v.pte) == mmucore.pte_pfn(v.tlb_entry)


def test_patched_without_the_gather_flush_is_caught(monkeypatch):
    m, proc, t0, t1 = two_cpus("patched")
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    monkeypatch.setattr(m.arch, "tlb_flush", lambda tlb: None)   # the flush hook
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, PAGE, PROT_READ)
    assert_violation(ei, 0, p, "mprotect")


def test_skipping_one_of_three_vma_flushes_is_caught(monkeypatch):
    """mmots flushes each of the 3 VMAs separately; a policy that drops only the second
    flush leaves exactly the middle VMA's page stale."""
    m, proc, t0, t1 = two_cpus("mmots")
    p = t0.mmap(30 * PAGE, RW)
    t0.mprotect(p + 10 * PAGE, 10 * PAGE, RW | PROT_EXEC)
    for i in (0, 10, 20):
        t0.write(p + i * PAGE)
    real = pysim.mm.mprotect.flush_tlb_range
    calls = []

    def drop_second(cpu, mm, start, end, *a, **k):
        calls.append((start, end))
        if len(calls) != 2:
            real(cpu, mm, start, end, *a, **k)

    monkeypatch.setattr(pysim.mm.mprotect, "flush_tlb_range", drop_second)
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, 30 * PAGE, PROT_READ)
    assert calls == [(p, p + 10 * PAGE), (p + 10 * PAGE, p + 20 * PAGE),
                     (p + 20 * PAGE, p + 30 * PAGE)]
    # (one record per TLB array holding the entry: L1 and STLB)
    assert {(v.cpu, v.va) for v in ei.value.violations} == {(0, p + 10 * PAGE)}
    assert_violation(ei, 0, p + 10 * PAGE, "mprotect")


def test_skipping_the_remote_flush_is_caught(monkeypatch):
    """A shootdown policy that never runs flush_tlb_func on remote CPUs: the busy CPU 1
    keeps its writable entry."""
    m, proc, t0, t1 = two_cpus("patched")
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t1.write(p)
    t1.busy()
    m.arch.flush.set_python_backend(skip_remote)
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, PAGE, PROT_READ)
    assert {v.cpu for v in ei.value.violations} == {1}
    assert_violation(ei, 1, p, "mprotect")


def test_wrong_needs_flush_rule_is_caught(monkeypatch):
    """A profile whose per-entry rule records nothing (as if pte_needs_flush always said
    no) misses the RW -> RO flush."""
    m, proc, t0, t1 = two_cpus("patched")
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    real = pysim.mm.mprotect.change_mode
    monkeypatch.setattr(pysim.mm.mprotect, "change_mode",
                        lambda cpu, vma, gathering: real(cpu, vma, False))
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.mprotect(p, PAGE, PROT_READ)
    assert_violation(ei, 0, p, "mprotect")


def test_munmap_without_flush_is_caught(monkeypatch):
    m, proc, t0, t1 = two_cpus("patched")
    p = t0.mmap(2 * PAGE, RW)
    t0.write(p)
    t0.write(p + PAGE)
    monkeypatch.setattr(m.arch, "tlb_flush", lambda tlb: None)   # the flush hook
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.munmap(p, PAGE)
    v = assert_violation(ei, 0, p, "munmap")
    assert "not present" in v.reason


def test_cow_without_shootdown_is_caught(monkeypatch):
    """Copy-on-write changes the frame: CPU 1 keeping the old (zero page) translation is
    a stale-frame violation."""
    m, proc, t0, t1 = two_cpus("patched")
    p = t0.mmap(PAGE, RW)
    t0.read(p)
    t1.read(p)
    t1.busy()
    m.arch.flush.set_python_backend(skip_remote)
    with pytest.raises(pysim.SafetyViolation) as ei:
        t0.write(p)
    v = assert_violation(ei, 1, p, "access")
    assert "frame" in v.reason


def test_record_mode_collects_instead_of_raising(monkeypatch):
    m, proc, t0, t1 = two_cpus("mmots", checker="record")
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    monkeypatch.setattr(pysim.mm.mprotect, "flush_tlb_range", lambda *a, **k: None)
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert r.value == 0
    assert {(v.cpu, v.va, v.operation) for v in m.checker.violations} == {(0, p, "mprotect")}
    assert {(v.cpu, v.va) for v in m.check()} == {(0, p)}


def test_checker_off_does_not_look(monkeypatch):
    m, proc, t0, t1 = two_cpus("mmots", checker=False)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    monkeypatch.setattr(pysim.mm.mprotect, "flush_tlb_range", lambda *a, **k: None)
    t0.mprotect(p, PAGE, PROT_READ)
    assert m.checker.violations == []
    assert {(v.cpu, v.va) for v in m.check()} == {(0, p)}   # an explicit check works


def test_stale_entry_in_a_behind_slot_is_not_a_violation():
    """Entries of an ASID slot whose generation is behind the mm are flushed on the next
    switch, so the checker does not report them (kernel-semantics 7.5)."""
    m = pysim.Machine(cpus=2, profile="patched")
    A, B = m.process(), m.process()
    a0 = A.thread(cpu=0)
    a1 = A.thread(cpu=1).busy()
    p = a0.mmap(PAGE, RW)
    a0.write(p)
    B.thread(cpu=0)
    a1.mprotect(p, PAGE, PROT_READ)
    assert m.check() == []
    a0.run()
    assert m.check() == []


# ------------------------------------------------------------------ clean runs
def scenario(m):
    """A bit of everything on 2 CPUs: 4K and THP mappings, writes, mprotects over
    several VMAs, spurious and COW faults, madvise, munmap, a context switch, sleep."""
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    other = m.process()
    p = t0.mmap(64 * PAGE, RW)
    for i in range(0, 64, 3):
        t0.write(p + i * PAGE)
    for i in range(0, 64, 5):
        t1.read(p + i * PAGE)
    t1.busy()
    t0.mprotect(p + 8 * PAGE, 16 * PAGE, PROT_READ)
    t0.mprotect(p, 64 * PAGE, PROT_READ)
    t0.mprotect(p, 64 * PAGE, RW)
    t1.write(p)
    t0.write(p)
    t0.write(p + PAGE)                                # zero page? no: never read: anon
    t0.mprotect(p, 32 * PAGE, PROT_READ | PROT_EXEC)
    t1.fetch(p)
    t0.mprotect(p, 32 * PAGE, PROT_NONE)
    t0.mprotect(p, 64 * PAGE, RW)
    h = t0.mmap(3 * HPAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, huge=True)
    t1.read(h + HPAGE)
    t1.busy()
    t0.mprotect(h, HPAGE, PROT_READ)
    t0.mprotect(h + HPAGE + 7 * PAGE, 5 * PAGE, PROT_READ)        # splits a THP
    t0.madvise(h + 2 * HPAGE, HPAGE, MADV_COLD)
    t0.madvise(p, 16 * PAGE, MADV_FREE)
    t0.madvise(p + 16 * PAGE, 8 * PAGE, MADV_DONTNEED)
    s = t0.mmap(4 * PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    t0.write(s)
    t1.read(s)
    t1.busy()
    t0.mprotect(s, 4 * PAGE, PROT_READ)
    t0.mprotect(s, 4 * PAGE, RW)
    t1.write(s)
    t1.sleep()
    t0.mprotect(p, 64 * PAGE, PROT_READ)
    t0.munmap(p + 4 * PAGE, 4 * PAGE)
    other.thread(cpu=1)                                # CPU 1 switches to another mm
    t0.mprotect(p, 4 * PAGE, RW)
    t1.busy()                                          # and back
    t1.read(p)
    t0.munmap(h, 3 * HPAGE)
    t0.munmap(p, 64 * PAGE)
    return proc


@pytest.mark.parametrize("name", sorted(pysim.PROFILES))
def test_every_builtin_profile_passes_the_checker(name):
    m = pysim.Machine(cpus=2, profile=name)
    proc = scenario(m)
    assert m.checker.violations == []
    assert m.checker.checks > 30
    assert m.check() == []
    proc.mm.vmas.check_invariants()


@pytest.mark.parametrize("overrides", [dict(pti=True), dict(pti=True, invpcid=False),
                                       dict(pcid=False), dict(lazy_tlb=False),
                                       dict(nr_dyn_asids=1),
                                       dict(flush_tlb_range_freed_tables=True),
                                       dict(merge_vmas_in_gather=False)],
                         ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
@pytest.mark.parametrize("name", ["mmots", "patched"])
def test_profile_knobs_pass_the_checker(name, overrides):
    if name == "mmots" and "merge_vmas_in_gather" in overrides:
        pytest.skip("no gather in mmots")
    m = pysim.Machine(cpus=2, profile=name, **overrides)
    scenario(m)
    assert m.checker.violations == []
    assert m.check() == []


def test_after_an_op_the_checker_scans_that_mm_and_the_cpus_it_touched():
    """A stale entry planted in mm A's slot on CPU 2 is outside what an operation of mm B
    on CPU 0 can have caused, so that operation passes; m.check() (everything) and the
    next operation on A both report it."""
    m = pysim.Machine(cpus=3, profile="patched", checker="record")
    a, b = m.process(), m.process()
    ta, tb = a.thread(cpu=2), b.thread(cpu=0)
    p = ta.mmap(PAGE, PROT_READ)
    ta.read(p)
    e = a.mm.pt.get(p)[0]
    c2 = m.cpus[2]
    c2.tlb.fill(p, e | mmucore.PTE_RW | mmucore.PTE_D, pcid=c2.tlbstate.kern_pcid)
    tb.mmap(PAGE, RW)
    assert m.checker.violations == []
    assert {(v.cpu, v.va) for v in m.check()} == {(2, p)}
    ta.read(p)
    assert {(v.cpu, v.va, v.operation) for v in m.checker.violations} == {(2, p, "access")}


@pytest.mark.parametrize("pti", [False, True])
def test_without_pcid_the_checker_still_sees_a_lazy_cpus_entries(pti):
    """Without PCIDs only the loaded mm's entries survive a switch, but a lazy CPU keeps
    its CR3 and so its entries (and, with PTI, the user copy): a planted writable entry
    for a read-only page there is a violation while the CPU's slot claims to be current."""
    m = pysim.Machine(cpus=2, profile="patched", pcid=False, pti=pti, invpcid=False,
                      checker="record")
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    p = t0.mmap(PAGE, PROT_READ)
    t1.read(p)
    t1.sleep()
    c1 = m.cpus[1]
    assert c1.is_lazy and c1.asids[0][1] == proc.mm.tlb_gen
    e = proc.mm.pt.get(p)[0] | mmucore.PTE_RW | mmucore.PTE_D
    c1.tlb.fill(p, e, pcid=c1.user_pcid if pti else c1.tlbstate.kern_pcid)
    assert {(v.cpu, v.va) for v in m.check()} == {(1, p)}
