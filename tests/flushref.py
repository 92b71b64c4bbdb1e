"""A small plain-Python reference of the TLB-flush decisions of one mprotect() on x86.

Written from /work/shared/reference/kernel-semantics.md (sections 2.4-2.7, 3.2-3.7, 4.2,
7.1-7.4 and the checklist in 12) without importing pysim or mmucore: bit positions and
rules are restated here, so tests/test_kernel_random.py can compare what pysim does with
what these few lines predict.

Inputs (all plain data):
* the profile's switches, read by name from any object with the attributes of
  pysim.Profile (use_mmu_gather, skip_unneeded_flush, huge_pmd_ad_no_flush,
  merge_vmas_in_gather, tlb_single_page_flush_ceiling, flush_tlb_range_freed_tables);
* the requested prot and the VMAs the range covers, as Portion records: the part of one
  VMA inside [start, end) with the VMA's old R/W/X bits and the leaf entry of every 4K
  page before and after the call (``PageTable.read_range``: a huge PMD repeats);
* the CPUs: which ones have the mm loaded and whether they are lazy.

Output: the flush_tlb_mm_range requests in order and, per CPU, what each does with them.

Rules restated:
* mprotect_fixup skips a VMA whose flags do not change (same R/W/X): no walk, no flush.
* A huge PMD the range covers entirely is changed as one entry (change_huge_pmd); one the
  range only cuts is split first, and the split flushes at once (pmdp_invalidate in
  __split_huge_pmd: flush_tlb_range over its 2M at 4K stride).
* 5.17 (no gather): each changed huge PMD flushes at once (pmdp_invalidate, 2M at stride
  12); the VMA portion flushes [start, end) at stride 12 if it held any present entry
  (P or PROT_NONE), changed or not.
* gather (patch 1): every present entry is recorded (patch 1 alone) or only those
  pte_needs_flush / huge_pmd_needs_flush flag (patch 2); without patch 3 every huge PMD
  change still flushes at once; the gather flushes once at the end over [lowest,
  highest) (x86 merges VMAs), stride 12 if a 4K entry was recorded else 21; without VMA
  merging it flushes at the end of every VMA portion instead.
* flush_tlb_mm_range: (end - start) >> stride > ceiling -> full flush; targets are the
  initiator and every other CPU with the mm loaded that is not lazy (lazy ones too when
  tables were freed); every target is current before the request (flushes complete
  synchronously), so each does the partial flush (one INVLPG per stride step) or the
  full flush the request asks for.  NR_TLB_REMOTE_FLUSH counts a request whenever any
  other CPU is in mm_cpumask (native_flush_tlb_multi counts before it filters lazy CPUs).
* 6.14 lazy mm_cpumask (profile.lazy_cpumask): a CPU that switched away keeps its bit
  ("stale": runs another mm or none; "stale_lazy": lazy in another mm).  Such a CPU
  is sent the IPI only when the request trims the mask (profile.trim_cpumask: the first
  request with another CPU in the mask once jiffies > next_trim, which then moves to
  jiffies + hz) or when tables were freed; a lazy CPU never otherwise.  Reached, it
  counts a received flush and TLB_REMOTE_WRONG_CPU, and leaves the mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

P, RW, US, PWT, PCD, A, D, PSE, G = (1 << b for b in range(9))
PROTNONE = G                        # bit 8 when P is clear
SOFTW1, SOFTW2, SOFTW3 = 1 << 9, 1 << 10, 1 << 11
PAT_LARGE = 1 << 12
SOFTW4, SOFTW5 = 1 << 57, 1 << 58
PKEY = 0xF << 59
NX = 1 << 63
PTE_PFN_MASK = ((1 << 52) - 1) & ~((1 << 12) - 1)
PMD_PFN_MASK = ((1 << 52) - 1) & ~((1 << 21) - 1)
IGNORED = SOFTW1 | SOFTW2 | SOFTW3 | SOFTW4 | SOFTW5
FLUSH_ON_CLEAR = P | A | D
FLUSH_ON_CHANGE = RW | US | PWT | PCD | PSE | G | PAT_LARGE | PKEY | NX

PAGE = 4096
HPAGE = 2 << 20
VM_READ, VM_WRITE, VM_EXEC = 1, 2, 4
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4


# ------------------------------------------------------------------ entry rules
def present_like(e: int) -> bool:
    """pte_present(): P, or PROT_NONE (P clear, bit 8 set)."""
    return bool(e & P) or bool(e & PROTNONE)


def is_huge(e: int) -> bool:
    """A huge PMD as read_range repeats it (PSE set; 4K PTEs never carry PAT here)."""
    return present_like(e) and bool(e & PSE)


def _pfn(e: int, mask: int) -> int:
    if not e & P and e & PROTNONE:          # L1TF: PROT_NONE entries store ~PFN
        e = ~e
    return (e & mask) >> 12


def _flags_need_flush(old: int, new: int, ignore_access: bool) -> bool:
    diff = (old ^ new) & ~IGNORED
    if ignore_access:
        diff &= ~A
    if diff & old & FLUSH_ON_CLEAR:
        return True
    return bool(diff & FLUSH_ON_CHANGE)


def pte_needs_flush(old: int, new: int) -> bool:
    """x86 pte_needs_flush (kernel-semantics 4.2): A changes ignored."""
    if not old & P:
        return False
    if _pfn(old, PTE_PFN_MASK) != _pfn(new, PTE_PFN_MASK):
        return True
    return _flags_need_flush(old & ~PTE_PFN_MASK, new & ~PTE_PFN_MASK, True)


def huge_pmd_needs_flush(old: int, new: int) -> bool:
    """x86 huge_pmd_needs_flush: as pte_needs_flush, but clearing A flushes."""
    if not old & P:
        return False
    if _pfn(old, PMD_PFN_MASK) != _pfn(new, PMD_PFN_MASK):
        return True
    return _flags_need_flush(old & ~PMD_PFN_MASK, new & ~PMD_PFN_MASK, False)


def split_pte(pmd: int, i: int) -> int:
    """The i-th PTE __split_huge_pmd makes of a huge PMD (frame + i, PSE dropped)."""
    flags = pmd & ~PMD_PFN_MASK & ~PSE & ~PAT_LARGE
    if pmd & PAT_LARGE:
        flags |= PSE                         # PAT sits at bit 7 in a 4K PTE
    return ((_pfn(pmd, PMD_PFN_MASK) + i) << 12) | flags


def vm_bits(prot: int) -> int:
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


# ------------------------------------------------------------------ inputs and outputs
@dataclass
class Portion:
    """The part [start, end) of one VMA that mprotect covers."""

    start: int
    end: int
    vm_rwx: int                  # the VMA's VM_READ|VM_WRITE|VM_EXEC before the call
    before: Sequence[int]        # leaf entry per 4K page before (huge PMDs repeat)
    after: Sequence[int]         # and after


@dataclass
class Request:
    """One flush_tlb_mm_range(start, end, stride, freed_tables) call."""

    start: int
    end: int
    stride: int
    freed_tables: bool = False
    why: str = ""

    def nr(self) -> int:
        return (self.end - self.start) >> self.stride


@dataclass
class Expected:
    """What the requests make every CPU do (counter names as pysim reports them)."""

    requests: List[Request] = field(default_factory=list)
    per_cpu: Dict[int, Dict[str, int]] = field(default_factory=dict)
    next_trim: int = 0           # the mm's next_trim_cpumask after the requests

    def get(self, cpu: int, name: str) -> int:
        return self.per_cpu.get(cpu, {}).get(name, 0)


class _Gather:
    def __init__(self):
        self.start, self.end = None, None
        self.ptes = self.pmds = False

    def add(self, addr: int, size: int, pmd: bool) -> None:
        self.start = addr if self.start is None else min(self.start, addr)
        self.end = addr + size if self.end is None else max(self.end, addr + size)
        if pmd:
            self.pmds = True
        else:
            self.ptes = True

    def take(self, why: str):
        if self.start is None:
            return None
        r = Request(self.start, self.end, 12 if self.ptes else 21, False, why)
        self.__init__()
        return r


# ------------------------------------------------------------------ mprotect
def mprotect_requests(profile, prot: int, portions: Sequence[Portion]) -> List[Request]:
    """The flush requests of one mprotect over the given VMA portions, in order."""
    new_rwx = vm_bits(prot)
    gathering = profile.use_mmu_gather
    record_all = gathering and not profile.skip_unneeded_flush
    immediate_thp = not gathering or not profile.huge_pmd_ad_no_flush
    ftr_freed = bool(profile.flush_tlb_range_freed_tables)
    reqs: List[Request] = []
    gather = _Gather()
    for por in portions:
        if por.vm_rwx == new_rwx:
            continue                                   # mprotect_fixup: nothing to do
        pages = 0
        deferred: List[Request] = []                   # flushed after the walk
        npages = (por.end - por.start) // PAGE
        i = 0
        while i < npages:
            addr = por.start + i * PAGE
            old = int(por.before[i])
            chunk_end = min((addr // HPAGE + 1) * HPAGE, por.end)
            n = (chunk_end - addr) // PAGE
            if is_huge(old):
                haddr = addr - addr % HPAGE
                if addr == haddr and chunk_end == haddr + HPAGE:
                    pages += 512
                    new = int(por.after[i])
                    if immediate_thp:
                        deferred.append(Request(haddr, haddr + HPAGE, 12, ftr_freed, "thp"))
                    if record_all or (gathering and huge_pmd_needs_flush(old, new)):
                        gather.add(haddr, HPAGE, pmd=True)
                else:
                    deferred.append(Request(haddr, haddr + HPAGE, 12, ftr_freed, "split"))
                    for k in range(n):
                        o = split_pte(old, (addr - haddr) // PAGE + k)
                        pages += 1
                        if record_all or (gathering
                                          and pte_needs_flush(o, int(por.after[i + k]))):
                            gather.add(addr + k * PAGE, PAGE, pmd=False)
                i += n
                continue
            for k in range(n):
                o = int(por.before[i + k])
                if not present_like(o):
                    continue
                pages += 1
                if record_all or (gathering and pte_needs_flush(o, int(por.after[i + k]))):
                    gather.add(addr + k * PAGE, PAGE, pmd=False)
            i += n
        # splits first (met during the walk), then the THP invalidations, in address order
        reqs += [r for r in deferred if r.why == "split"]
        reqs += [r for r in deferred if r.why == "thp"]
        if not gathering:
            if pages:
                reqs.append(Request(por.start, por.end, 12, ftr_freed, "vma"))
        elif not profile.merge_vmas_in_gather:
            r = gather.take("tlb_end_vma")
            if r is not None:
                reqs.append(r)
    if gathering:
        r = gather.take("tlb_finish_mmu")
        if r is not None:
            reqs.append(r)
    return reqs


# ------------------------------------------------------------------ shootdowns
def dispatch(profile, requests: Sequence[Request], initiator: int,
             cpus: Dict[int, str], jiffies: int = 0, next_trim: int = 0) -> Expected:
    """What each CPU does for the requests.  cpus maps a CPU id to "running" (mm loaded,
    not lazy), "lazy" (mm loaded, lazy), "stale" / "stale_lazy" (in mm_cpumask, mm not
    loaded; 6.14+ only) or "other"; the initiator must be running.  jiffies and the mm's
    next_trim_cpumask drive the trim (Expected.next_trim is the value after).  Counter
    names: flush_tlb_mm_range, nr_tlb_local_flush_one/_all, remote_flush_one/_all,
    nr_tlb_remote_flush, nr_tlb_remote_flush_received, ipi_sent, tlb_remote_wrong_cpu,
    invlpg, flush_pcid (the TLB's INVLPGs and CR3-reload flushes, without PTI)."""
    assert cpus[initiator] == "running"
    ceiling = profile.tlb_single_page_flush_ceiling
    exp = Expected(list(requests), {c: {} for c in cpus})
    exp.next_trim = next_trim
    state = dict(cpus)
    in_mask = ("running", "lazy", "stale", "stale_lazy")

    def bump(cpu, name, n=1):
        if n:
            exp.per_cpu[cpu][name] = exp.per_cpu[cpu].get(name, 0) + n

    for r in requests:
        full = r.nr() > ceiling
        bump(initiator, "flush_tlb_mm_range")
        others = [c for c, s in state.items() if c != initiator and s in in_mask]
        trim = False
        if getattr(profile, "trim_cpumask", False) and others:
            d = (exp.next_trim - jiffies) & ((1 << 64) - 1)
            if d >= 1 << 63:                    # time_after(jiffies, next_trim)
                exp.next_trim = jiffies + profile.hz
                trim = True
        targets = [c for c in others if state[c] == "running" or r.freed_tables
                   or (trim and state[c] == "stale")]
        if others:
            bump(initiator, "nr_tlb_remote_flush")
        if targets:
            bump(initiator, "ipi_sent", len(targets))
        for c in [initiator] + targets:
            local = c == initiator
            if not local:
                bump(c, "nr_tlb_remote_flush_received")
            if state[c] in ("stale", "stale_lazy"):
                bump(c, "tlb_remote_wrong_cpu")    # not running the mm: leaves the mask
                state[c] = "other"
                continue
            if state[c] == "lazy":
                # switches to init_mm, no flush; 6.14+ keeps the bit
                state[c] = "stale" if getattr(profile, "lazy_cpumask", False) else "other"
                continue
            if full:
                bump(c, "nr_tlb_local_flush_all" if local else "remote_flush_all")
                bump(c, "flush_pcid")
            else:
                bump(c, "nr_tlb_local_flush_one" if local else "remote_flush_one", r.nr())
                bump(c, "invlpg", r.nr())
    return exp
