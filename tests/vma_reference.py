"""The VMA bookkeeping as it was in plain Python (pysim/mm/vma.py before it moved to
mmucore/vma.pyx), kept unchanged as the oracle of tests/test_vma_differential.py: the
Cython VMAList must give the same results, the same VMAs and the same errors (class,
errno, message) for any sequence of operations.  Classes are renamed RefVMA/RefVMAList so
a failing comparison says which side it is about.
"""
from __future__ import annotations

import errno
from bisect import bisect_left, bisect_right
from typing import Any, Callable, Iterator, List, Optional, Tuple

from pysim.constants import (
    DEFAULT_MAX_MAP_COUNT, DEFAULT_MMAP_BASE, DEFAULT_MMAP_MIN_ADDR, PAGE_SHIFT, PAGE_SIZE,
    TASK_SIZE, TASK_UNMAPPED_BASE, VM_ACCESS_FLAGS, VM_ACCOUNT, VM_HUGETLB, VM_NORESERVE,
    VM_SHARED, VM_SOFTDIRTY, VM_SPECIAL, VM_WRITE,
)
from pysim.errors import PysimError, SyscallError


def _aligned(addr: int) -> bool:
    """True if addr is a multiple of PAGE_SIZE."""
    return addr & (PAGE_SIZE - 1) == 0


class RefVMA:
    """One vm_area_struct: [start, end) with vm_flags and what backs it.

    `pgoff` is in pages (for anonymous memory the kernel uses start >> PAGE_SHIFT, the
    default here); `file` and `anon_vma` are compared by identity; `page_prot` is the
    vm_page_prot the mm layer computes: copied on split, recomputed through
    RefVMAList.page_prot_fn (if set) when flags change.  Slotted, with one __init__ that
    checks the range (VMAs are made on every mmap and split: a dataclass's __init__
    plus __post_init__ were two calls each time).
    """

    __slots__ = ("start", "end", "flags", "anon", "shared", "pgoff", "file", "anon_vma",
                 "name", "page_prot")

    def __init__(self, start: int, end: int, flags: int, anon: bool = True,
                 shared: bool = False, pgoff: Optional[int] = None, file: Any = None,
                 anon_vma: Any = None, name: Optional[str] = None,
                 page_prot: int = 0) -> None:
        self.start = start
        self.end = end
        self.flags = flags
        self.anon = anon
        self.shared = shared
        self.file = file
        self.anon_vma = anon_vma
        self.name = name
        self.page_prot = page_prot
        if not (0 <= start < end <= TASK_SIZE):
            raise PysimError(f"VMA [0x{start:x}, 0x{end:x}) is empty or outside "
                             f"[0, TASK_SIZE=0x{TASK_SIZE:x})")
        if (start | end) & (PAGE_SIZE - 1):                    # not both _aligned()
            raise PysimError(f"VMA [0x{start:x}, 0x{end:x}) is not page aligned")
        self.pgoff = start >> PAGE_SHIFT if pgoff is None else pgoff

    @property
    def pages(self) -> int:
        """Number of base pages the RefVMA spans (vma_pages())."""
        return (self.end - self.start) >> PAGE_SHIFT

    def contains(self, addr: int) -> bool:
        """True if addr lies in [start, end)."""
        return self.start <= addr < self.end

    def pgoff_at(self, addr: int) -> int:
        """Page offset of addr within the backing object (linear_page_index())."""
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def __repr__(self) -> str:
        extra = f" name={self.name!r}" if self.name else ""
        kind = "anon" if self.anon else "file"
        return (f"VMA(0x{self.start:x}-0x{self.end:x} flags=0x{self.flags:x} {kind}"
                f"{' shared' if self.shared else ''} pgoff=0x{self.pgoff:x}{extra})")


# --- merge predicates -------------------------------------------------------------------

def is_mergeable_anon_vma(a: Any, b: Any) -> bool:
    """Two anon_vmas can share one RefVMA if they are the same or one is still unset."""
    return a is None or b is None or a is b


def _same_mapping(vma: RefVMA, flags: int, file: Any, name: Optional[str], anon: bool,
                  shared: bool) -> bool:
    """is_mergeable_vma(): equal flags modulo VM_SOFTDIRTY, same file and anon name."""
    return (((vma.flags ^ flags) & ~VM_SOFTDIRTY) == 0 and vma.file is file
            and vma.name == name and vma.anon == anon and vma.shared == shared)


def _can_merge_after(prev: RefVMA, flags: int, anon_vma: Any, file: Any, pgoff: int,
                     name: Optional[str], anon: bool, shared: bool) -> bool:
    """can_vma_merge_after(): a range starting at prev.end may extend prev."""
    return (_same_mapping(prev, flags, file, name, anon, shared)
            and is_mergeable_anon_vma(prev.anon_vma, anon_vma)
            and prev.pgoff + prev.pages == pgoff)


def _can_merge_before(nxt: RefVMA, flags: int, anon_vma: Any, file: Any, end_pgoff: int,
                      name: Optional[str], anon: bool, shared: bool) -> bool:
    """can_vma_merge_before(): a range ending at nxt.start may extend nxt downward."""
    return (_same_mapping(nxt, flags, file, name, anon, shared)
            and is_mergeable_anon_vma(nxt.anon_vma, anon_vma)
            and nxt.pgoff == end_pgoff)


def vmas_mergeable(a: RefVMA, b: RefVMA) -> bool:
    """True if adjacent a (below) and b (above) satisfy the kernel's merge rule."""
    return (a.end == b.start and not (a.flags | b.flags) & VM_SPECIAL
            and _can_merge_after(a, b.flags, b.anon_vma, b.file, b.pgoff, b.name, b.anon,
                                 b.shared))


def anon_vma_compatible(a: RefVMA, b: RefVMA) -> bool:
    """anon_vma_compatible(): adjacent VMAs that could merge after an mprotect share one."""
    return (a.end == b.start and a.file is b.file
            and ((a.flags ^ b.flags) & ~(VM_ACCESS_FLAGS | VM_SOFTDIRTY)) == 0
            and b.pgoff == a.pgoff + a.pages)


def _inherit_anon_vma(survivor: RefVMA, area: Optional[RefVMA], other: Optional[RefVMA],
                      anon_vma: Any) -> None:
    """A merged RefVMA without an anon_vma adopts one from what it absorbed (anon_vma_clone)."""
    for donor in (area, other):
        if survivor.anon_vma is None and donor is not None:
            survivor.anon_vma = donor.anon_vma
    if survivor.anon_vma is None:
        survivor.anon_vma = anon_vma


# --- the list ---------------------------------------------------------------------------

class RefVMAList:
    """The sorted, non-overlapping VMAs of one mm over [0, TASK_SIZE).

    All changes go through its methods so the parallel start/end lists stay in step;
    do not assign to a member RefVMA's start or end directly.
    """

    def __init__(self, mmap_base: int = DEFAULT_MMAP_BASE,
                 mmap_min_addr: int = DEFAULT_MMAP_MIN_ADDR,
                 max_map_count: int = DEFAULT_MAX_MAP_COUNT,
                 page_prot_fn: Optional[Callable[[RefVMA], int]] = None) -> None:
        if not (_aligned(mmap_base) and 0 < mmap_base <= TASK_SIZE):
            raise PysimError(f"mmap_base 0x{mmap_base:x} must be page aligned in (0, TASK_SIZE]")
        self.mmap_base = mmap_base
        self.mmap_min_addr = mmap_min_addr
        self.max_map_count = max_map_count
        self.page_prot_fn = page_prot_fn
        self._vmas: List[RefVMA] = []
        self._starts: List[int] = []
        self._ends: List[int] = []
        # Top-down search cache: every free gap above _free_floor (clipped to it) is at
        # most _free_floor_hole bytes long, so longer requests may start below it.
        self._free_floor = mmap_base
        self._free_floor_hole = 0

    # -- container protocol --
    def __len__(self) -> int:
        """Number of VMAs."""
        return len(self._vmas)

    def __iter__(self) -> Iterator[RefVMA]:
        """VMAs in address order (over a snapshot, so callers may change the list)."""
        return iter(list(self._vmas))

    def __repr__(self) -> str:
        """All VMAs, for debugging."""
        return f"VMAList({self._vmas!r})"

    @property
    def map_count(self) -> int:
        """Number of VMAs (mm->map_count)."""
        return len(self._vmas)

    def vmas(self) -> List[RefVMA]:
        """A snapshot list of the VMAs in address order."""
        return list(self._vmas)

    # -- internal list maintenance --
    def _index(self, vma: RefVMA) -> int:
        """Position of this very RefVMA object in the list, or PysimError if it is not there."""
        i = bisect_left(self._starts, vma.start)
        if i < len(self._vmas) and self._vmas[i] is vma:
            return i
        raise PysimError(f"{vma!r} is not in this VMAList")

    def _insert_at(self, i: int, vma: RefVMA) -> None:
        """Put vma at position i of the three parallel lists."""
        self._vmas.insert(i, vma)
        self._starts.insert(i, vma.start)
        self._ends.insert(i, vma.end)

    def _delete_at(self, i: int) -> RefVMA:
        """Drop position i from the three parallel lists and return its RefVMA."""
        del self._starts[i]
        del self._ends[i]
        return self._vmas.pop(i)

    def _set_bounds(self, i: int, start: int, end: int, pgoff: Optional[int] = None) -> None:
        """Move RefVMA i to [start, end) (vma_adjust's metadata part), optionally its pgoff."""
        vma = self._vmas[i]
        vma.start, vma.end = start, end
        if pgoff is not None:
            vma.pgoff = pgoff
        self._starts[i], self._ends[i] = start, end

    def _set_page_prot(self, vma: RefVMA) -> None:
        """vma_set_page_prot(): recompute page_prot with the mm layer's function, if any."""
        if self.page_prot_fn is not None:
            vma.page_prot = self.page_prot_fn(vma)

    # -- lookups --
    def find_vma(self, addr: int) -> Optional[RefVMA]:
        """The first RefVMA with end > addr (it may start above addr), like find_vma()."""
        i = bisect_right(self._ends, addr)
        return self._vmas[i] if i < len(self._vmas) else None

    def find_vma_prev(self, addr: int) -> Tuple[Optional[RefVMA], Optional[RefVMA]]:
        """(find_vma(addr), the RefVMA before it), like find_vma_prev(); prev is the last RefVMA
        when nothing ends above addr."""
        i = bisect_right(self._ends, addr)
        vma = self._vmas[i] if i < len(self._vmas) else None
        prev = self._vmas[i - 1] if i > 0 else None
        return vma, prev

    def vma_lookup(self, addr: int) -> Optional[RefVMA]:
        """The RefVMA containing addr, or None (vma_lookup())."""
        i = bisect_right(self._ends, addr)              # find_vma(addr), inline
        vma = self._vmas[i] if i < len(self._vmas) else None
        return vma if vma is not None and vma.start <= addr else None

    def find_vma_intersection(self, start: int, end: int) -> Optional[RefVMA]:
        """The first RefVMA overlapping [start, end), or None."""
        i = bisect_right(self._ends, start)             # find_vma(start), inline
        vma = self._vmas[i] if i < len(self._vmas) else None
        return vma if vma is not None and vma.start < end else None

    def vmas_in(self, start: int, end: int) -> List[RefVMA]:
        """All VMAs overlapping [start, end), in address order."""
        i = bisect_right(self._ends, start)
        j = bisect_left(self._starts, end)
        return self._vmas[i:j]

    def any_flags(self, start: int, end: int, mask: int) -> bool:
        """True if a RefVMA overlapping [start, end) has a flag of mask (vmas_in's range,
        searched in place).  mmap and munmap's cheap pre-test for check_sealed_range and
        check_hugetlb_split: each looks only at VMAs overlapping the range (the RefVMA
        holding `end` that check_hugetlb_split tests starts below end, so it overlaps
        too), and the common call has no sealed or hugetlb RefVMA there."""
        vmas = self._vmas
        for k in range(bisect_right(self._ends, start), bisect_left(self._starts, end)):
            if vmas[k].flags & mask:
                return True
        return False

    def first_hole(self, start: int, end: int) -> Optional[int]:
        """Lowest unmapped address in [start, end), or None if the range is fully mapped."""
        addr = start
        for vma in self.vmas_in(start, end):
            if vma.start > addr:
                return addr
            addr = vma.end
        return addr if addr < end else None

    # -- insertion and removal --
    def insert(self, vma: RefVMA) -> RefVMA:
        """Link vma without merging (insert_vm_struct); EEXIST if it overlaps a RefVMA.

        mmap should use insert_merging: Linux merges a new mapping with compatible
        neighbours, and check_invariants() flags neighbours left unmerged.
        """
        clash = self.find_vma_intersection(vma.start, vma.end)
        if clash is not None:
            raise SyscallError(errno.EEXIST, f"[0x{vma.start:x}, 0x{vma.end:x}) overlaps "
                                             f"{clash!r}")
        self._insert_at(bisect_left(self._starts, vma.start), vma)
        return vma

    def insert_merging(self, vma: RefVMA) -> RefVMA:
        """Add a new mapping as do_mmap/mmap_region do: ENOMEM above max_map_count, merge
        into a neighbour when the rules allow (returning it), else link vma itself."""
        if len(self._vmas) > self.max_map_count:
            raise SyscallError(errno.ENOMEM, f"mmap: map_count {len(self._vmas)} exceeds "
                                             f"max_map_count {self.max_map_count}")
        start, end = vma.start, vma.end
        i = bisect_right(self._ends, start)          # find_vma(start), inline
        vmas = self._vmas
        if i < len(vmas) and vmas[i].start < end:
            return self.insert(vma)                  # raises EEXIST with the details
        # Shortcut: with no RefVMA ending at start and none starting at end, vma_merge()
        # finds no neighbour and returns None (its precondition checks hold: the range
        # is unmapped, and a RefVMA is aligned and inside user space by construction), so
        # link vma at its place directly.
        if not (i > 0 and self._ends[i - 1] == start) \
                and not (i < len(vmas) and self._starts[i] == end):
            vmas.insert(i, vma)                      # _insert_at(i, vma), inline
            self._starts.insert(i, start)
            self._ends.insert(i, end)
            return vma
        prev = vmas[i - 1] if i > 0 else None         # find_vma_prev(start)[1]
        merged = self.vma_merge(prev, vma.start, vma.end, vma.flags, vma.anon_vma, vma.file,
                                vma.pgoff, vma.name, anon=vma.anon, shared=vma.shared)
        return merged if merged is not None else self.insert(vma)

    def remove_range(self, start: int, end: int) -> List[RefVMA]:
        """Unmap [start, end) as __do_munmap does: split the VMAs at both ends, unlink the
        pieces inside and return them in address order. Holes are allowed."""
        if (start | end) & (PAGE_SIZE - 1) or not (0 <= start < end <= TASK_SIZE):
            raise SyscallError(errno.EINVAL, f"munmap: bad range [0x{start:x}, 0x{end:x})")
        vmas, ends = self._vmas, self._ends
        i = bisect_right(ends, start)                     # find_vma(start), inline
        vma = vmas[i] if i < len(vmas) else None
        if vma is None or vma.start >= end:
            return []
        if vma.start < start and end < vma.end and len(vmas) >= self.max_map_count:
            raise SyscallError(errno.ENOMEM, f"munmap: splitting {vma!r} would exceed "
                                             f"max_map_count {self.max_map_count}")
        if vma.start < start:
            self._split(vma, start, True)                # vma keeps [start, ...)
        i = bisect_right(ends, end - 1)                   # find_vma(end - 1), inline
        last = vmas[i] if i < len(vmas) else None
        if last is not None and last.start < end < last.end:
            self._split(last, end, False)                # last keeps [..., end)
        i = bisect_left(self._starts, start)
        j = bisect_left(self._starts, end)
        removed = self._vmas[i:j]
        del self._vmas[i:j], self._starts[i:j], self._ends[i:j]
        if removed and end > self._free_floor:
            self._reset_free_cache()
        return removed

    # -- split and merge --
    def split_vma(self, vma: RefVMA, addr: int, new_below: bool) -> RefVMA:
        """Split vma at addr (split_vma()); the new RefVMA takes the part below addr if
        new_below, else the part above; vma keeps the rest. Returns the new RefVMA.
        ENOMEM when map_count has reached max_map_count."""
        if len(self._vmas) >= self.max_map_count:
            raise SyscallError(errno.ENOMEM, f"split_vma: map_count reached "
                                             f"max_map_count {self.max_map_count}")
        return self._split(vma, addr, new_below)

    def _split(self, vma: RefVMA, addr: int, new_below: bool) -> RefVMA:
        """__split_vma(): split without the map_count limit (munmap may exceed it briefly).
        (_index, _set_bounds and _insert_at written out: a split is on every partial
        munmap, mprotect and madvise.)"""
        vmas, starts, ends = self._vmas, self._starts, self._ends
        i = bisect_left(starts, vma.start)
        if i >= len(vmas) or vmas[i] is not vma:
            raise PysimError(f"{vma!r} is not in this VMAList")
        start, end = vma.start, vma.end
        if not (start < addr < end) or addr & (PAGE_SIZE - 1):
            raise PysimError(f"split_vma: 0x{addr:x} is not a page boundary inside {vma!r}")
        off = (addr - start) >> PAGE_SHIFT
        if new_below:
            new = RefVMA(start, addr, vma.flags, vma.anon, vma.shared, vma.pgoff, vma.file,
                      vma.anon_vma, vma.name, vma.page_prot)
            vma.start = starts[i] = addr             # vma keeps [addr, end)
            vma.pgoff += off
            vmas.insert(i, new)
            starts.insert(i, start)
            ends.insert(i, addr)
        else:
            new = RefVMA(addr, end, vma.flags, vma.anon, vma.shared, vma.pgoff + off,
                      vma.file, vma.anon_vma, vma.name, vma.page_prot)
            vma.end = ends[i] = addr                 # vma keeps [start, addr)
            vmas.insert(i + 1, new)
            starts.insert(i + 1, addr)
            ends.insert(i + 1, end)
        return new

    def vma_merge(self, prev: Optional[RefVMA], start: int, end: int, newflags: int,
                  anon_vma: Any = None, file: Any = None, pgoff: Optional[int] = None,
                  name: Optional[str] = None, *, anon: bool = True,
                  shared: bool = False) -> Optional[RefVMA]:
        """Merge [start, end) with the RefVMA ending at start and/or the one starting at end,
        following vma_merge(); returns the RefVMA now covering [start, end), or None.

        [start, end) must be unmapped (mmap) or lie in one RefVMA (mprotect, madvise). A range
        strictly inside a RefVMA has no neighbours and never merges. prev is the RefVMA before
        start or the one containing it, checked for parity with the kernel; neighbours are
        found from the list.
        """
        if pgoff is None:
            pgoff = start >> PAGE_SHIFT
        area = self._merge_area(prev, start, end)
        if newflags & VM_SPECIAL:
            return None
        i = bisect_right(self._ends, start)              # first RefVMA with end > start
        before = self._vmas[i - 1] if i > 0 and self._ends[i - 1] == start else None
        k = i + 1 if area is not None else i
        after = self._vmas[k] if k < len(self._vmas) and self._starts[k] == end else None
        pglen = (end - start) >> PAGE_SHIFT
        merge_prev = before is not None and _can_merge_after(
            before, newflags, anon_vma, file, pgoff, name, anon, shared)
        merge_next = after is not None and _can_merge_before(
            after, newflags, anon_vma, file, pgoff + pglen, name, anon, shared)
        if merge_prev and merge_next and is_mergeable_anon_vma(before.anon_vma,
                                                               after.anon_vma):
            return self._merge_into_prev(before, area, after, end, anon_vma)
        if merge_prev:
            return self._merge_into_prev(before, area, None, end, anon_vma)
        if merge_next:
            return self._merge_into_next(area, after, start, pgoff, anon_vma)
        return None

    def _merge_area(self, prev: Optional[RefVMA], start: int, end: int) -> Optional[RefVMA]:
        """Check vma_merge's preconditions; return the RefVMA holding [start, end), if any."""
        if not (_aligned(start) and _aligned(end)) or not (0 <= start < end <= TASK_SIZE):
            raise PysimError(f"vma_merge: bad range [0x{start:x}, 0x{end:x})")
        area = self.vma_lookup(start)
        if area is not None and end > area.end:
            raise PysimError(f"vma_merge: [0x{start:x}, 0x{end:x}) spans more than {area!r}")
        if area is None and self.find_vma_intersection(start, end) is not None:
            raise PysimError(f"vma_merge: [0x{start:x}, 0x{end:x}) is partly mapped")
        if prev is not None and prev is not area and prev.end > start:
            raise PysimError(f"vma_merge: prev {prev!r} does not precede 0x{start:x}")
        return area

    def _merge_into_prev(self, before: RefVMA, area: Optional[RefVMA], after: Optional[RefVMA],
                         end: int, anon_vma: Any) -> RefVMA:
        """Extend before over [before.end, end) (and over after, if given); area shrinks
        from below or disappears. The survivor inherits the first anon_vma set."""
        new_end = after.end if after is not None else end
        _inherit_anon_vma(before, area, after, anon_vma)
        if after is not None:
            self._delete_at(self._index(after))
        if area is not None:
            if area.end <= new_end:
                self._delete_at(self._index(area))
            else:                                        # the head of area moved to before
                self._set_bounds(self._index(area), end, area.end, area.pgoff_at(end))
        self._set_bounds(self._index(before), before.start, new_end)
        return before

    def _merge_into_next(self, area: Optional[RefVMA], after: RefVMA, start: int,
                         pgoff: int, anon_vma: Any) -> RefVMA:
        """Extend after down to start; area loses its tail or disappears."""
        _inherit_anon_vma(after, area, None, anon_vma)
        if area is not None:
            if area.start < start:                       # the tail of area moved to after
                self._set_bounds(self._index(area), area.start, start)
            else:
                self._delete_at(self._index(area))
        self._set_bounds(self._index(after), start, after.end, pgoff)
        return after

    def vma_modify_flags(self, vma: RefVMA, prev: Optional[RefVMA], start: int, end: int,
                         newflags: int) -> RefVMA:
        """Give [start, end) of vma the flags newflags: merge with a neighbour if that
        makes them equal, else split at the range ends (madvise_update_vma's shape).
        Returns the RefVMA now covering [start, end)."""
        if not (vma.start <= start < end <= vma.end):
            raise PysimError(f"[0x{start:x}, 0x{end:x}) is not inside {vma!r}")
        if newflags == vma.flags:
            return vma
        merged = None
        vmas = self._vmas
        i = bisect_left(self._starts, vma.start)         # _index(vma), inline
        if i >= len(vmas) or vmas[i] is not vma:
            raise PysimError(f"{vma!r} is not in this VMAList")
        # only a range starting at vma.start can join the RefVMA ending there, only one
        # ending at vma.end the RefVMA starting there: skip vma_merge when neither touches
        if ((start == vma.start and i > 0 and self._ends[i - 1] == start)
                or (end == vma.end and i + 1 < len(vmas)
                    and self._starts[i + 1] == end)):
            merged = self.vma_merge(prev, start, end, newflags, vma.anon_vma, vma.file,
                                    vma.pgoff_at(start), vma.name, anon=vma.anon,
                                    shared=vma.shared)
        if merged is not None:
            vma = merged
        else:
            if start != vma.start:
                self.split_vma(vma, start, True)             # new_below
            if end != vma.end:
                self.split_vma(vma, end, False)
        vma.flags = newflags
        if self.page_prot_fn is not None:            # vma_set_page_prot()
            vma.page_prot = self.page_prot_fn(vma)
        return vma

    def mprotect_fixup(self, vma: RefVMA, prev: Optional[RefVMA], start: int, end: int,
                       newflags: int) -> RefVMA:
        """mprotect_fixup() metadata part: charge and add VM_ACCOUNT when a private
        mapping first becomes writable, then merge or split and set the flags.

        Returns the RefVMA now covering [start, end) (the kernel's new *pprev); it may
        extend past end after a merge with the next RefVMA. The caller does
        change_protection (and populates newly writable VM_LOCKED mappings).
        """
        oldflags = vma.flags
        if newflags == oldflags:
            if not (vma.start <= start < end <= vma.end):
                raise PysimError(f"[0x{start:x}, 0x{end:x}) is not inside {vma!r}")
            return vma
        if newflags & VM_WRITE and not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB
                                                   | VM_SHARED | VM_NORESERVE):
            newflags |= VM_ACCOUNT
        return self.vma_modify_flags(vma, prev, start, end, newflags)

    def anon_vma_prepare(self, vma: RefVMA, factory: Callable[[], Any] = object) -> Any:
        """Give vma an anon_vma on its first anonymous fault (anon_vma_prepare()): reuse
        the next, then the previous, neighbour's when anon_vma_compatible, else a new one."""
        if vma.anon_vma is not None:
            return vma.anon_vma
        i = self._index(vma)
        if i + 1 < len(self._vmas):
            nxt = self._vmas[i + 1]
            if nxt.anon_vma is not None and anon_vma_compatible(vma, nxt):
                vma.anon_vma = nxt.anon_vma
                return vma.anon_vma
        if i > 0:
            prv = self._vmas[i - 1]
            if prv.anon_vma is not None and anon_vma_compatible(prv, vma):
                vma.anon_vma = prv.anon_vma
                return vma.anon_vma
        vma.anon_vma = factory()
        return vma.anon_vma

    # -- free-range search --
    def get_unmapped_area(self, length: int, align: int = PAGE_SIZE,
                          hint: Optional[int] = None) -> int:
        """An address for a new mapping of length bytes (x86 top-down layout): the hint
        if free, else the highest fit below mmap_base, else the lowest fit above
        TASK_UNMAPPED_BASE; ENOMEM when nothing fits.

        Like vm_unmapped_area, a gap qualifies if it holds length + (align - PAGE_SIZE),
        so the aligned placement always fits. Stack guard gaps are not modelled.
        """
        if length <= 0 or not _aligned(length) or align < PAGE_SIZE or align & (align - 1):
            raise PysimError(f"get_unmapped_area: length 0x{length:x} and align 0x{align:x} "
                             f"must be page multiples, align a power of two")
        if length > TASK_SIZE:
            raise SyscallError(errno.ENOMEM, f"mmap: length 0x{length:x} exceeds TASK_SIZE")
        if hint:
            addr = max(hint & ~(PAGE_SIZE - 1), self.mmap_min_addr)
            free = self.find_vma_intersection(addr, addr + length) is None
            if addr <= TASK_SIZE - length and free:
                return addr
        padded = length + align - PAGE_SIZE
        low = max(PAGE_SIZE, self.mmap_min_addr)
        addr = self._unmapped_area_topdown(padded, length, align, low)
        if addr is None:
            addr = self._unmapped_area_bottomup(padded, align, max(TASK_UNMAPPED_BASE, low),
                                                TASK_SIZE)
        if addr is None:
            raise SyscallError(errno.ENOMEM, f"mmap: no free range of 0x{length:x} bytes "
                                             f"(align 0x{align:x}) in the address space")
        return addr

    def _reset_free_cache(self) -> None:
        """Forget the top-down search floor (after space above it was freed)."""
        self._free_floor = self.mmap_base
        self._free_floor_hole = 0

    def _unmapped_area_topdown(self, padded: int, length: int, align: int,
                               low: int) -> Optional[int]:
        """Highest gap in [low, mmap_base) holding padded bytes; place length at its top,
        aligned down. Starts at the cached floor when no gap above it can be big enough."""
        high = self.mmap_base
        use_floor = padded > self._free_floor_hole
        gap_end = self._free_floor if use_floor else high
        biggest_skipped = self._free_floor_hole if use_floor else 0
        j = bisect_left(self._starts, gap_end) - 1       # VMAs[j] starts below gap_end
        while True:
            if j >= 0 and self._ends[j] > gap_end:       # a RefVMA straddles gap_end
                gap_end = self._starts[j]
                j -= 1
                continue
            gap_start = max(self._ends[j], low) if j >= 0 else low
            if gap_end - gap_start >= padded:
                self._free_floor = gap_end
                self._free_floor_hole = biggest_skipped
                return (gap_end - length) & ~(align - 1)
            if gap_end > gap_start:
                biggest_skipped = max(biggest_skipped, gap_end - gap_start)
            if j < 0 or gap_start <= low:
                return None
            gap_end = self._starts[j]
            j -= 1

    def _unmapped_area_bottomup(self, padded: int, align: int, low: int,
                                high: int) -> Optional[int]:
        """Lowest gap in [low, high) holding padded bytes; place at its bottom, aligned up."""
        i = bisect_right(self._ends, low)
        gap_start = low
        while True:
            gap_end = min(self._starts[i], high) if i < len(self._vmas) else high
            if gap_end - gap_start >= padded:
                return (gap_start + align - 1) & ~(align - 1)
            if i >= len(self._vmas) or gap_end >= high:
                return None
            gap_start = max(self._ends[i], low)
            i += 1

    # -- checking --
    def check_invariants(self, check_merged: bool = True) -> None:
        """Raise AssertionError if VMAs are unsorted, overlapping, empty, unaligned, out
        of range, out of step with the index lists, or (check_merged) two adjacent VMAs
        satisfy the merge rule, which Linux would have merged."""
        assert len(self._vmas) == len(self._starts) == len(self._ends), "index lists differ"
        assert len(set(map(id, self._vmas))) == len(self._vmas), "a VMA is listed twice"
        prev: Optional[RefVMA] = None
        for i, vma in enumerate(self._vmas):
            assert (self._starts[i], self._ends[i]) == (vma.start, vma.end), \
                f"index lists out of step at {vma!r}"
            assert vma.start < vma.end, f"empty {vma!r}"
            assert _aligned(vma.start) and _aligned(vma.end), f"unaligned {vma!r}"
            assert 0 <= vma.start and vma.end <= TASK_SIZE, f"{vma!r} outside [0, TASK_SIZE)"
            if prev is not None:
                assert prev.end <= vma.start, f"{prev!r} overlaps or precedes {vma!r}"
                if check_merged:
                    assert not vmas_mergeable(prev, vma), \
                        f"{prev!r} and {vma!r} should have been merged"
            prev = vma
