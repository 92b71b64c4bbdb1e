"""Syscall arguments as the kernel sees them: machine integers.  Python and numpy
integers are accepted alike and become Python ints once, at the syscall boundary;
anything else -- floats, strings, None, and bools, which are ints to Python but never
what a caller means by an address, a length or a flag word -- is EINVAL naming the
argument."""
from __future__ import annotations

import errno
from typing import Any, Tuple

import numpy as np

from ..constants import PAGE_SIZE as _PAGE
from ..errors import SyscallError

_ULONG = 1 << 64                    # unsigned long arithmetic wraps here


def page_range_end(start: int, length: int) -> "int | None":
    """start + PAGE_ALIGN(length) on unsigned longs (both taken modulo 2**64): the
    range's end, or None where it wraps past 2**64 (an aligned length that wraps to 0
    gives an empty range, as in the kernel)."""
    end = start % _ULONG + (-(-(length % _ULONG) // _PAGE) * _PAGE) % _ULONG
    return end if end < _ULONG else None


def syscall_ints(call: str, names: Tuple[str, ...], *values: Any) -> Tuple[int, ...]:
    """The values as Python ints, or SyscallError(EINVAL) naming the first that is no
    integer (a bool included)."""
    for v in values:
        if type(v) is not int:
            break
    else:
        return values                   # all Python ints already: the common case
    out = []
    for name, v in zip(names, values):
        if type(v) is int:
            out.append(v)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(int(v))
        else:
            raise SyscallError(errno.EINVAL, f"{call}: {name} must be an integer, "
                                             f"got {type(v).__name__}")
    return tuple(out)
