"""The page-fault model (kernel-semantics.md sections 6 and 8.2, checklist item 9): every
outcome is recorded in OpResult.faults and the counters, never raised."""
import numpy as np
import pytest

import mmucore
import pysim
from pysim import (MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, PROT_EXEC,
                   PROT_NONE, PROT_READ, PROT_WRITE)

PAGE = 4096
RW = PROT_READ | PROT_WRITE
R, W, X = mmucore.READ, mmucore.WRITE, mmucore.FETCH
P, PRW, US, A, D, NX = (mmucore.PTE_P, mmucore.PTE_RW, mmucore.PTE_US, mmucore.PTE_A,
                        mmucore.PTE_D, mmucore.PTE_NX)


def ev(r, name):
    return r.events.get(name, 0)


def cpu_ev(r, cpu, name):
    return r.cpu_events.get(cpu, {}).get(name, 0)


def outcomes(r):
    return [f[3] for f in r.faults]


def machine(cpus=1, profile="patched", **kw):
    m = pysim.Machine(cpus=cpus, profile=profile, **kw)
    proc = m.process()
    return m, proc, [proc.thread(cpu=c) for c in range(cpus)]


FLUSH_EVENTS = ("flush_tlb_mm_range", "invlpg", "flush_pcid", "ipi_sent")


def no_flush(r):
    return all(ev(r, k) == 0 for k in FLUSH_EVENTS)


# ------------------------------------------------------------------ not present
@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_read_fault_maps_the_zero_page(profile):
    m, proc, (t,) = machine(profile=profile)
    p = t.mmap(PAGE, RW)
    r = t.read(p)
    assert r.faults == [(0, p, R, "zero_page")]
    assert (ev(r, "fault_zero_page"), ev(r, "fault_anon"), ev(r, "faults"),
            ev(r, "fault_not_present")) == (1, 0, 1, 1)
    assert no_flush(r)
    e = proc.mm.pt.get(p)[0]
    assert mmucore.pte_pfn(e) == m.zero_pfn
    assert e & (P | US) == P | US and not e & PRW
    assert r.value == 1                                   # the access completed


@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_write_fault_maps_a_new_writable_page(profile):
    m, proc, (t,) = machine(profile=profile)
    p = t.mmap(PAGE, RW)
    r = t.write(p)
    assert r.faults == [(0, p, W, "anon")]
    assert (ev(r, "fault_anon"), ev(r, "fault_zero_page")) == (1, 0)
    assert no_flush(r)
    e = proc.mm.pt.get(p)[0]
    assert e & (P | PRW | US | A | D) == P | PRW | US | A | D
    assert mmucore.pte_pfn(e) != m.zero_pfn
    r = t.write(p)                                        # now a TLB hit
    assert r.faults == [] and ev(r, "l1_hits") == 1


def test_map_populate_write_prefaults_every_page():
    m, proc, (t,) = machine()
    p = t.mmap(8 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)
    assert ev(t.last, "fault_anon") == 8
    entries = proc.mm.pt.read_range(p, 8)
    assert np.all(entries & np.uint64(P | PRW | D) == np.uint64(P | PRW | D))
    r = t.access(np.array([p + i * PAGE for i in range(8)], dtype=np.uint64),
                 np.full(8, W, dtype=np.uint8))
    assert r.faults == [] and r.value == 8


@pytest.mark.parametrize("flags", [MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                                   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE],
                         ids=["private", "shared"])
def test_map_populate_of_prot_none_maps_nothing(flags):
    """GUP refuses a PROT_NONE VMA (check_vma_flags() without FOLL_FORCE: -EFAULT, which
    __mm_populate ignores for mmap), so MAP_POPULATE of PROT_NONE memory maps no page and
    takes no fault."""
    m, proc, (t,) = machine()
    p = t.mmap(PAGE, PROT_NONE, flags)
    assert (ev(t.last, "fault_zero_page"), ev(t.last, "fault_anon")) == (0, 0)
    assert proc.mm.pt.get(p) == (0, 0)
    # and after making it readable the first read maps the real zero page
    t.mprotect(p, PAGE, PROT_READ)
    r = t.read(p)
    e = proc.mm.pt.get(p)[0]
    pfn = mmucore.pte_pfn(e)
    if flags & MAP_SHARED:          # a shmem page from the page cache
        assert e & P and mmucore.FILE_PFN_BASE <= pfn < m.frames.next_file_pfn
    else:
        assert e & P and pfn == m.zero_pfn


# ------------------------------------------------------------------ write protect
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_write_protect_fault_reuses_without_flush(profile, threads):
    """mprotect(READ); mprotect(READ|WRITE); write: the exclusive anonymous page is reused
    (RW, D set in place), no flush and no IPI even with a busy second CPU."""
    m, proc, ts = machine(cpus=threads, profile=profile)
    t0 = ts[0]
    if threads == 2:
        ts[1].busy()
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    pfn = mmucore.pte_pfn(proc.mm.pt.get(p)[0])
    t0.mprotect(p, PAGE, PROT_READ)
    t0.mprotect(p, PAGE, RW)
    r = t0.write(p)
    assert r.faults == [(0, p, W, "wp_reuse")]
    assert (ev(r, "fault_wp_reuse"), ev(r, "fault_cow"), ev(r, "fault_write")) == (1, 0, 1)
    assert no_flush(r)
    e = proc.mm.pt.get(p)[0]
    assert mmucore.pte_pfn(e) == pfn and e & (PRW | D) == PRW | D


@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_cow_of_the_zero_page_is_a_real_shootdown(profile):
    """Both CPUs read the page (zero page cached on both); CPU 0 writes: copy-on-write,
    ptep_clear_flush() of the old entry: one 1-page flush, an IPI to the busy CPU 1,
    one INVLPG on each CPU, and a fresh private frame."""
    m, proc, (t0, t1) = machine(cpus=2, profile=profile)
    p = t0.mmap(PAGE, RW)
    t0.read(p)
    t1.read(p)
    t1.busy()
    assert m.cpus[1].tlb.probe(p) is not None
    r = t0.write(p)
    assert r.faults == [(0, p, W, "cow")]
    assert (ev(r, "fault_cow"), ev(r, "fault_wp_reuse")) == (1, 0)
    assert (ev(r, "flush_tlb_mm_range"), ev(r, "ipi_sent"), ev(r, "nr_tlb_remote_flush"),
            ev(r, "nr_tlb_remote_flush_received")) == (1, 1, 1, 1)
    assert (cpu_ev(r, 0, "invlpg"), cpu_ev(r, 1, "invlpg")) == (1, 1)
    assert (cpu_ev(r, 0, "nr_tlb_local_flush_one"), cpu_ev(r, 1, "remote_flush_one")) == (1, 1)
    assert m.cpus[1].tlb.probe(p) is None
    e = proc.mm.pt.get(p)[0]
    assert mmucore.pte_pfn(e) != m.zero_pfn and e & (PRW | D) == PRW | D
    r = t1.read(p)                                        # CPU 1 walks to the new frame
    assert r.faults == [] and mmucore.pte_pfn(m.cpus[1].tlb.probe(p)[1]) == mmucore.pte_pfn(e)


def test_cow_of_a_private_file_page():
    m, proc, (t,) = machine()
    f = pysim.File("data")
    p = t.mmap(PAGE, RW, pysim.MAP_PRIVATE, file=f)
    r = t.read(p)
    assert outcomes(r) == ["file"]
    old = mmucore.pte_pfn(proc.mm.pt.get(p)[0])
    r = t.write(p)
    assert outcomes(r) == ["cow"] and ev(r, "flush_tlb_mm_range") == 1
    assert mmucore.pte_pfn(proc.mm.pt.get(p)[0]) != old
    assert not m.is_anon_pfn(old) and m.is_anon_pfn(mmucore.pte_pfn(proc.mm.pt.get(p)[0]))


def _private_file_page_cache_and_copy(profile):
    """A private file mapping of two pages: page 0 only read (the page-cache page), page 1
    written (its anonymous copy); then mprotect(READ) and mprotect(READ|WRITE)."""
    m, proc, (t,) = machine(profile=profile)
    p = t.mmap(2 * PAGE, RW, pysim.MAP_PRIVATE, file=pysim.File("data"))
    t.read(p)
    t.write(p + PAGE)
    t.mprotect(p, 2 * PAGE, PROT_READ)
    r = t.mprotect(p, 2 * PAGE, RW)
    return m, proc, t, p, r


@pytest.mark.parametrize("profile", ["v6.0", "v6.2"])
def test_mprotect_makes_anon_copies_in_a_private_file_mapping_writable(profile):
    """6.0+: vma_wants_manual_pte_write_upgrade() holds for any private writable VMA, and
    can_change_pte_writable() takes exclusive anonymous pages only: the COW copy gets RW
    back from mprotect, the page-cache page stays read-only (a write must copy it)."""
    m, proc, t, p, r = _private_file_page_cache_and_copy(profile)
    rw = [bool(proc.mm.pt.get(p + i * PAGE)[0] & PRW) for i in range(2)]
    assert rw == [False, True]
    assert ev(r, "flush_tlb_mm_range") == 1            # RW set on a present entry: flushed
    r = t.write(p + PAGE)
    assert r.faults == [] and no_flush(r)
    r = t.write(p)
    assert outcomes(r) == ["cow"]


@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_write_to_a_read_only_anon_copy_in_a_file_mapping_reuses_it(profile):
    """<= 5.19: mprotect leaves both read-only; do_wp_page reuses the exclusive anonymous
    copy without a flush and copies the page-cache page with one."""
    m, proc, t, p, r = _private_file_page_cache_and_copy(profile)
    assert [bool(proc.mm.pt.get(p + i * PAGE)[0] & PRW) for i in range(2)] == [False, False]
    r = t.write(p + PAGE)
    assert outcomes(r) == ["wp_reuse"] and no_flush(r)
    r = t.write(p)
    assert outcomes(r) == ["cow"] and ev(r, "flush_tlb_mm_range") == 1


# ------------------------------------------------------------------ spurious faults
@pytest.mark.parametrize("profile", ["mmots", "patched"])
def test_spurious_fault_on_stale_read_only_entry(profile):
    """CPU 1 caches the read-only translation; CPU 0's write fault upgrades the PTE in
    place without a flush; CPU 1's write then faults on its stale entry, finds the PTE
    writable: a spurious fault, no flush, and the retried write succeeds."""
    m, proc, (t0, t1) = machine(cpus=2, profile=profile)
    p = t0.mmap(PAGE, RW)
    t0.write(p)
    t0.mprotect(p, PAGE, PROT_READ)
    t0.mprotect(p, PAGE, RW)                  # the PTE stays read-only (PAGE_COPY)
    t1.read(p)
    t1.busy()
    r = t0.write(p)
    assert outcomes(r) == ["wp_reuse"] and no_flush(r)
    cached = m.cpus[1].tlb.probe(p)[1]
    assert not cached & PRW                                 # stale, less permissive
    assert m.check() == []                                  # and that is safe
    r = t1.write(p)
    assert r.faults == [(0, p, W, "spurious")]
    assert (ev(r, "fault_spurious"), ev(r, "fault_from_tlb"), ev(r, "fault_write")) == (1, 1, 1)
    assert no_flush(r)
    assert r.value == 1
    assert m.cpus[1].tlb.probe(p)[1] & PRW
    r = t1.write(p)
    assert r.faults == []


def test_spurious_fault_on_an_entry_filled_by_hand():
    """The same built with the core: a read-only copy of a writable PTE put into the TLB
    with tlb.fill."""
    m, proc, (t,) = machine()
    p = t.mmap(PAGE, RW)
    t.write(p)
    e = proc.mm.pt.get(p)[0]
    cpu = m.cpus[0]
    cpu.tlb.invlpg(p, pcid=cpu.user_pcid)
    cpu.tlb.fill(p, e & ~PRW, pcid=cpu.user_pcid)
    assert m.check() == []
    r = t.write(p)
    assert outcomes(r) == ["spurious"] and no_flush(r)


# ------------------------------------------------------------------ SIGSEGV
@pytest.mark.parametrize("populated", [False, True])
def test_write_to_prot_read_is_sigsegv(populated):
    m, proc, (t,) = machine()
    p = t.mmap(PAGE, PROT_READ)
    if populated:
        t.read(p)
    r = t.write(p)
    assert r.faults == [(0, p, W, "sigsegv")]
    assert (ev(r, "sigsegv"), r.value) == (1, 0)
    assert no_flush(r)
    assert proc.mm.pt.get(p)[0] & PRW == 0


@pytest.mark.parametrize("kind", [R, W, X])
def test_access_to_prot_none_is_sigsegv(kind):
    m, proc, (t,) = machine()
    p = t.mmap(PAGE, RW)
    t.write(p)
    t.mprotect(p, PAGE, PROT_NONE)
    r = t._one(p, kind) if kind == X else (t.read(p) if kind == R else t.write(p))
    assert r.faults == [(0, p, kind, "sigsegv")]
    assert (ev(r, "sigsegv"), ev(r, "fault_not_present")) == (1, 1)


@pytest.mark.parametrize("kind", [R, W, X])
def test_access_to_unmapped_address_is_sigsegv(kind):
    m, proc, (t,) = machine()
    p = t.mmap(2 * PAGE, RW)
    t.munmap(p + PAGE, PAGE)
    r = t.access(np.array([p + PAGE], dtype=np.uint64), np.array([kind], dtype=np.uint8))
    assert r.faults == [(0, p + PAGE, kind, "sigsegv")]
    assert ev(r, "sigsegv") == 1 and r.value == 0


def test_fetch_from_non_exec_mapping_is_sigsegv():
    m, proc, (t,) = machine()
    p = t.mmap(PAGE, RW)
    r = t.fetch(p)
    # not present: the zero page is mapped (NX), the retried fetch hits NX: SIGSEGV
    assert outcomes(r) == ["zero_page", "sigsegv"]
    assert ev(r, "fault_nx") == 1


def test_fetch_through_stale_nx_entry_is_sigsegv():
    """Linux's access_error() has no exec case: a fetch through a stale NX entry on a page
    that is now executable is 'read, present' -> SIGSEGV.  patched flushes NX changes, so
    the stale entry is put back by hand with tlb.fill."""
    m, proc, (t,) = machine()
    p = t.mmap(PAGE, PROT_READ)
    t.read(p)
    old = proc.mm.pt.get(p)[0]
    assert old & NX
    r = t.mprotect(p, PAGE, PROT_READ | PROT_EXEC)
    assert ev(r, "invlpg") == 1                            # NX changed: flushed
    assert not proc.mm.pt.get(p)[0] & NX
    cpu = m.cpus[0]
    cpu.tlb.fill(p, old, pcid=cpu.user_pcid)               # the stale NX translation
    assert m.check() == []                                 # less permissive: safe
    r = t.fetch(p)
    assert r.faults == [(0, p, X, "sigsegv")]
    assert (ev(r, "sigsegv"), ev(r, "fault_nx"), ev(r, "fault_from_tlb")) == (1, 1, 1)
    assert r.value == 0 and no_flush(r)
    r = t.fetch(p)                                         # the #PF dropped the entry
    assert r.faults == [] and r.value == 1


def test_sigsegv_does_not_stop_a_batch():
    """A batch continues after a SIGSEGV'd access; each outcome is recorded with the
    index of its access; nothing is raised."""
    m, proc, (t,) = machine()
    p = t.mmap(2 * PAGE, PROT_READ)
    vas = np.array([p, p, p + PAGE, p + 10 * PAGE, p + PAGE], dtype=np.uint64)
    kinds = np.array([R, W, R, R, W], dtype=np.uint8)
    unmapped = p + 10 * PAGE
    if proc.mm.vmas.vma_lookup(unmapped) is not None:     # pragma: no cover
        pytest.skip("address happens to be mapped")
    r = t.access(vas, kinds)
    assert r.faults == [(0, p, R, "zero_page"), (1, p, W, "sigsegv"),
                        (2, p + PAGE, R, "zero_page"), (3, unmapped, R, "sigsegv"),
                        (4, p + PAGE, W, "sigsegv")]
    assert (ev(r, "sigsegv"), ev(r, "fault_zero_page"), r.value) == (3, 2, 2)
    df = m.counters()
    assert (df.loc[0, "sigsegv"], df.loc[0, "fault_zero_page"]) == (3, 2)
