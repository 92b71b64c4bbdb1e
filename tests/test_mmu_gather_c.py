"""The mmu_gather in C (mmucore.mmu_gather) behind pysim.mm.mmu_gather: the API the
module exports is the C one, mmucore imports no pysim, and what could differ silently
from the Python code it replaced does not: an exception inside a batch (the count goes
down, an own window is aborted), a second tlb_finish_mmu, the own OpResult of a path
run outside an operation, the argument errors, the flush hook, pickling."""
import os
import pickle
import subprocess
import sys

import pytest

import mmucore
import mmucore.mmu_gather as cg
import pysim
import pysim.mm
import pysim.mm.mmu_gather as api
from pysim import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from pysim.errors import ArgumentError, PysimError
from pysim.results import OpResult

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def setup(cpus=1, profile="patched"):
    m = pysim.Machine(cpus=cpus, profile=profile)
    proc = m.process()
    t = proc.thread(cpu=0)
    p = t.mmap(4 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    for i in range(4):
        t.write(p + i * PAGE)
    return m, proc, t, p


def test_the_exported_api_is_mmucores():
    """Every name of the API but gather_batch_reserve is the C object, the same one
    pysim and pysim.mm re-export; the module keeps its docstring with the ordering rule."""
    c_names = [n for n in api.__all__ if n != "gather_batch_reserve"]
    assert len(c_names) == 12
    for name in c_names:
        assert getattr(api, name) is getattr(cg, name), name
        for pkg in (pysim, pysim.mm):
            if hasattr(pkg, name):
                assert getattr(pkg, name) is getattr(cg, name), (pkg.__name__, name)
    assert api.MMUGather.__module__ == "mmucore.mmu_gather"
    assert not api.MMUGather.__flags__ & (1 << 9)        # Py_TPFLAGS_HEAPTYPE: a C type
    assert "ordering rule" in api.__doc__ and "tlb_flush_mmu()" in api.__doc__
    assert api.gather_batch_reserve(pysim.get_profile("v6.14")) == 1


def test_mmucore_mmu_gather_imports_no_pysim():
    code = ("import sys, mmucore.mmu_gather as g\n"
            "assert not any(m.split('.')[0] == 'pysim' for m in sys.modules), 'pysim'\n"
            "try:\n    g.tlb_gather_mmu(1, 2)\nexcept TypeError as e:\n"
            "    assert type(e) is TypeError and 'needs a CPU' in str(e)\n"
            "else:\n    raise AssertionError('no error')\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(mmucore.__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_argument_errors_are_unchanged():
    m, proc, t, p = setup()
    with pytest.raises(ArgumentError) as e:
        api.tlb_gather_mmu(t, proc.mm)
    assert str(e.value) == ("tlb_gather_mmu(cpu, mm) needs a CPU (thread.cpu) and an mm "
                            "(thread.mm), got Thread and MM") and e.value.field == "cpu"
    assert e.value.__suppress_context__
    with pytest.raises(ArgumentError) as e:
        api.tlb_gather_mmu(t.cpu, t)
    assert e.value.field == "mm" and "got CPU and Thread" in str(e.value)
    assert proc.mm.tlb_flush_pending == 0 and not m.acct.active


def test_a_path_outside_an_operation_gets_its_own_opresult():
    """No window open: the batch opens one (own_window) and tlb_finish_mmu closes it
    into tlb.result, an OpResult named mmu_gather holding the batch's flushes.  Inside
    an operation the batch opens none and has no result."""
    m, proc, t, p = setup()
    cpu, mm = m.cpus[0], proc.mm
    with api.tlb_gather_mmu(cpu, mm) as tlb:
        assert tlb.own_window and m.acct.active and mm.tlb_flush_pending == 1
        mm.pt.set_pte(p, mm.pt.get(p)[0] & ~mmucore.PTE_RW)
        api.tlb_flush_pte_range(tlb, p, PAGE)
    r = tlb.result
    assert type(r) is OpResult and (r.op, r.cpu) == ("mmu_gather", 0)
    assert r.value is tlb.flushes and len(tlb.flushes) == 1
    assert r.events["flush_tlb_mm_range"] == 1 and not m.acct.active
    assert m.check() == []
    op = m.begin(cpu, "user path")
    tlb = api.tlb_gather_mmu(cpu, mm)
    assert not tlb.own_window
    api.tlb_finish_mmu(tlb)
    assert tlb.result is None and m.acct.active
    m.end(op)


@pytest.mark.parametrize("in_op", [False, True])
@pytest.mark.parametrize("where", ["body", "flush"])
def test_an_exception_in_a_batch_still_ends_it(monkeypatch, in_op, where):
    """An exception in the with block: leaving it still ends the batch normally (what
    was recorded is flushed, an own window closes into tlb.result).  An exception in
    tlb_finish_mmu's flush: the batch is finished all the same, tlb_flush_pending goes
    back down and a window the batch opened is aborted (no result).  An operation's
    window stays open either way, for its owner to end or abort."""
    m, proc, t, p = setup()
    cpu, mm = m.cpus[0], proc.mm
    op = m.begin(cpu, "user path") if in_op else None

    def boom(tlb):
        raise KeyError("flush")

    if where == "flush":
        monkeypatch.setattr(m.arch, "tlb_flush", boom)
    with pytest.raises(KeyError):
        with api.tlb_gather_mmu(cpu, mm) as tlb:
            api.tlb_flush_pte_range(tlb, p, PAGE)
            if where == "body":
                raise KeyError("body")
    assert tlb.finished and mm.tlb_flush_pending == 0
    assert tlb.own_window is not in_op and m.acct.active is in_op
    assert len(tlb.flushes) == (where == "body")
    if in_op or where == "flush":
        assert tlb.result is None
    else:
        assert tlb.result.events["flush_tlb_mm_range"] == 1
    monkeypatch.undo()
    if in_op:
        m.abort(op)
    assert t.munmap(p, PAGE).value == 0           # the machine goes on


def test_finish_twice_raises_and_the_with_block_finishes_once():
    m, proc, t, p = setup()
    cpu, mm = m.cpus[0], proc.mm
    with api.tlb_gather_mmu(cpu, mm) as tlb:
        api.tlb_finish_mmu(tlb)                    # the block's exit does not finish again
    assert mm.tlb_flush_pending == 0
    with pytest.raises(PysimError, match="^tlb_finish_mmu called twice on one gather$"):
        api.tlb_finish_mmu(tlb)
    assert mm.tlb_flush_pending == 0 and isinstance(tlb.result, OpResult)


def test_nested_batches_force_a_full_flush():
    """Two batches open on the mm: the first to finish flushes the whole mm (fullmm,
    freed_tables) even with nothing recorded, as the Python code did."""
    m, proc, t, p = setup()
    cpu, mm = m.cpus[0], proc.mm
    op = m.begin(cpu, "nested")
    a, b = api.tlb_gather_mmu(cpu, mm), api.tlb_gather_mmu(cpu, mm)
    assert mm.tlb_flush_pending == 2
    api.tlb_finish_mmu(b)
    assert len(b.flushes) == 1 and b.state.fullmm and mm.tlb_flush_pending == 1
    api.tlb_finish_mmu(a)
    assert a.flushes == [] and mm.tlb_flush_pending == 0
    m.end(op)


@pytest.mark.parametrize("preset, flushes", [("skylake", 1), ("altra", 3)])
def test_every_flush_goes_through_the_architectures_hook(monkeypatch, preset, flushes):
    """A replaced cpu.arch.tlb_flush sees every flush the C code makes: one for an
    mprotect over three VMAs on x86 (merged in one gather, at tlb_finish_mmu), one per
    VMA at tlb_end_vma on arm64 (no MMU_GATHER_MERGE_VMAS)."""
    m = pysim.Machine(cpus=1, profile="patched", preset=preset)
    t = m.process().thread(cpu=0)
    p = t.mmap(3 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    t.mprotect(p + PAGE, PAGE, RW | pysim.PROT_EXEC)          # three VMAs
    for i in range(3):
        t.write(p + i * PAGE)
    seen = []
    real = m.arch.tlb_flush

    def counting(tlb):
        seen.append((tlb.state.start, tlb.state.end))
        return real(tlb)

    monkeypatch.setattr(m.arch, "tlb_flush", counting)
    t.mprotect(p, 3 * PAGE, PROT_READ)
    assert len(seen) == flushes and seen[0][0] == p and seen[-1][1] == p + 3 * PAGE
    assert t.cpu.arch is m.arch


def test_attributes_are_read_only():
    m, proc, t, p = setup()
    op = m.begin(m.cpus[0], "x")
    tlb = api.tlb_gather_mmu(m.cpus[0], proc.mm)
    for name in ("cpu", "mm", "state", "flushes", "finished", "own_window", "result"):
        getattr(tlb, name)
        with pytest.raises(AttributeError):
            setattr(tlb, name, None)
    with pytest.raises(AttributeError):
        tlb.other = 1
    api.tlb_finish_mmu(tlb)
    m.end(op)
    assert repr(tlb) == "MMUGather(Gather(empty), 0 flushes)"
    with pytest.raises(TypeError):
        api.tlb_finish_mmu(None)


def test_an_open_gather_pickles_with_its_machine():
    """A machine pickles only between operations, so an open gather beside it is one
    with its own window: the copy keeps every field and points at the copied CPU and
    mm; a flush on it flushes there.  (The window itself is rebuilt closed, as
    OpAccount always is.)"""
    m, proc, t, p = setup()
    cpu, mm = m.cpus[0], proc.mm
    tlb = api.tlb_gather_mmu(cpu, mm)
    api.tlb_flush_pte_range(tlb, p, 2 * PAGE)
    m2, tlb2 = pickle.loads(pickle.dumps((m, tlb)))
    assert type(tlb2) is api.MMUGather and tlb2.cpu is m2.cpus[0]
    assert tlb2.mm is m2.mms[m.mms.index(mm)] and tlb2.mm is not mm
    assert tlb2.mm.tlb_flush_pending == 1 and tlb2.own_window and not tlb2.finished
    assert tlb2.state.state == tlb.state.state and tlb2.state.batch_state == \
        tlb.state.batch_state
    assert (tlb2.flushes, tlb2.result) == ([], None)
    api.tlb_flush_mmu(tlb2)
    assert len(tlb2.flushes) == 1 and tlb2.state.empty and not tlb.state.empty
    api.tlb_finish_mmu(tlb)
    assert len(tlb.flushes) == 1 and isinstance(tlb.result, OpResult)
