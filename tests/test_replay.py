"""Replaying traces: the committed real traces reproduce every supported call's traced
result, divergences are reported, calls the Thread API lacks are recorded as
unsupported, the exec image explains the RELRO mprotects, records and summaries carry
the events, the access models run accesses, and the CLI and capture behave."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import pysim
from pysim.machine import Machine, Thread
from pysim.replay import Replay, load_trace, replay
from pysim.replay.image import plan_images, read_elf
from pysim.replay.jsonl import parse_jsonl_lines
from pysim.replay.parse_strace import parse_strace, parse_strace_lines
from pysim.replay.summary import summary_row

sys.path.insert(0, os.path.dirname(__file__))
from replay_helpers import DATA, LONG_TRACE, TRACES  # noqa: E402

def _sys(name, args, result=0, errno=None, pid=1, t=None, path=None):
    d = {"type": "syscall", "t": t, "pid": pid, "name": name, "args": args,
         "result": result, "errno": errno}
    if path:
        d["path"] = path
    return json.dumps(d)


def _run(lines, **kw):
    """Replay JSON lines; the first (and only) run's Records."""
    tr = parse_jsonl_lines(lines)
    return replay(tr, **kw).records[0]


@pytest.mark.parametrize("name", TRACES)
@pytest.mark.parametrize("elf,access", [(False, "none"), (True, "none"), (True, "faults")])
def test_every_supported_traced_call_reproduces_its_traced_result(name, elf, access):
    """Each call the Thread API has: traced success -> the same result, traced failure
    -> the same errno.  With the syscall contract in place (MADV_DONTFORK and the other
    VMA-flag advice included) no call of any committed trace diverges; with the traced
    page faults run too, no fault ends in a signal the program did not get."""
    res = replay(str(DATA / f"{name}.strace"), elf=elf, access=access, checker="raise")
    rec = res.records[0]
    st = rec.statuses
    assert st.get("match", 0) > 20
    bad = rec.diverged()
    assert not bad, "\n".join(f"line {d['line']}: {d['call']}({d['args']}) traced "
                              f"{d['traced_errno'] or d['traced']}, simulated "
                              f"{d['sim_errno'] or d['sim']}: {d['note']}" for d in bad[:10])
    assert st.get("diverged", 0) == 0 and st.get("unsupported", 0) == 0


@pytest.mark.parametrize("access", ["none", "touch-on-map"])
def test_a_long_gc_trace_reproduces_every_call(access):
    """node's collector on 7 threads (12,820 memory calls, half of its lines split into
    unfinished/resumed pairs): every call as traced, with the checker raising on a
    missed flush; touching each new mapping makes its later calls flush."""
    res = replay(str(LONG_TRACE), access=access, checker="raise")
    rec = res.records[0]
    assert rec.statuses.get("match", 0) == 12820 and not rec.diverged()
    assert rec.statuses.get("unsupported", 0) == 0
    flushes = int(res.summary()["flushes"].iloc[0])
    assert (flushes > 0) == (access != "none")


def test_the_relro_mprotects_find_the_exec_image():
    """ld.so's and the binary's RELRO mprotects act on memory no traced call mapped; the
    image planned from the trace makes them succeed, as they did."""
    tr = parse_strace(str(DATA / "c_malloc.strace"))
    plans, notes = plan_images(tr.events, elf=False)
    (regions,) = plans.values()
    assert len(regions) == 2 and all(r.what == "inferred" for r in regions)
    rec = replay(tr, elf=False).records[0]
    df = rec.to_dataframe()
    relro = df[(df.call == "mprotect") & (df.line <= 14)]
    assert len(relro) == 3 and (relro.status == "match").all()
    without = Replay(tr, Machine(cpus=1, checker=False))
    without.images = {}
    r2 = without.run().to_dataframe()
    assert (r2[(r2.call == "mprotect") & (r2.line <= 14)].sim_errno == "ENOMEM").sum() == 2


@pytest.fixture
def python_elf():
    """This Python binary, its ELF header and its RELRO page (skip when unreadable)."""
    exe = os.path.realpath(sys.executable)
    elf = read_elf(exe)
    if elf is None or elf["relro"] is None:
        pytest.skip("this Python binary has no readable RELRO segment")
    return exe, elf, elf["relro"][0] & ~0xFFF


def test_elf_segments_are_placed_at_the_relro_bias(python_elf):
    exe, elf, relro = python_elf
    bias = 0x555555554000
    ev = parse_strace_lines([
        f'1 10:00:00.000001 execve("{exe}", ["python"], 0x0 /* 0 vars */) = 0',
        f"1 10:00:00.000002 mprotect(0x{bias + relro:x}, 4096, PROT_READ) = 0"]).events
    plans, _ = plan_images(ev)
    regs = plans[(1, 1)]
    binary = [r for r in regs if r.what == "binary"]
    assert len(binary) == len([x for x in elf["loads"] if x[3]])
    assert min(r.start for r in binary) == bias + (elf["loads"][0][0] & ~0xFFF)
    assert all(r.path == exe for r in binary)
    rec = replay(parse_strace_lines([
        f'1 10:00:00.000001 execve("{exe}", ["python"], 0x0 /* 0 vars */) = 0',
        f"1 10:00:00.000002 mprotect(0x{bias + relro:x}, 4096, PROT_READ) = 0"])).records[0]
    assert rec.statuses == {"process": 1, "match": 1}


def test_faults_on_the_relro_page_before_its_mprotect_still_place_the_elf(python_elf):
    """ld.so writes the relocations (faulting the RELRO page) before it mprotects the
    page read-only: with the faults counted, that mprotect still anchors the ELF, and
    the binary's pages are its segments, not inferred memory.  A fork child's fault on
    a page its parent never faulted (the kernel wrote it at exec) is the parent's
    image too."""
    exe, elf, relro = python_elf
    bias = 0x555555554000
    stack = 0x7FFC00010000
    ev = [_sys("execve", [exe], 0, t=0.0),
          json.dumps({"type": "fault", "t": 0.1, "pid": 1, "addr": bias + relro + 8,
                      "access": "write"}),
          _sys("mprotect", [bias + relro, 4096, 1], 0, t=0.2),
          _sys("fork", [0], 2, t=0.3),
          json.dumps({"type": "fault", "t": 0.4, "pid": 2, "addr": stack,
                      "access": "write"})]
    tr = parse_jsonl_lines(ev)
    plans, _ = plan_images(tr.events, faults=True)
    regs = plans[(1, 1)]
    assert [r.what for r in regs if r.start <= bias + relro < r.end] == ["binary"]
    assert [(r.what, r.start) for r in regs if r.what in ("stack", "inferred")] == \
        [("stack", stack)]
    rec = replay(tr, access="faults", checker="raise").records[0]
    assert not rec.diverged()


def test_a_failed_traced_call_that_the_simulation_allows_is_reported_and_undone():
    rec = _run([_sys("mmap", [0, 8192, 3, 0x22, -1, 0], -1, "ENOMEM"),
                _sys("munmap", [0x7f0000000001, 4096], -1, "EINVAL")])
    df = rec.to_dataframe()
    assert list(df.status) == ["diverged", "match"]
    assert "unmapped again" in df.note[0] and df.sim_errno[1] == "EINVAL"


def test_a_divergent_result_is_reported_not_hidden():
    rec = _run([_sys("mmap", [0, 4096, 3, 0x22, -1, 0], 0x7f0000000000),
                _sys("mprotect", [0x7f0000000000, 4096, 1], -1, "ENOMEM"),
                _sys("mprotect", [0x7f0000000000, 4096, 0], 0)])
    (d,) = rec.diverged()
    assert (d["line"], d["call"], d["traced_errno"], d["sim"], d["sim_errno"]) == \
        (2, "mprotect", "ENOMEM", 0, None)
    assert rec.column("status") == ["match", "diverged", "match"]


def test_an_unmapped_range_a_call_used_successfully_becomes_image_memory():
    """A successful mprotect of memory no traced call mapped proves it was mapped at
    exec: the image supplies it (and the replay notes it)."""
    res = replay(parse_jsonl_lines([_sys("mprotect", [0x7f0000100000, 8192, 1], 0)]))
    assert res.records[0].column("status") == ["match"]
    assert any("0x7f0000100000-0x7f0000102000" in n for n in res.notes)


def test_a_call_the_thread_lacks_is_unsupported_and_dispatched_once_it_exists(monkeypatch):
    lines = [_sys("mmap", [0, 8192, 3, 0x22, -1, 0], 0x7f0000000000),
             _sys("mlock", [0x7f0000000000, 8192], 0),
             _sys("mbind", ["0x7f0000000000, 8192, MPOL_BIND"], 0)]
    monkeypatch.delattr(Thread, "mlock", raising=False)
    rec = _run(lines)
    assert rec.column("status") == ["match", "unsupported", "unsupported"]
    assert summary_row(rec)["unsupported"] == 2
    seen = []

    def mlock(self, addr, length):
        seen.append((addr, length))
        return self.madvise(addr, length, 0)     # an OpResult with .value 0
    monkeypatch.setattr(Thread, "mlock", mlock, raising=False)
    rec = _run(lines)
    assert rec.column("status") == ["match", "match", "unsupported"]
    assert seen == [(0x7f0000000000, 8192)]


def test_legacy_mmap_flags_are_dropped_at_syscall_entry():
    """MAP_DENYWRITE and MAP_EXECUTABLE (ksys_mmap_pgoff clears them) do not fail."""
    rec = _run([_sys("mmap", [0, 8192, 1, 0x02 | 0x800 | 0x1000, 3, 0], 0x7f0000000000,
                     path="/lib/x.so")])
    assert rec.column("status") == ["match"]


def test_records_carry_events_and_write_parquet_and_json(tmp_path):
    rec = replay(str(DATA / "java_small.strace"), access="touch-before-protect").records[0]
    df = rec.to_dataframe()
    for col in ("line", "pid", "cpu", "call", "args", "traced", "traced_errno", "sim",
                "sim_errno", "status", "note", "cycles", "flush_tlb_mm_range", "invlpg",
                "ipi_sent", "faults"):
        assert col in df.columns
    assert df.flush_tlb_mm_range.sum() > 0 and (df.cycles > 0).any()
    out = tmp_path / "r.parquet"
    rec.to_parquet(str(out))
    import pandas as pd
    back = pd.read_parquet(out)
    assert len(back) == len(df) and list(back.line) == list(df.line)
    js = json.loads(rec.to_json())
    assert len(js) == len(df) and js[0]["line"] == df.line[0]
    flushing = next(r for r in js if r["events"].get("flush_tlb_mm_range"))
    assert flushing["call"] in ("mprotect", "munmap", "madvise", "mmap")


def test_summary_puts_profiles_side_by_side():
    res = replay(str(DATA / "java_small.strace"), profile=["patched", "v6.0"],
                 access="touch-before-protect")
    s = res.summary()
    assert list(s.profile) == ["patched", "v6.0"]
    assert (s.calls == s.calls[0]).all() and (s.flushes > 0).all()
    for col in ("invlpg", "full_flushes", "ipis", "faults", "cycles"):
        assert col in s.columns
    assert set(res.to_dataframe().profile) == {"patched", "v6.0"}


def test_touch_on_map_touches_each_mapped_page():
    rec = _run([_sys("mmap", [0, 16 * 4096, 3, 0x22, -1, 0], 0x7f0000000000),
                _sys("mmap", [0, 4 * 4096, 0, 0x22, -1, 0], 0x7f0000100000)],
               access="touch-on-map")
    df = rec.to_dataframe()
    acc = df[df.call == "access"]
    assert list(acc.traced) == [16] and int(acc.fault_anon.sum()) == 16


def test_touch_before_protect_fills_the_tlb_the_mprotect_must_flush():
    lines = [_sys("mmap", [0, 8 * 4096, 3, 0x22, -1, 0], 0x7f0000000000),
             _sys("mprotect", [0x7f0000000000, 8 * 4096, 1], 0)]
    none = _run(lines).to_dataframe()
    touched = _run(lines, access="touch-before-protect").to_dataframe()
    assert none.flush_tlb_mm_range.sum() == 0
    mp = touched[touched.call == "mprotect"]
    assert int(mp.flush_tlb_mm_range.iloc[0]) == 1 and int(mp.invlpg.iloc[0]) == 8


def test_the_fault_model_runs_each_traced_fault_in_batches():
    tr = load_trace(str(DATA / "python_script.strace"))
    rec = Replay(tr, Machine(cpus=1, checker=False), access="faults").run()
    df = rec.to_dataframe()
    acc = df[df.call == "access"]
    assert int(acc.traced.sum()) == len(tr.faults)
    assert len(acc) < len(tr.faults) / 5          # batched, not one call per fault
    assert int(df.faults.sum()) >= len(acc)


def test_a_traced_fault_the_model_answers_with_a_signal_the_trace_lacks_diverges():
    """do_user_addr_fault() -> bad_area_access_error(): a write to a read-only mapping
    is a SIGSEGV.  The real program got one only if the trace shows it delivered; a
    fault the model ends with a signal the trace lacks is a divergence, named."""
    a = 0x7F0000000000
    lines = [_sys("mmap", [0, 4096, 1, 0x22, -1, 0], a, t=1.0),
             json.dumps({"type": "fault", "t": 2.0, "pid": 1, "addr": a + 8,
                         "access": "write"})]
    rec = _run(lines, access="faults")
    (d,) = rec.diverged()
    assert d["call"] == "access" and f"0x{a + 8:x}" in d["note"] and "SIGSEGV" in d["note"]
    shown = lines + [json.dumps({"type": "signal", "t": 2.0, "pid": 1,
                                 "signal": "SIGSEGV", "addr": a + 8})]
    rec = _run(shown, access="faults")
    assert not rec.diverged() and rec.statuses["access"] == 1
    # a signal no fault ended with is said in the notes
    extra = shown + [json.dumps({"type": "signal", "t": 3.0, "pid": 1,
                                 "signal": "SIGBUS", "addr": a + 4096})]
    rec = _run(extra, access="faults")
    assert any("got SIGBUS at 0x7f0000001000" in n for n in rec.notes)


@pytest.mark.parametrize("gap, hinted", [(10e-6, True), (1e-3, False)])
def test_faults_that_diverge_just_before_their_tasks_mprotect_hint_at_the_clock(gap,
                                                                              hinted):
    """A write that faults `gap` before the mprotect making its page writable: the
    model answers SIGSEGV (a divergence), and when such faults come within 50 us of a
    call of their own task the notes say the faults' clock may run early."""
    a = 0x7F0000000000
    lines = [_sys("mmap", [0, 4096, 1, 0x22, -1, 0], a, t=1.0),
             json.dumps({"type": "fault", "t": 2.0, "pid": 1, "addr": a,
                         "access": "write"}),
             _sys("mprotect", [a, 4096, 3], 0, t=2.0 + gap)]
    rec = _run(lines, access="faults")
    assert len(rec.diverged()) == 1
    assert any("clock may run early" in n for n in rec.notes) == hinted


@pytest.mark.parametrize("fast", [True, False])
def test_fault_signal_lines_are_read_and_other_signals_skipped(fast, tmp_path):
    from pysim.replay.events import Signal
    from pysim.replay.jsonl import read_jsonl, write_jsonl
    lines = ['7 10:00:00.000001 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, '
             '-1, 0) = 0x7f0000000000',
             '7 10:00:00.000002 --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_ACCERR, '
             'si_addr=0x7f0000000008} ---',
             '7 10:00:00.000003 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, '
             'si_pid=8, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---',
             '7 10:00:00.000004 --- SIGBUS {si_signo=SIGBUS, si_code=BUS_ADRERR, '
             'si_addr=NULL} ---']
    tr = parse_strace_lines(lines, fast=fast)
    assert tr.signals == [Signal(2, 36000.000002, 7, "SIGSEGV", 0x7F0000000008),
                          Signal(4, 36000.000004, 7, "SIGBUS", 0)]
    assert len(tr.calls) == 1
    path = str(tmp_path / "t.jsonl")
    write_jsonl(tr, path)
    assert read_jsonl(path).signals == tr.signals


def test_pages_faulted_before_any_call_mapped_them_become_the_stack_and_inferred_memory():
    """The stack, the vdso and its data pages are mapped at exec, and an strace never
    shows them: the pages the trace's faults use first make them (the stack as one
    span down to its lowest fault, other runs executable where a fetch faulted).  A
    fault below mmap_min_addr, or one the trace shows ending in SIGSEGV, maps nothing."""
    def fault(t, addr, access):
        return json.dumps({"type": "fault", "t": t, "pid": 1, "addr": addr,
                           "access": access})
    stack, vdso = 0x7FFC00010000, 0x7F0000005000
    lines = [_sys("brk", [0], 0x555555559000, t=0.5),
             fault(1.0, stack + 0x3FF8, "write"), fault(1.1, stack + 0x10, "write"),
             fault(1.2, vdso + 0x20, "fetch"), fault(1.3, vdso + 0x1000, "read"),
             fault(1.4, 0x10, "read"),
             json.dumps({"type": "signal", "t": 1.4, "pid": 1, "signal": "SIGSEGV",
                         "addr": 0x10})]
    tr = parse_jsonl_lines(lines)
    plans, _ = plan_images(tr.events, elf=False, faults=True, signals=tr.signals)
    (regions,) = plans.values()
    got = sorted((r.what, r.start, r.end, r.prot) for r in regions)
    assert got == [("inferred", vdso, vdso + 0x2000, 7), ("stack", stack, stack + 0x4000, 3)]
    rec = replay(tr, access="faults", checker="raise").records[0]
    assert not rec.diverged() and rec.image_vmas == 2
    assert not plan_images(tr.events, elf=False)[0]     # the calls alone need none


def test_faults_are_merged_in_time_order():
    tr = load_trace(str(DATA / "c_malloc.strace"))
    times = [e.time for e in tr.events]
    assert times == sorted(times) and tr.faults


def test_threads_go_onto_cpus_round_robin_or_as_traced():
    lines = [_sys("clone3", [0x10100], 2, pid=1), _sys("clone3", [0x10100], 3, pid=1),
             _sys("mmap", [0, 4096, 3, 0x22, -1, 0], 0x7f0000000000, pid=2),
             _sys("mmap", [0, 4096, 3, 0x22, -1, 0], 0x7f0000100000, pid=3),
             json.dumps({"type": "fault", "t": None, "pid": 3, "addr": 0x7f0000100000,
                         "access": "write", "cpu": 0})]
    rr = _run(lines, cpus=3)
    assert rr.column("cpu")[2:4] == [1, 2]
    traced = _run(lines, cpus=3, pin="traced", access="faults")
    assert traced.column("cpu")[3] == 0


def test_vfork_shares_the_parent_mm_until_the_child_execs():
    tr = load_trace(str(DATA / "sh_fork.strace"))
    rec = replay(tr).records[0]
    df = rec.to_dataframe()
    (vf,) = df[df.call == "vfork"].itertuples()
    child = int(vf.traced)
    ex = df[(df.pid == child) & (df.call == "execve") & (df.traced == 0)]
    assert vf.status == "process" and len(ex) == 1
    after = df[(df.pid == child) & (df.line > ex.line.iloc[0]) & (df.call == "mprotect")]
    assert len(after) > 0 and (after.status == "match").all()
    assert set(df.pid) == set(tr.pids)


def test_a_fork_without_process_fork_is_unsupported_and_the_child_runs_on():
    lines = [_sys("mmap", [0, 4096, 3, 0x22, -1, 0], 0x7f0000000000, pid=1),
             _sys("clone", [0], 2, pid=1),
             _sys("mmap", [0, 4096, 3, 0x22, -1, 0], 0x7f0000100000, pid=2),
             _sys("exit_group", [0], None, pid=2), _sys("exit_group", [0], None, pid=1)]
    rec = _run(lines)
    st = rec.column("status")
    if hasattr(pysim.Process, "fork"):
        assert st[1] == "process"
    else:
        assert st[1] == "unsupported" and "Process.fork" in rec.column("note")[1]
    assert st[2] == "match" and rec.column("pid")[2] == 2


# ---------------------------------------------------------------- the command line
def _pysim(*args, **kw):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
        os.path.abspath(pysim.__file__))))
    return subprocess.run([sys.executable, "-m", "pysim", *args], capture_output=True,
                          text=True, env=env, **kw)


def test_cli_replay_prints_the_summary_and_writes_records(tmp_path):
    out = tmp_path / "rec.parquet"
    p = _pysim("replay", str(DATA / "java_small.strace"), "--profile", "patched",
               "--profile", "v6.0", "--access", "touch-before-protect", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "patched" in p.stdout and "v6.0" in p.stdout and "flushes" in p.stdout
    import pandas as pd
    assert set(pd.read_parquet(out).profile) == {"patched", "v6.0"}


def test_cli_replay_json():
    p = _pysim("replay", "--json", str(DATA / "c_malloc.strace"))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    recs = doc["runs"][0]["records"]
    assert recs[0]["line"] == 1 and {"traced", "sim", "sim_errno", "events", "cycles"} <= \
        set(recs[1])


def test_cli_replay_a_malformed_line_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "bad.strace"
    bad.write_text("1 10:00:00.0 brk(NULL) = 0x1000\n1 10:00:00.1 mmap(NULL, 4096, "
                   "PROT_READ, MAP_BOGUS, -1, 0) = 0x7f0000000000\n")
    p = _pysim("replay", str(bad))
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert f"{bad}:2:" in p.stderr and "MAP_BOGUS" in p.stderr


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_cli_capture_writes_a_trace_that_replays(tmp_path):
    out = tmp_path / "true.strace"
    p = _pysim("capture", "-o", str(out), "--", "/bin/true")
    assert p.returncode == 0, p.stderr
    tr = parse_strace(str(out))
    assert tr.calls[0].name == "execve" and any(c.name == "mmap" for c in tr.calls)
    inst = "/sys/kernel/tracing/instances"
    if os.path.isdir(inst):         # ours are pysim-<pid>: none of a dead capture remains
        left = [d for d in os.listdir(inst) if d.startswith("pysim-")
                and d[6:].isdigit() and not os.path.exists(f"/proc/{d[6:]}")]
        assert not left
    if os.geteuid() != 0:
        assert "not captured: page faults" in p.stderr
    res = replay(str(out))
    assert res.records[0].statuses.get("match", 0) > 5


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_capture_says_what_it_did_not_capture(tmp_path):
    from pysim.replay.capture import capture
    r = capture(str(tmp_path / "t.strace"), ["/bin/true"], faults=False)
    assert r.faults is None and r.missing == ["page faults: not asked for"]
    assert r.returncode == 0


def _can_trace_faults() -> bool:
    from pysim.replay.capture import _tracefs
    return os.geteuid() == 0 and _tracefs() is not None


@pytest.mark.skipif(shutil.which("strace") is None or shutil.which("gcc") is None
                    or not _can_trace_faults(),
                    reason="needs strace, gcc, root and tracefs with page_fault_user")
def test_captured_faults_are_on_the_strace_clock(tmp_path):
    """A page written right after the mprotect that made it writable faults after that
    mprotect and after the program's own realtime read between the two: the faults'
    times (the tracepoint's mono clock moved onto strace's -tt clock) are within a
    microsecond or two of the program's clock, never before it.  Reading the two clocks
    for the offset with work between them once put node's writes 10 us before their
    mprotect, and the model answered them with SIGSEGV."""
    import time
    from pysim.replay.capture import capture
    exe = tmp_path / "order"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(DATA / "fault_order.c")], check=True)
    out = tmp_path / "order.strace"
    stdout = tmp_path / "stdout"
    with open(stdout, "w") as f:        # the program's output, apart from pytest's
        fd = os.dup(1)
        os.dup2(f.fileno(), 1)
        try:
            r = capture(str(out), [str(exe)])
        finally:
            os.dup2(fd, 1)
            os.close(fd)
    assert r.returncode == 0 and r.faults, r.missing
    words = stdout.read_text().split()
    base, after = int(words[0], 16), [int(w) for w in words[1:]]

    def of_day(ns):
        lt = time.localtime(ns // 10**9)
        return lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (ns % 10**9) / 1e9
    tr = load_trace(str(out))
    writes = {(f.va - base) >> 12: f.time for f in tr.faults
              if base <= f.va < base + len(after) * 4096 and f.access == 1}
    assert sorted(writes) == list(range(len(after)))
    lag = [writes[i] - of_day(after[i]) for i in range(len(after))]
    assert min(lag) >= -1e-6 and max(lag) < 1e-3, [round(x * 1e6, 1) for x in lag]
    # and the model, given the merged stream, grants every write (none is a SIGSEGV)
    rec = Replay(tr, Machine(cpus=1, checker="raise"), access="faults").run()
    assert not rec.diverged(), [(d["line"], d["note"]) for d in rec.diverged()]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_capture_says_tracefs_is_not_mounted_and_how_to_mount_it(tmp_path, monkeypatch):
    from pysim.replay import capture as cap
    monkeypatch.setattr(cap, "TRACEFS_ROOTS", (str(tmp_path / "tracing"),))
    r = cap.capture(str(tmp_path / "t.strace"), ["/bin/true"])
    assert r.faults is None and r.returncode == 0
    if os.geteuid() == 0:
        assert r.missing == [f"page faults: tracefs is not mounted (mount -t tracefs "
                             f"nodev {tmp_path / 'tracing'})"]
    else:
        assert r.missing == ["page faults: tracefs needs root"]


def test_capture_without_a_command_is_a_clean_error(tmp_path):
    p = _pysim("capture", "-o", str(tmp_path / "x.strace"))
    assert p.returncode == 2 and "no command" in p.stderr and "Traceback" not in p.stderr
