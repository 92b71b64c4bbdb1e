"""Soft-dirty tracking and /proc/PID/clear_refs, one test per rule, each naming the kernel
function (fs/proc/task_mmu.c, mm/memory.c, mm/vma.c, mm/mremap.c, arch/x86 pgtable.h)
whose behaviour it pins.  Machines run with the checker raising, so a write-protect
left cached in some TLB would fail the call that made it."""
import errno

import numpy as np
import pytest

import pysim
from pysim import (CLEAR_REFS_ALL, CLEAR_REFS_MM_HIWATER_RSS, CLEAR_REFS_SOFT_DIRTY,
                   MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE,
                   VM_SOFTDIRTY)
import mmucore

PAGE = 4096
RW = PROT_READ | PROT_WRITE
SD = mmucore.PTE_SOFT_DIRTY


@pytest.fixture
def env():
    """A machine (checker raising) with one process, a thread on cpu 0 and a busy one
    on cpu 1 (so a flush of the mm must reach it)."""
    m = pysim.Machine(cpus=2, profile="patched", checker="raise")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    t1.busy()
    return m, proc, t0, t1


def test_soft_dirty_bit_is_x86_softw3():
    """_PAGE_BIT_SOFT_DIRTY is _PAGE_BIT_SOFTW3 (bit 11) in pgtable_types.h."""
    assert SD == 1 << 11


def test_mmap_region_sets_vm_softdirty(env):
    """__mmap_complete(): every new mapping is VM_SOFTDIRTY."""
    m, proc, t0, _ = env
    p = t0.mmap(4 * PAGE, RW)
    assert proc.vmas.find_vma(p).flags & VM_SOFTDIRTY


def test_do_brk_flags_sets_vm_softdirty(env):
    """do_brk_flags(): the heap VMA a brk grows or makes is VM_SOFTDIRTY."""
    m, proc, t0, _ = env
    base = proc.mm.brk
    t0.brk(base + 8 * PAGE)
    assert proc.vmas.find_vma(base).flags & VM_SOFTDIRTY


def test_do_anonymous_page_write_sets_soft_dirty(env):
    """do_anonymous_page(): a write fault's entry is pte_mkdirty()'d, D and soft-dirty."""
    m, proc, t0, _ = env
    p = t0.mmap(2 * PAGE, RW)
    t0.write(p)
    t0.read(p + PAGE)
    entry, _ = proc.pt.get(p)
    assert entry & mmucore.PTE_D and entry & SD
    zero, _ = proc.pt.get(p + PAGE)                   # the zero page: never dirty
    assert not zero & (mmucore.PTE_D | SD)


def test_hardware_dirty_update_leaves_soft_dirty_clear(env):
    """The CPU sets D on a writable entry by itself; only pte_mkdirty() sets the soft
    bit, which is why clear_soft_dirty() must write-protect."""
    m, proc, t0, _ = env
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    entry, _ = proc.pt.get(p)
    proc.pt.set_pte(p, entry & ~(SD | mmucore.PTE_D))  # writable, clean, not soft-dirty
    t0.cpu.tlb.flush_all()
    r = t0.write(p)
    entry, _ = proc.pt.get(p)
    assert r.events["faults"] == 0 and entry & mmucore.PTE_D and not entry & SD


def test_clear_refs_write_soft_dirty_write_protects_and_clears(env):
    """clear_refs_write(CLEAR_REFS_SOFT_DIRTY): VM_SOFTDIRTY cleared on every VMA,
    clear_soft_dirty() on every present PTE (pte_wrprotect + pte_clear_soft_dirty),
    then one flush_tlb_mm() of the whole mm, reaching the other CPU running it."""
    m, proc, t0, t1 = env
    p = t0.mmap(8 * PAGE, RW)
    q = t0.mmap(2 * PAGE, PROT_READ)
    for i in range(8):
        t0.write(p + i * PAGE)
        t1.write(p + i * PAGE)
    r = proc.clear_refs(CLEAR_REFS_SOFT_DIRTY, thread=t0)
    assert r.value == 0
    assert not proc.vmas.find_vma(p).flags & VM_SOFTDIRTY
    assert not proc.vmas.find_vma(q).flags & VM_SOFTDIRTY
    for i in range(8):
        entry, _ = proc.pt.get(p + i * PAGE)
        assert entry & mmucore.PTE_P and not entry & (mmucore.PTE_RW | SD)
        assert entry & mmucore.PTE_D                  # pte_wrprotect keeps D
    assert r.events["flush_tlb_mm_range"] == 1
    assert r.events["nr_tlb_local_flush_all"] == 1
    assert r.events["ipi_sent"] == 1                  # cpu 1 runs the mm, not lazy
    assert m.check() == []


def test_write_after_clear_refs_faults_and_sets_soft_dirty(env):
    """do_wp_page() -> wp_page_reuse(): the first write after clear_refs faults on the
    write-protected entry, reuses the exclusive page (no flush) and pte_mkdirty() sets
    the soft-dirty bit again; a later write does not fault."""
    m, proc, t0, t1 = env
    p = t0.mmap(2 * PAGE, RW)
    t1.write(p)
    t1.write(p + PAGE)
    proc.clear_refs(CLEAR_REFS_SOFT_DIRTY, thread=t0)
    r = t1.write(p)
    assert [f.outcome for f in r.faults] == ["wp_reuse"]
    assert r.events["flush_tlb_mm_range"] == 0
    entry, _ = proc.pt.get(p)
    assert entry & mmucore.PTE_RW and entry & SD
    untouched, _ = proc.pt.get(p + PAGE)
    assert not untouched & SD
    assert t1.write(p).events["faults"] == 0


def test_clear_soft_dirty_pmd_on_a_thp(env):
    """clear_soft_dirty_pmd(): a huge PMD is write-protected and cleaned as one entry;
    do_huge_pmd_wp_page() reuses it on the next write and sets the bit again."""
    m, proc, t0, _ = env
    p = t0.mmap(4 << 20, RW, huge=True)
    h = -(-p // (2 << 20)) * (2 << 20)
    t0.write(h)
    entry, shift = proc.pt.get(h)
    assert shift == 21 and entry & SD
    proc.clear_refs(CLEAR_REFS_SOFT_DIRTY)
    entry, shift = proc.pt.get(h)
    assert shift == 21 and not entry & (mmucore.PTE_RW | SD)
    r = t0.write(h + PAGE)
    assert [f.outcome for f in r.faults] == ["wp_reuse"]
    assert proc.pt.get(h)[0] & SD


def test_mmap_after_clear_refs_is_soft_dirty_again(env):
    """__mmap_complete() after clear_refs: a mapping merged into a cleaned VMA makes the
    merged VMA VM_SOFTDIRTY (the merge ignores the flag: is_mergeable_vma())."""
    m, proc, t0, _ = env
    p = t0.mmap(2 * PAGE, RW)
    proc.clear_refs(CLEAR_REFS_SOFT_DIRTY)
    t0.mmap(2 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | pysim.MAP_FIXED, addr=p + 2 * PAGE)
    vma = proc.vmas.find_vma(p)
    assert vma.end == p + 4 * PAGE and vma.flags & VM_SOFTDIRTY


def test_move_soft_dirty_pte_on_mremap(env):
    """move_ptes() -> move_soft_dirty_pte(): a moved present entry is soft-dirty."""
    m, proc, t0, _ = env
    p = t0.mmap(2 * PAGE, RW)
    t0.write(p)
    proc.clear_refs(CLEAR_REFS_SOFT_DIRTY)
    t0.mmap(PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | pysim.MAP_FIXED,
            addr=p + 2 * PAGE)                        # block growth in place
    r = t0.mremap(p, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE)
    assert r.value != p
    assert proc.pt.get(r.value)[0] & SD


def test_mprotect_does_not_upgrade_clean_entries_after_clear_refs(env):
    """can_change_pte_writable(): with soft-dirty tracking on (VM_SOFTDIRTY clear) an
    entry without the soft bit is not made writable, so the next write still faults
    and records itself."""
    m, proc, t0, _ = env
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    proc.clear_refs(CLEAR_REFS_SOFT_DIRTY)
    t0.mprotect(p, PAGE, PROT_READ)
    t0.mprotect(p, PAGE, RW)
    assert not proc.pt.get(p)[0] & mmucore.PTE_RW
    r = t0.write(p)
    assert [f.outcome for f in r.faults] == ["wp_reuse"] and proc.pt.get(p)[0] & SD


def test_clear_refs_all_makes_pages_old_without_flush(env):
    """clear_refs_pte_range() for CLEAR_REFS_ALL: ptep_test_and_clear_young() on each
    present entry, no write-protect and no flush_tlb_mm()."""
    m, proc, t0, _ = env
    p = t0.mmap(4 * PAGE, RW)
    t0.access(np.arange(4, dtype=np.uint64) * PAGE + p, np.ones(4, dtype=np.uint8))
    r = proc.clear_refs(CLEAR_REFS_ALL)
    assert r.events["flush_tlb_mm_range"] == 0
    for i in range(4):
        entry, _ = proc.pt.get(p + i * PAGE)
        assert not entry & mmucore.PTE_A and entry & mmucore.PTE_RW and entry & SD


def test_clear_refs_write_rejects_unknown_type(env):
    """clear_refs_write(): a type outside CLEAR_REFS_ALL..CLEAR_REFS_LAST-1 is EINVAL;
    CLEAR_REFS_MM_HIWATER_RSS succeeds and changes no entry."""
    m, proc, t0, _ = env
    for bad in (0, 6, -1):
        with pytest.raises(pysim.SyscallError) as ei:
            t0.clear_refs(bad)
        assert ei.value.errno == errno.EINVAL
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    before = proc.pt.get(p)[0]
    assert t0.clear_refs(CLEAR_REFS_MM_HIWATER_RSS).value == 0
    assert proc.pt.get(p)[0] == before
