"""The events a replay runs, whatever trace format they came from.

A parser (parse_strace, jsonl) turns a trace into a `Trace`: a list of `Call` events (a
system call with its arguments decoded to the integers the kernel saw, its traced result
and errno), `Fault` events (a user page fault at an address) and `Exit` events (a task
ended), each with the trace's line number, a time in seconds and the task id; beside
the events, the fault signals (SIGSEGV, SIGBUS) the trace shows delivered.  The engine
never looks at trace text, so every format replays the same way.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Tuple

from ..errors import PysimError

__all__ = ["TraceError", "Call", "Fault", "Exit", "Signal", "Trace", "gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside the block (restoring its state after).
    A parser or a replay builds one object per event and keeps them all: each
    collection the allocations trigger would walk the growing lists again (some 4% of a
    syscall-only replay, 10-15% of parsing), and no cycle they make needs freeing before
    the block ends; what cycles there are wait for the next collection.

    When the block ends normally, what it made goes straight to the oldest generation
    (gc.freeze() then gc.unfreeze(): two list merges, no scan) instead of waiting in
    the youngest for the first collection after the block, which would visit every one
    of those objects, cold in the cache (some 30 ms after parsing 60,000 calls, 15% of
    the parse): they are kept, as objects surviving that collection would be, and a
    cycle among them (or among other young objects of the program) waits for the next
    full collection.  Not done when the program has frozen objects of its own, which
    gc.unfreeze() would release."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    except BaseException:
        if enabled:
            gc.enable()
        raise
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
    if enabled:
        gc.enable()


class TraceError(PysimError, ValueError):
    """A trace cannot be read: the message names the file and line (`line` repeats it)."""

    def __init__(self, message: str, line: Optional[int] = None,
                 source: Optional[str] = None) -> None:
        where = ""
        if source is not None and line is not None:
            where = f"{source}:{line}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)
        self.msg = message
        self.line = line
        self.source = source


class Call:
    """One system call: `name`, `args` (a tuple of ints in the kernel's argument order;
    see jsonl for each call's list), `path` (the file behind mmap's fd, when known),
    `result` (the traced return value, None for `?`), `errno` (its symbolic name when
    the call failed, else None)."""

    __slots__ = ("line", "time", "pid", "name", "args", "path", "result", "errno")
    kind = "call"

    def __init__(self, line: int, time: Optional[float], pid: int, name: str,
                 args: Tuple[Any, ...], result: Optional[int], errno: Optional[str],
                 path: Optional[str] = None) -> None:
        # one store per slot (a parser makes one Call per line: no tuple packed and
        # unpacked each time)
        self.line = line
        self.time = time
        self.pid = pid
        self.name = name
        self.args = args
        self.result = result
        self.errno = errno
        self.path = path

    @property
    def ok(self) -> bool:
        """The traced call succeeded (no errno)."""
        return self.errno is None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        res = self.errno if self.errno else (hex(self.result) if isinstance(
            self.result, int) else self.result)
        return f"Call(line {self.line}, pid {self.pid}, {self.name}{self.args} = {res})"


class Fault:
    """One user page fault: the task, the address, the access kind (0 read, 1 write,
    2 fetch: mmucore.READ/WRITE/FETCH) and, when the capture saw it, the CPU."""

    __slots__ = ("line", "time", "pid", "va", "access", "cpu")
    kind = "fault"

    def __init__(self, line: int, time: Optional[float], pid: int, va: int, access: int,
                 cpu: Optional[int] = None) -> None:
        self.line, self.time, self.pid, self.va = line, time, pid, va
        self.access, self.cpu = access, cpu

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fault) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"Fault(line {self.line}, pid {self.pid}, 0x{self.va:x}, kind {self.access})"


class Signal:
    """A fault signal the trace shows delivered (SIGSEGV or SIGBUS, with its si_addr):
    not replayed, but what the model's own answer to a traced fault is checked
    against (a fault the model answers with a signal the program never got means the
    model's state, or the trace's order, is wrong)."""

    __slots__ = ("line", "time", "pid", "name", "addr")
    kind = "signal"

    def __init__(self, line: int, time: Optional[float], pid: int, name: str,
                 addr: int) -> None:
        self.line, self.time, self.pid, self.name, self.addr = line, time, pid, name, addr

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signal) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"Signal(line {self.line}, pid {self.pid}, {self.name} at 0x{self.addr:x})"


class Exit:
    """A task ended (strace's `+++ exited with N +++` or `+++ killed by SIG +++`)."""

    __slots__ = ("line", "time", "pid", "status")
    kind = "exit"

    def __init__(self, line: int, time: Optional[float], pid: int, status: str) -> None:
        self.line, self.time, self.pid, self.status = line, time, pid, status

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exit) and all(
            getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"Exit(line {self.line}, pid {self.pid}, {self.status})"


class Trace:
    """A parsed trace: its events in the order they happened, the format it came in,
    where it came from, and notes on what the parser had to infer."""

    def __init__(self, events: List[Any], fmt: str, source: str = "<trace>",
                 notes: Optional[List[str]] = None,
                 signals: Optional[List[Signal]] = None) -> None:
        self.events = events
        self.format = fmt
        self.source = source
        self.notes = list(notes or [])
        self.signals = list(signals or [])      # fault signals delivered (see Signal)

    @property
    def calls(self) -> List[Call]:
        """The Call events alone."""
        return [e for e in self.events if e.kind == "call"]

    @property
    def faults(self) -> List[Fault]:
        """The Fault events alone."""
        return [e for e in self.events if e.kind == "fault"]

    @property
    def pids(self) -> List[int]:
        """Every task id the trace mentions, in order of first appearance."""
        seen: dict = {}
        for e in self.events:
            seen.setdefault(e.pid, None)
        return list(seen)

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        return (f"Trace({self.source!r}, {self.format}, {len(self.calls)} calls, "
                f"{len(self.faults)} faults, {len(self.pids)} tasks)")
