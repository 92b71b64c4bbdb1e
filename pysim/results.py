"""What one operation cost, read from the delta rows of the CPUs it touched.

The rows come from mmucore.stats.OpAccount.finish(): row 0 is the sum, then one row per
CPU in the order the operation reached it (the initiator first).  Dicts are built only
when asked for, so an operation nobody inspects costs one small array.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List

import numpy as np

import mmucore
from mmucore import stats

KERNEL_COUNTERS = stats.KERNEL_COUNTER_NAMES
BREAKDOWN = stats.BREAKDOWN_NAMES
_COL = stats.COLUMNS
_HW, _HWY, _K, _B = _COL["hw"], _COL["hw_cycles"], _COL["kernel"], _COL["breakdown"]
_CYCLES = _COL["cycles"]
# event name -> column; kernel counters first, then the core's hardware counters
_EVENT_COL: Dict[str, int] = {n: _K + i for i, n in enumerate(KERNEL_COUNTERS)}
_EVENT_COL.update({n: _HW + i for i, n in enumerate(mmucore.COUNTER_NAMES)})
_HW_NAMES = tuple(mmucore.COUNTER_NAMES)
# breakdown category -> the columns that add up to it (kernel cycles, hardware cycles)
_CAT_COLS: Dict[str, List[int]] = {n: [_B + i] for i, n in enumerate(BREAKDOWN)}
for _i, _n in enumerate(mmucore.CYCLE_NAMES):
    _CAT_COLS[stats.HW_CYCLE_CATEGORY[_n]].append(_HWY + _i)


# One page fault an operation took: the access's index in its batch (-1 for a populate),
# the address, the access kind (mmucore.READ/WRITE/FETCH) and the handler's outcome
# ("anon", "zero_page", "thp", "file", "wp_reuse", "cow", "spurious", "numa", "sigsegv", "sigbus").
Fault = namedtuple("Fault", "index va kind outcome")


class Events(Mapping):
    """Event counts of one row: every kernel counter and every hardware counter, zero
    or not (the repr shows the ones that happened)."""

    __slots__ = ("_row",)

    def __init__(self, row: np.ndarray):
        self._row = row

    def __getitem__(self, name: str) -> int:
        return int(self._row[_EVENT_COL[name]])

    def get(self, name: str, default: Any = None) -> Any:
        col = _EVENT_COL.get(name)
        return default if col is None else int(self._row[col])

    def __contains__(self, name: object) -> bool:
        return name in _EVENT_COL

    def __iter__(self) -> Iterator[str]:
        return iter(_EVENT_COL)

    def __len__(self) -> int:
        return len(_EVENT_COL)

    def __repr__(self) -> str:
        return repr({k: v for k, v in self.items() if v})


def _breakdown(row: np.ndarray) -> Dict[str, float]:
    """Cycles of one row by category, the categories with nothing left out."""
    out = {}
    for name, cols in _CAT_COLS.items():
        v = float(sum(row[c] for c in cols))
        if v:
            out[name] = v
    return out


def _nonzero_events(row: np.ndarray) -> Dict[str, int]:
    return {n: int(row[c]) for n, c in _EVENT_COL.items() if row[c]}


class OpResult(stats.OpRecord):
    """What one operation cost: the initiating CPU's cycles, by category, and the events
    every CPU it touched saw (kernel counters plus the core's TLB counters).

    `value` is the syscall's return value (mmap's address, 0 for the others, the number
    of completed accesses for an access batch); `faults` lists (index, va, kind,
    outcome) for each page fault the operation took.
    """

    __slots__ = ()

    @property
    def cycles(self) -> float:
        """Cycles the initiating CPU spent on the operation."""
        return float(self.rows[1, _CYCLES])

    @property
    def events(self) -> Events:
        """Event counts summed over every CPU the operation touched."""
        return Events(self.rows[0])

    @property
    def breakdown(self) -> Dict[str, float]:
        """The initiating CPU's cycles by category (syscall, pte, flush, ipi, ...)."""
        return _breakdown(self.rows[1])

    @property
    def cpus(self) -> List[int]:
        """The CPUs the operation touched, the initiator first."""
        return [int(c) for c in self.rows[1:, 0]]

    @property
    def cpu_events(self) -> Dict[int, Dict[str, int]]:
        """Per touched CPU, its non-zero event counts."""
        return {int(r[0]): _nonzero_events(r) for r in self.rows[1:]}

    @property
    def cpu_cycles(self) -> Dict[int, float]:
        """Per touched CPU, the cycles the operation cost it."""
        return {int(r[0]): float(r[_CYCLES]) for r in self.rows[1:]}

    def __repr__(self) -> str:
        ev = {k: v for k, v in self.events.items() if v}
        return f"OpResult({self.op} on cpu{self.cpu}: {self.cycles:.0f} cycles, {ev})"
