"""The trace readers: strace text (unfinished/resumed calls, pids, symbolic flags,
error results, malformed lines named by their line number) and the JSON-lines format."""
import pytest

from pysim.constants import (MADV_DONTNEED, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE,
                             PROT_READ, PROT_WRITE)
from pysim.replay import TraceError, load_trace
from pysim.replay.jsonl import parse_jsonl_lines, read_jsonl, write_jsonl
from pysim.replay.parse_strace import decode_flags, parse_strace, parse_strace_lines

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from replay_helpers import DATA, TRACES  # noqa: E402


def _calls(text):
    return parse_strace_lines(text.strip("\n").splitlines()).calls


def test_a_plain_mmap_line_decodes_every_argument():
    (c,) = _calls("19381 18:59:49.171703 mmap(NULL, 8192, PROT_READ|PROT_WRITE, "
                  "MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f7d18192000")
    assert (c.pid, c.name, c.line) == (19381, "mmap", 1)
    assert c.args == (0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert (c.result, c.errno, c.path) == (0x7F7D18192000, None, None)
    assert c.time == pytest.approx(18 * 3600 + 59 * 60 + 49.171703)


def test_y_gives_the_file_path_even_with_commas_in_it():
    (c,) = _calls("7 10:00:00.000001 mmap(0x7f00, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED|"
                  "MAP_DENYWRITE, 3</usr/lib/a, b.so>, 0x26000) = 0x7f0000")
    assert c.path == "/usr/lib/a, b.so"
    assert c.args[3] == MAP_PRIVATE | MAP_FIXED | 0x800 and c.args[5] == 0x26000


def test_pid_prefixes_in_both_spellings_and_none():
    calls = _calls("""
10:00:00.000001 brk(NULL) = 0x5000
[pid  4243] 10:00:00.000002 munmap(0x7f0000000000, 4096) = 0
4244 10:00:00.000003 mprotect(0x7f0000000000, 4096, PROT_NONE) = 0
""")
    assert [c.pid for c in calls] == [0, 4243, 4244]


def test_unfinished_and_resumed_become_one_call_at_its_return():
    calls = _calls("""
19977 19:00:11.667518 mmap(NULL, 1048576, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_STACK, -1, 0 <unfinished ...>
19979 19:00:11.667555 mprotect(0x7f2238c7c000, 16384, PROT_NONE <unfinished ...>
19977 19:00:11.667567 <... mmap resumed>) = 0x7f2238b7c000
19979 19:00:11.667612 <... mprotect resumed>) = 0
""")
    assert [(c.name, c.pid, c.line, c.result) for c in calls] == [
        ("mmap", 19977, 1, 0x7F2238B7C000), ("mprotect", 19979, 2, 0)]
    assert calls[0].args[1] == 1048576 and calls[1].args == (0x7F2238C7C000, 16384, 0)
    assert calls[0].time == pytest.approx(19 * 3600 + 11.667567)


def test_a_clone_goes_where_it_began_ahead_of_its_child():
    calls = _calls("""
1 10:00:00.000001 clone3({flags=CLONE_VM|CLONE_THREAD|CLONE_SIGHAND, stack=0x7f00}, 88 <unfinished ...>
2 10:00:00.000002 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000001000
1 10:00:00.000003 <... clone3 resumed> => {parent_tid=[2]}, 88) = 2
""")
    assert [c.name for c in calls] == ["clone3", "mmap"]
    assert calls[0].result == 2 and calls[0].args[0] & 0x10000 and calls[0].args[0] & 0x100


def test_error_results_carry_the_errno_name():
    calls = _calls("""
5 10:00:00.000001 mmap(NULL, 1099511627776, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)
5 10:00:00.000002 madvise(0x1000, 4096, MADV_DONTNEED) = -1 EINVAL (Invalid argument)
5 10:00:00.000003 exit_group(0) = ?
5 10:00:00.000004 +++ exited with 0 +++
""")
    assert [(c.result, c.errno) for c in calls] == [(-1, "ENOMEM"), (-1, "EINVAL"),
                                                    (None, None)]
    assert calls[1].args == (0x1000, 4096, MADV_DONTNEED)


@pytest.mark.parametrize("text,value", [
    ("PROT_READ|PROT_WRITE", 3), ("MAP_PRIVATE|0x400000", 0x400002),
    ("MAP_PRIVATE|MAP_ANONYMOUS|21<<MAP_HUGE_SHIFT", 0x22 | (21 << 26)),
    ("NULL", 0), ("0x7f00", 0x7F00), ("MREMAP_MAYMOVE|MREMAP_FIXED", 3),
    ("MCL_CURRENT|MCL_FUTURE", 3), ("PKEY_DISABLE_WRITE", 2)])
def test_symbolic_flags(text, value):
    assert decode_flags(text) == value


@pytest.mark.parametrize("text,line,what", [
    ("1 10:00:00.0 mmap(NULL, 4096, PROT_READ|PROT_BOGUS, MAP_PRIVATE, -1, 0) = 0x1000",
     1, "PROT_BOGUS"),
    ("1 10:00:00.0 brk(NULL) = 0x1000\nthis is not strace", 2, "not an strace line"),
    ("1 10:00:00.0 <... mmap resumed>) = 0x1000", 1, "without its unfinished"),
    ("1 10:00:00.0 munmap(0x1000, 4096)", 1, "no `) = result`"),
    ("1 10:00:00.0 munmap(0x1000, 4096) = -1 EWHATEVER (x)", 1, "unknown errno"),
])
def test_a_malformed_line_names_its_number(text, line, what):
    with pytest.raises(TraceError) as ei:
        parse_strace_lines(text.splitlines(), source="t.strace")
    assert ei.value.line == line and what in str(ei.value)
    assert str(ei.value).startswith(f"t.strace:{line}: ")


def test_signal_lines_and_strace_messages_are_not_calls_and_other_calls_kept_raw():
    tr = parse_strace_lines("""1 10:00:00.1 --- SIGSEGV {si_signo=SIGSEGV} ---
1 10:00:00.2 wait4(-1, NULL, 0, NULL) = 3
1 10:00:00.3 move_pages(0, 1, [0x1000], [0], [0], MPOL_MF_MOVE) = 0""".splitlines())
    (c,) = tr.calls
    assert c.name == "move_pages" and c.args == ("0, 1, [0x1000], [0], [0], MPOL_MF_MOVE",)


def test_mempolicy_calls_decode_nodemasks_and_strace_glosses():
    """strace prints a nodemask as 64-bit words (lowest first, `...` for words left
    out), NULL, or a bare pointer when it read none; an unnamed mode as `0x7 /* MPOL_???
    */`; get_mempolicy's outputs as buffers."""
    tr = parse_strace_lines("""1 10:00:00.1 mbind(0x1000, 4096, MPOL_BIND|MPOL_F_STATIC_NODES, [0x00000000000001, 0x2, ...], 192, MPOL_MF_STRICT|MPOL_MF_MOVE) = 0
1 10:00:00.2 mbind(0x1000, 4096, 0x7 /* MPOL_??? */, NULL, 0, 0) = -1 EINVAL (Invalid argument)
1 10:00:00.3 mbind(0x1000, 4096, MPOL_BIND, 0x7ffc46589e70, 1, 0) = -1 EINVAL (Invalid argument)
1 10:00:00.4 set_mempolicy(MPOL_INTERLEAVE, [0x00000000000003], 64) = 0
1 10:00:00.5 get_mempolicy([MPOL_DEFAULT], NULL, 0, 0x1000, MPOL_F_NODE|MPOL_F_ADDR) = 0
1 10:00:00.6 set_mempolicy_home_node(0x1000, 4096, 0, 0) = -1 ENOENT (No such file or directory)""".splitlines())
    a, b, c, d, e, f = (x.args for x in tr.calls)
    assert a == (0x1000, 4096, 2 | 1 << 15, 1 | 2 << 64, 192, 3)
    assert b == (0x1000, 4096, 7, None, 0, 0)
    assert c == (0x1000, 4096, 2, 0, 1, 0)
    assert d == (3, 3, 64)
    assert e == ("[MPOL_DEFAULT]", None, 0, 0x1000, 3)
    assert f == (0x1000, 4096, 0, 0)


@pytest.mark.parametrize("fast", [True, False])
def test_mremap_has_new_address_only_when_strace_prints_it(fast):
    """strace's SYS_FUNC(mremap) prints new_address only with MREMAP_MAYMOVE and
    MREMAP_FIXED both set: four arguments otherwise (perl's realloc makes such calls)."""
    tr = parse_strace_lines([
        "1 10:00:00.1 mremap(0x7fc0f4087000, 135168, 266240, MREMAP_MAYMOVE) "
        "= 0x7fc0f3f00000",
        "1 10:00:00.2 mremap(0x7fc0f3f00000, 266240, 266240, MREMAP_MAYMOVE|MREMAP_FIXED, "
        "0x7fc0f3000000) = 0x7fc0f3000000"], fast=fast)
    assert [c.args for c in tr.calls] == [(0x7FC0F4087000, 135168, 266240, 1, 0),
                                         (0x7FC0F3F00000, 266240, 266240, 3, 0x7FC0F3000000)]
    with pytest.raises(TraceError, match="mremap needs 4 or 5 arguments"):
        parse_strace_lines(["1 10:00:00.3 mremap(0x7fc0f3000000, 4096) = -1 EINVAL "
                            "(Invalid argument)"], fast=fast)


def test_a_trace_that_crosses_midnight_keeps_time_increasing():
    calls = _calls("""
1 23:59:59.900000 brk(NULL) = 0x5000
1 00:00:00.100000 brk(NULL) = 0x5000
""")
    assert calls[1].time - calls[0].time == pytest.approx(0.2)


@pytest.mark.parametrize("name", TRACES)
def test_the_committed_traces_parse(name):
    tr = parse_strace(str(DATA / f"{name}.strace"))
    assert len(tr.calls) > 40 and not [n for n in tr.notes if "never returned" in n]


@pytest.mark.parametrize("name", TRACES)
def test_jsonl_round_trips_a_real_trace_with_its_faults(tmp_path, name):
    tr = load_trace(str(DATA / f"{name}.strace"))
    assert tr.faults, "the committed traces carry their captured page faults"
    for suffix in (".jsonl", ".jsonl.gz"):
        out = str(tmp_path / f"t{suffix}")
        write_jsonl(tr, out)
        back = read_jsonl(out)
        assert back.events == tr.events
        assert load_trace(out).events == tr.events


@pytest.mark.parametrize("line,what", [
    ('{"type": "syscall", "pid": 1, "name": "mmap", "args": [0, "4096"], "result": "x"}',
     "'result' must be"),
    ('{"type": "fault", "pid": 1, "addr": 4096, "access": "poke"}', "'access'"),
    ('{"type": "syscall", "pid": "one", "name": "brk"}', "'pid'"),
    ('{"type": "teleport", "pid": 1}', "unknown event type"),
    ('{not json', "not JSON"),
])
def test_a_malformed_jsonl_line_names_its_number(line, what):
    good = '{"type": "syscall", "t": 1.0, "pid": 1, "name": "brk", "args": [0], ' \
           '"result": 4096, "errno": null}'
    with pytest.raises(TraceError) as ei:
        parse_jsonl_lines([good, line], source="x.jsonl")
    assert ei.value.line == 2 and what in str(ei.value)
    assert str(ei.value).startswith("x.jsonl:2: ")


# ---------------------------------------------------------------- the C reader
# mmucore.straceline reads the common lines (and unfinished/resumed pairs) in C and
# declines the rest; fast=False reads every line on the Python path.  The two must give
# the same events and notes, or the same TraceError, on any line set: here random
# multi-task traces whose calls are split at random points into unfinished/resumed
# pairs, with the spellings strace uses and a few it could (blank runs, `[pid N]`,
# epoch times, durations, errors) and damaged lines.
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_BODIES = [
    ("mmap", "NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0",
     "0x7f0000001000"),
    ("mmap", "0x7f0000200000, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, "
     "3</usr/lib/libc.so.6>, 0x1000", "0x7f0000200000"),
    ("mprotect", "0x7f0000001000, 4096, PROT_NONE", "0"),
    ("mprotect", "0x7f0000001000, 4096, PROT_READ", "-1 ENOMEM (Cannot allocate memory)"),
    ("madvise", "0x7f0000001000, 8192, MADV_DONTNEED", "0"),
    ("munmap", "0x7f0000001000, 8192", "0"),
    ("brk", "NULL", "0x5000"),
    ("wait4", "-1, 0x7ffd, 0, NULL", "5"),
    ("clone3", "{flags=CLONE_VM|CLONE_THREAD, exit_signal=0}, 88", "9"),
    ("mmap", "NULL, 4096, PROT_READ, MAP_SHARED, 4, 0", "-1 EBOGUS (what)"),
    ("exit", "0", "?"),
    ("mprotect", "0x7f0000001000, 4096, PROT_WHAT", "0"),
    ("munmap", "0x7f0000001000, 08192", "0"),
]


@st.composite
def _trace_lines(draw):
    lines, open_calls, t = [], {}, 36000.0
    for _ in range(draw(st.integers(1, 14))):
        pid = draw(st.sampled_from([11, 12, 13]))
        t += draw(st.sampled_from([0.000001, 0.25, 50000.0]))   # (may cross midnight)
        t %= 86400.0
        h, rem = divmod(t, 3600)
        stamp = draw(st.sampled_from([
            f"{int(h)}:{int(rem // 60):02d}:{rem % 60:09.6f}", f"{t + 1.7e9:.6f}", ""]))
        head = draw(st.sampled_from(["{p} {t} ", "{p}  {t} ", "[pid {p}] {t} ",
                                     "[pid  {p}] {t}\t"])).format(p=pid, t=stamp)
        if not stamp:
            head = head.rstrip() + " "
        tail = draw(st.sampled_from(["", " <0.000012>", "  "]))
        if pid in open_calls and draw(st.booleans()):
            name, rest = open_calls.pop(pid)
            gap = draw(st.sampled_from(["", " "]))
            if draw(st.integers(0, 9)) == 0:
                name = "brk"                         # a resumed line of another call
            lines.append(f"{head}<... {name} resumed>{gap}{rest}{tail}")
            continue
        name, args, res = draw(st.sampled_from(_BODIES))
        line = f"{name}({args}) = {res}"
        kind = draw(st.integers(0, 19))
        if kind < 6 and pid not in open_calls:
            cut = draw(st.integers(len(name) + 1, len(line) - 1))
            open_calls[pid] = (name, line[cut:])
            lines.append(f"{head}{line[:cut]} <unfinished ...>")
        elif kind == 6:
            lines.append(f"{head}--- SIGCHLD {{si_signo=SIGCHLD}} ---")
        elif kind == 7:
            lines.append(f"{head}+++ exited with 0 +++")
        elif kind == 8:
            lines.append(f"{head}{line}".replace("PROT", "PRÖT"))
        elif kind == 9:
            lines.append(f"{head}{line[:-1]}")                  # cut short
        else:
            lines.append(f"{head}{line}{tail}")
    return lines


def _outcome(lines, fast):
    try:
        tr = parse_strace_lines(list(lines), fast=fast)
    except TraceError as e:
        return ("error", str(e), e.line)
    return ([(type(e).__name__, tuple(getattr(e, s) for s in e.__slots__))
             for e in tr.events], tr.notes)


@settings(max_examples=400, deadline=None)
@given(_trace_lines())
def test_the_c_reader_reads_every_line_as_the_python_path_does(lines):
    assert _outcome(lines, True) == _outcome(lines, False)


def test_the_c_reader_takes_unfinished_and_resumed_lines():
    """The pair is read in C (not declined): the Python path's regexes see neither."""
    import pysim.replay.parse_strace as ps
    lines = ["5 10:00:00.000001 mprotect(0x7f0000001000, 4096, PROT_NONE <unfinished ...>",
             "6 10:00:00.000002 brk(NULL) = 0x5000",
             "5 10:00:00.000003 <... mprotect resumed>) = 0"]
    seen = []
    real = ps._HEAD

    class Spy:
        def match(self, text):
            seen.append(text)
            return real.match(text)
    ps._HEAD = Spy()
    try:
        calls = parse_strace_lines(lines).calls
    finally:
        ps._HEAD = real
    assert seen == []
    assert [(c.name, c.line, c.pid) for c in calls] == [("brk", 2, 6), ("mprotect", 1, 5)]


def test_a_gzip_compressed_strace_reads_as_the_text(tmp_path):
    import gzip
    src = DATA / "java_small.strace"
    out = tmp_path / "java_small.strace.gz"
    out.write_bytes(gzip.compress(src.read_bytes()))
    assert load_trace(str(out), faults=os.devnull).events == \
        load_trace(str(src), faults=os.devnull).events


@pytest.mark.parametrize("data,what", [(b"not gzip", "Not a gzipped file"),
                                       (None, "end-of-stream")])
def test_a_damaged_gzip_trace_is_a_trace_error(tmp_path, data, what):
    import gzip
    if data is None:                                     # a capture cut short
        data = gzip.compress((DATA / "node_e.strace").read_bytes())[:2000]
    out = tmp_path / "t.strace.gz"
    out.write_bytes(data)
    with pytest.raises(TraceError, match=what):
        load_trace(str(out))
