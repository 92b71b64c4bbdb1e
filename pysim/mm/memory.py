"""The x86 page-fault path (arch/x86/mm/fault.c, mm/memory.c, mm/huge_memory.c) and the
user-access loop that feeds it.

Accesses run in C until one faults; the handler here decides the outcome against the
*current* page table and VMA, exactly as Linux would: a stale, less permissive TLB
entry gives a spurious fault (no flush), a write to an exclusive anonymous page reuses
it (no flush), a write to the zero page or a shared page copies it (a real flush), and
anything access_error() rejects is a SIGSEGV outcome, never an exception.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

import mmucore
from mmucore import fastfault as _fastfault
from mmucore import stats as _stats
from mmucore.stats import (B_FAULT, B_PTE, K_GATHER_BATCH_FULL, K_GATHER_TABLE_FULL,
                           K_ZAP_HUGE_PMD, K_ZAP_PTE)

from ..constants import (PAGE_SIZE, PMD_SIZE, STACK_GUARD_GAP, TASK_SIZE, VM_EXEC,
                         VM_GROWSDOWN, VM_HUGEPAGE, VM_HUGETLB, VM_READ, VM_WRITE)
from ..arch.tlbflush import flush_tlb_range
from ..errors import ConfigError, PysimError
from ..results import Fault
from .mmu_gather import tlb_flush_mmu, tlb_table_flush
from .rmap import flush_tlb_batched_pending

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM
    from .mmu_gather import MMUGather
    from .vma import VMA

P, RW, A = mmucore.PTE_P, mmucore.PTE_RW, mmucore.PTE_A
# pte_mkdirty() (x86): _PAGE_DIRTY and _PAGE_SOFT_DIRTY together, so every entry the fault
# paths make dirty is soft-dirty too; the hardware's own D updates never set the soft bit
D = mmucore.PTE_D | mmucore.PTE_SOFT_DIRTY
OUTCOME_COUNTER = {"anon": "fault_anon", "zero_page": "fault_zero_page", "thp": "fault_thp",
                   "file": "fault_anon", "wp_reuse": "fault_wp_reuse", "cow": "fault_cow",
                   "spurious": "fault_spurious", "sigsegv": "sigsegv", "numa": "fault_spurious",
                   "sigbus": "sigbus"}
_OUTCOME_K = {k: _stats.KERNEL_COUNTER_INDEX[v] for k, v in OUTCOME_COUNTER.items()}
OUTCOME_COST = {"anon": "fault_anon", "zero_page": "fault_zero_page", "thp": "fault_thp",
                "file": "fault_anon", "wp_reuse": "fault_wp_reuse", "cow": "fault_cow_copy",
                "spurious": "fault_spurious", "sigsegv": "fault_spurious",
                "numa": "fault_spurious", "sigbus": "fault_spurious"}
MAX_RETRIES = 4


_U64, _U8 = np.dtype(np.uint64), np.dtype(np.uint8)


def validate_accesses(vas, kinds) -> tuple[np.ndarray, np.ndarray]:
    """Check a user access batch before it reaches C (a ConfigError, which is a
    ValueError, naming the argument: vas or kinds)."""
    if type(vas) is np.ndarray and type(kinds) is np.ndarray and vas.dtype == _U64 \
            and kinds.dtype == _U8 and vas.ndim == 1 and vas.flags.c_contiguous \
            and kinds.flags.c_contiguous \
            and _fastfault.batch_in_range(vas, kinds, TASK_SIZE):
        return vas, kinds               # the usual batch: its values checked in one pass
    try:
        vas = np.asarray(vas)
        kinds = np.asarray(kinds)
    except (TypeError, ValueError) as e:            # ragged or unconvertible input
        raise ConfigError(f"accesses: vas and kinds must be 1-D integer arrays ({e})",
                          field="vas") from None
    if vas.ndim != 1 or kinds.ndim != 1:
        raise ConfigError("accesses: vas (addresses) and kinds must be 1-D arrays",
                          field="vas" if vas.ndim != 1 else "kinds")
    if vas.shape != kinds.shape:
        raise ConfigError(f"accesses: {vas.size} addresses (vas) but {kinds.size} "
                          f"kinds", field="kinds")
    if vas.dtype != np.uint64:
        if vas.size and (not np.issubdtype(vas.dtype, np.integer) or vas.min() < 0):
            raise ConfigError(f"accesses: vas (addresses) must be non-negative integers "
                              f"(dtype {vas.dtype})", field="vas")
        vas = vas.astype(np.uint64)
    if kinds.dtype != np.uint8:
        if kinds.size and (not np.issubdtype(kinds.dtype, np.integer) or kinds.min() < 0):
            raise ConfigError(f"accesses: kinds must be 0, 1 or 2 (dtype {kinds.dtype})",
                              field="kinds")
        kinds = kinds.astype(np.uint8)
    if kinds.size and kinds.max() > 2:
        raise ConfigError("accesses: kinds must be 0 (read), 1 (write) or 2 (fetch)",
                          field="kinds")
    if vas.size and vas.max() >= TASK_SIZE:
        raise ConfigError(f"accesses: address 0x{int(vas.max()):x} in vas is beyond user "
                          f"space", field="vas")
    return np.ascontiguousarray(vas), np.ascontiguousarray(kinds)


def run_accesses(mm: "MM", cpu: "CPU", vas, kinds) -> int:
    """Run a batch of user accesses on cpu; returns how many completed (SIGSEGV'd accesses
    are skipped, as if the signal handler moved on)."""
    vas, kinds = validate_accesses(vas, kinds)
    tlb = cpu.tlb
    arch = cpu.arch
    kpcid, upcid = tlb.pcid, arch.user_pcid(cpu)
    i, n, done = 0, vas.size, 0
    last, retries = None, 0
    arch.return_to_user(cpu)     # a user-PCID flush deferred by an earlier IPI happens now
    tlb.pcid = upcid
    fast = _fast_vmas(mm, cpu, vas)
    try:
        while i < n:
            # validate_accesses() checked the values once; retries do not rescan them
            if fast is not None:
                frames = mm.frames
                cost = cpu.cfg.cost
                stop, cls, from_tlb, frames.next_pfn, frames.next_file_pfn, _ = \
                    _fastfault.access_stream_anon(
                        mm.pt, tlb, vas, kinds, i, *fast, frames.next_pfn,
                        mmucore.FILE_PFN_BASE, frames.next_file_pfn, 1 << 40,
                        frames.zero_pfn, cpu.stats, B_FAULT, _OUTCOME_K["anon"],
                        _OUTCOME_K["zero_page"], _OUTCOME_K["file"], _fault_base(cpu),
                        cost.fault_anon, cost.fault_zero_page,
                        getattr(cost, OUTCOME_COST["file"]), cpu.faults, Fault)
                done += stop - i
                if cls == mmucore.FAULT_NONE:
                    break
                i = stop
                fva, fkind = int(vas[i]), int(kinds[i])
            else:
                r = mmucore.access_stream(mm.pt, tlb, vas, kinds, start=i, user=True,
                                          checked=True)
                done += r.stopped_at - i
                if not r.faults:
                    break
                i = r.stopped_at
                fva, fkind, cls, from_tlb = r.fault_va, r.fault_kind, r.fault_class, \
                    r.fault_from_tlb
            tlb.pcid = kpcid
            arch.kernel_entry(cpu)
            outcome = handle_mm_fault(mm, cpu, fva, fkind, cls, from_tlb)
            arch.return_to_user(cpu)
            tlb.pcid = upcid
            cpu.faults.append(Fault(i, fva, fkind, outcome))
            if outcome == "sigsegv" or outcome == "sigbus":
                i += 1
                last, retries = None, 0
                continue
            retries = retries + 1 if last == i else 1
            last = i
            if retries > MAX_RETRIES:
                raise PysimError(f"access {i} (0x{fva:x}) keeps faulting after "
                                 f"{outcome}: the model's fault handling is inconsistent")
    finally:
        tlb.pcid = kpcid
    return done


def _fault_base(cpu: "CPU") -> float:
    """handle_mm_fault()'s entry cost: the fault itself, and PTI's CR3 switch."""
    cost = cpu.cfg.cost
    return cost.fault_base + (cost.pti_cr3_switch if cpu.cfg.profile.pti else 0.0)


_NO_FAST = VM_HUGETLB | VM_HUGEPAGE
# run_accesses resolves first-touch anonymous faults in C (mmucore.fastfault) when True;
# False sends every fault through handle_mm_fault (the same counts and cycles, slower)
FAST_FAULTS = True


def _fast_vmas(mm: "MM", cpu: "CPU", vas: np.ndarray):
    """The VMAs the accesses vas may touch, described for mmucore.fastfault: sorted
    starts and ends, mode bits (1 reads allowed, 2 writes allowed, 4 anonymous private
    VM_HUGEPAGE, 8 a file or shmem mapping, 16 shared; 0 for a VMA whose faults are all
    left to Python), the page protection and the file's end (file_eof()).  None where
    that loop must not run: an entry path that does work per fault (PTI without PCIDs
    flushes on each CR3 write), guard markers in the mm, a non-x86 architecture.  Only
    handle_mm_fault changes VMAs inside a batch (expand_stack grows a stack down), which
    can leave this description short, never wrong: an address it does not hold goes to
    Python."""
    if not FAST_FAULTS or cpu.arch.name != "x86" or (cpu.arch.pti and not cpu.cfg.pcid) \
            or mm.guard_pages:
        return None
    vl = mm.vmas
    if not len(vl):
        return None
    idx = vl.indices_at(vas)          # each address's VMA, or the one below it
    k = len(idx)
    starts = np.empty(k, dtype=np.uint64)
    ends = np.empty(k, dtype=np.uint64)
    modes = np.zeros(k, dtype=np.uint8)
    prots = np.zeros(k, dtype=np.uint64)
    eofs = np.zeros(k, dtype=np.uint64)
    for o, j in enumerate(idx):
        v = vl.vma_at(j)
        starts[o], ends[o] = v.start, v.end
        fl = v.flags
        if fl & VM_HUGETLB or not fl & (VM_READ | VM_WRITE | VM_EXEC):
            continue
        mode = 1 | (2 if fl & VM_WRITE else 0)
        if v.anon and not v.shared:
            if fl & VM_HUGEPAGE:
                mode |= 4
        else:
            mode |= 8 | (16 if v.shared else 0)
            eofs[o] = file_eof(v)
        modes[o] = mode
        prots[o] = v.page_prot
    return starts, ends, modes, prots, eofs


def access_error(vma: "VMA", kind: int, present: bool) -> bool:
    """access_error(): a write needs VM_WRITE; a read or fetch of a *present* page is an
    error (x86 has no exec check here, so a stale-NX fetch is a SIGSEGV); a not-present
    read needs an accessible VMA."""
    if kind == mmucore.WRITE:
        return not vma.flags & VM_WRITE
    if present:
        return True
    return not vma.flags & (VM_READ | VM_WRITE | VM_EXEC)


def handle_mm_fault(mm: "MM", cpu: "CPU", va: int, kind: int, fault_class: int,
                    from_tlb: bool) -> str:
    """do_user_addr_fault() -> handle_mm_fault(); returns the outcome name."""
    cost = cpu.cfg.cost
    cpu.stats.charge(B_FAULT, cost.fault_base
                     + (cost.pti_cr3_switch if cpu.cfg.profile.pti else 0.0))
    vma = mm.vmas.vma_lookup(va)
    if vma is None:
        vma = expand_stack(mm, va)
    present = fault_class != mmucore.FAULT_NOT_PRESENT
    if vma is None or fault_class == mmucore.FAULT_USER or access_error(vma, kind, present):
        outcome = "sigsegv"
    elif mm.guard_pages and (va & ~(PAGE_SIZE - 1)) in mm.guard_pages:
        outcome = "sigsegv"          # a PTE_MARKER_GUARD: VM_FAULT_SIGSEGV
    else:
        outcome = _handle_pte_fault(mm, cpu, vma, va & ~(PAGE_SIZE - 1), kind)
    cpu.stats.count(_OUTCOME_K[outcome], 1)
    cpu.stats.charge(B_FAULT, getattr(cost, OUTCOME_COST[outcome]))
    return outcome


def expand_stack(mm: "MM", va: int) -> Optional["VMA"]:
    """lock_mm_and_find_vma() -> expand_downwards(): a fault below a VM_GROWSDOWN VMA
    grows it down to the faulting page, unless that is below mmap_min_addr, comes
    within stack_guard_gap of an accessible VMA below that is not a stack, or makes
    the stack larger than RLIMIT_STACK (acct_stack_growth()).  Returns the grown VMA,
    or None (the fault is a SIGSEGV)."""
    vma = mm.vmas.find_vma(va)
    if vma is None or not vma.flags & VM_GROWSDOWN:
        return None
    address = va & ~(PAGE_SIZE - 1)
    if address < mm.vmas.mmap_min_addr:
        return None
    prev = mm.vmas.find_vma_prev(address)[1]
    if prev is not None and prev is not vma:
        if prev.end > address:
            return None
        if not prev.flags & VM_GROWSDOWN and prev.flags & (VM_READ | VM_WRITE | VM_EXEC) \
                and address - prev.end < STACK_GUARD_GAP:
            return None
    grow = (vma.start - address) >> 12
    if grow > vma.pgoff or vma.end - address > mm.rlimit_stack:
        return None
    vl = mm.vmas
    vl._set_bounds(vl._index(vma), address, vma.end, vma.pgoff - grow)
    return vma


def _thp_eligible(mm: "MM", vma: "VMA", va: int) -> bool:
    haddr = va & ~(PMD_SIZE - 1)
    return (bool(vma.flags & VM_HUGEPAGE) and vma.anon and not vma.shared
            and haddr >= vma.start and haddr + PMD_SIZE <= vma.end
            and mm.pt.upper_entries(va)[2] == 0)


def _handle_pte_fault(mm: "MM", cpu: "CPU", vma: "VMA", va: int, kind: int) -> str:
    frames = mm.frames
    pt = mm.pt
    entry, shift = pt.get(va)
    write = kind == mmucore.WRITE
    if shift == 21:
        haddr = va & ~(PMD_SIZE - 1)
        if write and not entry & RW:
            pfn = mmucore.pmd_pfn(entry)
            if pfn in frames.shared and frames.unshare(pfn) > 1:
                # a hugetlb page fork left shared (hugetlb_wp): copy it, flush the old
                new = mmucore.mk_pte(frames.alloc(512, align=512), vma.page_prot | RW | D | A)
                pt.set_pmd(haddr, 0)
                cpu.arch.flush_tlb_mm_range(cpu, mm, haddr, haddr + PMD_SIZE, 21, False)
                pt.set_pmd(haddr, new)
                return "cow"
            pt.set_pmd(haddr, entry | RW | D | A)        # do_huge_pmd_wp_page: reuse
            return "wp_reuse"
        pt.set_pmd(haddr, entry | A | (D if write else 0))
        return "spurious"
    if entry & P:
        if not write:
            pt.set_pte(va, entry | A)
            return "spurious"
        if entry & RW:
            # the PTE already allows it: a stale TLB entry faulted; the #PF dropped it
            pt.set_pte(va, entry | A | D)
            return "spurious"
        return do_wp_page(mm, cpu, vma, va, entry)
    if vma.flags & VM_HUGETLB:
        return hugetlb_fault(mm, vma, va, write)
    if vma.file is not None and vma.file.size is not None \
            and vma.pgoff_at(va) >= vma.file.pages():
        return "sigbus"              # filemap_fault(): the page is wholly past EOF
    if mmucore.pte_present(entry):
        # PROT_NONE entry in an accessible VMA (a NUMA hinting fault): restore it
        pt.set_pte(va, mmucore.pte_modify(entry, vma.page_prot))
        return "numa"
    if _thp_eligible(mm, vma, va):
        pfn = frames.alloc(512, align=512)
        prot = vma.page_prot | D | (RW if vma.flags & VM_WRITE else 0)
        pt.set_pmd(va & ~(PMD_SIZE - 1), mmucore.mk_pte(pfn, prot))
        return "thp"
    if vma.anon and not vma.shared:
        if not write:
            pt.set_pte(va, mmucore.mk_pte(frames.zero_pfn, vma.page_prot | mmucore.PTE_SPECIAL))
            return "zero_page"
        pt.set_pte(va, mmucore.mk_pte(frames.alloc(1), vma.page_prot | RW | D))
        return "anon"
    # shared anonymous (shmem) or file-backed
    if write and not vma.shared:
        # do_cow_fault: a private anonymous copy of the file page
        pt.set_pte(va, mmucore.mk_pte(frames.alloc(1), vma.page_prot | RW | D))
        return "anon"
    # the page-cache page itself, with vm_page_prot
    pfn = frames.alloc_file(1)
    pt.set_pte(va, mmucore.mk_pte(pfn, vma.page_prot | (D if write else 0)))
    return "file"


def hugetlb_fault(mm: "MM", vma: "VMA", va: int, write: bool) -> str:
    """hugetlb_no_page(): a hugetlb VMA always maps a whole 2 MiB page (a private one an
    anonymous copy, a shared one the hugetlbfs page), with no zero page."""
    frames = mm.frames
    pfn = frames.alloc(512, align=512) if not vma.shared else \
        -(-frames.alloc_file(1024) // 512) * 512
    prot = vma.page_prot | A | (D | (RW if vma.flags & VM_WRITE else 0) if write else 0)
    mm.pt.set_pmd(va & ~(PMD_SIZE - 1), mmucore.mk_pte(pfn, prot))
    return "thp"


def do_wp_page(mm: "MM", cpu: "CPU", vma: "VMA", va: int, entry: int) -> str:
    """Write to a present read-only PTE in a writable VMA: reuse an exclusive anonymous
    page (no flush), else copy it and flush the old translation everywhere."""
    if vma.shared:
        mm.pt.set_pte(va, entry | RW | D | A)            # shared: writable in place
        return "wp_reuse"
    pfn = mmucore.pte_pfn(entry)
    if pfn in mm.frames.shared and mm.frames.unshare(pfn) > 1:
        return wp_page_copy(mm, cpu, vma, va)        # still mapped by another mm: copy
    if mm.frames.is_anon(pfn):
        # an exclusive anonymous page (also the copies in a private file mapping):
        # wp_page_reuse, no flush
        mm.pt.set_pte(va, entry | RW | D | A)
        return "wp_reuse"
    return wp_page_copy(mm, cpu, vma, va)            # zero page or page cache: copy


def wp_page_copy(mm: "MM", cpu: "CPU", vma: "VMA", va: int) -> str:
    """Copy-on-write: ptep_clear_flush() (a real shootdown), then the new private page."""
    new = mmucore.mk_pte(mm.frames.alloc(1), vma.page_prot | RW | D | A)
    mm.pt.set_pte(va, 0)
    cpu.arch.flush_tlb_mm_range(cpu, mm, va, va + PAGE_SIZE, 12, False)
    mm.pt.set_pte(va, new)
    return "cow"


_ZAP_DONE, _ZAP_BATCH_FULL = mmucore.ZAP_DONE, mmucore.ZAP_BATCH_FULL


def unmap_page_range(tlb: "MMUGather", start: int, end: int) -> None:
    """unmap_page_range() over [start, end) of one VMA with the gather's batch limits:
    mmucore zaps until the page batch fills (or a PTE table held a dirty page-cache
    page), then tlb_flush_mmu() flushes the range gathered so far, frees the batch and
    the zap resumes there; a huge PMD the range cuts is split and flushed first.  Each
    entry is charged: per_page_zap per present 4K entry, zap_huge_pmd per huge PMD (one
    entry, not 512), per_pte_none per empty slot scanned in an existing PTE table, and
    per_pmd_table per pass over a PTE table (pte_offset_map_lock ... unlock; a pass the
    batch cut short is taken again, as the kernel's `goto retry` does)."""
    cpu, mm = tlb.cpu, tlb.mm
    pt, g, stats = mm.pt, tlb.state, cpu.stats
    if mm.tlb_flush_batched:
        # zap_pte_range(): reclaim may have cleared PTEs whose flush is still batched
        # (pysim.mm.rmap); checked once per call here, per PTE table in the kernel
        flush_tlb_batched_pending(cpu, mm)
    addr, n4k, nhuge, nnone, ntables, splits, stop = pt.unmap_page_range(
        start, (end - start) // PAGE_SIZE, g)
    while True:
        for a in splits:
            flush_tlb_range(cpu, mm, a, a + PMD_SIZE)   # __split_huge_pmd's flush
        if stop == _ZAP_DONE:                           # (one pass, most of the time)
            break
        if stop == _ZAP_BATCH_FULL:
            stats.count(K_GATHER_BATCH_FULL, 1)
        tlb_flush_mmu(tlb)
        addr, a4k, ahuge, anone, atables, splits, stop = pt.unmap_page_range(
            addr, (end - addr) // PAGE_SIZE, g)
        n4k, nhuge, nnone, ntables = n4k + a4k, nhuge + ahuge, nnone + anone, ntables + atables
    cost = cpu.cfg.cost
    stats.count(K_ZAP_PTE, n4k)
    stats.count(K_ZAP_HUGE_PMD, nhuge)
    stats.charge(B_PTE, n4k * cost.per_page_zap + nhuge * cost.zap_huge_pmd
                 + nnone * cost.per_pte_none + ntables * cost.per_pmd_table)


def free_pgtables(tlb: "MMUGather", floor: int, ceiling: int) -> None:
    """free_pgtables() / free_pgd_range(): free the page tables that only served
    [floor, ceiling), each recorded in the gather (freed_tables, PMD stride) and queued
    in its table batch; when that batch fills, tlb_table_flush() flushes what was
    gathered so far and the freeing goes on."""
    while tlb.mm.pt.free_pgd_range(floor, ceiling, tlb.state):
        tlb.cpu.stats.count(K_GATHER_TABLE_FULL, 1)
        tlb_table_flush(tlb)


def populate(mm: "MM", cpu: "CPU", start: int, end: int, write: bool) -> None:
    """GUP-style fault-in of [start, end): THPs where eligible, then the empty 4K entries
    in C, then (for writes) the read-only present entries through do_wp_page."""
    frames = mm.frames
    cost = cpu.cfg.cost
    pt = mm.pt
    for vma in mm.vmas.vmas_in(start, end):
        if not vma.flags & (VM_READ | VM_WRITE | VM_EXEC):
            continue                 # PROT_NONE: GUP faults nothing in
        s, e = max(vma.start, start), min(vma.end, end)
        e = min(e, file_eof(vma))
        if vma.flags & VM_HUGETLB:
            for h in range(s & ~(PMD_SIZE - 1), e, PMD_SIZE):
                if pt.upper_entries(h)[2] == 0:
                    hugetlb_fault(mm, vma, h, write)
                    cpu.stats.count(_OUTCOME_K["thp"], 1)
                    cpu.stats.charge(B_FAULT, cost.fault_base + cost.fault_thp)
            continue
        if s >= e:
            continue
        counts = {"thp": 0, "anon": 0, "zero_page": 0, "file": 0}
        if vma.flags & VM_HUGEPAGE and vma.anon and not vma.shared:
            h = -(-s // PMD_SIZE) * PMD_SIZE
            prot = vma.page_prot | D | (RW if vma.flags & VM_WRITE else 0)
            while h + PMD_SIZE <= e:
                if pt.upper_entries(h)[2] == 0:
                    pt.set_pmd(h, mmucore.mk_pte(frames.alloc(512, align=512), prot))
                    counts["thp"] += 1
                h += PMD_SIZE
        npages = (e - s) // PAGE_SIZE
        anon_private = vma.anon and not vma.shared
        if anon_private and not write:
            n = pt.populate(s, npages, vma.page_prot | mmucore.PTE_SPECIAL, frames.zero_pfn,
                            same_pfn=True)
            counts["zero_page"] += n
        else:
            prot = vma.page_prot | (RW | D if write and vma.flags & VM_WRITE else 0)
            # anonymous frames for private anon memory and for COW copies of file pages;
            # page-cache frames for shared memory and private file pages only read
            anon = anon_private or (write and not vma.shared)
            pfn = frames.next_pfn if anon else frames.next_file_pfn
            n = pt.populate(s, npages, prot, pfn)
            if anon:
                frames.alloc(n)
            else:
                frames.alloc_file(n)
            counts["anon" if anon_private or write else "file"] += n
        for outcome, k in counts.items():
            if k:
                cpu.stats.count(_OUTCOME_K[outcome], k)
                cpu.stats.charge(B_FAULT, k * (cost.fault_base
                                               + getattr(cost, OUTCOME_COST[outcome])))
        if write and vma.flags & VM_WRITE and n + 512 * counts["thp"] < npages:
            _upgrade_readonly(mm, cpu, vma, s, e)      # some entries were already there


def file_eof(vma: "VMA") -> int:
    """The first address of vma past its file's last page (vma.end if the file is
    unbounded or the VMA is anonymous): accesses there are SIGBUS."""
    if vma.file is None or vma.file.size is None:
        return vma.end
    return min(vma.end, max(vma.start, vma.start + (vma.file.pages() - vma.pgoff) * PAGE_SIZE))


def _upgrade_readonly(mm: "MM", cpu: "CPU", vma: "VMA", s: int, e: int,
                      chunk: int = 1 << 18) -> None:
    """Write-fault every present read-only 4K entry of [s, e) (FOLL_WRITE semantics)."""
    for base in range(s, e, chunk * PAGE_SIZE):
        n = min(chunk, (e - base) // PAGE_SIZE)
        entries = mm.pt.read_range(base, n)
        ro = np.nonzero((entries & np.uint64(P)) != 0)[0]
        ro = ro[(entries[ro] & np.uint64(RW | mmucore.PTE_PSE)) == 0]
        for i in ro:
            outcome = handle_mm_fault(mm, cpu, base + int(i) * PAGE_SIZE, mmucore.WRITE,
                                      mmucore.FAULT_WRITE, False)
            cpu.faults.append(Fault(-1, base + int(i) * PAGE_SIZE, mmucore.WRITE, outcome))
