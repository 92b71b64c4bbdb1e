"""The Python API's answers to bad input (issue 14, "The Python API"): one table row per
case -- the call, the exception type, Linux's errno where a syscall has one, and a
pattern the message must match (naming the argument).  No internal exception
(OverflowError, a TypeError or AttributeError from inside, numpy's errors) may reach
the caller; every answer is a pysim.PysimError.  The second half checks that numpy
integers are taken wherever ints are, with the same counts as Python ints."""
from __future__ import annotations

import errno
from types import SimpleNamespace

import numpy as np
import pytest

import pysim
from pysim import (MAP_PRIVATE, MREMAP_MAYMOVE, PROT_READ, PROT_WRITE, ArgumentError,
                   ConfigError, PysimError, SyscallError)
from pysim.replay import TraceError

PAGE = 4096
RW = PROT_READ | PROT_WRITE
TRACE = "tests/data/c_malloc.strace"


@pytest.fixture
def env():
    """A two-CPU machine, a process, a thread on CPU 0 and four mapped pages at p."""
    m = pysim.Machine(cpus=2)
    proc = m.process()
    t = proc.thread(cpu=0)
    return SimpleNamespace(m=m, proc=proc, t=t, p=t.mmap(4 * PAGE, RW))


def _prog(calls, n):
    """A timeline program: map a page, write it n times."""
    p = yield calls.mmap(PAGE, RW)
    for _ in range(n):
        yield calls.write(p)
        calls.tick()


def _timeline(e, program=_prog, *args, **run):
    """Spawn program(calls, *args) on e.t's CPU (_prog with n=2 by default) and run the
    timeline with `run`'s options."""
    if program is _prog and not args:
        args = (2,)
    tl = e.m.timeline()
    tl.spawn(e.t, program, *args)
    return tl.run(**run)


def _sweep(**kw):
    """A two-point serial sweep of mprotect_range with kw as sweep()'s options."""
    grid = kw.pop("grid", {"experiment": "mprotect_range", "grid": {"pages": [1, 2]}})
    return pysim.sweep(grid, backend="serial", progress=False, **kw)


def _file():
    """A readable 1 MiB file for file mappings."""
    return pysim.File("f", size=1 << 20)


# (id, call on the env, exception type, errno or None, message pattern)
CASES = [
    # Machine options
    ("cpus=True", lambda e: pysim.Machine(cpus=True), ConfigError, None, "cpus"),
    ("cpus=2.0", lambda e: pysim.Machine(cpus=2.0), ConfigError, None, "cpus"),
    ("seed='abc'", lambda e: pysim.Machine(seed="abc"), ConfigError, None, "seed"),
    ("seed=1.5", lambda e: pysim.Machine(seed=1.5), ConfigError, None, "seed"),
    ("seed=-1", lambda e: pysim.Machine(seed=-1), ConfigError, None, "seed"),
    ("kernel_footprint='x'", lambda e: pysim.Machine(kernel_footprint="x"), ConfigError,
     None, "kernel_footprint"),
    ("kernel_footprint typo", lambda e: pysim.Machine(kernel_footprint={"txt_pages": 1}),
     ConfigError, None, "txt_pages"),
    ("kernel_footprint key 1", lambda e: pysim.Machine(kernel_footprint={1: 2}),
     ConfigError, None, "kernel_footprint"),
    ("process(typo=1)", lambda e: e.m.process(typo=1), ArgumentError, None,
     r"Machine\.process\(\).*typo"),
    ("mmap_base='x'", lambda e: e.m.process(mmap_base="x"), ConfigError, None, "mmap_base"),
    ("mmap_base=1.5", lambda e: e.m.process(mmap_base=1.5), ConfigError, None, "mmap_base"),
    ("mmap_base=-1", lambda e: e.m.process(mmap_base=-1), ConfigError, None, "mmap_base"),
    ("thread(cpu=True)", lambda e: e.proc.thread(cpu=True), ConfigError, None, "cpu"),
    ("thread(cpu=2)", lambda e: e.proc.thread(cpu=2), ConfigError, None, "cpu"),
    ("thread(cpus=1)", lambda e: e.proc.thread(cpus=1), ArgumentError, None, "cpus"),
    # accesses
    ("read(-1)", lambda e: e.t.read(-1), ConfigError, None, "va"),
    ("read(2**64)", lambda e: e.t.read(2 ** 64), ConfigError, None, "va"),
    ("read(float(p))", lambda e: e.t.read(float(e.p)), ConfigError, None, "va"),
    ("write(True)", lambda e: e.t.write(True), ConfigError, None, "va"),
    ("access kinds 7", lambda e: e.t.access([e.p], [7]), ConfigError, None, "kinds"),
    ("access lengths", lambda e: e.t.access([e.p, e.p], [0]), ConfigError, None, "kinds"),
    ("access floats", lambda e: e.t.access([1.5], [0]), ConfigError, None, "vas"),
    ("access -1", lambda e: e.t.access([-1], [0]), ConfigError, None, "vas"),
    ("access ragged", lambda e: e.t.access([[1, 2], [3]], [0]), ConfigError, None, "vas"),
    # typed batches take validate_accesses' one-pass check (fastfault.batch_in_range)
    ("access typed beyond user space", lambda e: e.t.access(
        np.array([1 << 47], dtype=np.uint64), np.array([0], dtype=np.uint8)),
     ConfigError, None, "vas"),
    ("access typed kind 3", lambda e: e.t.access(
        np.array([e.p], dtype=np.uint64), np.array([3], dtype=np.uint8)),
     ConfigError, None, "kinds"),
    ("access typed lengths", lambda e: e.t.access(
        np.array([e.p, e.p], dtype=np.uint64), np.array([0], dtype=np.uint8)),
     ConfigError, None, "kinds"),
    # mmap
    ("mmap(-4096)", lambda e: e.t.mmap(-PAGE, RW), SyscallError, errno.ENOMEM, "length"),
    ("mmap(2**62)", lambda e: e.t.mmap(2 ** 62, RW), SyscallError, errno.ENOMEM, "length"),
    ("mmap(4096.0)", lambda e: e.t.mmap(4096.0, RW), SyscallError, errno.EINVAL, "length"),
    ("mmap prot=True", lambda e: e.t.mmap(PAGE, True), SyscallError, errno.EINVAL, "prot"),
    ("mmap flags='x'", lambda e: e.t.mmap(PAGE, RW, "x"), SyscallError, errno.EINVAL,
     "flags"),
    ("mmap hugee=True", lambda e: e.t.mmap(PAGE, RW, hugee=True), ArgumentError, None,
     r"Thread\.mmap\(\).*hugee"),
    ("mmap huge='yes'", lambda e: e.t.mmap(PAGE, RW, huge="yes"), ConfigError, None, "huge"),
    ("mmap file='foo.txt'", lambda e: e.t.mmap(PAGE, PROT_READ, MAP_PRIVATE, file="foo.txt"),
     SyscallError, errno.EBADF, "file"),
    ("mmap pgoff=-1", lambda e: e.t.mmap(PAGE, PROT_READ, MAP_PRIVATE, file=_file(),
                                         pgoff=-1), SyscallError, errno.EINVAL, "pgoff"),
    ("mmap pgoff=1.0", lambda e: e.t.mmap(PAGE, PROT_READ, MAP_PRIVATE, file=_file(),
                                          pgoff=1.0), SyscallError, errno.EINVAL, "pgoff"),
    ("mmap pgoff=2**64-1", lambda e: e.t.mmap(PAGE, PROT_READ, MAP_PRIVATE, file=_file(),
                                              pgoff=2 ** 64 - 1),
     SyscallError, errno.EOVERFLOW, "pgoff"),
    ("mmap FIXED addr=2**63", lambda e: e.t.mmap(PAGE, RW, MAP_PRIVATE | pysim.MAP_ANONYMOUS
                                                 | pysim.MAP_FIXED, addr=2 ** 63),
     SyscallError, errno.ENOMEM, "outside user space"),
    # munmap, mprotect, madvise
    ("munmap(p, 2**63)", lambda e: e.t.munmap(e.p, 2 ** 63), SyscallError, errno.EINVAL,
     "outside user space"),
    ("munmap(p, -1)", lambda e: e.t.munmap(e.p, -1), SyscallError, errno.EINVAL, "length"),
    ("mprotect pkey='a'", lambda e: e.t.mprotect(e.p, PAGE, PROT_READ, pkey="a"),
     SyscallError, errno.EINVAL, "pkey"),
    ("mprotect pkey=99", lambda e: e.t.mprotect(e.p, PAGE, PROT_READ, pkey=99),
     SyscallError, errno.EINVAL, "pkey 99"),
    ("mprotect prot=1.0", lambda e: e.t.mprotect(e.p, PAGE, 1.0), SyscallError,
     errno.EINVAL, "prot"),
    ("madvise advice=True", lambda e: e.t.madvise(e.p, PAGE, True), SyscallError,
     errno.EINVAL, "advice"),
    ("madvise advice='x'", lambda e: e.t.madvise(e.p, PAGE, "x"), SyscallError,
     errno.EINVAL, "advice"),
    # the newer calls
    ("brk('x')", lambda e: e.t.brk("x"), SyscallError, errno.EINVAL, "brk"),
    ("mremap flags=True", lambda e: e.t.mremap(e.p, PAGE, 2 * PAGE, True), SyscallError,
     errno.EINVAL, "flags"),
    ("mremap new_len=-1", lambda e: e.t.mremap(e.p, PAGE, -1, MREMAP_MAYMOVE),
     SyscallError, errno.EINVAL, "length"),
    ("mlock len=1.0", lambda e: e.t.mlock(e.p, 1.0), SyscallError, errno.EINVAL, "len"),
    ("mlock2 flags=True", lambda e: e.t.mlock2(e.p, PAGE, True), SyscallError,
     errno.EINVAL, "flags"),
    ("mlockall('x')", lambda e: e.t.mlockall("x"), SyscallError, errno.EINVAL, "flags"),
    ("pkey_alloc('a')", lambda e: e.t.pkey_alloc("a"), SyscallError, errno.EINVAL,
     "flags"),
    ("pkey_free(99)", lambda e: e.t.pkey_free(99), SyscallError, errno.EINVAL, "pkey 99"),
    ("mseal flags='x'", lambda e: e.t.mseal(e.p, PAGE, "x"), SyscallError, errno.EINVAL,
     "flags"),
    ("process_madvise iov_len='a'", lambda e: e.t.process_madvise([(e.p, "a")], 4),
     SyscallError, errno.EINVAL, "iov_len"),
    ("process_madvise iovec=None", lambda e: e.t.process_madvise(None, 4), SyscallError,
     errno.EINVAL, "iovec"),
    ("fork(thread='x')", lambda e: e.proc.fork(thread="x"), ArgumentError, None, "thread"),
    ("fork(cpu=9)", lambda e: e.proc.fork(cpu=9), ConfigError, None, "cpu"),
    ("fork(cpus=1)", lambda e: e.proc.fork(cpus=1), ArgumentError, None, "cpus"),
    ("fork another's thread", lambda e: e.proc.fork(thread=e.m.process().thread(cpu=1)),
     ArgumentError, None, "thread"),
    ("execve(image='x')", lambda e: e.proc.execve(image="x"), ArgumentError, None, "image"),
    ("execve(thread=3)", lambda e: e.proc.execve(thread=3), ArgumentError, None, "thread"),
    ("exit(thread=3)", lambda e: e.proc.exit(thread=3), ArgumentError, None, "thread"),
    # the mmu_gather API
    ("tlb_gather_mmu(Thread, mm)", lambda e: pysim.tlb_gather_mmu(e.t, e.t.mm),
     ArgumentError, None, "needs a CPU"),
    ("tlb_gather_mmu(cpu, Thread)", lambda e: pysim.tlb_gather_mmu(e.t.cpu, e.t),
     ArgumentError, None, "an mm"),
    # the timeline
    ("run(until='x')", lambda e: _timeline(e, until="x"), ConfigError, None, "until"),
    ("run(until=-1)", lambda e: _timeline(e, until=-1), ConfigError, None, "until"),
    ("run(until=nan)", lambda e: _timeline(e, until=float("nan")), ConfigError, None,
     "until"),
    ("run(warmup='x')", lambda e: _timeline(e, warmup="x"), ConfigError, None, "warmup"),
    ("run(untill=5)", lambda e: _timeline(e, untill=5), ArgumentError, None, "untill"),
    ("spawn(program=3)", lambda e: _timeline(e, 3), ArgumentError, None, "program"),
    ("spawn extra argument", lambda e: _timeline(e, _prog, 1, 2), ArgumentError, None,
     "program"),
    ("program yields 5", lambda e: _timeline(e, lambda c: (yield 5)), ConfigError, None,
     "yielded 5"),
    ("compute('x')", lambda e: _timeline(e, lambda c: (yield c.compute("x"))),
     ConfigError, None, "cycles"),
    ("tick('x')", lambda e: _timeline(e, lambda c: (c.tick("x"), (yield c.compute(1)))),
     ConfigError, None, "tick"),
    # sweeps
    ("sweep(backnd=...)", lambda e: _sweep(backnd="serial"), ArgumentError, None, "backnd"),
    ("sweep(workers=True)", lambda e: _sweep(workers=True), ConfigError, None, "workers"),
    ("sweep(checkpoint=nan)", lambda e: _sweep(checkpoint=float("nan")), ConfigError, None,
     "checkpoint"),
    ("sweep(seed=1.5)", lambda e: _sweep(seed=1.5), ConfigError, None, "seed"),
    ("grid np.bool_ as pages", lambda e: _sweep(grid={"experiment": "mprotect_range",
                                                      "grid": {"pages": [np.bool_(True)]}}),
     ConfigError, None, "pages"),
    # replay
    ("replay(3)", lambda e: pysim.replay(3), TraceError, None, "trace"),
    ("replay(faults=missing)", lambda e: pysim.replay(TRACE, faults="/nonexistent"),
     TraceError, None, "faults"),
    ("replay(acess=...)", lambda e: pysim.replay(TRACE, acess="none"), ArgumentError, None,
     "acess"),
    ("replay(cpus=True)", lambda e: pysim.replay(TRACE, cpus=True), ConfigError, None,
     "cpus"),
    ("replay(profile=[])", lambda e: pysim.replay(TRACE, profile=[]), ConfigError, None,
     "profile"),
    ("replay(elf='x')", lambda e: pysim.replay(TRACE, elf="x"), ConfigError, None, "elf"),
]


@pytest.mark.parametrize("call,exc,err,pattern", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clean_error(env, call, exc, err, pattern):
    """Each bad input raises the listed PysimError, with Linux's errno for a syscall,
    and a message naming the argument."""
    with pytest.raises(exc, match=pattern) as info:
        call(env)
    assert isinstance(info.value, PysimError)
    if err is not None:
        assert info.value.errno == err
    if isinstance(info.value, ArgumentError):            # also what Python would raise
        assert isinstance(info.value, TypeError) and info.value.field


def test_a_failed_syscall_leaves_the_machine_usable(env):
    """A refused argument aborts the operation cleanly: the next call works."""
    with pytest.raises(SyscallError):
        env.t.mmap(PAGE, True)
    assert env.t.write(env.p).value == 1


# ---------------------------------------------------------------- numpy integers
def _mprotect_cycles(addr_type, len_type):
    """Cycles and events of a write, mprotect and write on a fresh two-CPU machine,
    with the address and length given as addr_type and len_type."""
    m = pysim.Machine(cpus=np.int64(2))
    proc = m.process()
    t0 = proc.thread(cpu=np.int64(0))
    proc.thread(cpu=np.int32(1)).busy()
    p = t0.mmap(np.int64(PAGE), RW)
    t0.write(np.uint64(p))
    r = t0.mprotect(addr_type(p), len_type(PAGE), PROT_READ)
    return r.value, r.cycles, dict(r.events)


def test_numpy_integers_count_as_python_ints():
    """mprotect given numpy addresses and lengths costs what it costs with ints."""
    ref = _mprotect_cycles(int, int)
    assert ref[0] == 0
    assert _mprotect_cycles(np.uint64, np.int64) == ref
    assert _mprotect_cycles(np.int64, np.uint32) == ref


def test_numpy_arguments_of_the_newer_calls():
    """pkey_alloc, mremap, madvise, fork's cpu and the seed take numpy integers."""
    m = pysim.Machine(cpus=2, seed=np.int64(3))
    assert m.seed == 3 and type(m.seed) is int
    proc = m.process(mmap_base=np.uint64(0x7F0000000000))
    t = proc.thread()
    p = t.mmap(PAGE, RW)
    assert p < 0x7F0000000000
    assert t.pkey_alloc(np.int64(0), np.int64(0)).value == 1
    assert t.madvise(np.uint64(p), np.int64(PAGE), np.int32(pysim.MADV_DONTNEED)).value == 0
    q = t.mremap(np.uint64(p), np.int64(PAGE), np.int64(2 * PAGE), np.int64(MREMAP_MAYMOVE))
    assert q.value % PAGE == 0
    child = proc.fork(cpu=np.int64(1))
    assert child.threads[0].cpu.id == 1


def test_a_grid_of_numpy_values_is_the_grid_of_python_values():
    """A dict grid built from numpy scalars and arrays plans the same points (same ids,
    same seeds) as the same grid in Python values, and sweep() takes numpy options."""
    py = {"experiment": "mprotect_range", "seed": 3, "grid": {"pages": [1, 2], "cpus": [1, 2]}}
    npg = {"experiment": "mprotect_range", "seed": np.int64(3),
           "grid": {"pages": np.array([1, 2]), "cpus": list(np.arange(1, 3))}}
    a, b = pysim.sweeps.plan(py), pysim.sweeps.plan(npg)
    assert [(x.point_id, x.params) for x in a.points] == [(x.point_id, x.params)
                                                         for x in b.points]
    df = _sweep(grid=npg, workers=np.int64(2), retries=np.int64(1), seed=np.int64(3))
    assert list(df["point_id"]) == [x.point_id for x in a.points]


def test_timeline_takes_numpy_cycle_counts(env):
    """until and warmup may be numpy numbers; the run counts the program's ticks."""
    res = _timeline(env, _prog, 3, until=np.int64(10 ** 9), warmup=np.float64(0.0))
    assert [task.ops for task in res.tasks] == [3]
