"""Per-call records of a replay: one row per traced call (and per access batch).

Columns: `line` (the trace's line number), `pid`, `cpu`, `call`, `args` (as text),
`traced` (the traced return value, None when there was none), `traced_errno`, `sim`
(the simulated return value, None when it failed), `sim_errno`, `status` ("match",
"diverged", "unsupported", "process" for task bookkeeping, "access" for an access
batch), `note` (why a record diverged or was unsupported), `cycles` (the initiating
CPU's), then one column per event counter (kernel counters, then the core's hardware
counters).  Rows are gathered as plain tuples, and each call's event totals as one row
of a TotalsLog (a C buffer, not one numpy array kept per call), so recording costs
little; the DataFrame, Parquet and JSON forms are built when asked for.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import numpy as np

from mmucore.stats import TotalsLog

from ..results import _EVENT_COL
from .events import Call

__all__ = ["Records", "EVENT_NAMES"]

EVENT_NAMES = tuple(_EVENT_COL)
_COLS = np.array([_EVENT_COL[n] for n in EVENT_NAMES], dtype=np.intp)
_BASE = ("line", "pid", "cpu", "call", "args", "traced", "traced_errno", "sim",
         "sim_errno", "status", "note", "cycles")


def _args_of(args: Any) -> Any:
    """The args column's value: (args, path) of a traced call the replay recorded as its
    Call event (no pair built per record: each one made was one more object for the
    cyclic collector to scan after the run), else what was recorded."""
    return (args.args, args.path) if type(args) is Call else args


def _fmt_args(args: Any) -> str:
    """The argument column's text: hex for addresses and big values."""
    if isinstance(args, str):
        return args
    vals, path = _args_of(args)
    parts = []
    for a in vals:
        if isinstance(a, int):
            parts.append(hex(a) if a > 4096 or a < -1 else str(a))
        else:
            parts.append(str(a))
    s = ", ".join(parts)
    return s + (f", {path}" if path else "")


class Records:
    """The records of one replay (see the module docstring); notes and image_vmas say
    what the replay inferred and how many exec-image mappings it made."""

    def __init__(self) -> None:
        self._rows: List[tuple] = []
        self._totals = TotalsLog()          # each record's events row (zeros if none)
        self.notes: List[str] = []
        self.image_vmas = 0
        self.profile: Optional[str] = None
        self.preset: Optional[str] = None
        self.timeline: Any = None             # the TimelineResult of a timeline replay
        self.task_times: Optional[List[dict]] = None   # and its per-task times

    def add(self, line: int, pid: int, cpu: int, call: str, args: Any, traced: Any,
            traced_errno: Optional[str], sim: Any, sim_errno: Optional[str], status: str,
            note: Optional[str], r: Any) -> None:
        """Append one record; r is the operation's OpResult (None when it raised)."""
        if r is not None:
            cycles = self._totals.add(r.rows)       # .rows[0] kept, OpResult.cycles back
        else:
            self._totals.add_zeros()
            cycles = 0.0
        self._rows.append((line, pid, cpu, call, args, traced, traced_errno, sim,
                           sim_errno, status, note, cycles))

    def __len__(self) -> int:
        return len(self._rows)

    def events_array(self) -> np.ndarray:
        """(records x EVENT_NAMES) int64 event counts; zero for calls that raised."""
        return self._totals.totals()[:, _COLS].astype(np.int64)

    def column(self, name: str) -> list:
        """One base column as a list."""
        k = _BASE.index(name)
        if name == "args":
            return [_args_of(r[4]) for r in self._rows]
        return [r[k] for r in self._rows]

    @property
    def statuses(self) -> Dict[str, int]:
        """How many records have each status."""
        out: Dict[str, int] = {}
        for r in self._rows:
            out[r[9]] = out.get(r[9], 0) + 1
        return out

    def diverged(self) -> list:
        """The diverged records as dicts (for a report or a test message)."""
        return [self._dict(i) for i, r in enumerate(self._rows) if r[9] == "diverged"]

    def _dict(self, i: int, events: Optional[np.ndarray] = None) -> dict:
        """Record i as a dict, with its non-zero events when given the events row."""
        r = self._rows[i]
        d = dict(zip(_BASE, r))
        d["args"] = _fmt_args(r[4])
        if events is not None:
            d["events"] = {EVENT_NAMES[k]: int(v) for k, v in enumerate(events) if v}
        return d

    def to_dataframe(self):
        """The records as a pandas DataFrame (one row per record)."""
        import pandas as pd
        base = {name: [r[k] for r in self._rows] for k, name in enumerate(_BASE)}
        base["args"] = [_fmt_args(a) for a in base["args"]]
        for k in ("traced", "sim"):
            base[k] = pd.array([v if isinstance(v, int) else None for v in base[k]],
                               dtype="Int64") if all(
                v is None or (isinstance(v, int) and -2 ** 63 <= v < 2 ** 63)
                for v in base[k]) else [str(v) if v is not None else None for v in base[k]]
        df = pd.DataFrame(base)
        ev = self.events_array()
        for k, name in enumerate(EVENT_NAMES):
            df[name] = ev[:, k]
        df.attrs["pysim_replay"] = {"notes": list(self.notes), "image_vmas": self.image_vmas,
                                    "profile": self.profile, "preset": self.preset}
        return df

    def to_parquet(self, path: str) -> None:
        """Write the DataFrame to a Parquet file (needs pyarrow)."""
        df = self.to_dataframe()
        df.attrs = {}
        df.to_parquet(path, index=False)

    def to_json_list(self) -> List[dict]:
        """The records as JSON-ready dicts, each with its non-zero events."""
        ev = self.events_array()
        return [self._dict(i, ev[i]) for i in range(len(self._rows))]

    def to_json(self) -> str:
        """The records as a JSON array."""
        return json.dumps(self.to_json_list())
