"""Replay throughput (issue 12 acceptance: >= 100,000 syscalls/s for syscall-only traces;
>= 1,000,000 accesses/s with a page-fault access model).

* a synthetic syscall-only strace (the mmap / mprotect / madvise / munmap mix of a
  malloc-heavy program: 60,000 calls on one task), timed three ways: parsing alone, the
  engine alone on the parsed Trace, and end to end (pysim.replay of the file);
* the committed real traces (tests/data), syscalls only, end to end, and the long
  one (node_gc: a collector's 12,820 calls on 7 threads) parse, engine and end to end;
* the real traces with their captured page faults (access model `faults`), reported as
  accesses per second (their syscalls included, so a trace with few faults per call is
  bound by its syscalls);
* a synthetic garbage-collector trace in JSON lines: a 1 GiB heap mapped, 200,000
  first-touch page faults (writes, and reads of untouched pages) in runs of 2,000
  between madvise(DONTNEED) and mprotect calls, as a GC's heap grows and is trimmed,
  reported as accesses per second of the whole replay (the fault-model acceptance).

Benchmarks report; they never assert on speed.
"""
import os
import pathlib

import pytest

import pysim
from pysim.machine import Machine
from pysim.replay import load_trace
from pysim.replay.engine import Replay
from pysim.replay.parse_strace import parse_strace

DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"
N_CYCLES = 15_000                    # 4 calls each


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A syscall-only strace of N_CYCLES mmap/mprotect/madvise/munmap cycles."""
    path = tmp_path_factory.mktemp("replay") / "synthetic.strace"
    lines = ['100 10:00:00.000000 execve("/nonexistent", ["x"], 0x0 /* 1 var */) = 0']
    for i in range(N_CYCLES):
        a = 0x7F0000000000 + (i % 256) * 0x100000
        t = f"10:00:{(i // 1000) % 60:02d}.{i % 1000:06d}"
        lines += [f"100 {t} mmap(NULL, 65536, PROT_READ|PROT_WRITE, "
                  f"MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x{a:x}",
                  f"100 {t} mprotect(0x{a:x}, 4096, PROT_READ) = 0",
                  f"100 {t} madvise(0x{a + 8192:x}, 8192, MADV_DONTNEED) = 0",
                  f"100 {t} munmap(0x{a:x}, 65536) = 0"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


GC_FAULTS, GC_RUN = 200_000, 2_000


@pytest.fixture(scope="module")
def gc_trace(tmp_path_factory):
    """The synthetic GC trace (see the module comment) as a .jsonl file."""
    import json
    path = tmp_path_factory.mktemp("replay") / "gc.jsonl"
    heap, size = 0x7F0000000000, 1 << 30
    rows = [{"type": "syscall", "t": 0.0, "pid": 7, "name": "mmap",
             "args": [0, size, 3, 0x22, -1, 0], "result": heap, "errno": None}]
    t = 0.0
    pages = size // 4096
    for k in range(GC_FAULTS // GC_RUN):
        base = (k * GC_RUN * 7) % (pages - GC_RUN)
        for i in range(GC_RUN):
            t += 1e-6
            rows.append({"type": "fault", "t": t, "pid": 7,
                         "addr": heap + (base + i) * 4096 + 8,
                         "access": "read" if i % 5 == 0 else "write"})
        t += 1e-6
        rows.append({"type": "syscall", "t": t, "pid": 7, "name": "madvise",
                     "args": [heap + base * 4096, GC_RUN * 2048, 4], "result": 0,
                     "errno": None})
        rows.append({"type": "syscall", "t": t, "pid": 7, "name": "mprotect",
                     "args": [heap + base * 4096, 4096, 1], "result": 0, "errno": None})
        rows.append({"type": "syscall", "t": t, "pid": 7, "name": "mprotect",
                     "args": [heap + base * 4096, 4096, 3], "result": 0, "errno": None})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_gc_faults(benchmark, report, gc_trace):
    """The synthetic GC trace with access model `faults`: accesses per second."""
    tr = load_trace(gc_trace)

    def run():
        return Replay(tr, Machine(cpus=1, checker=False), access="faults").run()
    rec = benchmark.pedantic(run, rounds=3, iterations=1)
    calls = sum(1 for c in rec.column("call") if c != "access")
    report("replay: synthetic GC trace, captured page faults", "faults model",
           faults=len(tr.faults), calls=calls,
           accesses_per_s=len(tr.faults) / benchmark.stats.stats.min,
           statuses=str(rec.statuses))


def test_parse_only(benchmark, report, synthetic):
    tr = benchmark.pedantic(parse_strace, args=(synthetic,), rounds=3, iterations=1)
    n = len(tr.calls)
    report("replay: syscall-only synthetic strace", "parse", calls=n,
           calls_per_s=n / benchmark.stats.stats.min)


def test_engine_only(benchmark, report, synthetic):
    tr = parse_strace(synthetic)

    def run():
        return Replay(tr, Machine(cpus=1, checker=False)).run()
    rec = benchmark.pedantic(run, rounds=3, iterations=1)
    n = len(rec)
    report("replay: syscall-only synthetic strace", "engine (parsed trace)", calls=n,
           match=rec.statuses.get("match", 0), calls_per_s=n / benchmark.stats.stats.min)


def test_end_to_end(benchmark, report, synthetic):
    res = benchmark.pedantic(pysim.replay, args=(synthetic,), rounds=3, iterations=1)
    n = len(res.records[0])
    report("replay: syscall-only synthetic strace", "pysim.replay(file)", calls=n,
           calls_per_s=n / benchmark.stats.stats.min)


@pytest.mark.parametrize("name", ["c_malloc", "python_script", "node_e", "java_small"])
def test_real_trace_syscalls(benchmark, report, name):
    tr = load_trace(str(DATA / f"{name}.strace"), faults=os.devnull)
    cpus = max(1, min(8, len(tr.pids)))

    def run():
        return Replay(tr, Machine(cpus=cpus, checker=False), elf=True).run()
    rec = benchmark.pedantic(run, rounds=3, iterations=1)
    n = len(rec)
    report("replay: real traces, syscalls only", name, calls=n,
           calls_per_s=n / benchmark.stats.stats.min)


def test_long_real_trace(benchmark, report):
    """node's collector (tests/data/node_gc.strace.gz: 12,820 calls on 7 threads), the
    parse and the engine apart and end to end: a real program's stream at length."""
    import time
    path = str(DATA / "node_gc.strace.gz")
    t = time.perf_counter()
    tr = load_trace(path, faults=os.devnull)
    parse_s = time.perf_counter() - t
    cpus = max(1, min(8, len(tr.pids)))

    def run():
        return Replay(tr, Machine(cpus=cpus, checker=False), elf=True).run()
    rec = benchmark.pedantic(run, rounds=3, iterations=1)
    n = len(rec)
    t = time.perf_counter()
    pysim.replay(path)
    whole_s = time.perf_counter() - t
    report("replay: a long real trace, syscalls only", "node_gc", calls=n,
           parse_calls_per_s=n / parse_s, engine_calls_per_s=n / benchmark.stats.stats.min,
           end_to_end_calls_per_s=n / whole_s)


@pytest.mark.parametrize("name", ["python_script", "node_e", "java_small"])
def test_real_trace_faults(benchmark, report, name):
    tr = load_trace(str(DATA / f"{name}.strace"))
    cpus = max(1, min(8, len(tr.pids)))

    def run():
        return Replay(tr, Machine(cpus=cpus, checker=False), access="faults").run()
    rec = benchmark.pedantic(run, rounds=3, iterations=1)
    acc = int(sum(rec.column("traced")[i] for i, c in enumerate(rec.column("call"))
                  if c == "access"))
    report("replay: real traces, captured page faults", name, faults=len(tr.faults),
           accesses=acc, accesses_per_s=acc / benchmark.stats.stats.min,
           events_per_s=(len(tr.events)) / benchmark.stats.stats.min)
