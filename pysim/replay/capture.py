"""`pysim capture -o TRACE -- CMD ARGS`: record a program's memory syscalls (and, when
it can, its page faults) as a trace pysim replays.

The program runs under `strace -f -tt -y -e trace=memory,process -o TRACE`.  When we are
root and tracefs offers the exceptions:page_fault_user tracepoint, a private tracefs
instance (instances/pysim-<our pid>, so nobody else's tracing is disturbed) records the
program's user page faults on the monotonic clock, following its children (event-fork);
the instance is removed afterwards, on error too.  The faults of the traced tasks are
written beside the trace as TRACE.faults.jsonl (pysim's JSON-lines format, times on the
strace -tt clock: seconds since the local midnight of the capture's first day), which
`pysim replay --access faults TRACE` merges in time order.  Whatever could not be
captured (no strace, not root, no tracefs, lost events) is said plainly in
CaptureResult.missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from typing import List, Optional, Sequence

from ..errors import PysimError
from .events import Fault, Trace
from .jsonl import write_jsonl

__all__ = ["capture", "CaptureResult", "CaptureError", "STRACE_ARGS", "TRACEFS_ROOTS",
           "strace_clock_offset"]

STRACE_ARGS = ("-f", "-tt", "-y", "-e", "trace=memory,process")
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_EVENT = "events/exceptions/page_fault_user"
_LINE = re.compile(r"-(\d+)\s+\[(\d+)\][^:]*?\s(\d+\.\d+):\s+page_fault_user:\s+"
                   r"address=(\S+)\s+ip=\S+\s+error_code=(0x[0-9a-f]+)")
_LOST = re.compile(r"entries-in-buffer/entries-written:\s+(\d+)/(\d+)")
_PID = re.compile(r"^(?:\[pid\s+)?(\d+)")


class CaptureError(PysimError, RuntimeError):
    """A capture could not run at all (no strace, no command, cannot write TRACE)."""


class CaptureResult:
    """What a capture produced: the trace path, the faults path (or None), the
    program's exit status, the number of faults kept, and what could not be captured."""

    def __init__(self, trace: str, faults: Optional[str], returncode: int, nfaults: int,
                 missing: List[str]) -> None:
        self.trace, self.faults, self.returncode = trace, faults, returncode
        self.nfaults, self.missing = nfaults, missing

    def __repr__(self) -> str:
        return (f"CaptureResult({self.trace!r}, faults={self.faults!r}, "
                f"rc={self.returncode}, {self.nfaults} faults, missing={self.missing})")


def _tracefs() -> Optional[str]:
    """The mounted tracefs root that has instances/ and the page-fault event, or None."""
    for root in TRACEFS_ROOTS:
        if os.path.isdir(os.path.join(root, "instances")) and \
                os.path.isdir(os.path.join(root, _EVENT)):
            return root
    return None


def _no_tracefs_reason() -> str:
    """What to tell a root user whose tracefs cannot record page faults: not mounted
    (with the command that mounts it), or mounted without what the capture needs."""
    if not any(os.path.isfile(os.path.join(r, "trace")) for r in TRACEFS_ROOTS):
        return (f"page faults: tracefs is not mounted (mount -t tracefs nodev "
                f"{TRACEFS_ROOTS[0]})")
    return "page faults: no tracefs with instances/ and the exceptions:page_fault_user event"


def _write(path: str, value: str) -> None:
    """Write one tracefs control file."""
    with open(path, "w") as f:
        f.write(value)


class _FaultTracer:
    """A private tracefs instance recording page_fault_user on the mono clock."""

    def __init__(self, root: str, buffer_kb: int) -> None:
        self.dir = os.path.join(root, "instances", f"pysim-{os.getpid()}")
        os.mkdir(self.dir)
        try:
            clocks = open(os.path.join(self.dir, "trace_clock")).read()
            self.clock = "mono" if "mono" in clocks.replace("[", " ").split() else None
            if self.clock:
                _write(os.path.join(self.dir, "trace_clock"), "mono")
            _write(os.path.join(self.dir, "buffer_size_kb"), str(buffer_kb))
            _write(os.path.join(self.dir, "options", "event-fork"), "1")
            _write(os.path.join(self.dir, _EVENT, "enable"), "1")
        except BaseException:
            self.remove()
            raise

    def follow_self(self) -> None:
        """Run in the child before exec: trace this process and what it forks."""
        _write(os.path.join(self.dir, "set_event_pid"), str(os.getpid()))
        _write(os.path.join(self.dir, "tracing_on"), "1")

    def read(self) -> str:
        """Stop tracing and return the instance's buffer as text."""
        _write(os.path.join(self.dir, "tracing_on"), "0")
        with open(os.path.join(self.dir, "trace")) as f:
            return f.read()

    def remove(self) -> None:
        """Disable the event and remove the instance (errors ignored: best effort)."""
        for p, v in ((os.path.join(self.dir, "tracing_on"), "0"),
                     (os.path.join(self.dir, _EVENT, "enable"), "0")):
            try:
                _write(p, v)
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


def parse_fault_lines(text: str, pids: set, offset: float) -> List[Fault]:
    """Fault events of the tasks in pids from tracefs text; offset turns the
    tracepoint's clock into the strace -tt clock."""
    out = []
    for ln, line in enumerate(text.splitlines(), 1):
        m = _LINE.search(line)
        if m is None:
            continue
        pid = int(m.group(1))
        if pids and pid not in pids:
            continue
        try:
            va = int(m.group(4), 16)
        except ValueError:
            continue
        code = int(m.group(5), 16)
        kind = 2 if code & 0x10 else 1 if code & 0x2 else 0
        out.append(Fault(ln, round(float(m.group(3)) + offset, 6), pid, va, kind,
                         int(m.group(2))))
    return out


def _strace_pids(path: str) -> set:
    """The task ids an strace -f -o file mentions."""
    pids = set()
    with open(path, errors="replace") as f:
        for line in f:
            m = _PID.match(line)
            if m:
                pids.add(int(m.group(1)))
    return pids


def _first_time(path: str) -> Optional[float]:
    """The strace -tt time of the trace's first line, in seconds of the day."""
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^(?:\[pid\s+)?\d+\]?\s+(\d+):(\d\d):(\d\d\.\d+)", line)
            if m:
                return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def strace_clock_offset(samples: int = 32) -> float:
    """Seconds to add to a CLOCK_MONOTONIC time (the tracepoint's mono clock) to get
    the strace -tt clock, seconds since the local midnight.

    The realtime clock is read between two monotonic reads and the tightest of several
    such brackets is kept, its monotonic time taken at the bracket's middle, so the
    offset is good to well under a microsecond.  Reading the two clocks apart with work
    between them (a first localtime() loads the time zone) skews every fault by that
    work's duration, enough to put a write before the mprotect that allowed it."""
    best = None
    for _ in range(samples):
        m0 = time.monotonic_ns()
        wall = time.time_ns()
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, wall, (m0 + m1) // 2)
    _, wall, mono = best
    lt = time.localtime(wall // 1_000_000_000)
    of_day = (lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec) * 1_000_000_000 \
        + wall % 1_000_000_000
    return (of_day - mono) / 1e9


def capture(out: str, cmd: Sequence[str], faults: bool = True,
            buffer_kb: int = 65536) -> CaptureResult:
    """Run cmd under strace writing the trace to out (see the module docstring); with
    faults, also record its page faults when root and tracefs allow."""
    if not cmd:
        raise CaptureError("no command to capture (pysim capture -o TRACE -- CMD ARGS)")
    strace = shutil.which("strace")
    if strace is None:
        raise CaptureError("strace is not installed (apt-get install strace)")
    try:
        open(out, "w").close()
    except OSError as e:
        raise CaptureError(f"cannot write {out!r}: {e.strerror}") from None
    missing: List[str] = []
    tracer = None
    if faults:
        root = _tracefs()
        if os.geteuid() != 0:
            missing.append("page faults: tracefs needs root")
        elif root is None:
            missing.append(_no_tracefs_reason())
        else:
            try:
                tracer = _FaultTracer(root, buffer_kb)
                if tracer.clock is None:
                    missing.append("page faults: tracefs has no mono clock to align with "
                                   "strace")
                    tracer.remove()
                    tracer = None
            except OSError as e:
                missing.append(f"page faults: cannot set up a tracefs instance: {e}")
                tracer = None
    else:
        missing.append("page faults: not asked for")
    nfaults, fpath = 0, None
    try:
        offset = strace_clock_offset()
        try:
            proc = subprocess.run([strace, *STRACE_ARGS, "-o", out, "--", *cmd],
                                  preexec_fn=tracer.follow_self if tracer else None)
        except OSError as e:
            raise CaptureError(f"cannot run strace: {e.strerror}") from None
        if tracer is not None:
            text = tracer.read()
            lost = _LOST.search(text)
            if lost and int(lost.group(1)) < int(lost.group(2)):
                missing.append(f"page faults: {int(lost.group(2)) - int(lost.group(1))} "
                               f"events lost (buffer overrun; raise buffer_kb)")
            fl = parse_fault_lines(text, _strace_pids(out), offset)
            first = _first_time(out)
            if first is not None:
                early = [f for f in fl if f.time < first]
                if early:
                    # the fork child of strace, before its execve: not the program's
                    fl = [f for f in fl if f.time >= first]
            nfaults = len(fl)
            fpath = out + ".faults.jsonl"
            write_jsonl(Trace(fl, "tracefs", "exceptions:page_fault_user"), fpath,
                        header={"clock": "strace -tt: seconds since local midnight",
                                "command": list(cmd)})
    finally:
        if tracer is not None:
            tracer.remove()
    return CaptureResult(out, fpath, proc.returncode, nfaults, missing)
