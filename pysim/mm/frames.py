"""The physical frame allocator: anonymous frames below mmucore.FILE_PFN_BASE and
page-cache frames at and above it (how the core's per-entry rules tell PageAnon), plus
the shared zero page."""
from __future__ import annotations

import mmucore

from .lru import LruVec

from ..errors import PysimError

ZERO_PFN = 0x100            # the shared zero page's frame
FIRST_ANON_PFN = 0x1000


class Frames:
    """Consecutive fresh frames, never reused (the model has no page allocator to
    recycle them; 2^39 anonymous frames is 2 PiB)."""

    __slots__ = ("next_pfn", "next_file_pfn", "zero_pfn", "shared", "lruvec")

    def __init__(self) -> None:
        self.next_pfn = FIRST_ANON_PFN
        self.next_file_pfn = mmucore.FILE_PFN_BASE
        self.zero_pfn = ZERO_PFN
        # anonymous frames fork left mapped in more than one mm: pfn -> how many
        # mappings (folio_mapcount); such a page is not exclusive, and a write copies it
        self.shared: dict = {}
        self.lruvec = LruVec()          # the LRU lists the allocated pages go on

    def __getstate__(self):
        return (self.next_pfn, self.next_file_pfn, self.zero_pfn, self.shared)

    def __setstate__(self, state) -> None:
        self.next_pfn, self.next_file_pfn, self.zero_pfn = state[:3]
        self.shared = state[3] if len(state) > 3 else {}
        self.lruvec = LruVec()

    def unshare(self, pfn: int) -> int:
        """One mapping of a fork-shared frame went away (COW copy, teardown); returns
        how many mappings were left before (1 if the frame was exclusive)."""
        n = self.shared.get(pfn, 1)
        if n <= 2:
            self.shared.pop(pfn, None)
        else:
            self.shared[pfn] = n - 1
        return n

    def alloc(self, n: int, align: int = 1) -> int:
        """n consecutive fresh anonymous frames (aligned to `align` frames)."""
        pfn = -(-self.next_pfn // align) * align
        if pfn + n > mmucore.FILE_PFN_BASE:
            raise PysimError("out of simulated anonymous frames (PFNs below 2^39)")
        self.next_pfn = pfn + n
        return pfn

    def alloc_file(self, n: int) -> int:
        """n consecutive fresh page-cache frames (file or shmem pages)."""
        pfn = self.next_file_pfn
        if pfn + n > 1 << 40:
            raise PysimError("out of simulated page-cache frames (40-bit PFN space)")
        self.next_file_pfn = pfn + n
        return pfn

    def is_anon(self, pfn: int) -> bool:
        """PageAnon(pfn_to_page(pfn)) in the model: an anonymous frame, not the zero page."""
        return pfn < mmucore.FILE_PFN_BASE and pfn != self.zero_pfn
