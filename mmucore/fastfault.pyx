# cython: language_level=3
"""A user-access stream that resolves the common not-present faults in C.

access_stream (tlb.pyx) stops at every fault and the kernel model (pysim.mm.memory)
handles it in Python.  Most faults of a real program's captured stream are first
touches, whose outcome the model decides by rules simple enough to run here.  A
not-present read or write fault on an empty PTE slot (pte_none) of a described VMA that
is not hugetlb becomes, as _handle_pte_fault() decides it:

* anonymous private memory: for a write, a fresh anonymous frame mapped RW, dirty and
  soft-dirty (do_anonymous_page() with pte_mkdirty()); for a read, the shared zero page
  (pte_mkspecial()); a VM_HUGEPAGE VMA is left to Python wherever a THP could go (an
  empty PMD whose 2 MiB range lies inside the VMA);
* a file or shared mapping: below the file's end, a write to a private one a private
  anonymous copy (do_cow_fault()), else the page-cache page with the VMA's protection,
  dirty for a write (do_read_fault() / do_shared_fault()).

A write needs VM_WRITE and a read any access right (access_error()).  Each fault is
charged and counted exactly as handle_mm_fault does (fault_base, then the outcome's
counter, then its cost), appended to the CPU's fault list, and the access is retried in
the same loop.  Anything else (a present entry, a fault past EOF, an address no
described VMA holds, the same access faulting twice) stops the loop as access_stream
does, for the Python handler.

The caller describes the VMAs the batch may touch (sorted starts and ends, mode bits
each, the page protection and the first address past the file's end) and passes the
frame counters; it reads back where they ended.  It uses this stream only where the
entry and exit paths do nothing per fault (no PTI without PCIDs, whose CR3 writes
flush), so skipping them changes no count or cycle.
"""
from libc.stdint cimport uint8_t, uint64_t

from mmucore.pte cimport (MMU_D, MMU_PFN_MASK, MMU_RW, MMU_SOFT_DIRTY, MMU_SPECIAL,
                          c_flip_protnone_guard)
from mmucore.pagetable cimport PageTable
from mmucore.tlb cimport TLB, c_access
from mmucore.stats cimport CpuStats, stats_add, stats_spend

cdef enum:
    F_NONE = 0
    F_NOT_PRESENT = 1
    K_WRITE = 1
    MODE_READ = 1          # a read or fetch is allowed (VM_READ, VM_WRITE or VM_EXEC)
    MODE_WRITE = 2         # VM_WRITE
    MODE_THP = 4           # anonymous private with VM_HUGEPAGE: THP where one fits
    MODE_FILE = 8          # not anonymous private: a file or shmem mapping
    MODE_SHARED = 16       # VM_SHARED (a write dirties the shared page in place)
    PMD_SIZE = 1 << 21


cdef inline Py_ssize_t _find(const uint64_t[::1] starts, const uint64_t[::1] ends,
                             uint64_t va) noexcept nogil:
    """The index of the described VMA holding va, or -1 (binary search on starts)."""
    cdef Py_ssize_t lo = 0, hi = starts.shape[0], mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if starts[mid] <= va:
            lo = mid + 1
        else:
            hi = mid
    lo -= 1
    if lo >= 0 and va < ends[lo]:
        return lo
    return -1


def batch_in_range(const uint64_t[::1] va, const uint8_t[::1] kd, uint64_t top):
    """True when every address of the batch is below top (TASK_SIZE) and every kind is
    0, 1 or 2: in one pass, what pysim.mm.memory.validate_accesses() checks of a batch
    already of the right types and shapes (the caller checked those)."""
    cdef Py_ssize_t i, n = va.shape[0]
    cdef bint ok = kd.shape[0] == n
    if ok:
        with nogil:
            for i in range(n):
                if va[i] >= top or kd[i] > 2:
                    ok = False
                    break
    return ok


def access_stream_anon(PageTable pt, TLB tlb, const uint64_t[::1] va,
                       const uint8_t[::1] kd, Py_ssize_t start,
                       const uint64_t[::1] starts, const uint64_t[::1] ends,
                       const uint8_t[::1] modes, const uint64_t[::1] prots,
                       const uint64_t[::1] eofs, uint64_t next_pfn, uint64_t pfn_limit,
                       uint64_t next_file_pfn, uint64_t file_pfn_limit, uint64_t zero_pfn,
                       CpuStats stats, int b_fault, int k_anon, int k_zero, int k_file,
                       double base_cost, double anon_cost, double zero_cost,
                       double file_cost, list faults, object fault_type):
    """Run accesses va[start:] (kinds kd, values already validated) in user mode,
    resolving the not-present faults described in the module comment in place.

    Returns (stopped_at, fault_class, fault_from_tlb, next_pfn, next_file_pfn,
    resolved): where the stream stopped (len(va) when it ran to the end) with that
    fault's class, the frame counters after the frames taken, and how many faults were
    resolved here."""
    cdef Py_ssize_t n = va.shape[0], i = start, j, last = -1
    cdef int cls = F_NONE, shift, kind, mode, outcome
    cdef uint64_t v, page, entry, haddr
    cdef uint64_t* slot
    cdef uint64_t* pmd
    cdef Py_ssize_t resolved = 0
    cdef Py_ssize_t nv = starts.shape[0]
    if ends.shape[0] != nv or modes.shape[0] != nv or prots.shape[0] != nv \
            or eofs.shape[0] != nv:
        raise ValueError("access_stream_anon: the VMA description arrays differ in length")
    if kd.shape[0] != n or not 0 <= start <= n:
        raise ValueError("access_stream_anon: kinds and addresses differ, or bad start")
    while i < n:
        with nogil:
            while i < n:
                cls = c_access(tlb, pt, va[i], kd[i], True)
                if cls != F_NONE:
                    break
                i += 1
        if cls == F_NONE:
            break
        kind = kd[i]
        v = va[i]
        if cls != F_NOT_PRESENT or i == last:
            break
        j = _find(starts, ends, v)
        if j < 0:
            break
        mode = modes[j]
        if kind == K_WRITE and not (mode & MODE_WRITE) or not (mode & MODE_READ):
            break                    # access_error(): SIGSEGV, for the full handler
        page = v & ~(<uint64_t>0xFFF)
        slot = pt.leaf_slot(page, &shift)
        if slot != NULL and (shift != 12 or slot[0] != 0):
            break                    # a huge PMD or a non-empty entry: the full handler
        if mode & MODE_THP and slot == NULL:
            haddr = page & ~(<uint64_t>(PMD_SIZE - 1))
            if haddr >= starts[j] and haddr + PMD_SIZE <= ends[j]:
                break                # _thp_eligible(): a THP fault, for the full handler
        if mode & MODE_FILE:
            if page >= eofs[j]:
                break                # filemap_fault() past EOF: SIGBUS
            if kind == K_WRITE and not (mode & MODE_SHARED):
                outcome = 0          # do_cow_fault(): a private anonymous copy
            else:
                outcome = 2          # the page-cache page
        else:
            outcome = 0 if kind == K_WRITE else 1
        if outcome == 0 and next_pfn >= pfn_limit or \
                outcome == 2 and next_file_pfn >= file_pfn_limit:
            break                    # the frame allocator raises: let Python say so
        # handle_mm_fault(): the entry cost first, as the Python handler charges it
        stats_spend(&stats.st, b_fault, base_cost)
        if outcome == 0:
            entry = (next_pfn << 12) | ((prots[j] | MMU_RW | MMU_D | MMU_SOFT_DIRTY)
                                        & ~MMU_PFN_MASK)
            next_pfn += 1
        elif outcome == 1:
            entry = (zero_pfn << 12) | ((prots[j] | MMU_SPECIAL) & ~MMU_PFN_MASK)
        else:
            entry = (next_file_pfn << 12) | ((prots[j] | (MMU_D | MMU_SOFT_DIRTY
                                                          if kind == K_WRITE else 0))
                                             & ~MMU_PFN_MASK)
            next_file_pfn += 1
        entry = c_flip_protnone_guard(0, entry, MMU_PFN_MASK)
        if slot == NULL:
            pmd = pt.pmd_slot(page, True)
            slot = &pt.pte_table_for(pmd, page)[(page >> 12) & 511]
        slot[0] = entry
        if outcome == 0:
            stats_add(&stats.st, k_anon, 1)
            stats_spend(&stats.st, b_fault, anon_cost)
            faults.append(fault_type(i, v, kind, "anon"))
        elif outcome == 1:
            stats_add(&stats.st, k_zero, 1)
            stats_spend(&stats.st, b_fault, zero_cost)
            faults.append(fault_type(i, v, kind, "zero_page"))
        else:
            stats_add(&stats.st, k_file, 1)
            stats_spend(&stats.st, b_fault, file_cost)
            faults.append(fault_type(i, v, kind, "file"))
        resolved += 1
        last = i
        cls = F_NONE
    return (int(i), int(cls), bool(cls != F_NONE and tlb.last_fault_tlb), int(next_pfn),
            int(next_file_pfn), int(resolved))
