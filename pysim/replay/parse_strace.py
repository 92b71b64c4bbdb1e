"""Read `strace -f -tt [-y] [-e trace=memory,process]` text into a Trace.

What a line may look like (strace 5.x/6.x):

    19976 19:00:11.602087 mprotect(0x7f22..., 16384, PROT_READ) = 0        (-f with -o)
    [pid 19977] 19:00:11.6 mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f..
    19:00:11.602087 brk(NULL) = 0x5644...                                  (one task)
    19977 19:00:11.6 mmap(NULL, 1048576, ... <unfinished ...>
    19977 19:00:11.6 <... mmap resumed>) = 0x7f2238b7c000
    19976 19:00:11.6 mmap(NULL, 1 << 40, ...) = -1 ENOMEM (Cannot allocate memory)
    19976 19:00:11.6 exit_group(0) = ?
    19976 19:00:11.6 +++ exited with 0 +++
    19976 19:00:11.6 --- SIGSEGV {si_signo=SIGSEGV, ...} ---

An unfinished call is held per task until its `resumed` line, and becomes one Call at
the place (and time) the kernel returned it: that is when its effect was visible.  The
mm syscalls' arguments are decoded to integers (PROT_*, MAP_*, MADV_*, MREMAP_*, MLOCK_*,
MCL_* names, `N<<MAP_HUGE_SHIFT`, hex for unnamed bits; with -y, mmap's fd `3</path>`
gives the file's path).  For clone/clone3/fork/vfork only the clone flags and the new
task's id are kept; for execve the path; for exit/exit_group the status.  Other calls of
the process class (wait4, kill, ...) carry no memory effect and are dropped; any other
call is kept with its raw argument text, so the replay can say it does not model it.
A SIGSEGV or SIGBUS line becomes a Signal (Trace.signals, with its si_addr); other
signal lines are skipped.

A line that fits none of these forms raises TraceError naming its line number.
"""
from __future__ import annotations

import errno as _errno
import re
from typing import Dict, List, Optional, Tuple

from mmucore.straceline import LineReader

from .. import constants as C
from .events import Call, Exit, Signal, Trace, TraceError, gc_paused

__all__ = ["parse_strace", "parse_strace_lines", "open_text", "decode_flags", "SYMBOLS"]

# ---------------------------------------------------------------- symbolic names
_MORE = {
    "MAP_32BIT": 0x40, "MAP_UNINITIALIZED": 0x4000000, "MAP_FILE": 0,
    "MAP_DROPPABLE": 0x08, "MAP_ABOVE4G": 0x80, "MAP_SHARED_VALIDATE": 0x03,
    "MREMAP_MAYMOVE": 1, "MREMAP_FIXED": 2, "MREMAP_DONTUNMAP": 4,
    "MLOCK_ONFAULT": 1, "MCL_CURRENT": 1, "MCL_FUTURE": 2, "MCL_ONFAULT": 4,
    "PKEY_DISABLE_ACCESS": 1, "PKEY_DISABLE_WRITE": 2,
    "MADV_GUARD_INSTALL": 102, "MADV_GUARD_REMOVE": 103,
    "MAP_HUGE_SHIFT": 26,
}
_MORE.update({k: v for k, v in vars(C).items()
              if k.startswith(("MPOL_", "MS_")) and isinstance(v, int)})
SYMBOLS: Dict[str, int] = {k: v for k, v in vars(C).items()
                           if k.startswith(("PROT_", "MAP_", "MADV_", "PKEY_"))
                           and isinstance(v, int)}
SYMBOLS.update(_MORE)

_CLONE = {"CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400,
          "CLONE_SIGHAND": 0x800, "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000,
          "CLONE_VFORK": 0x4000, "CLONE_PARENT": 0x8000, "CLONE_THREAD": 0x10000,
          "CLONE_NEWNS": 0x20000, "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000,
          "CLONE_PARENT_SETTID": 0x100000, "CLONE_CHILD_CLEARTID": 0x200000,
          "CLONE_DETACHED": 0x400000, "CLONE_UNTRACED": 0x800000,
          "CLONE_CHILD_SETTID": 0x1000000, "CLONE_NEWCGROUP": 0x2000000,
          "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
          "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
          "CLONE_NEWNET": 0x40000000, "CLONE_IO": 0x80000000,
          "CLONE_CLEAR_SIGHAND": 0x100000000, "CLONE_INTO_CGROUP": 0x200000000}
CLONE_VM, CLONE_VFORK, CLONE_THREAD = 0x100, 0x4000, 0x10000

_flag_cache: Dict[str, int] = {"NULL": 0, "0": 0}


def _bad(msg: str, line: int):
    """A TraceError for line (raised by the callers)."""
    return TraceError(msg, line)


_COMMENT = re.compile(r"\s*/\*.*?\*/")


def decode_flags(text: str, line: int = 0) -> int:
    """`PROT_READ|PROT_WRITE`, `MAP_PRIVATE|0x400000`, `21<<MAP_HUGE_SHIFT`, `NULL`, a
    decimal or hex number: the integer the kernel saw; TraceError on an unknown name
    (memoised, since a trace repeats a few dozen spellings thousands of times)."""
    v = _flag_cache.get(text)
    if v is not None:
        return v
    total = 0
    bare = _COMMENT.sub("", text)               # `0x7 /* MPOL_??? */`: strace's gloss
    for part in bare.split("|"):
        part = part.strip()
        if "<<" in part:
            a, _, b = part.partition("<<")
            total |= decode_flags(a, line) << decode_flags(b, line)
        elif part in SYMBOLS:
            total |= SYMBOLS[part]
        else:
            try:
                total |= int(part, 0)
            except ValueError:
                raise _bad(f"unknown flag or value {part!r} in {text!r}", line) from None
    _flag_cache[text] = total
    return total


def _clone_flags(text: str) -> int:
    """The CLONE_* bits named anywhere in text (signal names and other fields ignored)."""
    v = 0
    for name in re.findall(r"CLONE_[A-Z_]+", text):
        v |= _CLONE.get(name, 0)
    return v


def _num(text: str, line: int) -> int:
    """An integer argument (decimal, hex, NULL, or a symbolic spelling)."""
    # a spelling decoded before is memoised; looking it up first spares int() raising
    # ValueError for every PROT_/MAP_/MADV_ name (int() of a memoised text that is a
    # number would give the same value decode_flags gave)
    v = _flag_cache.get(text)
    if v is not None:
        return v
    try:
        return int(text, 0)
    except ValueError:
        return decode_flags(text, line)


# ---------------------------------------------------------------- argument decoders
_MMAP = re.compile(r"^(\S+), (\S+), (.+?), (.+?), (-?\d+)(?:<(.*)>)?, (\S+)$")
_IOVEC = re.compile(r"iov_base=(\S+?), iov_len=(\d+)")

# name -> how many leading arguments are integers/flags to decode
_INT_ARGS = {"munmap": 2, "mprotect": 3, "madvise": 3, "brk": 1,
             "set_mempolicy_home_node": 4,
             "mlock": 2, "mlock2": 3, "munlock": 2, "mlockall": 1, "munlockall": 0,
             "pkey_alloc": 2, "pkey_free": 1, "pkey_mprotect": 4, "mseal": 3,
             "msync": 3, "remap_file_pages": 5}
_IGNORED = frozenset({"wait4", "waitid", "kill", "tkill", "tgkill", "pidfd_open",
                      "pidfd_send_signal", "pidfd_getfd", "rt_sigqueueinfo",
                      "rt_tgsigqueueinfo", "unshare", "setns", "arch_prctl",
                      "personality", "prctl", "set_tid_address", "rseq"})


_NESTED = re.compile(r'["(\[{]').search       # a string or bracket: split by scanning


def _split(text: str) -> List[str]:
    """Top-level `, `-separated arguments (brackets, braces and strings kept whole)."""
    if _NESTED(text) is None:
        return text.split(", ") if text else []
    out, depth, start, i, n, q = [], 0, 0, 0, len(text), False
    while i < n:
        c = text[i]
        if q:
            if c == "\\":
                i += 1
            elif c == '"':
                q = False
        elif c == '"':
            q = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    tail = text[start:].strip()
    if tail or out:
        out.append(tail)
    return out


def _decode(name: str, text: str, line: int) -> Tuple[tuple, Optional[str]]:
    """(args, path) of one call from its argument text."""
    if name == "mmap":
        m = _MMAP.match(text)
        if m is None:
            raise _bad(f"cannot read mmap arguments {text!r}", line)
        addr, length, prot, flags, fd, path, off = m.groups()
        return ((_num(addr, line), _num(length, line), decode_flags(prot, line),
                 decode_flags(flags, line), int(fd), _num(off, line)), path)
    k = _INT_ARGS.get(name)
    if k is not None:
        parts = _split(text)
        if len(parts) < k:
            raise _bad(f"{name} needs {k} arguments, got {text!r}", line)
        return tuple(_num(p, line) for p in parts[:k]), None
    if name == "mremap":
        # strace prints new_address only when both MREMAP_MAYMOVE and MREMAP_FIXED
        # are set (SYS_FUNC(mremap)); otherwise it is a hint at most, and 0 stands in
        parts = _split(text)
        if len(parts) not in (4, 5):
            raise _bad(f"mremap needs 4 or 5 arguments, got {text!r}", line)
        return tuple(_num(p, line) for p in parts) + (0,) * (5 - len(parts)), None
    if name == "process_madvise":
        parts = _split(text)
        if len(parts) != 5:
            raise _bad(f"process_madvise needs 5 arguments, got {text!r}", line)
        iov = tuple((int(b, 0), int(n)) for b, n in _IOVEC.findall(parts[1]))
        return (int(parts[0]), iov, int(parts[2]), decode_flags(parts[3], line),
                _num(parts[4], line)), None
    if name == "mincore":
        parts = _split(text)
        if len(parts) != 3:
            raise _bad(f"mincore needs 3 arguments, got {text!r}", line)
        vec = parts[2]                          # `[1, 0]` (read back) or a pointer
        return (_num(parts[0], line), _num(parts[1], line),
                vec if vec.startswith("[") else _num(vec, line)), None
    if name in ("mbind", "set_mempolicy", "get_mempolicy"):
        return _decode_mempolicy(name, text, line), None
    if name in ("clone", "clone3", "fork", "vfork"):
        flags = _clone_flags(text)
        if name == "vfork":
            flags = CLONE_VM | CLONE_VFORK
        return (flags,), None
    if name in ("execve", "execveat"):
        m = re.search(r'"((?:[^"\\]|\\.)*)"', text)
        return ((m.group(1) if m else ""),), None
    if name in ("exit", "exit_group"):
        try:
            return (int(text.strip() or "0", 0),), None
        except ValueError:
            raise _bad(f"cannot read {name} status {text!r}", line) from None
    return (text,), None


def _nodemask(text: str, line: int) -> Optional[int]:
    """A nodemask argument as the kernel reads it: None for NULL, else the bits strace
    printed (`[0x1, 0]`: 64-bit words, lowest first; a trailing `...` stands for words
    it did not print, taken as zero); a bare pointer (strace read no word: maxnode of 0
    or 1, or memory it could not read) has no bits to give."""
    text = text.strip()
    if text == "NULL":
        return None
    if not text.startswith("["):
        _num(text, line)                        # a pointer: checked, its words unknown
        return 0
    bits = 0
    for i, w in enumerate(p.strip() for p in text.strip("[]").split(",")):
        if w and w != "...":
            bits |= _num(w, line) << (64 * i)
    return bits


def _out_buffer(text: str) -> Optional[str]:
    """An output pointer of get_mempolicy: None for NULL, else strace's text of it (a
    non-NULL pointer whose memory the replay does not hold)."""
    text = text.strip()
    return None if text == "NULL" else text


def _decode_mempolicy(name: str, text: str, line: int) -> tuple:
    """mbind(start, len, mode, nodemask, maxnode, flags), set_mempolicy(mode, nodemask,
    maxnode) and get_mempolicy(mode *, nodemask, maxnode, addr, flags) arguments."""
    parts = _split(text)
    want = {"mbind": 6, "set_mempolicy": 3, "get_mempolicy": 5}[name]
    if len(parts) != want:
        raise _bad(f"{name} needs {want} arguments, got {text!r}", line)
    if name == "mbind":
        return (_num(parts[0], line), _num(parts[1], line), decode_flags(parts[2], line),
                _nodemask(parts[3], line), _num(parts[4], line), decode_flags(parts[5], line))
    if name == "set_mempolicy":
        return (decode_flags(parts[0], line), _nodemask(parts[1], line), _num(parts[2], line))
    return (_out_buffer(parts[0]), _out_buffer(parts[1]), _num(parts[2], line),
            _num(parts[3], line), decode_flags(parts[4], line))


# ---------------------------------------------------------------- lines
_HEAD_RE = (r"^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?"
            r"(?:(\d+):(\d\d):(\d\d(?:\.\d+)?)\s+|(\d+\.\d+)\s+)?")
_HEAD = re.compile(_HEAD_RE + r"(.*)$")
_CALL = re.compile(r"^([a-z_][a-z0-9_]*)\((.*)$")
_RESULT_RE = (r"\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(?:\s+([A-Z][A-Z0-9_]*)"
              r"(?:\s+\(.*\))?)?(?:\s+<[0-9.]+>)?\s*$")
_RESULT = re.compile(_RESULT_RE)
# The common line in one match: head (groups 1-6 as in _HEAD), `name(` (7), the
# argument text (8) and a numeric result with its errno (9, 10).  The lazy `(.*?)`
# stops at the first `) = result` that reaches the end of the line, the place
# _RESULT.search finds; unfinished, resumed, `= ?`, exit and signal lines do not match
# and take the general path.
_LINE = re.compile(_HEAD_RE + r"([a-z_][a-z0-9_]*)\((.*?)"
                   + _RESULT_RE.replace("|\\?)", ")", 1))
# The same line when its argument text holds no string, bracket or `)`, with the hours
# and minutes as one group and every group read by one m.groups(): pid (1, 2),
# `H:MM:` (3), seconds (4), epoch time (5), name (6), argument text (7), result (8),
# errno (9).  With no `)` in the arguments the first `) = result` is the only
# candidate, so it is the one _LINE's lazy `(.*?)` finds, without trying the result
# at every character; and _split's nesting test is known to fail.  Any other line
# takes _LINE, as before.  The possessive repeats (`++`, `*+`) match what the greedy
# ones of _HEAD_RE and _RESULT_RE would: each is followed by a token that cannot
# match the character it would give back (a digit run by `\s`, `:`, `.`, `]`, `>`,
# `)` or the end; a blank run by a digit, a letter, `=`, `(`, `<` or `[`; the
# argument text by its `)`), so backtracking into them never finds a match; they
# only spare the engine keeping the backtrack points.
_FAST = re.compile(r"^(?:\[pid\s++(\d++)\]\s++|(\d++)\s++)?"
                   r"(?:(\d++:\d\d:)(\d\d(?:\.\d++)?)\s++|(\d++\.\d++)\s++)?"
                   r"([a-z_][a-z0-9_]*+)\(([^\"(\[{)]*+)"
                   r"\)\s++=\s++(-?\d++|0x[0-9a-f]++)(?:\s++([A-Z][A-Z0-9_]*+)"
                   r"(?:\s++\(.*\))?)?(?:\s++<[0-9.]++>)?\s*+$")
# The commonest spelling of all, `PID H:MM:SS.frac name(args) = result [ERRNO (text)]`
# with single blanks and ASCII digits: what _FAST would match, as _FAST's groups less
# the `[pid N]` and epoch-time ones (pid, `H:MM:`, seconds, name, argument text,
# result, errno), in fewer steps (no optional head, no blank runs).  Any line it does
# not match goes on to _FAST.
_CANON = re.compile(r"([0-9]++) ([0-9]++:[0-9][0-9]:)([0-9][0-9]\.[0-9]++) "
                    r"([a-z_][a-z0-9_]*+)\(([^\"(\[{)]*+)\) = (-?[0-9]++|0x[0-9a-f]++)"
                    r"(?: ([A-Z][A-Z0-9_]*+)(?: \(.*\))?)?$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_][a-z0-9_]*) resumed>\s?(.*)$")
_EXIT = re.compile(r"^\+\+\+ (exited with -?\d+|killed by \S+(?: \(core dumped\))?) \+\+\+$")
# `--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---`: a fault signal
_SIGNAL = re.compile(r"^--- (SIGSEGV|SIGBUS) \{.*?\bsi_addr=(NULL|0x[0-9a-f]+).*\} ---$")
_UNFINISHED = " <unfinished ...>"
_CREATES = frozenset({"clone", "clone3", "fork", "vfork"})


def _result(rest: str, line: int) -> Tuple[str, Optional[int], Optional[str]]:
    """(argument text, result, errno name) from the text after `name(`."""
    m = _RESULT.search(rest)
    if m is None:
        raise _bad(f"no `) = result` in {rest[:80]!r}", line)
    args = rest[:m.start()]
    val, err = m.group(1), m.group(2)
    if val == "?":
        return args, None, None
    if err is not None:
        _check_errno(err, line)
    return args, int(val, 0), err


def _check_errno(err: str, line: int) -> None:
    """TraceError unless err is an errno name (or strace's ERESTART*)."""
    if err not in _errno.__dict__ and not err.startswith("ERESTART"):
        raise _bad(f"unknown errno {err!r}", line)


def parse_strace_lines(lines, source: str = "<strace>", fast: bool = True) -> Trace:
    """Parse an iterable of strace lines (see the module docstring) into a Trace;
    TraceError names source and the line.  fast=False reads every line on the Python
    path (the reference the C reader, mmucore.straceline, is tested against)."""
    try:
        with gc_paused():               # every event is kept (see gc_paused)
            return _parse(lines, source, fast)
    except TraceError as e:
        raise TraceError(e.msg, e.line, source) from None


def _parse(lines, source: str, fast: bool = True) -> Trace:
    """parse_strace_lines without the source in its errors."""
    events: list = []
    notes: List[str] = []
    signals: List[Signal] = []
    # pid -> (line, name, argument text, index in events when the call began, its time)
    pending: Dict[int, Tuple[int, str, str, int, Optional[float]]] = {}
    first_pid: Optional[int] = None
    line_match, head_match, fast_match = _LINE.match, _HEAD.match, _FAST.match
    canon_match = _CANON.match
    minutes: Dict[str, int] = {}        # `H:MM:` -> its seconds since midnight
    mmaps: Dict[str, Tuple[tuple, Optional[str]]] = {}     # mmap argument text -> _decode
    cache_get = _flag_cache.get
    pids: Dict[str, int] = {}           # pid text -> int (a trace has a few tasks)
    append = events.append
    # the common lines are read in C (mmucore.straceline); run() gives back each line
    # it declines, read below as before; the midnight state (day, last_t) is its
    reader = LineReader(Call, _decode, _num, _check_errno, TraceError, _INT_ARGS,
                        _IGNORED, mmaps, _flag_cache, pending, fast)
    it = iter(lines)
    while True:
        raw = reader.run(it, events)
        if reader.done:
            break
        ln = reader.ln
        text = raw.rstrip("\n")
        m = canon_match(text)
        if m is not None:
            pid_s, hm, sec, name, argtext, val, err = m.groups()
            epoch = None
        else:
            m = fast_match(text)
            if m is not None:
                pid_s, pid2, hm, sec, epoch, name, argtext, val, err = m.groups()
                if pid_s is None:
                    pid_s = pid2
        if m is not None:
            # the common line (a complete call with a numeric result), the general
            # path below written out for it: the same values in the same order
            if hm is not None:
                base = minutes.get(hm)
                if base is None:
                    h, mi, _ = hm.split(":")
                    base = minutes[hm] = int(h) * 3600 + int(mi) * 60
                t = base + float(sec)
                day, last_t = reader.day, reader.last_t
                if last_t is not None and t + day < last_t - 43200:
                    day += 86400.0          # the trace crossed midnight
                t += day
                reader.day, reader.last_t = day, t
            elif epoch is not None:
                t = float(epoch)
            else:
                t = None
            if pid_s is not None:
                pid = pids.get(pid_s)
                if pid is None:
                    pid = pids[pid_s] = int(pid_s)
            else:
                if first_pid is None:
                    first_pid = 0
                pid = first_pid
            if err is not None:
                _check_errno(err, ln)
            res = 0 if val == "0" else int(val, 0)      # most calls return 0
            if name in _IGNORED:
                continue
            k = _INT_ARGS.get(name)
            if k is not None:
                # _decode's leading integers, _split (no nesting: see _FAST) and
                # _num inline
                parts = argtext.split(", ") if argtext else []
                if len(parts) < k:
                    raise _bad(f"{name} needs {k} arguments, got {argtext!r}", ln)
                vals = []
                for p in (parts if len(parts) == k else parts[:k]):
                    v = cache_get(p)
                    if v is None:
                        try:
                            v = int(p, 0)
                        except ValueError:
                            v = decode_flags(p, ln)
                    vals.append(v)
                append(Call(ln, t, pid, name, tuple(vals), res, err, None))
                continue
            if name == "mmap":
                # a program maps the same few sizes and flags at NULL again and
                # again: one _decode per distinct argument text
                dec = mmaps.get(argtext)
                if dec is None:
                    dec = mmaps[argtext] = _decode(name, argtext, ln)
            else:
                dec = _decode(name, argtext, ln)
            append(Call(ln, t, pid, name, dec[0], res, err, dec[1]))
            continue
        m = line_match(text)            # a complete call with a numeric result
        fast = m is not None
        if not fast:
            if not text.strip():
                continue
            m = head_match(text)
        pid_s = m.group(1) or m.group(2)
        if m.group(3) is not None:
            t = int(m.group(3)) * 3600 + int(m.group(4)) * 60 + float(m.group(5))
            day, last_t = reader.day, reader.last_t
            if last_t is not None and t + day < last_t - 43200:
                day += 86400.0          # the trace crossed midnight
            t += day
            reader.day, reader.last_t = day, t
        elif m.group(6) is not None:
            t = float(m.group(6))
        else:
            t = None
        if fast:
            body = None
        else:
            body = m.group(7)
            if body.startswith("strace: "):
                continue                # strace's own messages
        if pid_s is not None:
            pid = int(pid_s)
        else:
            if first_pid is None:
                first_pid = 0
            pid = first_pid
        if not fast and body.startswith("--- "):
            m = _SIGNAL.match(body)
            if m is not None:
                addr = m.group(2)
                signals.append(Signal(ln, t, pid, m.group(1),
                                      0 if addr == "NULL" else int(addr, 16)))
            continue                    # other signals: not the memory stream's
        if fast:
            name, err = m.group(7), m.group(10)
            if err is not None:
                _check_errno(err, ln)
            call = _emit(ln, t, pid, name, m.group(8), int(m.group(9), 0), err, ln)
            if call is not None:
                events.append(call)
            continue
        if body.startswith("+++ "):
            em = _EXIT.match(body)
            if em is None:
                raise _bad(f"cannot read {body!r}", ln)
            events.append(Exit(ln, t, pid, em.group(1)))
            continue
        rm = _RESUMED.match(body)
        if rm is not None:
            name, rest = rm.groups()
            held = pending.pop(pid, None)
            if held is None or held[1] != name:
                raise _bad(f"`{name} resumed` without its unfinished call on pid {pid}", ln)
            if rest.endswith(_UNFINISHED):
                continue                # the task died inside the call
            start_ln, _, before, at, t0 = held
            rest = before + rest
            if name in ("exit", "exit_group"):
                events.append(Call(start_ln, t, pid, name, _decode(name, before, ln)[0],
                                   None, None))
                continue
            args, res, err = _result(rest, ln)
            if name in _CREATES:
                # the child may run (and show up) before its parent's clone returns:
                # the clone goes where and when it began, ahead of anything the child did
                call = _emit(start_ln, t0, pid, name, args, res, err, ln)
                events.insert(at, call)
                continue
            call = _emit(start_ln, t, pid, name, args, res, err, ln)
            if call is not None:
                events.append(call)
            continue
        cm = _CALL.match(body)
        if cm is None:
            raise _bad(f"not an strace line: {text[:100]!r}", ln)
        name, rest = cm.groups()
        if rest.endswith(_UNFINISHED):
            pending[pid] = (ln, name, rest[:-len(_UNFINISHED)], len(events), t)
            continue
        if name in ("exit", "exit_group") and rest.rstrip().endswith("= ?"):
            arg = rest[:rest.rindex(")")]
            events.append(Call(ln, t, pid, name, _decode(name, arg, ln)[0], None, None))
            continue
        args, res, err = _result(rest, ln)
        call = _emit(ln, t, pid, name, args, res, err, ln)
        if call is not None:
            events.append(call)
    for pid, (ln, name, _, _, _) in pending.items():
        notes.append(f"line {ln}: pid {pid}'s {name} never returned in the trace; dropped")
    if first_pid == 0 and any(e.pid != 0 for e in events):
        notes.append("some lines have no pid; they are taken as one task, pid 0")
    return Trace(events, "strace", source, notes, signals)


def _emit(ln: int, t, pid: int, name: str, argtext: str, res: Optional[int],
          err: Optional[str], at: int) -> Optional[Call]:
    """The Call of one complete call, or None for process-class calls with no memory
    effect (dropped)."""
    if name in _IGNORED:
        return None
    args, path = _decode(name, argtext, at)
    return Call(ln, t, pid, name, args, res, err, path)


def open_text(path: str):
    """The text file at path for reading, decompressed when its name ends in .gz (a
    long capture compresses about eightfold)."""
    if path.endswith(".gz"):
        import gzip
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def parse_strace(path: str) -> Trace:
    """Parse the strace text file at path (gzip-compressed when it ends in .gz)."""
    try:
        with open_text(path) as f:
            text = f.read()
    except (OSError, EOFError) as e:
        why = getattr(e, "strerror", None) or str(e)
        raise TraceError(f"cannot read {path!r}: {why}") from None
    # the lines the file's iterator gives (newlines translated), split at once; a
    # newline at the end leaves one empty line, which the parser skips as blank
    return parse_strace_lines(text.split("\n"), source=path)
