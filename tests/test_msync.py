"""msync and mincore (pysim.mm.msync), each rule against mm/msync.c and mm/mincore.c;
tests/data/msync_mincore.c is the same cases captured on this machine's kernel."""
import errno

import pytest

from pysim import File
from pysim.constants import MAP_SHARED, MS_ASYNC, MS_INVALIDATE, MS_SYNC, PROT_READ, PROT_WRITE
from rigs import errno_of, written_thread

P = 4096


@pytest.fixture
def t():
    """16 pages of a shared file mapping, pages 0 and 5 written."""
    return written_thread(16, MAP_SHARED, File("f.dat"), written=(0, 5))


def test_msync_flags_and_range(t):
    """sys_msync: EINVAL for unknown flags, an unaligned start and MS_ASYNC with
    MS_SYNC (in that order); ENOMEM for a length that wraps; 0 for an empty range."""
    b = t.base
    for flags in (MS_SYNC, MS_ASYNC, MS_INVALIDATE, MS_SYNC | MS_INVALIDATE):
        assert t.msync(b, 16 * P, flags).value == 0
    assert errno_of(t.msync, b + 1, P, 8) == errno.EINVAL
    assert errno_of(t.msync, b, P, MS_SYNC | MS_ASYNC) == errno.EINVAL
    assert errno_of(t.msync, b + 1, P, MS_SYNC) == errno.EINVAL
    assert errno_of(t.msync, b, (1 << 64) - P, MS_SYNC) == errno.ENOMEM
    assert t.msync(b, 0, MS_SYNC).value == 0


def test_msync_holes_and_locked_vmas(t):
    """The walk skips a hole and reports ENOMEM at the end; plain MS_ASYNC stops at
    it; a range ending in a hole is ENOMEM; MS_INVALIDATE over VM_LOCKED is EBUSY."""
    b = t.base
    t.munmap(b + 4 * P, P)
    for flags in (MS_SYNC, MS_ASYNC, MS_INVALIDATE):
        assert errno_of(t.msync, b, 16 * P, flags) == errno.ENOMEM
    assert errno_of(t.msync, b + 4 * P, P, MS_SYNC) == errno.ENOMEM
    assert errno_of(t.msync, b + 4 * P, 2 * P, MS_ASYNC) == errno.ENOMEM
    q = t.mmap(2 * P, PROT_READ | PROT_WRITE)
    t.mlock(q, P)
    assert errno_of(t.msync, q, P, MS_INVALIDATE) == errno.EBUSY
    assert t.msync(q, P, MS_SYNC).value == 0


def test_mincore_reports_present_pages(t):
    """do_mincore: one byte a page, 1 where an entry is present; EINVAL for an
    unaligned start, ENOMEM at a hole (the pages before it reported), ENOMEM past
    user space (access_ok), EFAULT for a vector where nothing can be mapped."""
    b = t.base
    vec = []
    t.mincore(b, 8 * P, vec)
    assert vec == [1, 0, 0, 0, 0, 1, 0, 0]
    t.munmap(b + 2 * P, P)
    assert errno_of(t.mincore, b, 4 * P, vec) == errno.ENOMEM and vec == [1, 0]
    assert errno_of(t.mincore, b + 1, P, vec) == errno.EINVAL
    assert errno_of(t.mincore, (1 << 47) - P, 2 * P, vec) == errno.ENOMEM
    assert errno_of(t.mincore, b, P, 8) == errno.EFAULT
    assert t.mincore(b, 0, vec).value == 0 and vec == []
