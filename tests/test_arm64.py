"""arm64 behind the Arch seam: the descriptor codec and the 2025 pte_needs_flush
(mmucore.pte_arm64), the worked examples of kernel-semantics.md 3.8 that apply to arm64
with exact TLBI / DSB counts, the MAX_DVM_OPS ceiling and range TLBI, the checker's
rule that a TLBI counts only after the issuing CPU's DSB, and random workloads on the
arm64 presets with the checker on."""
import random

import mmucore
import pytest
from mmucore import pte_arm64 as a64

import pysim
from rigs import count_flush_tlb_mm
from pysim import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE
from pysim.arch.arm64 import MAX_DVM_OPS, tlbi_range_ops
from pysim.errors import SafetyViolation

PAGE = 4096
RW = PROT_READ | PROT_WRITE
EVENTS = ("flush_tlb_mm_range", "tlbi", "tlbi_received", "dsb", "ipi_sent")


def setup(profile, threads, preset="altra", cpus=None, **kw):
    """A machine on an arm64 preset; thread t0 on CPU 0, for 2 threads a busy t1 on 1."""
    m = pysim.Machine(cpus=cpus or threads, profile=profile, preset=preset, **kw)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1).busy() if threads == 2 else None
    return m, proc, t0, t1


def counts(r):
    """The arm64 flush events of one operation."""
    return {k: r.events[k] for k in EVENTS}




def want(m, requests, tlbi):
    """requests flushes of tlbi TLBIs in all, each TLBI reaching every CPU, one DSB per
    request and never an IPI."""
    return {"flush_tlb_mm_range": requests, "tlbi": tlbi, "tlbi_received": tlbi * len(m.cpus),
            "dsb": requests, "ipi_sent": 0}


# ------------------------------------------------------------------ the codec
def canon_entries(rng, n=400):
    """Random canonical user entries as the kernel paths make them."""
    out = []
    for _ in range(n):
        prot = mmucore.vm_get_page_prot(rng.randrange(16))
        extra = rng.choice([0, mmucore.PTE_D, mmucore.PTE_RW | mmucore.PTE_D,
                            mmucore.PTE_RW]) if prot & mmucore.PTE_P else 0
        sw = rng.choice([0, mmucore.PTE_SPECIAL, mmucore.PTE_UFFD_WP])
        out.append(mmucore.mk_pte(rng.randrange(1, 1 << 30), prot | extra | sw))
    return out


def test_protection_map_is_arm64s_and_means_what_x86s_does():
    """protection_map[] in descriptor bits (mmap.c), and its canonical form equals x86's
    for every VM_READ|WRITE|EXEC|SHARED combination (same permissions)."""
    assert a64.vm_get_page_prot(0) == a64.PAGE_NONE
    assert a64.vm_get_page_prot(2) == a64.PAGE_READONLY          # private write: COW
    assert a64.vm_get_page_prot(8 | 2 | 1) == a64.PAGE_SHARED
    assert a64.PAGE_SHARED & (a64.PTE_DBM | a64.PTE_RDONLY) == a64.PTE_DBM | a64.PTE_RDONLY
    assert not a64.PAGE_NONE & a64.PTE_VALID and a64.PAGE_NONE & a64.PTE_PRESENT_INVALID
    for flags in range(16):
        assert a64.vm_get_page_prot_canon(flags) == mmucore.vm_get_page_prot(flags), flags


def test_codec_round_trips_and_commutes_with_pte_modify():
    """from_desc(to_desc(v)) == v, and arm64 pte_modify on descriptors is the codec image
    of the canonical pte_modify, on random entries and protections."""
    rng = random.Random(5)
    for v in canon_entries(rng):
        d = a64.to_desc(v)
        assert a64.from_desc(d) == v, (hex(v), a64.describe(d))
        assert d & a64.PTE_TABLE_BIT and (d & a64.PTE_ADDR_MASK) >> 12 == mmucore.pte_pfn(v)
        flags = rng.randrange(16)
        new = mmucore.pte_modify(v, mmucore.vm_get_page_prot(flags))
        assert a64.pte_modify(d, a64.vm_get_page_prot(flags)) == a64.to_desc(new), \
            (a64.describe(d), flags)


def test_real_bit_positions():
    """A written private page: VALID|page, AF, nG, USER, PXN+UXN, DBM, AP[2] clear."""
    v = mmucore.mk_pte(0x1234, mmucore.vm_get_page_prot(3) | mmucore.PTE_RW | mmucore.PTE_D)
    d = a64.to_desc(v)
    assert d == (0x1234 << 12) | 0b11 | 1 << 6 | 3 << 8 | 1 << 10 | 1 << 11 | 1 << 51 \
        | 1 << 53 | 1 << 54 | 1 << 55
    assert a64.describe(d) == "oa=0x1234 VALID|USER|AF|nG|DBM|PXN|UXN|DIRTY"
    huge = a64.to_desc(v | mmucore.PTE_PSE, block=True)
    assert huge & 0b11 == 0b01                                    # a level-2 block


def test_pte_needs_flush_2025_rule():
    """c320dbb7c80d: invalid -> valid and software-bit-only changes need no flush;
    any hardware-bit change of a valid entry does (RO -> RW included)."""
    ro = a64.PAGE_READONLY | 0x42 << 12
    rw = a64.pte_modify(ro, a64.PAGE_SHARED)
    none = a64.pte_modify(ro, a64.PAGE_NONE)
    assert not a64.pte_needs_flush(none, rw)                      # PROT_NONE -> RW
    assert a64.pte_needs_flush(ro, rw) and a64.pte_needs_flush(rw, none)
    assert not a64.pte_needs_flush(ro, ro | a64.PTE_UFFD_WP)       # uffd-wp bit only
    assert not a64.pte_needs_flush(ro, ro | a64.PTE_DIRTY)
    assert a64.pte_needs_flush(ro, ro & ~a64.PTE_AF)               # AF is hardware
    canon_none = mmucore.mk_pte(0x42, mmucore.vm_get_page_prot(0))
    canon_rw = mmucore.pte_modify(canon_none, mmucore.vm_get_page_prot(3))
    assert not a64.pte_needs_flush_canon(canon_none, canon_rw)


def test_tlbi_range_ops_follow_flush_tlb_range_op():
    """Range TLBIs: one per non-zero 5-bit chunk of pages >> 1, plus one for odd pages."""
    assert [tlbi_range_ops(n, False) for n in (1, 7, 512)] == [1, 7, 512]
    assert tlbi_range_ops(1, True) == 1 and tlbi_range_ops(2, True) == 1
    assert tlbi_range_ops(3, True) == 2 and tlbi_range_ops(512, True) == 1
    assert tlbi_range_ops(2 * (1 + 32 + 1024) + 1, True) == 4


# ------------------------------------------------------------------ 3.8 on arm64
@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("profile", ("mmots", "patched", "v6.19"))
def test_read_on_one_written_page(profile, threads):
    """Row 1: mprotect(READ) of a written page: one 1-page flush, one TLBI VAE1IS that
    reaches every CPU, one DSB, no IPI, in every kernel."""
    m, proc, t0, t1 = setup(profile, threads)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    r = t0.mprotect(p, PAGE, PROT_READ)
    assert counts(r) == want(m, 1, 1)


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("rule_2025", (False, True))
@pytest.mark.parametrize("profile", ("mmots", "patched"))
def test_read_write_on_read_only_private_page(profile, rule_2025, threads):
    """Row 2: mprotect(READ|WRITE) on a private RO page leaves the PTE as it is; arm64
    flushes anyway until 2025 (generic pte_needs_flush is always true), the 2025 rule
    on the 5.19 paths sees no difference and skips it (mmots has no per-entry rule)."""
    m, proc, t0, t1 = setup(profile, threads, arm64_pte_needs_flush=rule_2025)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t0.mprotect(p, PAGE, PROT_READ)
    before = proc.mm.pt.get(p)[0]
    r = t0.mprotect(p, PAGE, RW)
    assert proc.mm.pt.get(p)[0] == before
    n = 0 if rule_2025 and profile == "patched" else 1
    assert counts(r) == want(m, n, n)


def test_read_write_on_exclusive_page_v6_19_flushes():
    """6.2+ mprotect makes the exclusive anonymous page writable itself: a valid
    entry's AP[2]/DBM change, which the 2025 rule still flushes."""
    m, proc, t0, t1 = setup("v6.19", 2)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t0.mprotect(p, PAGE, PROT_READ)
    r = t0.mprotect(p, PAGE, RW)
    assert proc.mm.pt.get(p)[0] & mmucore.PTE_RW and counts(r) == want(m, 1, 1)


@pytest.mark.parametrize("profile", ("mmots", "patched"))
def test_read_over_1gb_with_one_populated_page(profile):
    """Row 3: mmots flushes the whole 1 GiB VMA: >= MAX_DVM_OPS strides -> flush_tlb_mm,
    one TLBI ASIDE1IS; the gather flushes the one page: one TLBI VAE1IS."""
    m, proc, t0, t1 = setup(profile, 2)
    mm_flushes = count_flush_tlb_mm(m)
    p = t0.mmap(1 << 30, RW)
    t0.write(p + 12345 * PAGE)
    r = t0.mprotect(p, 1 << 30, PROT_READ)
    assert counts(r) == want(m, 1, 1)
    assert mm_flushes[0] == (1 if profile == "mmots" else 0)


@pytest.mark.parametrize("profile", ("mmots", "patched"))
def test_three_vmas_with_one_page_each(profile):
    """Row 4: one page in each of 3 VMAs of 100 pages.  mmots flushes each portion (100
    strides < 512: 100 TLBIs each); arm64 does not merge VMAs in the gather, so patched
    flushes each VMA's one page at tlb_end_vma: 3 flushes of 1 TLBI."""
    m, proc, t0, t1 = setup(profile, 2)
    p = t0.mmap(300 * PAGE, RW)
    t0.mprotect(p + 100 * PAGE, 100 * PAGE, RW | PROT_EXEC)
    assert proc.mm.vmas.map_count == 3
    for i in (0, 100, 200):
        t0.write(p + i * PAGE)
    r = t0.mprotect(p, 300 * PAGE, PROT_READ)
    assert counts(r) == (want(m, 3, 300) if profile == "mmots" else want(m, 3, 3))


@pytest.mark.parametrize("profile", ("patched", "v6.19"))
def test_prot_none_to_rw_flushes_only_before_2025(profile):
    """The reproduction's transition: a present PROT_NONE page made RW flushes with the
    generic rule, not with the 2025 one; the way back (RW -> NONE) always flushes."""
    m, proc, t0, t1 = setup(profile, 1)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    assert counts(t0.mprotect(p, PAGE, PROT_NONE)) == want(m, 1, 1)
    r = t0.mprotect(p, PAGE, RW)
    assert counts(r) == want(m, *((0, 0) if profile == "v6.19" else (1, 1)))


def test_munmap_and_dontneed_flush_by_tlbi():
    """A zap clears present entries, which always needs a flush: 8 pages, 8 TLBIs."""
    m, proc, t0, t1 = setup("v6.19", 2)
    p = t0.mmap(16 * PAGE, RW)
    for i in range(8):
        t0.write(p + i * PAGE)
    assert counts(t0.madvise(p, 8 * PAGE, pysim.MADV_DONTNEED)) == want(m, 1, 8)
    t0.write(p)
    r = t0.munmap(p, 16 * PAGE)
    assert r.events["tlbi"] >= 1 and r.events["ipi_sent"] == 0 and r.events["dsb"] >= 1


@pytest.mark.parametrize("tlbi_range", (False, True))
def test_max_dvm_ops_ceiling_and_range_tlbi(tlbi_range):
    """flush_tlb_range of 511 pages: 511 TLBIs without FEAT_TLBIRANGE; 512 pages become
    flush_tlb_mm (one ASID TLBI).  With TLBIRANGE both are a few range TLBIs."""
    m, proc, t0, t1 = setup("mmots", 1, tlbi_range=tlbi_range)
    mm_flushes = count_flush_tlb_mm(m)
    for n in (MAX_DVM_OPS - 1, MAX_DVM_OPS):
        p = t0.mmap(n * PAGE, RW)
        t0.write(p)
        t0.write(p + (n - 1) * PAGE)
        r = t0.mprotect(p, n * PAGE, PROT_READ)
        if tlbi_range:
            assert r.events["tlbi"] == tlbi_range_ops(n, True) and mm_flushes[0] == 0
        elif n < MAX_DVM_OPS:
            assert r.events["tlbi"] == n and mm_flushes[0] == 0
        else:
            assert r.events["tlbi"] == 1 and mm_flushes[0] == 1
    assert tlbi_range_ops(MAX_DVM_OPS - 1, True) == 3


def test_eight_bit_asids_roll_over_safely():
    """asid_bits 8: 255 user ASIDs; 300 processes force a rollover, after which every
    CPU flushes its TLB at its next switch and no stale entry survives."""
    m = pysim.Machine(cpus=2, profile="v6.19", preset=pysim.get_preset("altra", asid_bits=8))
    procs = []
    for i in range(300):
        pr = m.process()
        t = pr.thread(cpu=i % 2)
        a = t.mmap(PAGE, RW)
        t.write(a)
        procs.append((pr, t, a))
    assert m.arch.generation > 1 << 8
    assert sum(c.kernel_counts["tlb_flush_on_switch"] for c in m.cpus) >= 2
    for pr, t, a in procs[:20]:
        t.write(a)
        t.mprotect(a, PAGE, PROT_READ)
    assert m.check() == []


# ------------------------------------------------------------------ the checker
def _stale_after(policy):
    """A 2-CPU machine whose arm64 flush follows `policy`, after an mprotect(READ) of a
    page both CPUs cached writable: the checker's verdict."""
    m, proc, t0, t1 = setup("v6.19", 2)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    proc.thread(cpu=1).write(p)
    setattr(m.arch, policy, True)
    return m, t0, p


@pytest.mark.parametrize("policy", ("skip_dsb", "remote_dsb"))
def test_checker_catches_tlbi_without_its_dsb(policy):
    """A policy that forgets the DSB, or takes a DSB on another CPU as completing this
    CPU's TLBIs, leaves the RW entries in both TLBs: the checker reports them and names
    the pending TLBI."""
    m, t0, p = _stale_after(policy)
    with pytest.raises(SafetyViolation) as e:
        t0.mprotect(p, PAGE, PROT_READ)
    assert "not completed (no DSB on cpu 0)" in str(e.value.violations[0].reason)
    assert {v.cpu for v in e.value.violations} == {0, 1}


def test_dsb_on_the_issuer_completes_and_only_it():
    """The model's rule itself: TLBIs issued on cpu 0 stay pending through a DSB on cpu
    1 and are applied at cpu 0's DSB."""
    m, t0, p = _stale_after("skip_dsb")
    m.checker.mode = "record"
    t0.mprotect(p, PAGE, PROT_READ)
    assert len(m.cpus[0].tlbstate.pending_tlbi) == 1
    assert m.arch.dsb_ish(m.cpus[1]) == 0 and m.check() != []
    assert m.arch.dsb_ish(m.cpus[0]) == 1 and m.check() == []


# ------------------------------------------------------------------ random workloads
def arm64_workload(profile, seed, ncpus, preset):
    """tests/test_kernel_random.py's workload with its mprotect step reduced to the
    call itself (its x86 flush reference, tests/flushref.py, does not apply to arm64):
    the Machine's checker still raises after every operation."""
    from test_kernel_random import PROTS, Workload

    class Arm64Workload(Workload):
        def op_mprotect(self):
            """A random mprotect over one to three VMAs, as the x86 workload picks it."""
            vs = self.vmas()
            if not vs:
                return
            rng = self.rng
            i = rng.randrange(len(vs))
            j = min(len(vs) - 1, i + rng.choice((0, 0, 1, 2)))
            start, end = self.boundary_in(vs[i], True), self.boundary_in(vs[j], False)
            if end <= start:
                start, end = vs[i].start, vs[i].end
            t = self.thread()
            t.run()
            try:
                r = t.mprotect(start, end - start, rng.choice(PROTS))
            except pysim.SyscallError:
                return
            st = self.res.stats
            st["mprotect"] = st.get("mprotect", 0) + 1
            st["tlbi"] = st.get("tlbi", 0) + r.events["tlbi"]
            st["ipis"] = st.get("ipis", 0) + r.events["ipi_sent"]

    return Arm64Workload(profile, seed, ncpus, preset=preset)


@pytest.mark.parametrize("preset,profile", [("altra", "patched"), ("altra", "v6.19"),
                                            ("kunpeng920", "v6.18")])
def test_random_ops_on_arm64_are_safe(preset, profile):
    """Random mmap/munmap/mprotect/madvise/faults on arm64 presets with the checker
    raising after every operation; broadcast TLBIs, never an IPI."""
    total = {}
    for seed, ncpus in ((1, 2), (2, 4)):
        r = arm64_workload(profile, seed, ncpus, preset).run(120)
        for k, v in list(r.stats.items()) + list(r.ops.items()):
            total[k] = total.get(k, 0) + v
    assert total["mprotect"] >= 30 and total["tlbi"] > 0 and total["ipis"] == 0
