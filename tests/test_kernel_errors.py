"""Syscall errors carry the kernel's errno (pysim.SyscallError, an OSError); a failed call
keeps what it changed before the error, as Linux does; configuration errors
(pysim.ConfigError, a ValueError) name the offending field."""
import errno

import pytest

import mmucore
import pysim
from pysim import (MADV_DONTNEED, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MAP_ANONYMOUS,
                   MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP,
                   PROT_NONE, PROT_READ, PROT_WRITE, VM_READ, VM_WRITE)

PAGE = 4096
RW = PROT_READ | PROT_WRITE


@pytest.fixture
def env():
    m = pysim.Machine(cpus=2, profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    proc.thread(cpu=1).busy()
    return m, proc, t0


def raises(code, fn, *args, **kw):
    with pytest.raises(pysim.SyscallError) as ei:
        fn(*args, **kw)
    e = ei.value
    assert isinstance(e, OSError) and isinstance(e, pysim.PysimError)
    assert e.errno == code, str(e)
    assert errno.errorcode[code] in str(e)
    return e


# ------------------------------------------------------------------ mprotect
def test_mprotect_unaligned_start_einval(env):
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    raises(errno.EINVAL, t.mprotect, p + 1, PAGE, PROT_READ)
    raises(errno.EINVAL, t.mprotect, p + 2048, PAGE, PROT_READ)
    assert proc.mm.vmas.find_vma(p).flags & VM_WRITE          # nothing changed


@pytest.mark.parametrize("prot", [0x10, 0x80, PROT_READ | 0x100, PROT_GROWSDOWN | PROT_GROWSUP])
def test_mprotect_unknown_prot_bits_einval(env, prot):
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    raises(errno.EINVAL, t.mprotect, p, PAGE, prot)


def test_mprotect_zero_length_succeeds_before_prot_check(env):
    """do_mprotect_pkey: len == 0 returns 0 before arch_validate_prot()."""
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    r = t.mprotect(p, 0, 0x10)
    assert r.value == 0


def test_mprotect_unmapped_start_enomem(env):
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    t.munmap(p, PAGE)
    raises(errno.ENOMEM, t.mprotect, p, 2 * PAGE, PROT_READ)
    assert proc.mm.vmas.find_vma(p + PAGE).flags & VM_WRITE


@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_mprotect_hole_enomem_keeps_the_part_before(profile):
    """[A][hole][B]: mprotect over all three fails with ENOMEM after A was changed (and
    flushed: no CPU keeps a writable entry for A), B is untouched."""
    m = pysim.Machine(cpus=2, profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1)
    p = t0.mmap(3 * PAGE, RW)
    for i in range(3):
        t0.write(p + i * PAGE)
    t1.write(p)
    t1.busy()
    t0.munmap(p + PAGE, PAGE)
    vma_a, vma_b = proc.mm.vmas.find_vma(p), proc.mm.vmas.find_vma(p + PAGE)
    assert (vma_a.end, vma_b.start) == (p + PAGE, p + 2 * PAGE)
    syscalls0 = m.cpus[0].kernel_counts["syscalls"]
    flushes0 = m.cpus[0].kernel_counts["flush_tlb_mm_range"]
    received0 = m.cpus[1].kernel_counts["nr_tlb_remote_flush_received"]
    raises(errno.ENOMEM, t0.mprotect, p, 3 * PAGE, PROT_READ)
    a, b = proc.mm.vmas.find_vma(p), proc.mm.vmas.find_vma(p + 2 * PAGE)
    assert a.flags & (VM_READ | VM_WRITE) == VM_READ
    assert b.flags & (VM_READ | VM_WRITE) == VM_READ | VM_WRITE
    assert not proc.mm.pt.get(p)[0] & mmucore.PTE_RW
    assert proc.mm.pt.get(p + 2 * PAGE)[0] & mmucore.PTE_RW
    # the failed call still counted and flushed A's page on both CPUs
    assert m.cpus[0].kernel_counts["syscalls"] - syscalls0 == 1
    assert m.cpus[0].kernel_counts["flush_tlb_mm_range"] - flushes0 == 1
    assert m.cpus[1].kernel_counts["nr_tlb_remote_flush_received"] - received0 == 1
    assert m.cpus[0].tlb.probe(p) is None and m.cpus[1].tlb.probe(p) is None
    assert proc.mm.tlb_flush_pending == 0
    assert m.check() == []
    proc.mm.vmas.check_invariants()
    # the machine is usable after the error
    r = t0.mprotect(p + 2 * PAGE, PAGE, PROT_READ)
    assert r.events["flush_tlb_mm_range"] == 1


def test_mprotect_write_on_read_only_shared_file_eacces(env):
    m, proc, t = env
    f = pysim.File("f", writable=False)
    p = t.mmap(PAGE, PROT_READ, MAP_SHARED, file=f)
    vma = proc.mm.vmas.find_vma(p)
    assert not vma.flags & pysim.VM_MAYWRITE
    raises(errno.EACCES, t.mprotect, p, PAGE, RW)
    assert vma.flags & (VM_READ | VM_WRITE) == VM_READ
    t.mprotect(p, PAGE, PROT_READ | PROT_EXEC)                 # VM_MAYEXEC is there
    raises(errno.EACCES, t.mmap, PAGE, RW, MAP_SHARED, file=f)
    # a private mapping of the same file may be written (copy-on-write)
    q = t.mmap(PAGE, PROT_READ, MAP_PRIVATE, file=f)
    t.mprotect(q, PAGE, RW)


def test_mprotect_eacces_part_way_keeps_the_vmas_before(env):
    """[A: shared anon RW][B: read-only shared file]: mprotect(RW|EXEC) over both changes
    A (NX cleared: flushed on both CPUs), then fails with EACCES on B, which stays."""
    m, proc, t = env
    f = pysim.File("ro", writable=False)
    a = t.mmap(PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    b = t.mmap(PAGE, PROT_READ, MAP_SHARED | pysim.MAP_FIXED, file=f, addr=a + PAGE)
    t.write(a)
    t.read(b)
    flushes0 = m.cpus[0].kernel_counts["flush_tlb_mm_range"]
    raises(errno.EACCES, t.mprotect, a, 2 * PAGE, RW | PROT_EXEC)
    assert proc.mm.vmas.find_vma(a).flags & 7 == VM_READ | VM_WRITE | pysim.VM_EXEC
    assert proc.mm.vmas.find_vma(b).flags & 7 == VM_READ
    assert not proc.mm.pt.get(a)[0] & mmucore.PTE_NX
    assert proc.mm.pt.get(b)[0] & mmucore.PTE_NX
    assert m.cpus[0].kernel_counts["flush_tlb_mm_range"] - flushes0 == 1
    assert m.check() == []


def test_mprotect_negative_length_enomem(env):
    m, proc, t = env
    p = t.mmap(PAGE, RW)
    raises(errno.ENOMEM, t.mprotect, p, -PAGE, PROT_READ)


# ------------------------------------------------------------------ munmap / mmap
def test_munmap_errors(env):
    m, proc, t = env
    p = t.mmap(2 * PAGE, RW)
    raises(errno.EINVAL, t.munmap, p + 1, PAGE)
    raises(errno.EINVAL, t.munmap, p + 100, PAGE)
    raises(errno.EINVAL, t.munmap, p, 0)
    assert proc.mm.vmas.find_vma(p).start == p
    r = t.munmap(p, 3)                                          # length rounds up
    assert r.value == 0 and proc.mm.vmas.vma_lookup(p) is None
    assert proc.mm.vmas.vma_lookup(p + PAGE) is not None
    r = t.munmap(p, PAGE)                                       # already unmapped: fine
    assert r.value == 0


def test_mmap_errors(env):
    m, proc, t = env
    raises(errno.EINVAL, t.mmap, 0, RW)
    raises(errno.ENOMEM, t.mmap, -PAGE, RW)      # len is a size_t: do_mmap sees > TASK_SIZE
    raises(errno.EINVAL, t.mmap, PAGE, RW, MAP_ANONYMOUS)       # neither SHARED nor PRIVATE
    raises(errno.EINVAL, t.mmap, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | pysim.MAP_FIXED,
           addr=0x10000001)
    raises(errno.EEXIST, t.mmap, PAGE, RW,
           MAP_PRIVATE | MAP_ANONYMOUS | pysim.MAP_FIXED_NOREPLACE, addr=t.mmap(PAGE, RW))
    assert proc.mm.vmas.map_count == 1


def test_mmap_ignores_unknown_prot_and_flag_bits(env):
    """do_mmap(): calc_vm_prot_bits() and calc_vm_flag_bits() take only the bits they
    know; mmap (unlike mprotect) never validates prot, and an anonymous or MAP_PRIVATE
    mapping ignores unknown flags (only MAP_SHARED_VALIDATE checks them)."""
    m, proc, t = env
    p = t.mmap(PAGE, PROT_READ | 0x10)
    assert proc.mm.vmas.find_vma(p).flags & (VM_READ | VM_WRITE) == VM_READ
    q = t.mmap(PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | 0x40000000)
    assert proc.mm.vmas.find_vma(q).flags & VM_WRITE


# ------------------------------------------------------------------ madvise
def test_madvise_errors(env):
    m, proc, t = env
    p = t.mmap(4 * PAGE, RW)
    raises(errno.EINVAL, t.madvise, p, PAGE, 12345)
    raises(errno.EINVAL, t.madvise, p + 1, PAGE, MADV_DONTNEED)
    raises(errno.EINVAL, t.madvise, p, -1, MADV_DONTNEED)
    assert t.madvise(p, 0, MADV_DONTNEED).value == 0
    s = t.mmap(PAGE, RW, MAP_SHARED | MAP_ANONYMOUS)
    raises(errno.EINVAL, t.madvise, s, PAGE, pysim.MADV_FREE)       # not private anon


def test_madvise_hole_enomem_after_applying_to_the_mapped_part(env):
    m, proc, t = env
    p = t.mmap(3 * PAGE, RW)
    for i in range(3):
        t.write(p + i * PAGE)
    t.munmap(p + PAGE, PAGE)
    raises(errno.ENOMEM, t.madvise, p, 3 * PAGE, MADV_DONTNEED)
    assert proc.mm.pt.get(p) == (0, 0) and proc.mm.pt.get(p + 2 * PAGE) == (0, 0)
    assert m.check() == []


def test_madvise_populate_without_permission_einval(env):
    """faultin_vma_page_range(): "We want to report -EINVAL instead of -EFAULT for any
    permission problems or incompatible mappings" (MADV_POPULATE_READ on PROT_NONE,
    MADV_POPULATE_WRITE on a read-only mapping)."""
    m, proc, t = env
    n = t.mmap(PAGE, PROT_NONE)
    raises(errno.EINVAL, t.madvise, n, PAGE, MADV_POPULATE_READ)
    ro = t.mmap(PAGE, PROT_READ)
    raises(errno.EINVAL, t.madvise, ro, PAGE, MADV_POPULATE_WRITE)


def test_madvise_populate_hole_enomem(env):
    m, proc, t = env
    p = t.mmap(3 * PAGE, RW)
    t.munmap(p + PAGE, PAGE)
    raises(errno.ENOMEM, t.madvise, p, 3 * PAGE, MADV_POPULATE_WRITE)


# ------------------------------------------------------------------ configuration
def config_error(field, fn, *args, **kw):
    with pytest.raises(pysim.ConfigError) as ei:
        fn(*args, **kw)
    e = ei.value
    assert isinstance(e, ValueError) and isinstance(e, pysim.PysimError)
    assert e.field == field, (e.field, str(e))
    assert field in str(e), str(e)
    return e


@pytest.mark.parametrize("cpus", [0, -1, 1.5, "2", 5000])
def test_machine_cpus(cpus):
    config_error("cpus", pysim.Machine, cpus=cpus)


def test_machine_unknown_profile_and_preset():
    e = config_error("profile", pysim.Machine, profile="v9.9")
    assert "patched" in e.allowed and "mmots" in e.allowed and "v9.9" in str(e)
    e = config_error("preset", pysim.Machine, preset="pentium")
    assert "skylake" in e.allowed and "pentium" in str(e)
    config_error("profile", pysim.Machine, profile=42)


def test_machine_profile_overrides():
    config_error("no_such_knob", pysim.Machine, no_such_knob=True)
    config_error("pcid", pysim.Machine, pcid="yes")
    config_error("tlb_single_page_flush_ceiling", pysim.Machine,
                 tlb_single_page_flush_ceiling=-1)
    config_error("nr_dyn_asids", pysim.Machine, nr_dyn_asids=0)
    config_error("change_writable", pysim.Machine, change_writable="always")
    config_error("arch", pysim.Machine, arch="riscv")
    # a switch combination no kernel had: patch 2 without patch 1
    config_error("skip_unneeded_flush", pysim.Machine, profile="mmots",
                 skip_unneeded_flush=True)
    config_error("huge_pmd_ad_no_flush", pysim.get_profile, "mmots",
                 huge_pmd_ad_no_flush=True)
    config_error("change_writable", pysim.get_profile, "mmots", change_writable="dirty")
    # a valid override is renamed after what it changed
    prof = pysim.get_profile("patched", pti=True)
    assert prof.pti and "pti=True" in prof.name


def test_machine_checker_mode():
    e = config_error("checker", pysim.Machine, checker="sometimes")
    assert "raise" in e.allowed


def test_preset_errors():
    config_error("invlpg", pysim.get_preset, "skylake", invlpg=-5)
    config_error("invlpg", pysim.get_preset, "skylake", invlpg=float("nan"))
    config_error("warp_speed", pysim.get_preset, "skylake", warp_speed=1)
    config_error("geometry", pysim.get_preset, "skylake", geometry="pentium4")
    config_error("ghz", pysim.get_preset, "skylake", ghz=0)
    ok = pysim.get_preset("skylake", invlpg=150)
    assert ok.hw["invlpg"] == 150 and "override" in ok.sources["invlpg"]


def test_thread_on_missing_cpu():
    m = pysim.Machine(cpus=2)
    config_error("cpu", m.process().thread, cpu=2)


def test_bad_arguments_are_clear_errors_naming_public_calls():
    """No internal exception reaches a user: an address that is no 64-bit value is a
    ValueError, a typo'd keyword names the public method, and the mmu_gather API says
    what it needs when handed a thread."""
    m = pysim.Machine(cpus=1)
    t = m.process().thread(cpu=0)
    for va in (-1, 2 ** 64, 1.5):
        with pytest.raises(ValueError, match="address must be an integer"):
            t.read(va)
    with pytest.raises(TypeError, match=r"Thread\.mmap\(\).*hugee"):
        t.mmap(4096, pysim.PROT_READ, hugee=True)
    with pytest.raises(TypeError, match=r"Machine\.process\(\).*typo"):
        m.process(typo=1)
    with pytest.raises(TypeError, match="needs a CPU"):
        pysim.tlb_gather_mmu(t, t.mm)


def test_linux_errnos_for_keys_files_and_offsets():
    """pkey_mprotect with a key x86 does not have, or one never allocated, is EINVAL
    (mm_pkey_is_allocated); a file that is no open file is EBADF; a negative page
    offset is EINVAL."""
    m = pysim.Machine(cpus=1)
    t = m.process().thread(cpu=0)
    p = t.mmap(PAGE, RW)
    for key in (16, 99, -2, 3):
        raises(errno.EINVAL, t.mprotect, p, PAGE, PROT_READ, key)
    assert t.mprotect(p, PAGE, PROT_READ, 0).value == 0
    raises(errno.EBADF, t.mmap, PAGE, PROT_READ, pysim.MAP_PRIVATE, file="foo.txt")
    raises(errno.EINVAL, t.mmap, PAGE, PROT_READ, pysim.MAP_PRIVATE,
           file=pysim.File("f"), pgoff=-1)


def test_events_hold_every_counter_and_faults_are_named_records():
    m = pysim.Machine(cpus=1)
    m.keep_history = True
    t = m.process().thread(cpu=0)
    p = t.mmap(PAGE, RW)
    r = t.write(p)
    assert r.events["invlpg"] == 0 and "invlpg" in r.events
    assert set(r.events) == set(pysim.KERNEL_COUNTERS) | set(mmucore.COUNTER_NAMES)
    (f,) = r.faults
    assert (f.index, f.va, f.kind, f.outcome) == (0, p, mmucore.WRITE, "anon") == tuple(f)
    df = m.trace()
    assert list(df["op"][-2:]) == ["mmap", "access"]
    assert df["fault_anon"].iloc[-1] == 1 and df["cycles"].iloc[-1] == r.cycles


def test_madvise_populate_stops_at_the_first_problem_in_address_order(env):
    """madvise_populate() faults the range in from the start and reports what it meets
    first: a read-only VMA before a hole is EINVAL, a hole before a read-only VMA is
    ENOMEM, and everything before the problem stays populated.  MADV_POPULATE_READ
    needs VM_READ itself (check_vma_flags without FOLL_FORCE): PROT_WRITE alone fails."""
    m, proc, t = env
    pt = proc.mm.pt
    ro = t.mmap(2 * PAGE, PROT_READ)
    t.munmap(ro + PAGE, PAGE)                                  # [read-only, hole]
    raises(errno.EINVAL, t.madvise, ro, 2 * PAGE, MADV_POPULATE_WRITE)
    w = t.mmap(3 * PAGE, RW)
    t.mprotect(w + PAGE, PAGE, PROT_READ)                      # [rw, ro, rw]
    raises(errno.EINVAL, t.madvise, w, 3 * PAGE, MADV_POPULATE_WRITE)
    assert pt.get(w)[0] & mmucore.PTE_RW and pt.get(w + 2 * PAGE) == (0, 0)
    h = t.mmap(3 * PAGE, RW)
    t.munmap(h + PAGE, PAGE)                                   # [rw, hole, rw]
    raises(errno.ENOMEM, t.madvise, h, 3 * PAGE, MADV_POPULATE_WRITE)
    assert pt.get(h)[0] & mmucore.PTE_P and pt.get(h + 2 * PAGE) == (0, 0)
    wo = t.mmap(PAGE, PROT_WRITE)
    raises(errno.EINVAL, t.madvise, wo, PAGE, MADV_POPULATE_READ)
    assert t.madvise(wo, PAGE, MADV_POPULATE_WRITE).value == 0
