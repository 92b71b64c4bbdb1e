"""x86-64 4-level page table: lazily allocated tables in pooled numpy chunks, and the range
loops the kernel paths run in C (populate, read, change_protection, zap, A/D clearing).

Non-leaf entries carry the kernel's _PAGE_TABLE flags and, in their PFN field, the id of
the next table in the pool (id 0 is never used, so a zero entry is always empty).  Leaf
entries are real PTEs/PMDs.  Memory: one 4 KiB table per 512 mapped 4K pages, i.e. 8 bytes
per page, plus the upper levels and an 8-byte pointer per table.
"""
import numpy as np
cimport numpy as cnp
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.string cimport memcpy, memset
from libc.stdint cimport uint64_t, uint8_t

from mmucore.pte cimport *
from mmucore.pte_arm64 cimport c_arm64_pte_needs_flush, c_arm64_huge_pmd_needs_flush
from mmucore.gather cimport (Gather, gather_t, c_tlb_flush_pte_range, c_tlb_flush_pmd_range,
                             c_tlb_adjust_range, c_tlb_reset_range, c_tlb_init_batches,
                             c_tlb_remove_page, c_tlb_remove_table)

cnp.import_array()

VA_BITS = 47
VA_LIMIT = 1 << 47
PAGE_SHIFT = 12
PAGE_SIZE = 1 << 12
PMD_SHIFT = 21
PMD_SIZE = 1 << 21
HPAGE_PMD_NR = 512

cdef enum:
    DEF_PMD_SIZE = 2097152

# change_range modes: which per-entry rule the profile's change_pte_range applies.
CP_RECORD_ALL = 1          # patch 1 alone: every present entry goes to the gather
CP_RECORD_NEEDED = 2       # patch 2: only entries with pte_needs_flush / huge_pmd_needs_flush
CP_TRY_WRITABLE = 4        # 6.x MM_CP_TRY_CHANGE_WRITABLE: RW on exclusive anon pages
CP_WRITABLE_NEEDS_DIRTY = 8  # 6.0 variant: only dirty ones
CP_UFFD_WP = 16            # MM_CP_UFFD_WP: write-protect and set the uffd-wp bit
CP_UFFD_WP_RESOLVE = 32    # MM_CP_UFFD_WP_RESOLVE: clear the uffd-wp bit only
CP_DIRTY_ACCT = 64         # MM_CP_DIRTY_ACCT (<=5.19): RW back on dirty shared PTEs
CP_RECORD_NEEDED_ARM64 = 128  # arm64 2025 pte_needs_flush (pte_arm64.pxd) decides per entry
_CP_ALL = 255
_NO_ADDRS = np.zeros(0, dtype=np.uint64)
_NO_ADDRS.flags.writeable = False

# unmap_page_range's stop reasons
ZAP_DONE = 0               # the range is zapped
ZAP_BATCH_FULL = 1         # the page batch is full: flush, free the pages, go on
ZAP_FORCE_FLUSH = 2        # a dirty page-cache page: flush before the PTE lock drops

cdef enum:
    K_ZAP_DONE = 0
    K_ZAP_BATCH_FULL = 1
    K_ZAP_FORCE_FLUSH = 2

cdef enum:
    _SMALL_THP = 64          # huge PMDs change_range reports from its stack buffer

# PageAnon(page) for the TRY_WRITABLE rule: the core sees frames, not struct pages, so the
# model keeps page-cache (file and shmem) frames at and above this PFN; anonymous frames
# are below it (the shared zero page is excluded by its own PFN).
FILE_PFN_BASE = 1 << 39

cdef enum:
    K_FILE_PFN_BASE_SHIFT = 39

cdef enum:
    K_RECORD_ALL = 1
    K_RECORD_NEEDED = 2
    K_TRY_WRITABLE = 4
    K_WRITABLE_NEEDS_DIRTY = 8
    K_UFFD_WP = 16
    K_UFFD_WP_RESOLVE = 32
    K_DIRTY_ACCT = 64
    K_RECORD_NEEDED_ARM64 = 128

cdef uint64_t PMD_MASK_C = ~(<uint64_t>DEF_PMD_SIZE - 1)


KERNEL_BASE = 0xFFFF800000000000     # the canonical upper half: kernel mappings


def _check_range(uint64_t va, npages, uint64_t align=4096, str what="range"):
    """Validate [va, va + npages pages) before it reaches C: aligned, inside the 47-bit
    user half or the canonical kernel half (never across the non-canonical hole)."""
    if npages < 0:
        raise ValueError(f"{what}: negative page count {npages}")
    limit = VA_LIMIT if va < VA_LIMIT else (1 << 64)
    if VA_LIMIT <= va < KERNEL_BASE:
        raise ValueError(f"{what}: address 0x{va:x} is beyond the 47-bit user address space"
                         f" (and not a canonical kernel address)")
    if va % align:
        raise ValueError(f"{what}: address 0x{va:x} is not aligned to 0x{align:x}")
    if va + npages * 4096 > limit:
        raise ValueError(f"{what}: [0x{va:x}, +{npages} pages) runs past the 47-bit limit")
    if (npages * 4096) % align:
        raise ValueError(f"{what}: {npages} pages is not a multiple of 0x{align:x} bytes")


cdef inline bint _plain_user_range(uint64_t va, object npages):
    """The common case _check_range accepts, tested in C: a page-aligned user address
    and a Python int page count that stays below the 47-bit limit."""
    cdef uint64_t n
    if type(npages) is not int or not 0 <= npages < (<uint64_t>1 << 35):
        return False
    n = npages
    return (va & 4095) == 0 and va < (<uint64_t>1 << 47) and va + n * 4096 <= (<uint64_t>1 << 47)


cdef inline uint64_t* _counts_out(object out) except? NULL:
    """Where change_range writes its two scan counts: the data of `out` when it is a
    plain writable, aligned, native-order, C-contiguous 1-D uint64 ndarray of at least
    2 elements (the kernel model's own buffer: no memoryview to build on every call),
    else NULL after checking `out` as the `uint64_t[::1]` argument it replaces did
    (the same errors, raised before anything changes)."""
    cdef cnp.ndarray arr
    cdef uint64_t[::1] mv
    if type(out) is np.ndarray:
        arr = <cnp.ndarray>out
        if (cnp.PyArray_TYPE(arr) == cnp.NPY_UINT64 and cnp.PyArray_NDIM(arr) == 1
                and cnp.PyArray_ISCARRAY(arr) and cnp.PyArray_ISNOTSWAPPED(arr)
                and cnp.PyArray_DIM(arr, 0) >= 2):
            return <uint64_t*>cnp.PyArray_DATA(arr)
    mv = out                          # TypeError / ValueError as the old signature gave
    return NULL


cdef inline uint64_t idx(uint64_t va, int shift) noexcept nogil:
    return (va >> shift) & 511


cdef inline uint64_t next_boundary(uint64_t addr, uint64_t size, uint64_t end) noexcept nogil:
    cdef uint64_t nb = (addr | (size - 1)) + 1
    return nb if nb < end else end


cdef class PageTable:
    """One address space's page table (what CR3 points to), with range loops in C."""

    def __cinit__(self):
        self.tables = NULL
        self.ntables = 1          # id 0 is reserved: a zero entry means "no table"
        self.cap = 0
        self.chunks = []
        self.freelist = NULL
        self.nfree = 0
        self.freecap = 0
        self.next_pfn = 0x1000
        memset(self.live, 0, sizeof(self.live))
        self.root = self.alloc_table(3)

    def __dealloc__(self):
        PyMem_Free(self.tables)
        PyMem_Free(self.freelist)

    # ---------------------------------------------------------------- table pool
    cdef uint64_t alloc_table(self, int level) except 0:
        """A zeroed table from the free list or the pool; grows the pool by one chunk."""
        cdef uint64_t tid
        if self.nfree:
            self.nfree -= 1
            tid = self.freelist[self.nfree]
        else:
            if self.ntables >= self.cap:
                _grow_pool(self)
            tid = self.ntables
            self.ntables += 1
        memset(self.tables[tid], 0, 512 * sizeof(uint64_t))
        self.live[level] += 1
        return tid

    # ---------------------------------------------------------------- state
    @property
    def state(self) -> dict:
        """A copy of the whole table as numpy arrays and scalars: what pickle stores."""
        cdef cnp.npy_intp dims[2]
        dims[0] = <cnp.npy_intp>self.ntables
        dims[1] = 512
        cdef cnp.ndarray tables = cnp.PyArray_EMPTY(2, dims, cnp.NPY_UINT64, 0)
        cdef uint64_t* dst = <uint64_t*>cnp.PyArray_DATA(tables)
        cdef uint64_t i
        with nogil:
            for i in range(self.ntables):
                memcpy(dst + 512 * i, self.tables[i], 512 * sizeof(uint64_t))
        freelist = np.empty(self.nfree, dtype=np.uint64)
        if self.nfree:
            memcpy(cnp.PyArray_DATA(freelist), self.freelist, self.nfree * sizeof(uint64_t))
        live = np.empty(PT_LEVELS, dtype=np.uint64)
        memcpy(cnp.PyArray_DATA(live), self.live, sizeof(self.live))
        return {"tables": tables, "freelist": freelist, "root": self.root, "live": live,
                "next_pfn": self.next_pfn, "cap": self.cap, "freecap": self.freecap}

    @state.setter
    def state(self, dict value):
        """Replace the whole table by a `state`, checking it before changing anything."""
        _check_state_keys(value)
        tables = value["tables"]
        if not (isinstance(tables, np.ndarray) and tables.dtype == np.uint64
                and tables.ndim == 2 and tables.shape[1] == 512 and tables.shape[0] >= 1):
            raise ValueError("PageTable state: tables must be a uint64 array of shape (n, 512), "
                             "n >= 1 (table 0 is the reserved empty table)")
        cdef uint64_t n = tables.shape[0]
        if np.any(tables[0]):
            raise ValueError("PageTable state: table 0 (the reserved empty table) is not empty")
        cdef uint64_t root = u64(value["root"], "PageTable state: root")
        if not 1 <= root < n:
            raise ValueError(f"PageTable state: root {root} outside the {n} tables")
        _check_tree(tables, root)
        freelist = value["freelist"]
        if not (isinstance(freelist, np.ndarray) and freelist.dtype == np.uint64
                and freelist.ndim == 1):
            raise ValueError("PageTable state: freelist must be a 1-D uint64 array")
        if freelist.size and not (freelist.min() >= 1 and freelist.max() < n):
            raise ValueError(f"PageTable state: a freelist id is outside 1..{n - 1}")
        live = value["live"]
        if not (isinstance(live, np.ndarray) and live.dtype == np.uint64
                and live.shape == (PT_LEVELS,)):
            raise ValueError(f"PageTable state: live must be a uint64 array of {PT_LEVELS} counts")
        cdef uint64_t next_pfn = u64(value["next_pfn"], "PageTable state: next_pfn")
        cdef uint64_t cap = u64(value["cap"], "PageTable state: cap")
        cdef uint64_t freecap = u64(value["freecap"], "PageTable state: freecap")
        # the pool grows only when full and the free-id array only when full, so both
        # stay within one growth step of what they hold
        if not n <= cap <= n + PT_CHUNK_TABLES:
            raise ValueError(f"PageTable state: cap {cap} outside {n}..{n + PT_CHUNK_TABLES} "
                             f"for {n} tables")
        if not <uint64_t>freelist.size <= freecap <= 2 * n + 64:
            raise ValueError(f"PageTable state: freecap {freecap} outside "
                             f"{freelist.size}..{2 * n + 64} for {n} tables")
        cdef const uint64_t[:, ::1] src = np.ascontiguousarray(tables)
        cdef const uint64_t[::1] fsrc = np.ascontiguousarray(freelist)
        cdef const uint64_t[::1] lsrc = np.ascontiguousarray(live)
        _install_pool(self, cap, freecap)
        cdef uint64_t i
        with nogil:
            for i in range(n):
                memcpy(self.tables[i], &src[i, 0], 512 * sizeof(uint64_t))
            for i in range(<uint64_t>fsrc.shape[0]):
                self.freelist[i] = fsrc[i]
        self.ntables = n
        self.nfree = fsrc.shape[0]
        self.root = root
        for i in range(PT_LEVELS):
            self.live[i] = lsrc[i]
        self.next_pfn = next_pfn

    def __reduce__(self):
        """Pickle as a new PageTable plus its state (exact round trip)."""
        return (PageTable, (), self.state)

    def __setstate__(self, state):
        """Unpickle: apply the stored state."""
        self.state = state

    cdef void free_table(self, uint64_t tid, int level) noexcept:
        cdef uint64_t* grown
        if self.nfree >= self.freecap:
            grown = <uint64_t*>PyMem_Realloc(self.freelist,
                                              (self.freecap * 2 + 64) * sizeof(uint64_t))
            if grown == NULL:
                return      # leak the table id rather than fail a zap half way
            self.freelist = grown
            self.freecap = self.freecap * 2 + 64
        self.freelist[self.nfree] = tid
        self.nfree += 1
        self.live[level] -= 1

    cdef uint64_t* pmd_slot(self, uint64_t va, bint alloc) except? NULL:
        """The PMD entry covering va, allocating the upper tables if asked (else NULL)."""
        cdef uint64_t* t = self.tables[self.root]
        cdef uint64_t* e
        cdef int shift, level = 3
        for shift in (39, 30):
            e = &t[idx(va, shift)]
            if not (e[0] & MMU_P):
                if not alloc:
                    return NULL
                e[0] = (self.alloc_table(level - 1) << 12) | MMU_TABLE_FLAGS
            t = pt_table(self, e[0])
            level -= 1
        return &t[idx(va, 21)]

    cdef uint64_t* pte_table_for(self, uint64_t* pmd, uint64_t va) except NULL:
        """The PTE table under *pmd, allocating one if empty; a huge PMD is replaced."""
        if not (pmd[0] & MMU_P) or (pmd[0] & MMU_PSE):
            pmd[0] = (self.alloc_table(0) << 12) | MMU_TABLE_FLAGS
        return pt_table(self, pmd[0])

    cdef uint64_t* leaf_slot(self, uint64_t va, int* shift) noexcept nogil:
        """The leaf entry for va (PTE, or a huge PMD with *shift = 21), NULL if no path."""
        cdef uint64_t e = self.tables[self.root][idx(va, 39)]
        cdef uint64_t* t
        if not (e & MMU_P):
            return NULL
        e = pt_table(self, e)[idx(va, 30)]
        if not (e & MMU_P):
            return NULL
        t = pt_table(self, e)
        e = t[idx(va, 21)]
        if e & MMU_PSE:
            shift[0] = 21
            return &t[idx(va, 21)]
        if not (e & MMU_P):
            return NULL
        shift[0] = 12
        return &pt_table(self, e)[idx(va, 12)]

    # ---------------------------------------------------------------- inspection
    @property
    def nbytes(self) -> int:
        """Bytes held by the pool (all chunks) and the pointer/free arrays."""
        return self.cap * 4096 + self.cap * 8 + self.freecap * 8

    @property
    def table_bytes(self) -> int:
        """Bytes of tables in use (live tables x 4 KiB)."""
        return int(sum(self.live[i] for i in range(4))) * 4096

    @property
    def table_counts(self) -> dict:
        """Live tables per level: pte, pmd, pud, pgd."""
        return {"pte": self.live[0], "pmd": self.live[1], "pud": self.live[2],
                "pgd": self.live[3]}

    def get(self, va):
        """(entry, page_shift) of the leaf mapping va: shift 12 or 21, (0, 0) when unmapped."""
        cdef uint64_t c_va = u64(va, "get: va")
        _check_range(c_va, 0, 1, "get")
        cdef int shift = 0
        cdef uint64_t* slot = self.leaf_slot(c_va, &shift)
        if slot == NULL or slot[0] == 0:
            return (0, 0)
        return (slot[0], shift)

    def upper_entries(self, va):
        """The raw PGD, PUD and PMD entries on va's path (0 where the path ends)."""
        cdef uint64_t c_va = u64(va, "upper_entries: va")
        _check_range(c_va, 0, 1, "upper_entries")
        out = []
        cdef uint64_t e = self.tables[self.root][idx(c_va, 39)]
        out.append(e)
        if e & MMU_P:
            e = pt_table(self, e)[idx(c_va, 30)]
            out.append(e)
            if e & MMU_P:
                out.append(pt_table(self, e)[idx(c_va, 21)])
        return tuple(out + [0] * (3 - len(out)))

    def set_pte(self, va, value):
        """Write one 4K PTE (allocating tables). A huge PMD over va must be split first."""
        cdef uint64_t c_va = u64(va, "set_pte: va")
        cdef uint64_t c_value = u64(value, "set_pte: value")
        _check_range(c_va, 1, 4096, "set_pte")
        cdef uint64_t* pmd = self.pmd_slot(c_va, True)
        if pmd[0] & MMU_PSE:
            raise ValueError(f"set_pte: 0x{c_va:x} is inside a huge PMD; split it first")
        self.pte_table_for(pmd, c_va)[idx(c_va, 12)] = c_value

    def set_pmd(self, va, value):
        """Write one huge PMD leaf (PSE is added); a PTE table under it is freed."""
        cdef uint64_t c_va = u64(va, "set_pmd: va")
        cdef uint64_t c_value = u64(value, "set_pmd: value")
        _check_range(c_va, 512, DEF_PMD_SIZE, "set_pmd")
        cdef uint64_t* pmd = self.pmd_slot(c_va, True)
        if (pmd[0] & MMU_P) and not (pmd[0] & MMU_PSE):
            self.free_table((pmd[0] & MMU_PFN_MASK) >> 12, 0)
        pmd[0] = c_value | MMU_PSE if c_value else 0

    def split_huge_pmd(self, va) -> bool:
        """__split_huge_pmd(): replace the huge PMD over va by a PTE table of 512 PTEs."""
        cdef uint64_t c_va = u64(va, "split_huge_pmd: va")
        _check_range(c_va, 0, 1, "split_huge_pmd")
        cdef uint64_t* pmd = self.pmd_slot(c_va, False)
        if pmd == NULL or not (pmd[0] & MMU_PSE):
            return False
        self._split(pmd)
        return True

    cdef int _split(self, uint64_t* pmd) except -1:
        cdef uint64_t old = pmd[0], flags, pfn, tid, i
        cdef uint64_t* t
        pfn = c_pmd_pfn(old)
        flags = old & ~MMU_PMD_PFN_MASK & ~MMU_PSE & ~MMU_PAT_LARGE
        if old & MMU_PAT_LARGE:
            flags |= MMU_PAT
        tid = self.alloc_table(0)
        t = self.tables[tid]
        for i in range(512):
            t[i] = c_flip_protnone_guard(0, ((pfn + i) << 12) | flags, MMU_PFN_MASK)
        pmd[0] = (tid << 12) | MMU_TABLE_FLAGS
        return 0

    # ---------------------------------------------------------------- range loops
    def map(self, va, npages, flags=MMU_P | MMU_RW | MMU_US | MMU_A | MMU_D,
            pfn=None, bint huge=False):
        """Populate [va, va+npages pages) with consecutive frames: 4K PTEs, or huge PMDs.

        flags are the entry's low/high bits (P is added).  Returns the first frame used.
        Existing entries are overwritten; this is the fast populate, not a fault path.
        """
        cdef uint64_t c_va = u64(va, "map: va")
        cdef uint64_t c_flags = u64(flags, "map: flags")
        _check_range(c_va, npages, DEF_PMD_SIZE if huge else 4096, "map")
        if c_flags & MMU_PFN_MASK:
            raise ValueError(f"map: flags 0x{c_flags:x} overlap the PFN field")
        cdef uint64_t first = self.next_pfn if pfn is None else pfn
        if first + npages >= (1 << 40):
            raise ValueError(f"map: frames 0x{first:x}+{npages} exceed the 40-bit PFN field")
        if huge and first % 512:
            raise ValueError(f"map: huge mapping needs a 512-aligned first pfn, got 0x{first:x}")
        self._fill(c_va, npages, c_flags | MMU_P, first, huge, False, 0)
        if pfn is None:
            self.next_pfn = first + npages
        return first

    def populate(self, va, npages, flags, pfn=None, bint same_pfn=False):
        """Fill only the empty 4K entries of a range (a fault-in loop); returns how many.

        New entries get consecutive frames, or all the same frame with same_pfn (the zero
        page).  Present entries, including those under huge PMDs, are left alone.
        """
        cdef uint64_t c_va = u64(va, "populate: va")
        cdef uint64_t c_flags = u64(flags, "populate: flags")
        _check_range(c_va, npages, 4096, "populate")
        if c_flags & MMU_PFN_MASK:
            raise ValueError(f"populate: flags 0x{c_flags:x} overlap the PFN field")
        if not c_flags & (MMU_P | MMU_PROTNONE):
            raise ValueError(f"populate: flags 0x{c_flags:x} make no present entry")
        cdef uint64_t first = self.next_pfn if pfn is None else pfn
        n = self._fill(c_va, npages, c_flags, first, False, True, same_pfn)
        if pfn is None and not same_pfn:
            self.next_pfn = first + n
        return n

    cdef uint64_t _fill(self, uint64_t va, uint64_t npages, uint64_t flags, uint64_t pfn,
                        bint huge, bint only_empty, bint same_pfn) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t addr = va, end = va + npages * 4096, nxt, i, i0, i1, n = 0
        cdef uint64_t* pmd
        cdef uint64_t* t
        cdef uint64_t step = 0 if same_pfn else 1
        while addr < end:
            nxt = next_boundary(addr, DEF_PMD_SIZE, end)
            pmd = self.pmd_slot(addr, True)
            if huge:
                if (pmd[0] & MMU_P) and not (pmd[0] & MMU_PSE):
                    self.free_table((pmd[0] & MMU_PFN_MASK) >> 12, 0)
                pmd[0] = (pfn << 12) | flags | MMU_PSE
                pfn += 512
                n += 512
            elif only_empty and (pmd[0] & MMU_PSE):
                pass
            else:
                t = self.pte_table_for(pmd, addr)
                i0 = idx(addr, 12)
                i1 = i0 + ((nxt - addr) >> 12)
                with nogil:
                    if only_empty:
                        for i in range(i0, i1):
                            if t[i] == 0:
                                t[i] = (pfn << 12) | flags
                                pfn += step
                                n += 1
                    else:
                        for i in range(i0, i1):
                            t[i] = (pfn << 12) | flags
                            pfn += step
                        n += i1 - i0
            addr = nxt
        return n

    def read_range(self, va, npages, out=None):
        """The leaf entry of every 4K page in the range as uint64 (a huge PMD repeats)."""
        cdef uint64_t c_va = u64(va, "read_range: va")
        _check_range(c_va, npages, 4096, "read_range")
        if out is None:
            out = np.zeros(npages, dtype=np.uint64)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.uint64
                  and out.ndim == 1 and out.shape[0] == npages):
            raise ValueError(f"read_range: out must be a uint64 array of {npages} entries")
        cdef uint64_t[::1] o = out
        cdef uint64_t addr = c_va, end = c_va + npages * 4096, nxt, k = 0, i, n
        cdef uint64_t* pmd
        cdef uint64_t* t
        while addr < end:
            nxt = next_boundary(addr, DEF_PMD_SIZE, end)
            n = (nxt - addr) >> 12
            pmd = self.pmd_slot(addr, False)
            if pmd == NULL or not (pmd[0] & MMU_P):
                for i in range(n):
                    o[k + i] = 0 if pmd == NULL else pmd[0]
            elif pmd[0] & MMU_PSE:
                for i in range(n):
                    o[k + i] = pmd[0]
            else:
                t = pt_table(self, pmd[0])
                for i in range(n):
                    o[k + i] = t[idx(addr, 12) + i]
            k += n
            addr = nxt
        return out

    def change_range(self, va, npages, newprot, int mode=0,
                     Gather gather=None, zero_pfn=0, scanned=None):
        """change_protection() over [va, +npages): change_pte_range / change_huge_pmd in C.

        mode ORs CP_* rules.  Returns (pages, changed, flagged, thp_addrs, split_addrs,
        tables): `pages` as the kernel counts it (present PTEs, +512 per huge PMD),
        entries recorded into `gather` (CP_RECORD_*), addresses of the huge PMDs
        change_huge_pmd visited (the pre-patch path flushes each immediately), of huge
        PMDs split because the range cut them (split flushes immediately), and the number
        of PTE tables change_pte_range walked (what a per-table cost is charged on).
        `scanned`, if given (uint64, at least 2), receives the empty PTE slots scanned in
        those tables and the can_change_pte_writable() checks made (per-entry costs).
        """
        cdef uint64_t* counts = NULL
        cdef uint64_t[::1] scanned_mv
        if scanned is not None:
            counts = _counts_out(scanned)
            if counts == NULL:
                scanned_mv = scanned
        cdef uint64_t c_va = u64(va, "change_range: va")
        cdef uint64_t c_newprot = u64(newprot, "change_range: newprot")
        cdef uint64_t c_zero_pfn = u64(zero_pfn, "change_range: zero_pfn")
        cdef bint plain = _plain_user_range(c_va, npages)
        if not plain:
            _check_range(c_va, npages, 4096, "change_range")
        if mode & ~_CP_ALL:
            raise ValueError(f"change_range: unknown mode bits 0x{mode & ~_CP_ALL:x}")
        if (mode & (CP_RECORD_ALL | CP_RECORD_NEEDED | CP_RECORD_NEEDED_ARM64)) and gather is None:
            raise ValueError("change_range: recording modes need a Gather")
        cdef gather_t scratch
        cdef gather_t* g = &scratch
        if gather is not None:
            g = &gather.g
        else:
            scratch.fullmm = False
            scratch.need_flush_all = False
            c_tlb_reset_range(&scratch)
            c_tlb_init_batches(&scratch, 0)
        cdef change_stats_t st
        memset(&st, 0, sizeof(st))
        # huge-PMD and split addresses: a stack buffer for small ranges, numpy for big
        cdef uint64_t small_thp[_SMALL_THP]
        cdef uint64_t splitbuf[2]
        cdef uint64_t nthp_max = <uint64_t>npages // 512 + 2
        cdef uint64_t[::1] thpv
        thp = None
        if nthp_max > _SMALL_THP:
            thp = np.zeros(nthp_max, dtype=np.uint64)
            thpv = thp
        # the range's end in C when _plain_user_range vouched for npages, else through
        # Python ints as before (an end of 2**64 raises OverflowError here)
        cdef uint64_t c_end
        if plain:
            c_end = c_va + <uint64_t>npages * 4096
        else:
            c_end = c_va + npages * 4096
        self._change(c_va, c_end, c_newprot, mode, g, c_zero_pfn, &st,
                     &thpv[0] if thp is not None else small_thp, splitbuf)
        if st.nthp == 0:
            thp = _NO_ADDRS
        elif thp is None:
            thp = np.array(<uint64_t[:st.nthp]>small_thp, dtype=np.uint64)
        else:
            thp = thp[:st.nthp]
        splits = (_NO_ADDRS if st.nsplit == 0
                  else np.array(<uint64_t[:st.nsplit]>splitbuf, dtype=np.uint64))
        if counts != NULL:
            counts[0] = st.nnone
            counts[1] = st.nwrcheck
        elif scanned is not None:
            if scanned_mv.shape[0] < 2:
                raise ValueError("change_range: scanned needs room for 2 counts")
            scanned_mv[0] = st.nnone
            scanned_mv[1] = st.nwrcheck
        return (st.pages, st.changed, st.flagged, thp, splits, st.ntables)

    cdef int _change(self, uint64_t start, uint64_t end, uint64_t newprot, int mode,
                     gather_t* g, uint64_t zero_pfn, change_stats_t* st,
                     uint64_t* thp, uint64_t* splits) except -1:
        cdef uint64_t addr = start, nxt, e
        cdef uint64_t* pmd
        cdef uint64_t* t
        cdef uint64_t* top = self.tables[self.root]
        cdef uint64_t* pud_t
        cdef uint64_t* pmd_t
        while addr < end:
            e = top[idx(addr, 39)]
            if not (e & MMU_P):
                addr = next_boundary(addr, <uint64_t>1 << 39, end)
                continue
            pud_t = pt_table(self, e)
            e = pud_t[idx(addr, 30)]
            if not (e & MMU_P):
                addr = next_boundary(addr, <uint64_t>1 << 30, end)
                continue
            pmd_t = pt_table(self, e)
            nxt = next_boundary(addr, DEF_PMD_SIZE, end)
            pmd = &pmd_t[idx(addr, 21)]
            if pmd[0] & MMU_PSE:
                if (addr & (DEF_PMD_SIZE - 1)) == 0 and nxt - addr == DEF_PMD_SIZE:
                    change_huge_pmd(pmd, addr, newprot, mode, g, zero_pfn, st, thp)
                    addr = nxt
                    continue
                splits[st.nsplit] = addr & PMD_MASK_C
                st.nsplit += 1
                self._split(pmd)
            if pmd[0] & MMU_P:
                t = pt_table(self, pmd[0])
                st.ntables += 1
                with nogil:
                    change_pte_range(t, addr, nxt, newprot, mode, g, zero_pfn, st)
            addr = nxt
        return 0

    def zap_range(self, va, npages, Gather gather, free_start=None, free_end=None):
        """zap_pte_range()/zap_huge_pmd() over the whole range, recording every cleared
        entry, with no batch limit (kernel paths use unmap_page_range, which stops where
        the kernel flushes in the middle of a zap).

        Page-table pages whose whole span lies in [free_start, free_end) are then freed
        (free_pgtables) and the gather gets freed_tables.  Returns (zapped 4K pages,
        zapped huge PMDs, split addresses).
        """
        cdef uint64_t c_va = u64(va, "zap_range: va")
        _check_range(c_va, npages, 4096, "zap_range")
        if gather is None:
            raise ValueError("zap_range: a Gather is required")
        cdef uint64_t start = c_va, end = c_va + npages * 4096
        cdef uint64_t fs = start if free_start is None else free_start
        cdef uint64_t fe = end if free_end is None else free_end
        cdef zap_stats_t st
        memset(&st, 0, sizeof(st))
        split_addrs = []
        self._zap(start, end, &gather.g, &st, False, split_addrs)
        if fe > fs:
            self._free_pgtables(fs & ~(<uint64_t>4095), fe, &gather.g, False)
        return (st.n4k, st.nhuge, split_addrs)

    def unmap_page_range(self, va, npages, Gather gather):
        """unmap_page_range() as far as the gather lets it go: zap [va, +npages), queue
        every normal page in the gather's page batch, and stop where the kernel's
        zap_pte_range() stops to flush: right after the entry that filled the batch, or
        at the end of the pass over a PTE table that zapped a dirty page-cache page
        (force_flush).  The caller flushes (tlb_flush_mmu) and calls again from `addr`.

        Returns (addr, n4k, nhuge, nnone, ntables, splits, stop): where the pass stopped
        (the range's end when done), present 4K entries cleared (the zero page
        included), huge PMDs cleared, empty slots scanned in existing PTE tables, PTE
        tables walked, the huge PMDs split because the range cut them, and why it
        stopped (ZAP_DONE, ZAP_BATCH_FULL or ZAP_FORCE_FLUSH).
        """
        cdef uint64_t c_va = u64(va, "unmap_page_range: va")
        cdef bint plain = _plain_user_range(c_va, npages)
        if not plain:
            _check_range(c_va, npages, 4096, "unmap_page_range")
        if gather is None:
            raise ValueError("unmap_page_range: a Gather is required")
        cdef zap_stats_t st
        memset(&st, 0, sizeof(st))
        split_addrs = []
        # the end in C when _plain_user_range vouched for npages (see change_range)
        cdef uint64_t c_end
        if plain:
            c_end = c_va + <uint64_t>npages * 4096
        else:
            c_end = c_va + npages * 4096
        self._zap(c_va, c_end, &gather.g, &st, True, split_addrs)
        return (st.addr, st.n4k, st.nhuge, st.nnone, st.ntables, split_addrs, st.stop)

    def free_pgd_range(self, floor, ceiling, Gather gather):
        """free_pgd_range(): free the page tables whose span lies in [floor, ceiling),
        each recorded in the gather (pte_free_tlb & co.) and queued in its table batch.
        Returns True if it stopped because the table batch filled (MAX_TABLE_BATCH): the
        caller flushes (tlb_table_flush) and calls again, which resumes with the tables
        still there."""
        cdef uint64_t fs = u64(floor, "free_pgd_range: floor")
        cdef uint64_t fe = u64(ceiling, "free_pgd_range: ceiling")
        if gather is None:
            raise ValueError("free_pgd_range: a Gather is required")
        if fe <= fs:
            return False
        return self._free_pgtables(fs & ~(<uint64_t>4095), fe, &gather.g, True) == 1

    cdef int _zap(self, uint64_t start, uint64_t end, gather_t* g, zap_stats_t* st,
                  bint batched, list split_addrs) except -1:
        """zap_pmd_range(): each PMD of [start, end) is a huge PMD zapped whole (one
        batch entry), a huge PMD the range cuts (split first), or a PTE table for
        zap_pte_range.  With `batched`, stops where the kernel flushes (st.stop)."""
        cdef uint64_t addr = start, nxt, e, reached
        cdef uint64_t* pmd
        cdef uint64_t* t
        st.addr = end
        st.stop = K_ZAP_DONE
        while addr < end:
            nxt = next_boundary(addr, DEF_PMD_SIZE, end)
            pmd = self.pmd_slot(addr, False)
            if pmd == NULL:
                addr = next_boundary(addr, <uint64_t>1 << 30, end)
                continue
            if pmd[0] & MMU_PSE:
                if (addr & (DEF_PMD_SIZE - 1)) == 0 and nxt - addr == DEF_PMD_SIZE:
                    e = pmd[0]
                    pmd[0] = 0
                    c_tlb_flush_pmd_range(g, addr, DEF_PMD_SIZE)
                    st.nhuge += 1
                    addr = nxt
                    # zap_huge_pmd -> tlb_remove_page_size(): the folio is one entry,
                    # and a full batch flushes at once (tlb_flush_mmu)
                    if batched and not (e & MMU_SPECIAL) and c_tlb_remove_page(g):
                        st.addr = addr
                        st.stop = K_ZAP_BATCH_FULL
                        return 0
                    continue
                split_addrs.append(addr & PMD_MASK_C)
                self._split(pmd)
            if pmd[0] & MMU_P:
                t = pt_table(self, pmd[0])
                st.ntables += 1
                with nogil:
                    reached = zap_pte_range(t, addr, nxt, g, st, batched)
                if st.stop != K_ZAP_DONE:
                    st.addr = reached
                    return 0
            addr = nxt
        return 0

    cdef int _free_pgtables(self, uint64_t fs, uint64_t fe, gather_t* g,
                            bint batched) except -1:
        """Free PTE/PMD/PUD tables whose span lies inside [fs, fe) (free_pgd_range), in
        the kernel's order (a PMD table after its PTE tables).  With `batched` each
        freed table is queued in the table batch (tlb_remove_table); returns 1 when that
        batch filled (the caller flushes and calls again, which resumes with the tables
        still there), else 0."""
        cdef uint64_t* top = self.tables[self.root]
        cdef uint64_t* pud_t
        cdef uint64_t* pmd_t
        cdef uint64_t a, b, c, base_a, base_b, base_c, e
        cdef bint freed = False
        for a in range(idx(fs, 39), idx(fe - 1, 39) + 1):
            if not (top[a] & MMU_P):
                continue
            base_a = a << 39
            pud_t = pt_table(self, top[a])
            for b in range(512):
                base_b = base_a + (b << 30)
                if base_b + (<uint64_t>1 << 30) <= fs or base_b >= fe or not (pud_t[b] & MMU_P):
                    continue
                pmd_t = pt_table(self, pud_t[b])
                for c in range(512):
                    base_c = base_b + (c << 21)
                    e = pmd_t[c]
                    if base_c < fs or base_c + DEF_PMD_SIZE > fe or not (e & MMU_P) \
                            or (e & MMU_PSE):
                        continue
                    self.free_table((e & MMU_PFN_MASK) >> 12, 0)
                    pmd_t[c] = 0
                    c_tlb_adjust_range(g, base_c, 4096)
                    g.cleared_pmds = True
                    freed = True
                    if batched and c_tlb_remove_table(g):
                        g.freed_tables = True
                        return 1
                if base_b >= fs and base_b + (<uint64_t>1 << 30) <= fe and _table_empty(pmd_t):
                    self.free_table((pud_t[b] & MMU_PFN_MASK) >> 12, 1)
                    pud_t[b] = 0
                    c_tlb_adjust_range(g, base_b, 4096)
                    g.cleared_puds = True
                    freed = True
                    if batched and c_tlb_remove_table(g):
                        g.freed_tables = True
                        return 1
            if base_a >= fs and base_a + (<uint64_t>1 << 39) <= fe and _table_empty(pud_t):
                self.free_table((top[a] & MMU_PFN_MASK) >> 12, 2)
                top[a] = 0
                c_tlb_adjust_range(g, base_a, 4096)
                g.cleared_p4ds = True
                freed = True
                if batched and c_tlb_remove_table(g):
                    g.freed_tables = True
                    return 1
        if freed:
            g.freed_tables = True
        return 0

    def clear_young_dirty(self, va, npages, Gather gather, bint clear_dirty=False):
        """MADV_COLD (A) / MADV_FREE (A and D): clear the bits of present entries with a
        normal page and record each entry changed with tlb_remove_tlb_entry.  A huge PMD the
        range only cuts is split first.  Returns (changed 4K, changed huge, split addresses)."""
        cdef uint64_t c_va = u64(va, "clear_young_dirty: va")
        _check_range(c_va, npages, 4096, "clear_young_dirty")
        if gather is None:
            raise ValueError("clear_young_dirty: a Gather is required")
        cdef uint64_t bits = MMU_A | (MMU_D if clear_dirty else 0)
        cdef uint64_t addr = c_va, end = c_va + npages * 4096, nxt, i, i0, i1, n = 0, nh = 0
        cdef uint64_t* pmd
        cdef uint64_t* t
        split_addrs = []
        while addr < end:
            nxt = next_boundary(addr, DEF_PMD_SIZE, end)
            pmd = self.pmd_slot(addr, False)
            if pmd == NULL or not (pmd[0] & MMU_P):
                addr = nxt
                continue
            if pmd[0] & MMU_PSE:
                if (addr & (DEF_PMD_SIZE - 1)) == 0 and nxt - addr == DEF_PMD_SIZE:
                    if pmd[0] & bits:
                        pmd[0] &= ~bits
                        c_tlb_flush_pmd_range(&gather.g, addr, DEF_PMD_SIZE)
                        nh += 1
                    addr = nxt
                    continue
                split_addrs.append(addr & PMD_MASK_C)    # the kernel splits a cut THP
                self._split(pmd)
            t = pt_table(self, pmd[0])
            i0 = idx(addr, 12)
            i1 = i0 + ((nxt - addr) >> 12)
            for i in range(i0, i1):
                # entries without a normal page (the zero page: SPECIAL) are skipped
                if (t[i] & MMU_P) and (t[i] & bits) and not (t[i] & MMU_SPECIAL):
                    t[i] &= ~bits
                    c_tlb_flush_pte_range(&gather.g, (addr & PMD_MASK_C) + (i << 12), 4096)
                    n += 1
            addr = nxt
        return (n, nh, split_addrs)


cdef int _grow_pool(PageTable pt) except -1:
    """Add one chunk of tables to the pool; the size depends on the pool's size alone."""
    cdef uint64_t i, n
    cdef cnp.ndarray chunk
    cdef uint64_t** grown
    # chunks double from 16 tables up to 4 MiB, where numpy asks for THP backing (fewer
    # host TLB misses in the walker)
    n = min(PT_CHUNK_TABLES, max(16, pt.cap))
    grown = <uint64_t**>PyMem_Realloc(pt.tables, (pt.cap + n) * sizeof(uint64_t*))
    if grown == NULL:
        raise MemoryError("page-table pointer array")
    pt.tables = grown
    chunk = np.zeros((n, 512), dtype=np.uint64)
    pt.chunks.append(chunk)
    for i in range(n):
        pt.tables[pt.cap + i] = (<uint64_t*>cnp.PyArray_DATA(chunk)) + 512 * i
    pt.cap += n
    return 0


cdef int _install_pool(PageTable pt, uint64_t cap, uint64_t freecap) except -1:
    """A fresh pool of cap tables (grown as alloc_table grows it) and free-id array for pt."""
    cdef uint64_t** old_tables = pt.tables
    cdef uint64_t old_cap = pt.cap
    cdef list old_chunks = pt.chunks
    cdef uint64_t* fl = <uint64_t*>PyMem_Malloc(max(freecap, 1) * sizeof(uint64_t))
    if fl == NULL:
        raise MemoryError("page-table free list")
    pt.tables = NULL
    pt.cap = 0
    pt.chunks = []
    try:
        while pt.cap < cap:
            _grow_pool(pt)
    except BaseException:
        PyMem_Free(pt.tables)
        PyMem_Free(fl)
        pt.tables, pt.cap, pt.chunks = old_tables, old_cap, old_chunks
        raise
    PyMem_Free(old_tables)
    PyMem_Free(pt.freelist)
    pt.freelist = fl
    pt.freecap = freecap
    return 0


def _check_tree(tables, uint64_t root):
    """Every table id the tree under root names must be in the pool (free_table trusts it)."""
    cdef uint64_t n = tables.shape[0]
    rows = np.array([root], dtype=np.uint64)
    for level in range(3):           # PGD, PUD, PMD tables name the next level's tables
        e = tables[rows].ravel()
        e = e[(e & MMU_P) != 0]
        if level == 2:
            e = e[(e & MMU_PSE) == 0]
        rows = (e & MMU_PFN_MASK) >> np.uint64(12)
        if rows.size and (rows.min() < 1 or rows.max() >= n):
            raise ValueError(f"PageTable state: a level-{3 - level} entry names a table "
                             f"outside 1..{n - 1}")


def _check_state_keys(dict value):
    """A PageTable state has exactly these keys: name what is missing or extra."""
    keys = ("tables", "freelist", "root", "live", "next_pfn", "cap", "freecap")
    missing = [k for k in keys if k not in value]
    extra = sorted(set(value) - set(keys))
    if missing or extra:
        raise ValueError(f"PageTable state: missing {missing}, unknown {extra}; "
                         f"expected exactly {', '.join(keys)}")


cdef bint _table_empty(uint64_t* t) noexcept nogil:
    cdef int i
    for i in range(512):
        if t[i]:
            return False
    return True


cdef inline uint64_t apply_rules(uint64_t old, uint64_t new, int mode,
                                 uint64_t pfn, uint64_t zero_pfn) noexcept nogil:
    """The per-entry extras of change_pte_range: uffd-wp, DIRTY_ACCT, TRY_CHANGE_WRITABLE."""
    if mode & K_UFFD_WP:
        new = (new & ~MMU_RW) | MMU_UFFD_WP
    elif mode & K_UFFD_WP_RESOLVE:
        new = new & ~MMU_UFFD_WP
    if (mode & K_DIRTY_ACCT) and (new & MMU_D) and (new & MMU_P):
        new |= MMU_RW
    if (mode & K_TRY_WRITABLE) and (new & MMU_P) and not (new & MMU_RW) \
            and not (new & MMU_UFFD_WP) and pfn != zero_pfn \
            and (pfn >> K_FILE_PFN_BASE_SHIFT) == 0:
        if not (mode & K_WRITABLE_NEEDS_DIRTY) or (new & MMU_D):
            new |= MMU_RW
    return new


cdef uint64_t zap_pte_range(uint64_t* t, uint64_t addr, uint64_t end, gather_t* g,
                            zap_stats_t* st, bint batched) noexcept nogil:
    """zap_pte_range() over one PTE table's part [addr, end): clear every entry, record
    the present ones in the gather's range and, with `batched`, queue each normal page
    (not the zero page: vm_normal_page() is NULL for it) in the page batch.  Returns
    where the pass ended: right after the entry that filled the batch (st.stop =
    ZAP_BATCH_FULL, force_break), else `end`, with st.stop = ZAP_FORCE_FLUSH if a dirty
    page-cache page was zapped (force_flush: flush before the PTE lock is dropped)."""
    cdef uint64_t i, i0 = idx(addr, 12), i1 = i0 + ((end - addr) >> 12)
    cdef uint64_t base = addr & PMD_MASK_C
    cdef uint64_t e
    cdef bint force_flush = False
    for i in range(i0, i1):
        e = t[i]
        if not c_pte_present(e):
            # pte_none (or a non-present entry): scanned, nothing to flush
            t[i] = 0
            st.nnone += 1
            continue
        t[i] = 0
        c_tlb_flush_pte_range(g, base + (i << 12), 4096)
        st.n4k += 1
        if not batched or (e & MMU_SPECIAL):
            continue
        if (c_pte_pfn(e) >> K_FILE_PFN_BASE_SHIFT) != 0 and (e & MMU_D):
            force_flush = True          # !folio_test_anon && pte_dirty
        if c_tlb_remove_page(g):
            st.stop = K_ZAP_BATCH_FULL
            return base + ((i + 1) << 12)
    if force_flush:
        st.stop = K_ZAP_FORCE_FLUSH
    return end


cdef void change_pte_range(uint64_t* t, uint64_t addr, uint64_t end, uint64_t newprot,
                           int mode, gather_t* g, uint64_t zero_pfn,
                           change_stats_t* st) noexcept nogil:
    """change_pte_range(): pte_modify every present PTE, record the ones that need a flush."""
    cdef uint64_t i, i0 = idx(addr, 12), i1 = i0 + ((end - addr) >> 12)
    cdef uint64_t base = addr & PMD_MASK_C
    cdef uint64_t old, new
    cdef uint64_t pages = 0, changed = 0, flagged = 0, lo = 0, hi = 0, wrcheck = 0
    cdef bint need
    cdef bint try_writable = (mode & K_TRY_WRITABLE) != 0
    cdef bint record_all = (mode & K_RECORD_ALL) != 0
    cdef bint record_needed = (mode & K_RECORD_NEEDED) != 0
    cdef bint record_arm64 = (mode & K_RECORD_NEEDED_ARM64) != 0
    cdef bint extras = (mode & (K_UFFD_WP | K_UFFD_WP_RESOLVE | K_DIRTY_ACCT | K_TRY_WRITABLE)) != 0
    for i in range(i0, i1):
        old = t[i]
        if not (old & (MMU_P | MMU_PROTNONE)):
            continue
        pages += 1
        new = c_pte_modify(old, newprot)
        if try_writable and (new & MMU_P) and not (new & MMU_RW):
            wrcheck += 1                # the kernel asks can_change_pte_writable()
        if extras:
            new = apply_rules(old, new, mode, c_pte_pfn(old), zero_pfn)
        if new != old:
            t[i] = new
            changed += 1
        if record_all:
            need = True
        elif record_needed:
            # pte_modify() and the extras keep the frame, so pte_needs_flush() reduces to
            # its flag test: P was set, and D/P cleared or a change-class flag changed
            need = (old & MMU_P) != 0 and (((old & ~new) & (MMU_D | MMU_P))
                                           | ((old ^ new) & MMU_FLUSH_ON_CHANGE
                                              & ~MMU_PFN_MASK)) != 0
        elif record_arm64:
            need = c_arm64_pte_needs_flush(old, new)
        else:
            need = False
        if need:
            if flagged == 0:
                lo = i
            hi = i
            flagged += 1
    if flagged:
        # the union the per-entry __tlb_adjust_range() calls would build
        c_tlb_flush_pte_range(g, base + (lo << 12), (hi - lo + 1) << 12)
    st.pages += pages
    st.changed += changed
    st.flagged += flagged
    st.nnone += (i1 - i0) - pages
    st.nwrcheck += wrcheck


cdef void change_huge_pmd(uint64_t* pmd, uint64_t addr, uint64_t newprot, int mode,
                          gather_t* g, uint64_t zero_pfn, change_stats_t* st,
                          uint64_t* thp) noexcept nogil:
    """change_huge_pmd(): pmd_modify one 2M leaf; its address goes to `thp` for the caller."""
    cdef uint64_t old = pmd[0]
    cdef uint64_t new = c_pmd_modify(old, newprot)
    if (mode & K_TRY_WRITABLE) and (new & MMU_P) and not (new & MMU_RW):
        st.nwrcheck += 1                # can_change_pmd_writable()
    if mode & (K_UFFD_WP | K_UFFD_WP_RESOLVE | K_DIRTY_ACCT | K_TRY_WRITABLE):
        new = apply_rules(old, new, mode, c_pmd_pfn(old), zero_pfn)
    if new != old:
        pmd[0] = new
        st.changed += 1
    st.pages += 512
    thp[st.nthp] = addr
    st.nthp += 1
    if (mode & K_RECORD_ALL) or ((mode & K_RECORD_NEEDED) and c_huge_pmd_needs_flush(old, new)) \
            or ((mode & K_RECORD_NEEDED_ARM64) and c_arm64_huge_pmd_needs_flush(old, new)):
        c_tlb_flush_pmd_range(g, addr, DEF_PMD_SIZE)
        st.flagged += 1
