"""Replay real programs' memory-management system calls on the simulated machine.

    import pysim
    res = pysim.replay("tests/data/c_malloc.strace", profile=["patched", "v6.0"])
    res.summary()            # one row per profile: flushes, INVLPGs, IPIs, faults, cycles
    res.records[0].to_dataframe()   # one row per traced call, traced beside simulated

A trace is `strace -f -tt [-y] [-e trace=memory,process]` text (parse_strace) or pysim's
JSON-lines event format (jsonl); `pysim capture -o TRACE -- CMD` records one (capture).
The modules: events (what a trace is made of), parse_strace, jsonl, image (the memory
exec maps), engine (the replay), accesses (the access models), records, summary, capture.
The package is callable: `pysim.replay(...)` is `pysim.replay.replay(...)`.
"""
from __future__ import annotations

import os
import sys
import types
from typing import Any, List, Optional, Sequence, Union

from .events import Call, Exit, Fault, Trace, TraceError
from .accesses import ACCESS_MODELS
from .engine import PIN_POLICIES, Replay
from .records import Records
from .summary import summarize

__all__ = ["replay", "load_trace", "ReplayResult", "Trace", "TraceError", "Call", "Fault",
           "Exit", "Records", "ACCESS_MODELS", "PIN_POLICIES"]


def load_trace(path: str, faults: Optional[str] = None) -> Trace:
    """Read the trace at path: JSON lines when it ends in .jsonl or its first non-blank
    character is `{`, else strace text; either may be gzip-compressed (a name ending in
    .gz).  Fault events from `faults` (a JSON-lines file; by default PATH.faults.jsonl
    or PATH.faults.jsonl.gz when one exists, as `pysim capture` writes) are merged in
    time order."""
    from .jsonl import read_jsonl
    from .parse_strace import open_text, parse_strace
    if not isinstance(path, (str, os.PathLike)):
        raise TraceError(f"a trace must be a file path or a Trace, got {type(path).__name__}")
    path = os.fspath(path)
    try:
        with open_text(path) as f:
            head = f.read(4096).lstrip()
    except (OSError, EOFError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise TraceError(f"cannot read trace {path!r}: {why}") from None
    is_json = path.endswith((".jsonl", ".json", ".jsonl.gz")) or head.startswith("{")
    trace = read_jsonl(path) if is_json else parse_strace(path)
    if faults is None:
        for side in (path + ".faults.jsonl", path + ".faults.jsonl.gz"):
            if os.path.exists(side):
                faults = side
                break
    if faults is not None:
        if not isinstance(faults, (str, os.PathLike)):
            raise TraceError(f"faults must be a file path, got {type(faults).__name__}")
        try:
            fault_trace = read_jsonl(os.fspath(faults))
        except OSError as e:
            raise TraceError(f"cannot read faults {os.fspath(faults)!r}: "
                             f"{e.strerror}") from None
        merge_faults(trace, fault_trace.faults)
    return trace


def merge_faults(trace: Trace, faults: Sequence[Fault]) -> None:
    """Merge fault events into trace in time order (a fault at the same time as a call
    goes after it); TraceError when either side lacks times."""
    if not faults:
        return
    if any(e.time is None for e in trace.events) or any(f.time is None for f in faults):
        raise TraceError("cannot merge page faults into a trace without timestamps "
                         "(strace -tt)")
    evs = [(e.time, 0, i, e) for i, e in enumerate(trace.events)]
    evs += [(f.time, 1, i, f) for i, f in enumerate(faults)]
    evs.sort(key=lambda x: (x[0], x[1], x[2]))
    trace.events = [x[3] for x in evs]


class ReplayResult:
    """The replays of one trace, one Records per (profile, preset): summary() side by
    side, to_dataframe() every record with its profile and preset."""

    def __init__(self, trace: Trace, records: List[Records], access: str, pin: str,
                 cpus: int) -> None:
        self.trace, self.records = trace, records
        self.access, self.pin, self.cpus = access, pin, cpus

    @property
    def notes(self) -> List[str]:
        """What the replay inferred (the first run's; every run infers the same)."""
        return self.records[0].notes if self.records else []

    def summary(self):
        """One row per (profile, preset): see pysim.replay.summary."""
        return summarize(self.records)

    def to_dataframe(self):
        """Every record of every run, with profile and preset columns."""
        import pandas as pd
        frames = []
        for r in self.records:
            df = r.to_dataframe()
            df.insert(0, "preset", r.preset)
            df.insert(0, "profile", r.profile)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def __repr__(self) -> str:
        return (f"ReplayResult({self.trace!r}, {len(self.records)} runs, access "
                f"{self.access}, {self.cpus} cpus, pin {self.pin})")


def replay(trace: Union[str, Trace], profile: Any = "patched", preset: Any = "skylake",
           access: str = "none", cpus: Optional[int] = None, pin: str = "round-robin",
           checker: Any = False, elf: bool = True, faults: Optional[str] = None,
           timeline: bool = False, **unknown: Any) -> ReplayResult:
    """Replay trace (a path or a Trace) under each profile (a name or a list) on a
    fresh Machine of `cpus` CPUs (default: one per traced task, at most 8) with the
    preset; `access` names the access model, `pin` the policy placing threads on CPUs,
    `checker` the safety checker's mode (off by default: it doubles a replay's time),
    `elf` whether exec images read the traced binaries' ELF headers when present,
    `timeline` whether the tasks run at once on the timeline (pysim.replay.timed; each
    run's Records then carry .timeline and .task_times) instead of one after another."""
    from ..machine import Machine
    import numpy as np
    from ..errors import ConfigError, no_unknown_keywords
    no_unknown_keywords("replay", unknown, ("profile", "preset", "access", "cpus", "pin",
                                            "checker", "elf", "faults"))
    if not isinstance(elf, (bool, np.bool_)):
        raise ConfigError(f"elf must be True or False, got {elf!r}", field="elf")
    tr = trace if isinstance(trace, Trace) else load_trace(trace, faults=faults)
    if cpus is None:
        cpus = max(1, min(8, len(tr.pids)))
    profiles = [profile] if isinstance(profile, str) or not isinstance(
        profile, (list, tuple)) else list(profile)
    presets = [preset] if isinstance(preset, str) or not isinstance(
        preset, (list, tuple)) else list(preset)
    for name, given in (("profile", profiles), ("preset", presets)):
        if not given:
            raise ConfigError(f"{name} must be a name or a non-empty list of names",
                              field=name)
    runs = []
    for pr in presets:
        for pf in profiles:
            m = Machine(cpus=cpus, preset=pr, profile=pf, checker=checker)
            rec = Replay(tr, m, access=access, pin=pin, elf=elf, timeline=timeline).run()
            rec.profile, rec.preset = m.profile.name, m.preset.name
            runs.append(rec)
    return ReplayResult(tr, runs, access, pin, cpus)


class _CallableModule(types.ModuleType):
    """This package's module type: calling it calls replay()."""

    def __call__(self, *args: Any, **kwargs: Any) -> ReplayResult:
        """pysim.replay(...) is pysim.replay.replay(...)."""
        return replay(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
