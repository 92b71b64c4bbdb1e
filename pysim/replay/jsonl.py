"""pysim's JSON-lines trace format, for capture tools other than strace.

One JSON object per line; blank lines and lines starting with `#` are skipped.  Every
event has `"type"`, `"pid"` (the task id: a thread's tid) and `"t"` (seconds, any epoch,
the same clock for every event of a file; may be null when unknown, then file order is
time order).  Numbers are JSON integers (never strings, never hex).

    {"type": "header", "format": "pysim-trace", "version": 1, ...}
        optional, first line; other keys are free-form metadata (the command, the
        capture tool, what it could not capture), kept in Trace.notes.
    {"type": "syscall", "t": 12.000731, "pid": 4242, "name": "mmap",
     "args": [0, 8192, 3, 34, -1, 0], "result": 139637000814592, "errno": null}
        one system call, with its arguments in the kernel's order:
          mmap [addr, length, prot, flags, fd, offset]   (+ "path": the fd's file)
          munmap [addr, length]         mprotect [addr, length, prot]
          madvise [addr, length, advice]  brk [addr]
          mremap [old_addr, old_len, new_len, flags, new_addr]
          mlock [addr, len]  mlock2 [addr, len, flags]  munlock [addr, len]
          mlockall [flags]  munlockall []  pkey_alloc [flags, access_rights]
          pkey_free [pkey]  pkey_mprotect [addr, len, prot, pkey]  mseal [addr, len, flags]
          process_madvise [pidfd, [[base, len], ...], vlen, advice, flags]
          clone / clone3 / fork / vfork [clone_flags]   (result: the new task's id)
          execve [path]     exit / exit_group [status]
        `result` is the return value (null when the call did not return, e.g. exit);
        a failed call has `"result": -1, "errno": "ENOMEM"` (the symbolic name).
        Any other name is kept, and the replay reports it as a call it does not model.
    {"type": "fault", "t": 12.000802, "pid": 4242, "addr": 139637000814600,
     "access": "write", "cpu": 1}
        a user page fault: access is "read", "write" or "fetch"; cpu optional.
    {"type": "exit", "t": 12.1, "pid": 4242, "status": "exited with 0"}
        the task ended.
    {"type": "signal", "t": 12.05, "pid": 4242, "signal": "SIGSEGV", "addr": 16}
        a fault signal (SIGSEGV or SIGBUS) delivered, with its si_addr: not replayed,
        but a fault the model answers with a signal is checked against these.

`write_jsonl(trace, path)` and `read_jsonl(path)` round-trip a Trace exactly; a path
ending in .gz is read (and written) gzip-compressed.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, List

from .events import Call, Exit, Fault, Signal, Trace, TraceError

__all__ = ["read_jsonl", "parse_jsonl_lines", "write_jsonl", "event_to_json"]

_ACCESS = {"read": 0, "write": 1, "fetch": 2}
_ACCESS_NAME = {v: k for k, v in _ACCESS.items()}


def _plain(v: Any) -> Any:
    """Tuples (iovecs) as JSON lists, recursively."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _tupled(v: Any) -> Any:
    """JSON lists back to the tuples the parsers produce."""
    if isinstance(v, list):
        return tuple(_tupled(x) for x in v)
    return v


def event_to_json(e: Any) -> str:
    """One event as a JSON line (no newline)."""
    if e.kind == "call":
        d = {"type": "syscall", "t": e.time, "pid": e.pid, "name": e.name,
             "args": _plain(e.args), "result": e.result, "errno": e.errno}
        if e.path is not None:
            d["path"] = e.path
        d["line"] = e.line
    elif e.kind == "fault":
        d = {"type": "fault", "t": e.time, "pid": e.pid, "addr": e.va,
             "access": _ACCESS_NAME[e.access], "line": e.line}
        if e.cpu is not None:
            d["cpu"] = e.cpu
    elif e.kind == "signal":
        d = {"type": "signal", "t": e.time, "pid": e.pid, "signal": e.name, "addr": e.addr,
             "line": e.line}
    else:
        d = {"type": "exit", "t": e.time, "pid": e.pid, "status": e.status, "line": e.line}
    return json.dumps(d, separators=(",", ":"))


def write_jsonl(trace: Trace, path: str, header: Any = None) -> None:
    """Write trace to path in this format (a header line first, with `header` merged in).
    Each event keeps its original line number as `"line"`, so a replay of the converted
    file still points at the first trace's lines."""
    head = {"type": "header", "format": "pysim-trace", "version": 1,
            "source": trace.source, "source_format": trace.format, "notes": trace.notes}
    head.update(header or {})
    if path.endswith(".gz"):
        import gzip
        opener = gzip.open(path, "wt", encoding="utf-8")
    else:
        opener = open(path, "w", encoding="utf-8")
    with opener as f:
        f.write(json.dumps(head) + "\n")
        for e in trace.events:
            f.write(event_to_json(e) + "\n")
        for e in trace.signals:
            f.write(event_to_json(e) + "\n")


def _int(d: dict, key: str, ln: int) -> int:
    """d[key] as an int, or a TraceError naming the key and line."""
    v = d.get(key)
    if type(v) is not int:
        raise TraceError(f"{key!r} must be an integer, got {v!r}", ln)
    return v


def parse_jsonl_lines(lines: Iterable[str], source: str = "<jsonl>") -> Trace:
    """Parse JSON lines (the format above) into a Trace."""
    events: List[Any] = []
    notes: List[str] = []
    signals: List[Signal] = []
    for ln, raw in enumerate(lines, 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        try:
            d = json.loads(s)
        except ValueError as e:
            raise TraceError(f"not JSON: {e.msg}", ln, source) from None
        if not isinstance(d, dict):
            raise TraceError("each line must be a JSON object", ln, source)
        typ = d.get("type")
        try:
            if typ == "header":
                if d.get("format") not in (None, "pysim-trace"):
                    raise TraceError(f"format {d.get('format')!r} is not pysim-trace", ln)
                notes.extend(str(n) for n in d.get("notes") or [])
                continue
            t = d.get("t")
            if t is not None and not isinstance(t, (int, float)):
                raise TraceError(f"'t' must be a number of seconds, got {t!r}", ln)
            pid = _int(d, "pid", ln)
            at = d.get("line", ln) if type(d.get("line")) is int else ln
            if typ == "syscall":
                name = d.get("name")
                if not isinstance(name, str) or not name:
                    raise TraceError("'name' must be a syscall name", ln)
                args = d.get("args", [])
                if not isinstance(args, list):
                    raise TraceError("'args' must be a list", ln)
                res, err = d.get("result"), d.get("errno")
                if res is not None and type(res) is not int:
                    raise TraceError(f"'result' must be an integer or null, got {res!r}", ln)
                if err is not None and not isinstance(err, str):
                    raise TraceError(f"'errno' must be a name like \"ENOMEM\", got {err!r}",
                                     ln)
                events.append(Call(at, t, pid, name, _tupled(args), res, err, d.get("path")))
            elif typ == "fault":
                acc = d.get("access", "read")
                if acc not in _ACCESS:
                    raise TraceError(f"'access' must be read, write or fetch, got {acc!r}",
                                     ln)
                cpu = d.get("cpu")
                events.append(Fault(at, t, pid, _int(d, "addr", ln), _ACCESS[acc],
                                    cpu if type(cpu) is int else None))
            elif typ == "exit":
                events.append(Exit(at, t, pid, str(d.get("status", "exited"))))
            elif typ == "signal":
                name = d.get("signal")
                if name not in ("SIGSEGV", "SIGBUS"):
                    raise TraceError(f"'signal' must be SIGSEGV or SIGBUS, got {name!r}",
                                     ln)
                signals.append(Signal(at, t, pid, name, _int(d, "addr", ln)))
            else:
                raise TraceError(f"unknown event type {typ!r} (syscall, fault, exit, "
                                 f"signal, header)", ln)
        except TraceError as e:
            if e.source is None:
                raise TraceError(e.msg, ln, source) from None
            raise
    return Trace(events, "jsonl", source, notes, signals)


def read_jsonl(path: str) -> Trace:
    """Read the JSON-lines trace at path (gzip-compressed when it ends in .gz)."""
    if path.endswith(".gz"):
        import gzip
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return parse_jsonl_lines(f, source=path)
    with open(path, encoding="utf-8") as f:
        return parse_jsonl_lines(f, source=path)
