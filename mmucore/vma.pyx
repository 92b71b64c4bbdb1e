# cython: language_level=3
"""The VMAs of one address space in C: lookup, split, merge, unmap, free-range search.

This is the VMA bookkeeping of mm/mmap.c and mm/mprotect.c (5.17 era): `find_vma`,
`split_vma`, `vma_merge`, `mprotect_fixup` and the top-down `get_unmapped_area`.  Like
the kernel's split and merge it changes VMA metadata only, never page tables or TLBs.
`VMAList` holds its VMAs in one Python list sorted by address; since the VMAs never
overlap, their starts and their ends both increase along the list, and every lookup is a
binary search in C over the VMA objects' typed fields (O(log n), no index lists to keep
in step).  pysim.mm.vma re-exports the classes beside the vm_flags helpers.

Merge rule (is_mergeable_vma, is_mergeable_anon_vma, can_vma_merge_before/after): two
adjacent VMAs merge when their vm_flags agree except for VM_SOFTDIRTY, neither has a
VM_SPECIAL bit, they map the same file (compared by identity; None for private anonymous
memory) at page offsets that continue one another, carry the same anon_vma_name and
an equal NUMA memory policy (mpol_equal: `policy` compared with ==, None for the
default), and have compatible anon_vmas (the same one, or at least one still unset).
The model's own `anon` and `shared` fields must agree as well (in the kernel they
follow from the file and the flags).  Left out: userfaultfd contexts, vm_ops->close,
the anon_vma_chain singularity test (it matters only after fork) and stack guard
gaps.

mmucore never imports pysim, so the constants below repeat pysim.constants' values (a
test holds them equal), and the errors are pysim's classes only once pysim.mm.vma has
handed them over with set_errors(); until then ValueError and OSError stand in.
"""
import copyreg
import errno

cimport cython
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport PyObject
from libc.limits cimport LLONG_MAX, LLONG_MIN
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc, qsort

# Addresses inside the list are signed 64-bit: every VMA bound lies in [0, TASK_SIZE],
# and an address a Python caller passes may be negative (lookups must then behave as
# the old bisect over Python ints did, see _addr).
ctypedef long long addr_t
ctypedef unsigned long long u64

cdef extern from *:
    """
    #define VMA_PAGE_SHIFT 12
    #define VMA_PAGE_SIZE (1LL << VMA_PAGE_SHIFT)
    #define VMA_PAGE_OFFSET_MASK (VMA_PAGE_SIZE - 1)
    /* x86-64 4-level paging: TASK_SIZE_MAX, the top page left out */
    #define VMA_TASK_SIZE ((1LL << 47) - VMA_PAGE_SIZE)
    /* arch/x86: PAGE_ALIGN(TASK_SIZE / 3), where the bottom-up search begins */
    #define VMA_TASK_UNMAPPED_BASE \\
        (((VMA_TASK_SIZE / 3) + VMA_PAGE_SIZE - 1) & ~VMA_PAGE_OFFSET_MASK)
    #define VMA_DEFAULT_MMAP_BASE 0x7F0000000000LL
    #define VMA_DEFAULT_MMAP_MIN_ADDR 65536LL
    #define VMA_DEFAULT_MAX_MAP_COUNT 65530LL
    /* include/linux/mm.h vm_flags bits */
    #define VMA_VM_READ 0x00000001ULL
    #define VMA_VM_WRITE 0x00000002ULL
    #define VMA_VM_EXEC 0x00000004ULL
    #define VMA_VM_SHARED 0x00000008ULL
    #define VMA_VM_PFNMAP 0x00000400ULL
    #define VMA_VM_IO 0x00004000ULL
    #define VMA_VM_DONTEXPAND 0x00040000ULL
    #define VMA_VM_ACCOUNT 0x00100000ULL
    #define VMA_VM_NORESERVE 0x00200000ULL
    #define VMA_VM_HUGETLB 0x00400000ULL
    #define VMA_VM_SOFTDIRTY 0x08000000ULL
    #define VMA_VM_MIXEDMAP 0x10000000ULL
    #define VMA_VM_ACCESS_FLAGS (VMA_VM_READ | VMA_VM_WRITE | VMA_VM_EXEC)
    /* never merged */
    #define VMA_VM_SPECIAL (VMA_VM_IO | VMA_VM_DONTEXPAND | VMA_VM_PFNMAP | VMA_VM_MIXEDMAP)
    """
    const int VMA_PAGE_SHIFT
    const addr_t VMA_PAGE_SIZE
    const addr_t VMA_PAGE_OFFSET_MASK
    const addr_t VMA_TASK_SIZE
    const addr_t VMA_TASK_UNMAPPED_BASE
    const addr_t VMA_DEFAULT_MMAP_BASE
    const addr_t VMA_DEFAULT_MMAP_MIN_ADDR
    const addr_t VMA_DEFAULT_MAX_MAP_COUNT
    const u64 VMA_VM_READ
    const u64 VMA_VM_WRITE
    const u64 VMA_VM_EXEC
    const u64 VMA_VM_SHARED
    const u64 VMA_VM_PFNMAP
    const u64 VMA_VM_IO
    const u64 VMA_VM_DONTEXPAND
    const u64 VMA_VM_ACCOUNT
    const u64 VMA_VM_NORESERVE
    const u64 VMA_VM_HUGETLB
    const u64 VMA_VM_SOFTDIRTY
    const u64 VMA_VM_MIXEDMAP
    const u64 VMA_VM_ACCESS_FLAGS
    const u64 VMA_VM_SPECIAL

# the same values for Python (tests/test_vma.py holds them equal to pysim.constants')
PAGE_SHIFT = VMA_PAGE_SHIFT
PAGE_SIZE = VMA_PAGE_SIZE
TASK_SIZE = VMA_TASK_SIZE
TASK_UNMAPPED_BASE = VMA_TASK_UNMAPPED_BASE
DEFAULT_MMAP_BASE = VMA_DEFAULT_MMAP_BASE
DEFAULT_MMAP_MIN_ADDR = VMA_DEFAULT_MMAP_MIN_ADDR
DEFAULT_MAX_MAP_COUNT = VMA_DEFAULT_MAX_MAP_COUNT
VM_READ = VMA_VM_READ
VM_WRITE = VMA_VM_WRITE
VM_EXEC = VMA_VM_EXEC
VM_SHARED = VMA_VM_SHARED
VM_PFNMAP = VMA_VM_PFNMAP
VM_IO = VMA_VM_IO
VM_DONTEXPAND = VMA_VM_DONTEXPAND
VM_ACCOUNT = VMA_VM_ACCOUNT
VM_NORESERVE = VMA_VM_NORESERVE
VM_HUGETLB = VMA_VM_HUGETLB
VM_SOFTDIRTY = VMA_VM_SOFTDIRTY
VM_MIXEDMAP = VMA_VM_MIXEDMAP
VM_ACCESS_FLAGS = VMA_VM_ACCESS_FLAGS
VM_SPECIAL = VMA_VM_SPECIAL


# --- the errors -------------------------------------------------------------------------

# What the VMA code raises: pysim.mm.vma installs PysimError and SyscallError at import.
cdef object _PysimError = ValueError
cdef object _SyscallError = OSError


def set_errors(pysim_error, syscall_error):
    """Make the VMA code raise pysim_error(message) for misuse and
    syscall_error(errno, message) for a failing syscall (pysim's PysimError and
    SyscallError; mmucore cannot import them, calls only go down)."""
    global _PysimError, _SyscallError
    _PysimError = pysim_error
    _SyscallError = syscall_error


# --- small helpers ----------------------------------------------------------------------

cdef inline addr_t _addr(object a) except? -1:
    """A Python int as an addr_t, beyond the 64-bit range clamped to LLONG_MIN/LLONG_MAX.
    Every VMA bound lies in [0, TASK_SIZE], so a clamped address compares with them as
    the int itself did; range checks fail for it as they did, and their messages print
    the caller's original value."""
    cdef int overflow = 0
    cdef addr_t v = PyLong_AsLongLongAndOverflow(a, &overflow)
    if overflow > 0:
        return LLONG_MAX
    if overflow < 0:
        return LLONG_MIN
    return v


cdef inline bint _bad_range(addr_t start, addr_t end) noexcept:
    """True unless [start, end) is a page-aligned, non-empty range of user space."""
    return (start | end) & VMA_PAGE_OFFSET_MASK != 0 or not (0 <= start < end <= VMA_TASK_SIZE)


# The searches read the list's item array and size directly (what the list macros
# expand to), and a VMA's bounds through the borrowed pointer: no reference counting
# and no Python call inside a binary search.  Methods hold their list as a borrowed
# PyObject * too: VMAList owns it and only __setstate__ replaces it.
cdef extern from "Python.h":
    ctypedef struct PyListObject:
        PyObject **ob_item
    Py_ssize_t _size "Py_SIZE"(PyObject *o)
    int _list_insert "PyList_Insert"(object lst, Py_ssize_t i, object item) except -1
    int _list_set_slice "PyList_SetSlice"(object lst, Py_ssize_t lo, Py_ssize_t hi,
                                          PyObject *items) except -1


cdef inline VMA _vma(PyObject *vmas, Py_ssize_t i):
    """VMA i of a VMAList's list, as a new reference (the caller keeps i in range)."""
    return <VMA>(<PyListObject *>vmas).ob_item[i]


cdef inline addr_t _start_at(PyObject *vmas, Py_ssize_t i) noexcept:
    """Start of VMA i, read through the borrowed list item (no reference taken)."""
    return <addr_t>(<VMA>(<PyListObject *>vmas).ob_item[i]).start


cdef inline addr_t _end_at(PyObject *vmas, Py_ssize_t i) noexcept:
    """End of VMA i, read through the borrowed list item (no reference taken)."""
    return <addr_t>(<VMA>(<PyListObject *>vmas).ob_item[i]).end


cdef Py_ssize_t _first_end_above(PyObject *vmas, addr_t addr) noexcept:
    """Index of the first VMA with end > addr, len(vmas) if none: bisect_right over the
    ends, the search find_vma() does."""
    cdef Py_ssize_t lo = 0, hi = _size(vmas), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if addr < _end_at(vmas, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef Py_ssize_t _first_start_from(PyObject *vmas, addr_t addr) noexcept:
    """Index of the first VMA with start >= addr, len(vmas) if none (bisect_left over
    the starts: where a VMA starting at addr is, or goes)."""
    cdef Py_ssize_t lo = 0, hi = _size(vmas), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if _start_at(vmas, mid) < addr:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t _first_start_above(PyObject *vmas, addr_t addr) noexcept:
    """Index of the first VMA with start > addr, len(vmas) if none (bisect_right over
    the starts; one less is the VMA holding addr or the nearest below it)."""
    cdef Py_ssize_t lo = 0, hi = _size(vmas), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if addr < _start_at(vmas, mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef int _cmp_index(const void *a, const void *b) noexcept nogil:
    """qsort order of Py_ssize_t values, ascending."""
    cdef Py_ssize_t x = (<const Py_ssize_t *>a)[0], y = (<const Py_ssize_t *>b)[0]
    return (x > y) - (x < y)


# --- one VMA ----------------------------------------------------------------------------

cdef class VMA:
    """One vm_area_struct: [start, end) with vm_flags and what backs it.

    `pgoff` counts pages (anonymous memory defaults to start >> PAGE_SHIFT, as in the
    kernel); `file` and `anon_vma` are compared by identity; `page_prot` is the
    vm_page_prot the mm layer computes, copied by a split and recomputed through
    VMAList.page_prot_fn (when set) whenever the flags change.  A VMA that belongs to a
    VMAList moves only through the list's methods: assigning start or end directly
    would break its ordering.
    """
    cdef public u64 start, end, flags, pgoff, page_prot
    cdef public bint anon, shared
    cdef public object file, anon_vma, name, policy

    def __init__(self, start, end, flags, anon=True, shared=False, pgoff=None, file=None,
                 anon_vma=None, name=None, page_prot=0, policy=None):
        """Check the range on the Python ints first (a negative or unaligned one is a
        PysimError, not a conversion error), then store the typed fields."""
        if not (0 <= start < end <= VMA_TASK_SIZE):
            raise _PysimError(f"VMA [0x{start:x}, 0x{end:x}) is empty or outside "
                              f"[0, TASK_SIZE=0x{TASK_SIZE:x})")
        if (start | end) & VMA_PAGE_OFFSET_MASK:
            raise _PysimError(f"VMA [0x{start:x}, 0x{end:x}) is not page aligned")
        self.start = start
        self.end = end
        self.flags = flags
        self.anon = anon
        self.shared = shared
        self.pgoff = start >> VMA_PAGE_SHIFT if pgoff is None else pgoff
        self.file = file
        self.anon_vma = anon_vma
        self.name = name
        self.page_prot = page_prot
        self.policy = policy

    @property
    def pages(self):
        """Number of base pages the VMA spans (vma_pages())."""
        return (self.end - self.start) >> VMA_PAGE_SHIFT

    def contains(self, addr):
        """True if addr lies in [start, end)."""
        cdef addr_t a = _addr(addr)
        return <addr_t>self.start <= a < <addr_t>self.end

    def pgoff_at(self, addr):
        """Page offset of addr within the backing object (linear_page_index()); Python
        arithmetic, so an address below start gives what it always gave."""
        return self.pgoff + ((addr - self.start) >> VMA_PAGE_SHIFT)

    def __repr__(self):
        extra = f" name={self.name!r}" if self.name else ""
        if self.policy is not None:
            extra += f" policy={self.policy!r}"
        kind = "anon" if self.anon else "file"
        return (f"VMA(0x{self.start:x}-0x{self.end:x} flags=0x{self.flags:x} {kind}"
                f"{' shared' if self.shared else ''} pgoff=0x{self.pgoff:x}{extra})")

    def __reduce__(self):
        """Pickle as a blank VMA plus its fields, so that pickle memoises the VMA before
        its file and anon_vma (their identity is kept within one dump)."""
        return (copyreg.__newobj__, (type(self),),
                (self.start, self.end, self.flags, self.anon, self.shared, self.pgoff,
                 self.file, self.anon_vma, self.name, self.page_prot, self.policy))

    def __setstate__(self, state):
        """The fields __reduce__ saved, in its order (a pickle from before VMAs had a
        policy has one field fewer: the default policy)."""
        (self.start, self.end, self.flags, self.anon, self.shared, self.pgoff,
         self.file, self.anon_vma, self.name, self.page_prot) = state[:10]
        self.policy = state[10] if len(state) > 10 else None


cdef VMA _new_vma(u64 start, u64 end, u64 flags, bint anon, bint shared, u64 pgoff,
                  object file, object anon_vma, object name, u64 page_prot,
                  object policy):
    """A VMA made in C without __init__'s checks: for a split, whose range is a valid
    part of a listed VMA."""
    cdef VMA v = VMA.__new__(VMA)
    v.start = start
    v.end = end
    v.flags = flags
    v.anon = anon
    v.shared = shared
    v.pgoff = pgoff
    v.file = file
    v.anon_vma = anon_vma
    v.name = name
    v.page_prot = page_prot
    v.policy = policy
    return v


cdef inline u64 _pgoff_at(VMA vma, addr_t addr) noexcept:
    """linear_page_index() for an addr at or above vma.start."""
    return vma.pgoff + <u64>((addr - <addr_t>vma.start) >> VMA_PAGE_SHIFT)


# --- merge predicates -------------------------------------------------------------------

cdef inline bint _anon_vmas_mergeable(object a, object b) noexcept:
    """is_mergeable_anon_vma(): the same anon_vma, or one of them still unset."""
    return a is None or b is None or a is b


cdef inline bint _same_mapping(VMA vma, u64 flags, object file, object name,
                               object policy, bint anon, bint shared) except -1:
    """is_mergeable_vma(): flags equal apart from VM_SOFTDIRTY, the same file and anon
    name, an equal memory policy (mpol_equal), and the same anon/shared kind.  (Names
    and policies are immutable values or None: the identity test answers the common
    case without a Python comparison.)"""
    if (vma.flags ^ flags) & ~VMA_VM_SOFTDIRTY or vma.file is not file:
        return False
    if vma.anon != anon or vma.shared != shared:
        return False
    if not (vma.policy is policy or vma.policy == policy):
        return False
    return vma.name is name or vma.name == name


cdef inline bint _can_merge_after(VMA prev, u64 flags, object anon_vma, object file,
                                  u64 pgoff, object name, object policy, bint anon,
                                  bint shared) except -1:
    """can_vma_merge_after(): a range starting at prev.end with these attributes may
    extend prev upward."""
    return (_same_mapping(prev, flags, file, name, policy, anon, shared)
            and _anon_vmas_mergeable(prev.anon_vma, anon_vma)
            and prev.pgoff + ((prev.end - prev.start) >> VMA_PAGE_SHIFT) == pgoff)


cdef inline bint _can_merge_before(VMA nxt, u64 flags, object anon_vma, object file,
                                   u64 end_pgoff, object name, object policy, bint anon,
                                   bint shared) except -1:
    """can_vma_merge_before(): a range ending at nxt.start, whose page offset ends at
    end_pgoff, may extend nxt downward."""
    return (_same_mapping(nxt, flags, file, name, policy, anon, shared)
            and _anon_vmas_mergeable(nxt.anon_vma, anon_vma)
            and nxt.pgoff == end_pgoff)


cdef bint _vmas_mergeable(VMA a, VMA b) except -1:
    """The merge rule for adjacent a (below) and b (above)."""
    return (a.end == b.start and not (a.flags | b.flags) & VMA_VM_SPECIAL
            and _can_merge_after(a, b.flags, b.anon_vma, b.file, b.pgoff, b.name,
                                 b.policy, b.anon, b.shared))


cdef inline bint _anon_vma_compatible(VMA a, VMA b) noexcept:
    """anon_vma_compatible(): adjacent a and b that only an mprotect keeps apart."""
    return (a.end == b.start and a.file is b.file
            and (a.flags ^ b.flags) & ~(VMA_VM_ACCESS_FLAGS | VMA_VM_SOFTDIRTY) == 0
            and b.pgoff == a.pgoff + ((a.end - a.start) >> VMA_PAGE_SHIFT))


cdef inline void _inherit_anon_vma(VMA survivor, object first, object second,
                                   object third) noexcept:
    """A merged VMA with no anon_vma takes the first one set among first and second
    (the anon_vmas of what it absorbed, None for an absent VMA) and third (the caller's):
    anon_vma_clone's effect."""
    if survivor.anon_vma is None:
        survivor.anon_vma = (first if first is not None else
                             second if second is not None else third)


cdef inline object _anon_vma_of(VMA vma):
    """vma's anon_vma, or None when there is no vma."""
    return vma.anon_vma if vma is not None else None


def is_mergeable_anon_vma(a, b):
    """Two anon_vmas can share one VMA if they are the same or one is still unset."""
    return _anon_vmas_mergeable(a, b)


def vmas_mergeable(VMA a not None, VMA b not None):
    """True if adjacent a (below) and b (above) satisfy the kernel's merge rule."""
    return _vmas_mergeable(a, b)


def anon_vma_compatible(VMA a not None, VMA b not None):
    """anon_vma_compatible(): adjacent VMAs that could merge after an mprotect share one."""
    return _anon_vma_compatible(a, b)


# --- the list ---------------------------------------------------------------------------

cdef class VMAList:
    """The sorted, non-overlapping VMAs of one mm over [0, TASK_SIZE).

    Every change goes through these methods, which keep the list sorted; do not assign
    to a member VMA's start or end directly.
    """
    cdef list _vmas
    cdef public addr_t mmap_base
    cdef public addr_t mmap_min_addr
    cdef public Py_ssize_t max_map_count
    cdef public object page_prot_fn
    # Top-down search cache: every free gap above _free_floor (clipped to it) is at most
    # _free_floor_hole bytes long, so a longer request may begin its search there.
    cdef addr_t _free_floor
    cdef addr_t _free_floor_hole

    def __cinit__(self, *args, **kwargs):
        """An empty list even for VMAList.__new__ (unpickling), so C never sees None."""
        self._vmas = []

    def __init__(self, mmap_base=DEFAULT_MMAP_BASE, mmap_min_addr=DEFAULT_MMAP_MIN_ADDR,
                 max_map_count=DEFAULT_MAX_MAP_COUNT, page_prot_fn=None):
        """mmap_base is where the top-down search starts (page aligned, in user space);
        page_prot_fn(vma) gives vm_page_prot when a VMA's flags change."""
        if not (mmap_base & VMA_PAGE_OFFSET_MASK == 0 and 0 < mmap_base <= VMA_TASK_SIZE):
            raise _PysimError(f"mmap_base 0x{mmap_base:x} must be page aligned in "
                              f"(0, TASK_SIZE]")
        self.mmap_base = mmap_base
        self.mmap_min_addr = mmap_min_addr
        self.max_map_count = max_map_count
        self.page_prot_fn = page_prot_fn
        self._free_floor = self.mmap_base
        self._free_floor_hole = 0

    def __reduce__(self):
        """Pickle as a blank list plus its state (VMAs, settings and the search cache),
        so that pickle memoises the list before what page_prot_fn refers to."""
        return (copyreg.__newobj__, (type(self),),
                (self.mmap_base, self.mmap_min_addr, self.max_map_count, self.page_prot_fn,
                 self._vmas, self._free_floor, self._free_floor_hole))

    def __setstate__(self, state):
        """The state __reduce__ saved, in its order."""
        cdef list vmas
        (self.mmap_base, self.mmap_min_addr, self.max_map_count, self.page_prot_fn,
         vmas, self._free_floor, self._free_floor_hole) = state
        for v in vmas:
            if not isinstance(v, VMA):
                raise TypeError(f"VMAList state: {v!r} is not a VMA")
        self._vmas = vmas

    # -- container protocol --
    def __len__(self):
        """Number of VMAs."""
        return _size(<PyObject *>self._vmas)

    def __iter__(self):
        """VMAs in address order (over a snapshot, so callers may change the list)."""
        return iter(list(self._vmas))

    def __repr__(self):
        """All VMAs, for debugging."""
        return f"VMAList({self._vmas!r})"

    @property
    def map_count(self):
        """Number of VMAs (mm->map_count)."""
        return _size(<PyObject *>self._vmas)

    def vmas(self):
        """A snapshot list of the VMAs in address order."""
        return list(self._vmas)

    @cython.boundscheck(True)
    @cython.wraparound(True)
    def vma_at(self, Py_ssize_t i):
        """VMA i in address order (a list index: negative counts from the end,
        IndexError outside)."""
        return self._vmas[i]

    def index_at(self, addr):
        """Index of the VMA containing addr or else the nearest one below it; -1 when
        every VMA starts above addr."""
        return _first_start_above(<PyObject *>self._vmas, _addr(addr)) - 1

    def indices_at(self, const uint64_t[:] vas):
        """The distinct index_at() values >= 0 of the addresses vas, ascending: which
        VMAs an access batch may touch (pysim.mm.memory describes them for the C fault
        loop)."""
        cdef Py_ssize_t n = vas.shape[0], k, last = -1
        cdef Py_ssize_t *idx
        cdef addr_t a
        cdef list out = []
        if n == 0:
            return out
        idx = <Py_ssize_t *>malloc(n * sizeof(Py_ssize_t))
        if idx == NULL:
            raise MemoryError()
        try:
            for k in range(n):
                a = <addr_t>vas[k] if vas[k] <= <uint64_t>LLONG_MAX else LLONG_MAX
                idx[k] = _first_start_above(<PyObject *>self._vmas, a) - 1
            qsort(idx, n, sizeof(Py_ssize_t), _cmp_index)
            for k in range(n):
                if idx[k] > last:
                    last = idx[k]
                    out.append(last)
        finally:
            free(idx)
        return out

    # -- internal list maintenance --
    cdef Py_ssize_t _find(self, VMA vma) except -1:
        """Position of this very VMA object in the list; PysimError if it is not there."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i = _first_start_from(vmas, <addr_t>vma.start)
        if i < _size(vmas) and (<PyListObject *>vmas).ob_item[i] == <PyObject *>vma:
            return i
        raise _PysimError(f"{vma!r} is not in this VMAList")

    cdef int _delete_at(self, Py_ssize_t i) except -1:
        """Unlink position i."""
        return _list_set_slice(self._vmas, i, i + 1, NULL)

    def _index(self, VMA vma not None):
        """Position of this very VMA object in the list, or PysimError if it is not there
        (pysim.mm.memory's expand_stack uses it with _set_bounds)."""
        return self._find(vma)

    @cython.boundscheck(True)
    @cython.wraparound(True)
    def _set_bounds(self, Py_ssize_t i, start, end, pgoff=None):
        """Move VMA i to [start, end) (vma_adjust's metadata part), optionally its pgoff;
        the caller keeps the list sorted (expand_stack grows a stack down into a gap)."""
        cdef VMA vma = self._vmas[i]
        vma.start, vma.end = start, end
        if pgoff is not None:
            vma.pgoff = pgoff

    cdef int _set_page_prot(self, VMA vma) except -1:
        """vma_set_page_prot(): recompute page_prot with the mm layer's function, if any."""
        if self.page_prot_fn is not None:
            vma.page_prot = self.page_prot_fn(vma)
        return 0

    # -- lookups --
    cdef VMA _find_vma(self, addr_t addr):
        """find_vma(): the first VMA with end > addr, or None."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i = _first_end_above(vmas, addr)
        if i < _size(vmas):
            return _vma(vmas, i)
        return None

    cdef VMA _lookup(self, addr_t addr):
        """vma_lookup(): the VMA containing addr, or None."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i = _first_end_above(vmas, addr)
        if i < _size(vmas) and _start_at(vmas, i) <= addr:
            return _vma(vmas, i)
        return None

    cdef VMA _intersection(self, addr_t start, addr_t end):
        """find_vma_intersection(): the first VMA overlapping [start, end), or None."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i = _first_end_above(vmas, start)
        if i < _size(vmas) and _start_at(vmas, i) < end:
            return _vma(vmas, i)
        return None

    def find_vma(self, addr):
        """The first VMA with end > addr (it may start above addr), like find_vma()."""
        return self._find_vma(_addr(addr))

    def find_vma_prev(self, addr):
        """(find_vma(addr), the VMA before it), like find_vma_prev(); prev is the last VMA
        when nothing ends above addr."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i = _first_end_above(vmas, _addr(addr))
        vma = _vma(vmas, i) if i < _size(vmas) else None
        prev = _vma(vmas, i - 1) if i > 0 else None
        return vma, prev

    def vma_lookup(self, addr):
        """The VMA containing addr, or None (vma_lookup())."""
        return self._lookup(_addr(addr))

    def find_vma_intersection(self, start, end):
        """The first VMA overlapping [start, end), or None."""
        return self._intersection(_addr(start), _addr(end))

    def vmas_in(self, start, end):
        """All VMAs overlapping [start, end), in address order."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i = _first_end_above(vmas, _addr(start))
        cdef Py_ssize_t j = _first_start_from(vmas, _addr(end))
        return self._vmas[i:j]

    def any_flags(self, start, end, mask):
        """True if a VMA overlapping [start, end) has a flag of mask (vmas_in's range,
        searched in place).  mmap and munmap's cheap pre-test for check_sealed_range and
        check_hugetlb_split: each looks only at VMAs overlapping the range (the VMA
        holding `end` that check_hugetlb_split tests starts below end, so it overlaps
        too), and the common call has no sealed or hugetlb VMA there."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef u64 m = mask & 0xFFFFFFFFFFFFFFFF      # flags are 64-bit: the same test
        cdef Py_ssize_t k
        for k in range(_first_end_above(vmas, _addr(start)),
                       _first_start_from(vmas, _addr(end))):
            if (<VMA>(<PyListObject *>vmas).ob_item[k]).flags & m:
                return True
        return False

    def first_hole(self, start, end):
        """Lowest unmapped address in [start, end), or None if the range is fully mapped."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef addr_t s = _addr(start), e = _addr(end), addr = s
        cdef Py_ssize_t k, i = _first_end_above(vmas, s), j = _first_start_from(vmas, e)
        for k in range(i, j):
            if _start_at(vmas, k) > addr:
                return start if k == i else addr
            addr = _end_at(vmas, k)
        if i >= j:                              # nothing mapped there: start itself
            return start if start < end else None
        return addr if addr < e else None

    # -- insertion and removal --
    def insert(self, VMA vma not None):
        """Link vma without merging (insert_vm_struct); EEXIST if it overlaps a VMA.

        mmap should use insert_merging: Linux merges a new mapping with compatible
        neighbours, and check_invariants() flags neighbours left unmerged.
        """
        return self._insert(vma)

    cdef VMA _insert(self, VMA vma):
        """insert() in C."""
        cdef VMA clash = self._intersection(<addr_t>vma.start, <addr_t>vma.end)
        if clash is not None:
            raise _SyscallError(errno.EEXIST, f"[0x{vma.start:x}, 0x{vma.end:x}) overlaps "
                                              f"{clash!r}")
        _list_insert(self._vmas, _first_start_from(<PyObject *>self._vmas, <addr_t>vma.start), vma)
        return vma

    def insert_merging(self, VMA vma not None):
        """Add a new mapping as do_mmap/mmap_region do: ENOMEM above max_map_count, merge
        into a neighbour when the rules allow (returning it), else link vma itself."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t n = _size(vmas), i
        cdef addr_t start = vma.start, end = vma.end
        cdef VMA prev = None
        if n > self.max_map_count:
            raise _SyscallError(errno.ENOMEM, f"mmap: map_count {n} exceeds "
                                              f"max_map_count {self.max_map_count}")
        i = _first_end_above(vmas, start)                # find_vma(start)
        if i < n and _start_at(vmas, i) < end:
            return self._insert(vma)                     # raises EEXIST with the details
        # Shortcut: with no VMA ending at start and none starting at end, vma_merge()
        # would find no neighbour and return None (its precondition checks pass: the
        # range is unmapped, and a VMA is aligned and inside user space by construction),
        # so vma goes straight to its place.
        if not (i > 0 and _end_at(vmas, i - 1) == start) \
                and not (i < n and _start_at(vmas, i) == end):
            _list_insert(self._vmas, i, vma)
            return vma
        if i > 0:
            prev = _vma(vmas, i - 1)                     # find_vma_prev(start)[1]
        merged = self._vma_merge(prev, start, end, vma.flags, vma.anon_vma, vma.file,
                                 vma.pgoff, vma.name, vma.policy, vma.anon, vma.shared)
        return merged if merged is not None else self._insert(vma)

    def remove_range(self, start, end):
        """Unmap [start, end) as __do_munmap does: split the VMAs at both ends, unlink the
        pieces inside and return them in address order. Holes are allowed."""
        cdef addr_t s = _addr(start), e = _addr(end)
        if _bad_range(s, e):
            raise _SyscallError(errno.EINVAL, f"munmap: bad range [0x{start:x}, 0x{end:x})")
        return self._remove_range(s, e)

    cdef list _remove_range(self, addr_t start, addr_t end):
        """remove_range() on a checked range."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef list removed
        cdef Py_ssize_t i = _first_end_above(vmas, start), j   # find_vma(start)
        cdef VMA vma
        if i >= _size(vmas) or _start_at(vmas, i) >= end:
            return []
        vma = _vma(vmas, i)
        if <addr_t>vma.start < start and end < <addr_t>vma.end \
                and _size(vmas) >= self.max_map_count:
            raise _SyscallError(errno.ENOMEM, f"munmap: splitting {vma!r} would exceed "
                                              f"max_map_count {self.max_map_count}")
        if <addr_t>vma.start < start:
            self._split_at(i, start, True)               # vma keeps [start, ...)
        i = _first_end_above(vmas, end - 1)              # find_vma(end - 1)
        if i < _size(vmas) and _start_at(vmas, i) < end < _end_at(vmas, i):
            self._split_at(i, end, False)                # that VMA keeps [..., end)
        i = _first_start_from(vmas, start)
        j = _first_start_from(vmas, end)
        removed = self._vmas[i:j]
        _list_set_slice(self._vmas, i, j, NULL)
        if removed and end > self._free_floor:
            self._reset_free_cache()
        return removed

    # -- split and merge --
    def split_vma(self, VMA vma not None, addr, bint new_below):
        """Split vma at addr (split_vma()); the new VMA takes the part below addr if
        new_below, else the part above; vma keeps the rest. Returns the new VMA.
        ENOMEM when map_count has reached max_map_count."""
        return self._split_vma(vma, _addr(addr), new_below, addr)

    cdef VMA _split_vma(self, VMA vma, addr_t addr, bint new_below, object shown):
        """split_vma(): the map_count limit, then _split; shown is the address the
        error message prints (the caller's own int; None: addr)."""
        if _size(<PyObject *>self._vmas) >= self.max_map_count:
            raise _SyscallError(errno.ENOMEM, f"split_vma: map_count reached "
                                              f"max_map_count {self.max_map_count}")
        return self._split(vma, addr, new_below, shown)

    cdef VMA _split(self, VMA vma, addr_t addr, bint new_below, object shown):
        """__split_vma(): split without the map_count limit (munmap may pass it briefly),
        after checking that vma is listed and addr is a page boundary inside it."""
        cdef Py_ssize_t i = self._find(vma)
        if not (<addr_t>vma.start < addr < <addr_t>vma.end) or addr & VMA_PAGE_OFFSET_MASK:
            raise _PysimError(f"split_vma: 0x{addr if shown is None else shown:x} is not a "
                              f"page boundary inside {vma!r}")
        return self._split_at(i, addr, new_below)

    cdef VMA _split_at(self, Py_ssize_t i, addr_t addr, bint new_below):
        """Split VMA i at addr, a page boundary inside it: the new VMA copies its fields
        and takes the part below addr (new_below) or above it."""
        cdef VMA vma = _vma(<PyObject *>self._vmas, i), new
        cdef u64 off = <u64>((addr - <addr_t>vma.start) >> VMA_PAGE_SHIFT)
        if new_below:
            new = _new_vma(vma.start, <u64>addr, vma.flags, vma.anon, vma.shared, vma.pgoff,
                           vma.file, vma.anon_vma, vma.name, vma.page_prot, vma.policy)
            vma.start = <u64>addr                        # vma keeps [addr, end)
            vma.pgoff += off
            _list_insert(self._vmas, i, new)
        else:
            new = _new_vma(<u64>addr, vma.end, vma.flags, vma.anon, vma.shared,
                           vma.pgoff + off, vma.file, vma.anon_vma, vma.name, vma.page_prot,
                           vma.policy)
            vma.end = <u64>addr                          # vma keeps [start, addr)
            _list_insert(self._vmas, i + 1, new)
        return new

    def vma_merge(self, VMA prev, start, end, newflags, anon_vma=None, file=None,
                  pgoff=None, name=None, *, anon=True, shared=False, policy=None):
        """Merge [start, end) with the VMA ending at start and/or the one starting at end,
        following vma_merge(); returns the VMA now covering [start, end), or None.

        [start, end) must be unmapped (mmap) or lie in one VMA (mprotect, madvise). A range
        strictly inside a VMA has no neighbours and never merges. prev is the VMA before
        start or the one containing it, checked for parity with the kernel; neighbours are
        found from the list.
        """
        cdef addr_t s = _addr(start), e = _addr(end)
        cdef u64 off
        if _bad_range(s, e):
            _raise_bad_merge_range(start, end)
        off = <u64>(s >> VMA_PAGE_SHIFT) if pgoff is None else pgoff
        return self._vma_merge(prev, s, e, newflags, anon_vma, file, off, name, policy,
                               anon, shared)

    cdef VMA _vma_merge(self, VMA prev, addr_t start, addr_t end, u64 newflags,
                        object anon_vma, object file, u64 pgoff, object name,
                        object policy, bint anon, bint shared):
        """vma_merge() in C: the neighbours are the VMA ending at start and the one
        starting at end; either, both or neither absorbs [start, end)."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t n = _size(vmas), i, k
        cdef VMA area = self._merge_area(prev, start, end), before = None, after = None
        cdef u64 pglen
        cdef bint merge_prev, merge_next
        if newflags & VMA_VM_SPECIAL:
            return None
        i = _first_end_above(vmas, start)                # first VMA with end > start
        if i > 0 and _end_at(vmas, i - 1) == start:
            before = _vma(vmas, i - 1)
        k = i + 1 if area is not None else i
        if k < n and _start_at(vmas, k) == end:
            after = _vma(vmas, k)
        pglen = <u64>((end - start) >> VMA_PAGE_SHIFT)
        merge_prev = before is not None and _can_merge_after(
            before, newflags, anon_vma, file, pgoff, name, policy, anon, shared)
        # the range's page offsets end at pgoff + pglen (no such offset when that wraps)
        merge_next = after is not None and pgoff <= ~pglen and _can_merge_before(
            after, newflags, anon_vma, file, pgoff + pglen, name, policy, anon, shared)
        if merge_prev and merge_next and _anon_vmas_mergeable(before.anon_vma,
                                                              after.anon_vma):
            return self._merge_into_prev(before, area, after, end, anon_vma)
        if merge_prev:
            return self._merge_into_prev(before, area, None, end, anon_vma)
        if merge_next:
            return self._merge_into_next(area, after, start, pgoff, anon_vma)
        return None

    cdef VMA _merge_area(self, VMA prev, addr_t start, addr_t end):
        """Check vma_merge's preconditions; return the VMA holding [start, end), if any."""
        cdef VMA area
        if _bad_range(start, end):
            _raise_bad_merge_range(start, end)
        area = self._lookup(start)
        if area is not None and end > <addr_t>area.end:
            raise _PysimError(f"vma_merge: [0x{start:x}, 0x{end:x}) spans more than "
                              f"{area!r}")
        if area is None and self._intersection(start, end) is not None:
            raise _PysimError(f"vma_merge: [0x{start:x}, 0x{end:x}) is partly mapped")
        if prev is not None and prev is not area and <addr_t>prev.end > start:
            raise _PysimError(f"vma_merge: prev {prev!r} does not precede 0x{start:x}")
        return area

    cdef VMA _merge_into_prev(self, VMA before, VMA area, VMA after, addr_t end,
                              object anon_vma):
        """Extend before over [before.end, end), and over after if given; area loses its
        head or disappears.  The survivor inherits the first anon_vma set."""
        cdef addr_t new_end = <addr_t>after.end if after is not None else end
        _inherit_anon_vma(before, _anon_vma_of(area), _anon_vma_of(after), anon_vma)
        if after is not None:
            self._delete_at(self._find(after))
        if area is not None:
            if <addr_t>area.end <= new_end:
                self._delete_at(self._find(area))
            else:                                        # the head of area moved to before
                area.pgoff = _pgoff_at(area, end)
                area.start = <u64>end
        before.end = <u64>new_end
        return before

    cdef VMA _merge_into_next(self, VMA area, VMA after, addr_t start, u64 pgoff,
                              object anon_vma):
        """Extend after down to start; area loses its tail or disappears."""
        _inherit_anon_vma(after, _anon_vma_of(area), None, anon_vma)
        if area is not None:
            if <addr_t>area.start < start:               # the tail of area moved to after
                area.end = <u64>start
            else:
                self._delete_at(self._find(area))
        after.start = <u64>start
        after.pgoff = pgoff
        return after

    def vma_modify_flags(self, VMA vma not None, VMA prev, start, end, newflags):
        """Give [start, end) of vma the flags newflags: merge with a neighbour if that
        makes them equal, else split at the range ends (madvise_update_vma's shape).
        Returns the VMA now covering [start, end)."""
        cdef addr_t s = _addr(start), e = _addr(end)
        _check_inside(vma, s, e, start, end)
        return self._modify_flags(vma, prev, s, e, newflags)

    def mprotect_fixup(self, VMA vma not None, VMA prev, start, end, newflags):
        """mprotect_fixup() metadata part: charge and add VM_ACCOUNT when a private
        mapping first becomes writable, then merge or split and set the flags.

        Returns the VMA now covering [start, end) (the kernel's new *pprev); it may
        extend past end after a merge with the next VMA. The caller does
        change_protection (and populates newly writable VM_LOCKED mappings).
        """
        cdef addr_t s = _addr(start), e = _addr(end)
        cdef u64 oldflags = vma.flags, nf
        _check_inside(vma, s, e, start, end)
        nf = newflags
        if nf == oldflags:
            return vma
        if nf & VMA_VM_WRITE and not oldflags & (VMA_VM_ACCOUNT | VMA_VM_WRITE | VMA_VM_HUGETLB
                                                 | VMA_VM_SHARED | VMA_VM_NORESERVE):
            nf |= VMA_VM_ACCOUNT
        return self._modify_flags(vma, prev, s, e, nf)

    cdef VMA _modify_flags(self, VMA vma, VMA prev, addr_t start, addr_t end,
                           u64 newflags):
        """vma_modify_flags() on a range inside vma."""
        return self._modify(vma, prev, start, end, newflags, vma.policy, True)

    def vma_modify_policy(self, VMA vma not None, VMA prev, start, end, policy):
        """vma_modify_policy() (mbind_range's VMA part): give [start, end) of vma the
        memory policy `policy` (None: the default), merging with a neighbour that has
        it or splitting at the range ends.  Returns the VMA now covering [start, end)."""
        cdef addr_t s = _addr(start), e = _addr(end)
        _check_inside(vma, s, e, start, end)
        return self._modify(vma, prev, s, e, vma.flags, policy, False)

    cdef VMA _modify(self, VMA vma, VMA prev, addr_t start, addr_t end, u64 newflags,
                     object policy, bint set_flags):
        """vma_modify(): [start, end) of vma takes newflags and policy; vma_merge with a
        neighbour the result matches, else split at the range ends.  set_flags: the
        flags (and so vm_page_prot) are what changes; otherwise only the policy."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef VMA merged = None
        cdef Py_ssize_t i
        cdef bint same_policy = vma.policy is policy or vma.policy == policy
        if newflags == vma.flags and same_policy:
            return vma
        i = self._find(vma)
        # only a range starting at vma.start can join the VMA ending there, only one
        # ending at vma.end the VMA starting there: skip vma_merge when neither touches
        if ((start == <addr_t>vma.start and i > 0 and _end_at(vmas, i - 1) == start)
                or (end == <addr_t>vma.end and i + 1 < _size(vmas)
                    and _start_at(vmas, i + 1) == end)):
            merged = self._vma_merge(prev, start, end, newflags, vma.anon_vma, vma.file,
                                     _pgoff_at(vma, start), vma.name, policy, vma.anon,
                                     vma.shared)
        if merged is not None:
            vma = merged
        else:
            if start != <addr_t>vma.start:
                self._split_vma(vma, start, True, None)      # new_below
            if end != <addr_t>vma.end:
                self._split_vma(vma, end, False, None)
        vma.policy = policy
        if set_flags:
            vma.flags = newflags
            self._set_page_prot(vma)
        return vma

    def anon_vma_prepare(self, VMA vma not None, factory=object):
        """Give vma an anon_vma on its first anonymous fault (anon_vma_prepare()): reuse
        the next, then the previous, neighbour's when anon_vma_compatible, else a new one."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t i
        cdef VMA nxt, prv
        if vma.anon_vma is not None:
            return vma.anon_vma
        i = self._find(vma)
        if i + 1 < _size(vmas):
            nxt = _vma(vmas, i + 1)
            if nxt.anon_vma is not None and _anon_vma_compatible(vma, nxt):
                vma.anon_vma = nxt.anon_vma
                return vma.anon_vma
        if i > 0:
            prv = _vma(vmas, i - 1)
            if prv.anon_vma is not None and _anon_vma_compatible(prv, vma):
                vma.anon_vma = prv.anon_vma
                return vma.anon_vma
        vma.anon_vma = factory()
        return vma.anon_vma

    # -- free-range search --
    def get_unmapped_area(self, length, align=PAGE_SIZE, hint=None):
        """An address for a new mapping of length bytes (x86 top-down layout): the hint
        if free, else the highest fit below mmap_base, else the lowest fit above
        TASK_UNMAPPED_BASE; ENOMEM when nothing fits.

        Like vm_unmapped_area, a gap qualifies if it holds length + (align - PAGE_SIZE),
        so the aligned placement always fits. Stack guard gaps are not modelled.
        """
        cdef addr_t n, a, padded, low, addr = -1
        if length <= 0 or length & VMA_PAGE_OFFSET_MASK or align < VMA_PAGE_SIZE \
                or align & (align - 1):
            raise _PysimError(f"get_unmapped_area: length 0x{length:x} and align "
                              f"0x{align:x} must be page multiples, align a power of two")
        if length > VMA_TASK_SIZE:
            raise _SyscallError(errno.ENOMEM, f"mmap: length 0x{length:x} exceeds "
                                              f"TASK_SIZE")
        if hint:
            h = max(hint & ~(PAGE_SIZE - 1), self.mmap_min_addr)
            unmapped = self._intersection(_addr(h), _addr(h + length)) is None
            if h <= TASK_SIZE - length and unmapped:
                return h
        # a padded request above TASK_SIZE fits no gap: neither search can succeed
        if align <= VMA_TASK_SIZE:
            n, a = length, align
            padded = n + a - VMA_PAGE_SIZE
            low = max(VMA_PAGE_SIZE, self.mmap_min_addr)
            addr = self._topdown(padded, n, a, low)
            if addr < 0:
                addr = self._bottomup(padded, a, max(VMA_TASK_UNMAPPED_BASE, low),
                                      VMA_TASK_SIZE)
        if addr < 0:
            raise _SyscallError(errno.ENOMEM, f"mmap: no free range of 0x{length:x} bytes "
                                              f"(align 0x{align:x}) in the address space")
        return addr

    cdef void _reset_free_cache(self) noexcept:
        """Forget the top-down search floor (after space above it was freed)."""
        self._free_floor = self.mmap_base
        self._free_floor_hole = 0

    cdef addr_t _topdown(self, addr_t padded, addr_t length, addr_t align,
                         addr_t low) noexcept:
        """Highest gap in [low, mmap_base) holding padded bytes; place length at its top,
        aligned down; -1 if none.  Starts at the cached floor when no gap above it can
        be big enough."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef bint use_floor = padded > self._free_floor_hole
        cdef addr_t gap_end = self._free_floor if use_floor else self.mmap_base
        cdef addr_t biggest_skipped = self._free_floor_hole if use_floor else 0
        cdef addr_t gap_start
        cdef Py_ssize_t j = _first_start_from(vmas, gap_end) - 1   # VMA j starts below
        while True:
            if j >= 0 and _end_at(vmas, j) > gap_end:     # a VMA straddles gap_end
                gap_end = _start_at(vmas, j)
                j -= 1
                continue
            gap_start = max(_end_at(vmas, j), low) if j >= 0 else low
            if gap_end - gap_start >= padded:
                self._free_floor = gap_end
                self._free_floor_hole = biggest_skipped
                return (gap_end - length) & ~(align - 1)
            if gap_end > gap_start:
                biggest_skipped = max(biggest_skipped, gap_end - gap_start)
            if j < 0 or gap_start <= low:
                return -1
            gap_end = _start_at(vmas, j)
            j -= 1

    cdef addr_t _bottomup(self, addr_t padded, addr_t align, addr_t low,
                          addr_t high) noexcept:
        """Lowest gap in [low, high) holding padded bytes; place at its bottom, aligned
        up; -1 if none."""
        cdef PyObject *vmas = <PyObject *>self._vmas
        cdef Py_ssize_t n = _size(vmas), i = _first_end_above(vmas, low)
        cdef addr_t gap_start = low, gap_end
        while True:
            gap_end = min(_start_at(vmas, i), high) if i < n else high
            if gap_end - gap_start >= padded:
                return (gap_start + align - 1) & ~(align - 1)
            if i >= n or gap_end >= high:
                return -1
            gap_start = max(_end_at(vmas, i), low)
            i += 1

    def _unmapped_area_bottomup(self, addr_t padded, addr_t align, addr_t low,
                                addr_t high):
        """Lowest gap in [low, high) holding padded bytes; place at its bottom, aligned
        up; None if none (pysim.mm.mmap's MAP_32BIT search)."""
        cdef addr_t addr = self._bottomup(padded, align, low, high)
        return None if addr < 0 else addr

    # -- checking --
    def check_invariants(self, check_merged=True):
        """Raise AssertionError if VMAs are unsorted, overlapping, empty, unaligned, out
        of range, listed twice, or (check_merged) two adjacent VMAs satisfy the merge
        rule, which Linux would have merged."""
        assert all(isinstance(v, VMA) for v in self._vmas), "a list item is not a VMA"
        assert len(set(map(id, self._vmas))) == len(self._vmas), "a VMA is listed twice"
        prev = None
        for vma in self._vmas:
            assert vma.start < vma.end, f"empty {vma!r}"
            assert not (vma.start | vma.end) & VMA_PAGE_OFFSET_MASK, f"unaligned {vma!r}"
            assert 0 <= vma.start and vma.end <= TASK_SIZE, f"{vma!r} outside [0, TASK_SIZE)"
            if prev is not None:
                assert prev.end <= vma.start, f"{prev!r} overlaps or precedes {vma!r}"
                if check_merged:
                    assert not _vmas_mergeable(prev, vma), \
                        f"{prev!r} and {vma!r} should have been merged"
            prev = vma


cdef int _raise_bad_merge_range(object start, object end) except -1:
    """vma_merge's error for a range that is unaligned, empty or outside user space."""
    raise _PysimError(f"vma_merge: bad range [0x{start:x}, 0x{end:x})")


cdef inline int _check_inside(VMA vma, addr_t s, addr_t e, object start,
                              object end) except -1:
    """PysimError unless [s, e) (the caller's start and end) lies inside vma."""
    if not (<addr_t>vma.start <= s < e <= <addr_t>vma.end):
        raise _PysimError(f"[0x{start:x}, 0x{end:x}) is not inside {vma!r}")
    return 0
