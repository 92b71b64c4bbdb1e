"""The Linux 6.x syscall contract, one test per rule, each naming the kernel function
whose behaviour it pins.  Every machine runs with the safety checker raising, so each
call that moves or write-protects present pages also proves its flush."""
import errno

import pytest

import pysim
from pysim import (MADV_COLD, MADV_DODUMP, MADV_DONTDUMP, MADV_DONTFORK, MADV_DONTNEED,
                   MADV_GUARD_INSTALL, MADV_GUARD_REMOVE, MADV_MERGEABLE, MADV_PAGEOUT,
                   MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_RANDOM, MADV_REMOVE,
                   MADV_SEQUENTIAL, MADV_WILLNEED, MADV_WIPEONFORK, MAP_32BIT, MAP_ANONYMOUS,
                   MAP_DENYWRITE, MAP_EXECUTABLE, MAP_FIXED, MAP_GROWSDOWN, MAP_HUGETLB,
                   MAP_LOCKED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE,
                   MAP_STACK, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT,
                   MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, PROT_NONE, PROT_READ,
                   PROT_WRITE, VM_DONTCOPY, VM_DONTDUMP, VM_GROWSDOWN, VM_HUGETLB, VM_LOCKED,
                   VM_LOCKONFAULT, VM_MERGEABLE, VM_NOHUGEPAGE, VM_NORESERVE, VM_RAND_READ,
                   VM_SEALED, VM_SEQ_READ, VM_WIPEONFORK, VM_WRITE)
import mmucore

PAGE = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


@pytest.fixture
def env():
    m = pysim.Machine(cpus=2, profile="patched", checker="raise")
    proc = m.process()
    t = proc.thread(cpu=0)
    proc.thread(cpu=1).busy()
    return m, proc, t


def errno_of(fn, *a, **kw):
    with pytest.raises(pysim.SyscallError) as ei:
        fn(*a, **kw)
    return ei.value.errno


def present(proc, va):
    return bool(proc.mm.pt.get(va)[0] & mmucore.PTE_P)


def vma(proc, va):
    return proc.mm.vmas.vma_lookup(va)


# ------------------------------------------------------------------------ mmap
def test_do_mmap_ignores_legacy_flags(env):
    """do_mmap(): MAP_DENYWRITE and MAP_EXECUTABLE are legacy and ignored (every ELF
    segment mapping passes them)."""
    m, proc, t = env
    f = pysim.File("lib.so", writable=False)
    p = t.mmap(2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_DENYWRITE | MAP_EXECUTABLE, file=f)
    assert vma(proc, p).file is f


def test_do_mmap_shared_validate_unknown_flag_eopnotsupp(env):
    """do_mmap(): MAP_SHARED drops unknown flags (flags &= LEGACY_MAP_MASK);
    MAP_SHARED_VALIDATE with one the file does not support is EOPNOTSUPP."""
    m, proc, t = env
    f = pysim.File("data")
    assert t.mmap(PAGE, RW, MAP_SHARED | 0x80000, file=f)             # MAP_SYNC dropped
    assert errno_of(t.mmap, PAGE, RW, MAP_SHARED_VALIDATE | 0x80000, file=f) == errno.EOPNOTSUPP
    assert t.mmap(PAGE, RW, MAP_SHARED_VALIDATE, file=f)


def test_do_mmap_anonymous_shared_validate_einval(env):
    """do_mmap(): anonymous memory takes only MAP_SHARED or MAP_PRIVATE (EINVAL)."""
    m, proc, t = env
    assert errno_of(t.mmap, PAGE, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS) == errno.EINVAL


def test_cap_mmap_addr_fixed_below_mmap_min_addr_eperm(env):
    """__get_unmapped_area() -> security_mmap_addr() -> cap_mmap_addr(): MAP_FIXED
    below mmap_min_addr is EPERM without CAP_SYS_RAWIO; a hint there is rounded up."""
    m, proc, t = env
    assert errno_of(t.mmap, PAGE, RW, ANON | MAP_FIXED, addr=0x1000) == errno.EPERM
    assert t.mmap(PAGE, RW, ANON, addr=0x1000) >= proc.mm.vmas.mmap_min_addr
    proc.mm.privileged = True
    assert t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=0x1000) == 0x1000


def test_growsdown_stack_grows_on_fault_and_keeps_guard_gap(env):
    """expand_downwards(): a fault below a VM_GROWSDOWN VMA grows it, unless that comes
    within stack_guard_gap of a non-stack VMA below (a SIGSEGV)."""
    m, proc, t = env
    base = 0x700000000000
    t.mmap(16 * PAGE, RW, ANON | MAP_FIXED | MAP_GROWSDOWN, addr=base)
    assert vma(proc, base).flags & VM_GROWSDOWN
    r = t.write(base - 3 * PAGE)
    assert r.faults[0].outcome == "anon" and vma(proc, base).start == base - 3 * PAGE
    below = base - 3 * PAGE - pysim.STACK_GUARD_GAP
    t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=below)
    r = t.write(base - 4 * PAGE)                # now closer than the gap to `below`
    assert r.faults[0].outcome == "sigsegv"


def test_map_growsdown_shared_anonymous_einval(env):
    """do_mmap(): a shared anonymous mapping cannot grow down (EINVAL)."""
    m, proc, t = env
    assert errno_of(t.mmap, PAGE, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN) == errno.EINVAL


def test_calc_vm_flag_bits_stack_noreserve(env):
    """calc_vm_flag_bits(): MAP_STACK gives VM_NOHUGEPAGE (6.7); MAP_NORESERVE gives
    VM_NORESERVE (overcommit heuristic)."""
    m, proc, t = env
    p = t.mmap(PAGE, RW, ANON | MAP_STACK | MAP_NORESERVE)
    assert vma(proc, p).flags & VM_NOHUGEPAGE and vma(proc, p).flags & VM_NORESERVE


def test_map_hugetlb_is_a_hugetlb_vma_of_2m_pages(env):
    """ksys_mmap_pgoff() + hugetlbfs: MAP_HUGETLB rounds the length to 2 MiB and faults
    whole huge pages; munmap off a 2 MiB boundary is EINVAL (hugetlb_vm_op_split)."""
    m, proc, t = env
    p = t.mmap(PAGE, RW, ANON | MAP_HUGETLB)
    v = vma(proc, p)
    assert v.flags & VM_HUGETLB and v.end - v.start == pysim.PMD_SIZE and p % pysim.PMD_SIZE == 0
    t.write(p + 5 * PAGE)
    assert proc.mm.pt.get(p)[1] == 21
    assert errno_of(t.munmap, p, PAGE) == errno.EINVAL
    t.munmap(p, pysim.PMD_SIZE)


def test_map_32bit_below_2g(env):
    """arch_get_unmapped_area() with MAP_32BIT: find_start_end() gives [1 GiB, 2 GiB)."""
    m, proc, t = env
    p = t.mmap(PAGE, RW, ANON | MAP_32BIT)
    assert 0x40000000 <= p < 0x80000000


def test_map_locked_populates(env):
    """do_mmap(): VM_LOCKED mappings are populated (mm_populate)."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW, ANON | MAP_LOCKED)
    assert vma(proc, p).flags & VM_LOCKED and present(proc, p + PAGE)


def test_file_open_mode_eacces(env):
    """do_mmap(): a shared writable mapping needs FMODE_WRITE, any mapping FMODE_READ."""
    m, proc, t = env
    ro, wo = pysim.File("ro", writable=False), pysim.File("wo", readable=False)
    assert errno_of(t.mmap, PAGE, RW, MAP_SHARED, file=ro) == errno.EACCES
    assert errno_of(t.mmap, PAGE, PROT_READ, MAP_PRIVATE, file=wo) == errno.EACCES


def test_filemap_fault_sigbus_past_eof(env):
    """filemap_fault(): a page wholly past i_size is VM_FAULT_SIGBUS; the counter
    `sigbus` counts it.  MADV_POPULATE_READ there is EFAULT after the part before."""
    m, proc, t = env
    f = pysim.File("small", size=PAGE + 10)
    p = t.mmap(4 * PAGE, PROT_READ, MAP_SHARED, file=f)
    assert t.read(p + PAGE + 8).faults[0].outcome == "file"
    r = t.read(p + 2 * PAGE)
    assert r.faults[0].outcome == "sigbus" and r.events["sigbus"] == 1
    q = t.mmap(4 * PAGE, PROT_READ, MAP_SHARED, file=pysim.File("small2", size=PAGE))
    assert errno_of(t.madvise, q, 4 * PAGE, MADV_POPULATE_READ) == errno.EFAULT
    assert present(proc, q) and not present(proc, q + PAGE)


# ------------------------------------------------------------------------ brk
def test_brk_grows_shrinks_and_returns_old_break_on_failure(env):
    """sys_brk(): brk(0) (below start_brk) returns the current break; growth maps a
    heap VMA that later growth extends; a shrink unmaps (with its flush); growth into
    a mapping fails by returning the old break, never an errno."""
    m, proc, t = env
    base = t.brk(0).value
    assert base == proc.mm.start_brk
    assert t.brk(base + 3 * PAGE + 5).value == base + 3 * PAGE + 5
    t.brk(base + 8 * PAGE)
    v = vma(proc, base)
    assert (v.start, v.end) == (base, base + 8 * PAGE) and v.flags & VM_WRITE
    t.write(base + 7 * PAGE)
    assert t.brk(base + 2 * PAGE).value == base + 2 * PAGE
    assert vma(proc, base + 7 * PAGE) is None
    t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=base + 10 * PAGE)
    assert t.brk(base + 20 * PAGE).value == base + 2 * PAGE


# ------------------------------------------------------------------------ madvise
@pytest.mark.parametrize("advice,flag", [(MADV_RANDOM, VM_RAND_READ),
                                         (MADV_SEQUENTIAL, VM_SEQ_READ),
                                         (MADV_DONTFORK, VM_DONTCOPY),
                                         (MADV_DONTDUMP, VM_DONTDUMP),
                                         (MADV_WIPEONFORK, VM_WIPEONFORK),
                                         (MADV_MERGEABLE, VM_MERGEABLE)])
def test_madvise_vma_behavior_flag_split_and_merge(env, advice, flag):
    """madvise_vma_behavior() -> madvise_update_vma(): the flag advice splits the VMA
    at the range ends, and the opposite advice merges it back."""
    m, proc, t = env
    p = t.mmap(4 * PAGE, RW)
    t.madvise(p + PAGE, PAGE, advice)
    assert proc.mm.vmas.map_count == 3 and vma(proc, p + PAGE).flags & flag
    undo = {MADV_RANDOM: pysim.MADV_NORMAL, MADV_SEQUENTIAL: pysim.MADV_NORMAL,
            MADV_DONTFORK: pysim.MADV_DOFORK, MADV_DONTDUMP: MADV_DODUMP,
            MADV_WIPEONFORK: pysim.MADV_KEEPONFORK, MADV_MERGEABLE: pysim.MADV_UNMERGEABLE}
    t.madvise(p + PAGE, PAGE, undo[advice])
    assert proc.mm.vmas.map_count == 1


def test_madvise_wipeonfork_needs_private_anonymous(env):
    """madvise_vma_behavior(): MADV_WIPEONFORK on shared memory is EINVAL."""
    m, proc, t = env
    s = t.mmap(PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert errno_of(t.madvise, s, PAGE, MADV_WIPEONFORK) == errno.EINVAL


def test_madvise_walk_vmas_hole_enomem_after_the_rest(env):
    """madvise_walk_vmas(): a hole is skipped; the VMAs after it are advised; ENOMEM."""
    m, proc, t = env
    p = t.mmap(3 * PAGE, RW)
    t.munmap(p + PAGE, PAGE)
    assert errno_of(t.madvise, p, 3 * PAGE, MADV_RANDOM) == errno.ENOMEM
    assert vma(proc, p).flags & VM_RAND_READ and vma(proc, p + 2 * PAGE).flags & VM_RAND_READ


def test_madvise_past_task_size_applies_to_mapped_part(env):
    """do_madvise() has no TASK_SIZE check: the mapped part is advised, then ENOMEM."""
    m, proc, t = env
    p = t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=pysim.TASK_SIZE - PAGE)
    t.write(p)
    assert errno_of(t.madvise, p, 4 * PAGE, MADV_DONTNEED) == errno.ENOMEM
    assert not present(proc, p)


def test_do_mprotect_pkey_past_task_size_changes_mapped_part(env):
    """do_mprotect_pkey(): no TASK_SIZE check either; the VMA changes, then ENOMEM."""
    m, proc, t = env
    p = t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=pysim.TASK_SIZE - PAGE)
    t.write(p)
    assert errno_of(t.mprotect, p, 4 * PAGE, PROT_READ) == errno.ENOMEM
    assert not vma(proc, p).flags & VM_WRITE
    assert t.write(p).faults[0].outcome == "sigsegv"


def test_madvise_populate_read_needs_vm_read(env):
    """madvise_populate() -> check_vma_flags(): POPULATE_READ of PROT_NONE is EINVAL."""
    m, proc, t = env
    p = t.mmap(PAGE, PROT_NONE)
    assert errno_of(t.madvise, p, PAGE, MADV_POPULATE_READ) == errno.EINVAL


def test_madvise_populate_across_hole_populates_first_part(env):
    """madvise_populate(): the part before a hole is populated, then ENOMEM."""
    m, proc, t = env
    p = t.mmap(3 * PAGE, RW)
    t.munmap(p + PAGE, PAGE)
    assert errno_of(t.madvise, p, 3 * PAGE, MADV_POPULATE_WRITE) == errno.ENOMEM
    assert present(proc, p) and not present(proc, p + 2 * PAGE)


def test_madvise_willneed_changes_no_entry(env):
    """madvise_willneed(): readahead only; no entry appears, no flush."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    r = t.madvise(p, 2 * PAGE, MADV_WILLNEED)
    assert not present(proc, p) and r.events["flush_tlb_mm_range"] == 0


def test_madvise_pageout_unmaps_with_flush(env):
    """madvise_pageout() -> reclaim_pages(): the pages go (try_to_unmap), flushed (the
    mm is on CPU 1 too, so by the batch: arch_tlbbatch_flush, one per dirty page before
    its swap write); the next access faults a page in again."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    t.write(p); t.write(p + PAGE)
    r = t.madvise(p, 2 * PAGE, MADV_PAGEOUT)
    assert not present(proc, p) and r.events["tlbbatch_flush"] == 2
    assert t.read(p).faults


def test_can_madv_lru_vma_locked_einval(env):
    """can_madv_lru_vma(): COLD and PAGEOUT refuse VM_LOCKED memory; so does DONTNEED
    (madvise_dontneed_free_valid_vma)."""
    m, proc, t = env
    p = t.mmap(PAGE, RW, ANON | MAP_LOCKED)
    for advice in (MADV_COLD, MADV_PAGEOUT, MADV_DONTNEED):
        assert errno_of(t.madvise, p, PAGE, advice) == errno.EINVAL


def test_madvise_remove_needs_shared_writable(env):
    """madvise_remove(): EINVAL for private anonymous memory; EACCES without a shared
    writable mapping; on shmem it punches the hole (zap, with its flush)."""
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    assert errno_of(t.madvise, p, PAGE, MADV_REMOVE) == errno.EINVAL
    f = pysim.File("ro", writable=False)
    q = t.mmap(PAGE, PROT_READ, MAP_SHARED, file=f)
    assert errno_of(t.madvise, q, PAGE, MADV_REMOVE) == errno.EACCES
    s = t.mmap(PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    t.write(s)
    t.madvise(s, PAGE, MADV_REMOVE)
    assert not present(proc, s)


def test_madvise_guard_install_and_remove(env):
    """madvise_guard_install() (6.13): present pages are zapped, the markers make an
    access a SIGSEGV, MADV_DONTNEED keeps them, GUARD_REMOVE clears them."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    t.write(p)
    t.madvise(p, PAGE, MADV_GUARD_INSTALL)
    assert not present(proc, p)
    assert t.write(p).faults[0].outcome == "sigsegv"
    t.madvise(p, 2 * PAGE, MADV_DONTNEED)
    assert t.read(p).faults[0].outcome == "sigsegv"
    t.madvise(p, PAGE, MADV_GUARD_REMOVE)
    assert t.write(p).faults[0].outcome == "anon"


def test_vector_madvise_one_gather_and_bytes(env):
    """vector_madvise(): the iovec under one lock and one gather (one flush for two
    DONTNEED ranges); the value is the bytes advised; a bad element after a good one
    returns the good one's bytes."""
    m, proc, t = env
    p = t.mmap(8 * PAGE, RW)
    for i in range(8):
        t.write(p + i * PAGE)
    r = t.process_madvise([(p, PAGE), (p + 4 * PAGE, 2 * PAGE)], MADV_DONTNEED)
    assert r.value == 3 * PAGE and r.events["flush_tlb_mm_range"] == 1
    assert not present(proc, p + 5 * PAGE) and present(proc, p + PAGE)
    r = t.process_madvise([(p + PAGE, PAGE), (p + 1, PAGE)], MADV_DONTNEED)
    assert r.value == PAGE
    assert errno_of(t.process_madvise, [(p + 1, PAGE)], MADV_DONTNEED) == errno.EINVAL


# ------------------------------------------------------------------------ mremap
def test_mremap_maymove_moves_present_pages_with_flush(env):
    """move_vma() -> move_page_tables() -> move_ptes(): the entries (same frames) move,
    the old extent is flushed, the old range unmapped."""
    m, proc, t = env
    p = t.mmap(4 * PAGE, RW)
    t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=p + 4 * PAGE)         # blocks growth
    for i in range(4):
        t.write(p + i * PAGE)
    pfn = mmucore.pte_pfn(proc.mm.pt.get(p)[0])
    r = t.mremap(p, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE)
    q = r.value
    assert q != p and r.events["flush_tlb_mm_range"] >= 1
    assert mmucore.pte_pfn(proc.mm.pt.get(q)[0]) == pfn and vma(proc, p) is None
    assert [f.outcome for f in t.write(q + 3 * PAGE).faults] in ([], ["spurious"])


def test_mremap_grows_in_place_and_shrinks(env):
    """sys_mremap(): growth into free space keeps the address (vma_expandable);
    growth blocked without MREMAP_MAYMOVE is ENOMEM; a shrink unmaps the tail."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW, ANON | MAP_FIXED, addr=0x600000000000)
    assert t.mremap(p, 2 * PAGE, 4 * PAGE).value == p and vma(proc, p).end == p + 4 * PAGE
    t.mmap(PAGE, RW, ANON | MAP_FIXED, addr=p + 4 * PAGE)
    assert errno_of(t.mremap, p, 4 * PAGE, 8 * PAGE) == errno.ENOMEM
    assert t.mremap(p, 4 * PAGE, PAGE).value == p and vma(proc, p + PAGE) is None


def test_mremap_fixed_and_dontunmap(env):
    """mremap_to(): MREMAP_FIXED unmaps the destination first; overlapping ranges are
    EINVAL; MREMAP_DONTUNMAP leaves the old VMA, empty."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    t.write(p)
    d = 0x500000000000
    t.mmap(2 * PAGE, RW, ANON | MAP_FIXED, addr=d)
    assert t.mremap(p, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, d).value == d
    assert present(proc, d) and vma(proc, p) is None
    assert errno_of(t.mremap, d, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
                    d + PAGE) == errno.EINVAL
    q = t.mremap(d, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP).value
    assert present(proc, q) and vma(proc, d) is not None and not present(proc, d)
    assert errno_of(t.mremap, q, PAGE, 2 * PAGE, MREMAP_DONTUNMAP | MREMAP_MAYMOVE) == errno.EINVAL


def test_mremap_errors(env):
    """sys_mremap(): unknown flags, FIXED without MAYMOVE, an unaligned address are
    EINVAL; no VMA at addr or a range across VMAs is EFAULT."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    assert errno_of(t.mremap, p, PAGE, PAGE, 0x80) == errno.EINVAL
    assert errno_of(t.mremap, p, PAGE, PAGE, MREMAP_FIXED, 0) == errno.EINVAL
    assert errno_of(t.mremap, p + 1, PAGE, PAGE) == errno.EINVAL
    assert errno_of(t.mremap, 0x10000000, PAGE, 2 * PAGE) == errno.EFAULT
    assert errno_of(t.mremap, p, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE) == errno.EFAULT


def test_mremap_moves_a_thp_whole(env):
    """move_huge_pmd(): a 2 MiB-aligned extent of a THP moves as one PMD with
    flush_pmd_tlb_range()."""
    m, proc, t = env
    p = t.mmap(pysim.PMD_SIZE, RW, huge=True)
    t.write(p)
    assert proc.mm.pt.get(p)[1] == 21
    d = 0x400000000000
    t.mremap(p, pysim.PMD_SIZE, pysim.PMD_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, d)
    assert proc.mm.pt.get(d)[1] == 21 and not present(proc, p)


# ------------------------------------------------------------------------ mlock
def test_mlock_sets_vm_locked_populates_and_splits(env):
    """do_mlock() -> apply_vma_lock_flags() -> mlock_fixup(): VM_LOCKED on the range
    (split off the rest), then __mm_populate(); an unaligned start rounds down."""
    m, proc, t = env
    p = t.mmap(4 * PAGE, RW)
    t.mlock(p + PAGE + 100, PAGE)               # [p + PAGE, p + 3 PAGE): two pages
    assert vma(proc, p + PAGE).flags & VM_LOCKED and not vma(proc, p).flags & VM_LOCKED
    assert vma(proc, p + PAGE).end == p + 3 * PAGE
    assert present(proc, p + 2 * PAGE) and not present(proc, p)
    t.munlock(p, 4 * PAGE)
    assert proc.mm.vmas.map_count == 1


def test_mlock2_onfault_does_not_populate(env):
    """do_mlock(MLOCK_ONFAULT): VM_LOCKED | VM_LOCKONFAULT, no populate; unknown
    mlock2 flags are EINVAL."""
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    t.mlock2(p, PAGE, MLOCK_ONFAULT)
    assert vma(proc, p).flags & VM_LOCKONFAULT and not present(proc, p)
    assert errno_of(t.mlock2, p, PAGE, 2) == errno.EINVAL


def test_mlock_hole_enomem_after_first_part(env):
    """apply_vma_lock_flags(): a hole is ENOMEM; the VMA before it stays locked."""
    m, proc, t = env
    p = t.mmap(3 * PAGE, RW)
    t.munmap(p + PAGE, PAGE)
    assert errno_of(t.mlock, p, 3 * PAGE) == errno.ENOMEM
    assert vma(proc, p).flags & VM_LOCKED and not vma(proc, p + 2 * PAGE).flags & VM_LOCKED


def test_mlock_rlimit_memlock_enomem(env):
    """do_mlock(): more than RLIMIT_MEMLOCK (8 MiB) without CAP_IPC_LOCK is ENOMEM."""
    m, proc, t = env
    p = t.mmap(3 << 22, RW)
    assert errno_of(t.mlock, p, 3 << 22) == errno.ENOMEM


def test_mlockall_current_future_and_munlockall(env):
    """apply_mlockall_flags(): MCL_CURRENT locks every VMA, MCL_FUTURE sets def_flags
    for later mmaps (MCL_ONFAULT alone is EINVAL); munlockall clears both."""
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    assert errno_of(t.mlockall, MCL_ONFAULT) == errno.EINVAL
    t.mlockall(MCL_CURRENT | MCL_FUTURE)
    q = t.mmap(PAGE, RW)
    assert vma(proc, p).flags & VM_LOCKED and vma(proc, q).flags & VM_LOCKED
    assert present(proc, q)
    t.munlockall()
    assert not vma(proc, p).flags & VM_LOCKED and not t.mmap(PAGE, RW) is None
    assert proc.mm.def_flags == 0


# ------------------------------------------------------------------------ pkeys, mseal
def test_pkey_alloc_free_and_pkey_mprotect(env):
    """mm_pkey_alloc(): the lowest free key (0 is taken at mm creation); pkey_mprotect
    with a key not allocated is EINVAL; pkey_free of a free key is EINVAL."""
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    assert errno_of(t.pkey_mprotect, p, PAGE, PROT_READ, 1) == errno.EINVAL
    k = t.pkey_alloc().value
    assert k == 1
    t.pkey_mprotect(p, PAGE, PROT_READ, k)
    assert vma(proc, p).flags >> pysim.VM_PKEY_SHIFT & 0xF == k
    t.pkey_free(k)
    assert errno_of(t.pkey_free, k) == errno.EINVAL
    assert errno_of(t.pkey_alloc, 1) == errno.EINVAL
    assert errno_of(t.pkey_mprotect, p, PAGE, PROT_READ, 16) == errno.EINVAL


def test_pkey_alloc_enospc(env):
    """mm_pkey_alloc(): all 16 keys taken is ENOSPC."""
    m, proc, t = env
    keys = [t.pkey_alloc().value for _ in range(15)]
    assert keys == list(range(1, 16))
    assert errno_of(t.pkey_alloc) == errno.ENOSPC


def test_mseal_refuses_unmap_mprotect_mremap(env):
    """mseal() (6.10): the range must be mapped (ENOMEM, nothing sealed); a sealed VMA
    refuses munmap, mprotect, mremap, MAP_FIXED over it and discarding madvise on
    read-only anonymous memory (EPERM)."""
    m, proc, t = env
    p = t.mmap(3 * PAGE, PROT_READ)
    assert errno_of(t.mseal, p, 4 * PAGE) == errno.ENOMEM and not vma(proc, p).flags & VM_SEALED
    t.mseal(p, PAGE)
    assert vma(proc, p).flags & VM_SEALED and proc.mm.vmas.map_count == 2
    assert errno_of(t.munmap, p, PAGE) == errno.EPERM
    assert errno_of(t.mprotect, p, PAGE, RW) == errno.EPERM
    assert errno_of(t.mremap, p, PAGE, 2 * PAGE, MREMAP_MAYMOVE) == errno.EPERM
    assert errno_of(t.mmap, PAGE, RW, ANON | MAP_FIXED, addr=p) == errno.EPERM
    assert errno_of(t.madvise, p, PAGE, MADV_DONTNEED) == errno.EPERM
    assert errno_of(t.mseal, p, PAGE, 1) == errno.EINVAL


# ------------------------------------------------------------------------ fork, exec, exit
def test_dup_mmap_write_protects_parent_with_flush_and_cows(env):
    """dup_mmap() / copy_present_pte(): the parent's writable private pages become
    read-only (flush_tlb_mm), the child maps the same frames read-only; the first
    write copies (COW), the other side's write then reuses."""
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    t.write(p)
    t.read(p)                                           # the TLB holds the RW entry
    child = proc.fork()
    assert t.last.events["flush_tlb_mm_range"] == 1
    assert not proc.mm.pt.get(p)[0] & mmucore.PTE_RW
    assert mmucore.pte_pfn(child.mm.pt.get(p)[0]) == mmucore.pte_pfn(proc.mm.pt.get(p)[0])
    assert t.write(p).faults[0].outcome == "cow"
    assert child.threads[0].write(p).faults[0].outcome == "wp_reuse"
    assert m.check() == []


def test_dup_mmap_dontfork_and_wipeonfork(env):
    """dup_mmap(): a VM_DONTCOPY VMA is not in the child; a VM_WIPEONFORK one is, empty."""
    m, proc, t = env
    a = t.mmap(PAGE, RW)
    b = t.mmap(PAGE, RW)
    t.write(a); t.write(b)
    t.madvise(a, PAGE, MADV_DONTFORK)
    t.madvise(b, PAGE, MADV_WIPEONFORK)
    child = proc.fork()
    assert child.mm.vmas.vma_lookup(a) is None
    assert child.mm.vmas.vma_lookup(b) is not None and child.mm.pt.get(b)[0] == 0


def test_execve_tears_down_with_fullmm_and_maps_image(env):
    """exec_mmap() + exit_mmap(): the old mm is zapped with one fullmm gather, the new
    one holds the image (its RELRO page can be mprotected, the stack grows)."""
    m, proc, t = env
    p = t.mmap(4 * PAGE, RW)
    for i in range(4):
        t.write(p + i * PAGE)
    old = proc.mm
    r = proc.execve()
    assert r.events["flush_tlb_mm_range"] >= 1 and old.vmas.map_count == 0 and old.dead
    assert proc.mm is not old and t.mm is proc.mm
    t.mprotect(0x555555557000, PAGE, PROT_READ)
    assert t.write(0x7FFFFFFDD000).faults[0].outcome == "anon"       # stack growth
    assert t.brk(0).value == 0x555555559000


def test_exit_stops_threads(env):
    """do_exit() -> exit_mmap(): a fullmm teardown; the threads stop."""
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    t.write(p)
    r = proc.exit()
    assert r.events["flush_tlb_mm_range"] >= 1 and proc.mm.vmas.map_count == 0
    with pytest.raises(pysim.PysimError):
        t.mmap(PAGE, RW)
    assert m.check() == []
