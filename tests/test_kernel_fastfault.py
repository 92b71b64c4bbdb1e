"""The C fault loop (mmucore.fastfault) against the Python fault handler: an access batch
over every kind of VMA must leave the same page tables, frame counters, fault records,
event counts and cycles whether its not-present faults are resolved in C or each goes
through handle_mm_fault (pysim.mm.memory.FAST_FAULTS off)."""
import numpy as np
import pytest

import pysim
from pysim import (MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_PRIVATE, MAP_SHARED,
                   PROT_EXEC, PROT_READ, PROT_WRITE)
from pysim.mm import memory

PAGE = 4096
RW = PROT_READ | PROT_WRITE


def _world(profile: str, pti: bool):
    """A machine with one process holding one VMA of each kind the fault paths tell
    apart, two threads (the second busy on cpu 1), and the addresses to touch."""
    kw = {"pti": True} if pti else {}
    m = pysim.Machine(cpus=2, profile=profile, checker="raise", **kw)
    proc = m.process()
    t = proc.thread(cpu=0)
    proc.thread(cpu=1).busy()
    regions = [
        t.mmap(64 * PAGE, RW),                                        # anon private RW
        t.mmap(16 * PAGE, PROT_READ),                                 # anon read-only
        t.mmap(16 * PAGE, PROT_EXEC),                                 # exec-only
        t.mmap(16 * PAGE, RW, MAP_PRIVATE, file=pysim.File("a")),     # private file
        t.mmap(16 * PAGE, RW, MAP_SHARED, file=pysim.File("b")),      # shared file
        t.mmap(16 * PAGE, RW, MAP_SHARED | MAP_ANONYMOUS),            # shmem
        t.mmap(16 * PAGE, PROT_READ, MAP_PRIVATE,
               file=pysim.File("c", size=5 * PAGE)),                  # SIGBUS past EOF
        t.mmap(8 << 20, RW, huge=True),                               # THP-capable
        t.mmap(16 * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN),
    ]
    h = t.mmap(8 << 20, RW)
    t.madvise(h, 8 << 20, MADV_HUGEPAGE)
    regions.append(h)
    return m, proc, t, regions


def _stream(regions, seed: int):
    """Random reads, writes and fetches over the regions, some below the stack (it
    grows) and some in no VMA at all (SIGSEGV)."""
    rng = np.random.default_rng(seed)
    vas = []
    for r in regions:
        vas.append(r + rng.integers(0, 2 << 20 if r == regions[7] else 16 * PAGE, 40))
    vas.append(regions[8] - rng.integers(1, 8 * PAGE, 6))
    vas.append(np.full(3, 0x10000))
    vas = np.concatenate(vas).astype(np.uint64)
    rng.shuffle(vas)
    kinds = rng.choice([0, 1, 2], size=vas.size, p=[0.45, 0.45, 0.1]).astype(np.uint8)
    return vas, kinds


def _run(fast: bool, profile: str, pti: bool, seed: int):
    """Run two batches (the second re-touching and write-faulting what the first mapped);
    returns everything observable."""
    memory.FAST_FAULTS = fast
    try:
        m, proc, t, regions = _world(profile, pti)
        out = []
        for s in (seed, seed + 1):
            vas, kinds = _stream(regions, s)
            r = t.access(vas, kinds)
            out.append((r.value, r.cycles, sorted(r.events.items()), list(r.faults)))
        entries = []
        for v in proc.vmas:
            n = (v.end - v.start) // PAGE
            entries.append((v.start, v.end, proc.pt.read_range(v.start, n).tolist()))
        counters = {k: v.tolist() for k, v in m.counter_array().items()}
        return out, entries, counters, (m.frames.next_pfn, m.frames.next_file_pfn)
    finally:
        memory.FAST_FAULTS = True


@pytest.mark.parametrize("profile,pti", [("patched", False), ("patched", True),
                                         ("mmots", False)])
@pytest.mark.parametrize("seed", [1, 7])
def test_c_fault_loop_matches_handle_mm_fault(profile, pti, seed):
    """Every fault outcome, count, cycle and page-table entry is the Python handler's."""
    slow = _run(False, profile, pti, seed)
    fast = _run(True, profile, pti, seed)
    outcomes = {f.outcome for batch in slow[0] for f in batch[3]}
    assert {"anon", "zero_page", "file", "sigsegv", "sigbus", "thp"} <= outcomes
    assert fast == slow


def test_c_fault_loop_resolves_first_touches(monkeypatch):
    """The loop resolves a fresh anonymous region's first touches itself: the Python
    handler runs for none of them."""
    m = pysim.Machine(cpus=1, checker="raise")
    t = m.process().thread(cpu=0)
    p = t.mmap(256 * PAGE, RW)
    calls = []
    real = memory.handle_mm_fault
    monkeypatch.setattr(memory, "handle_mm_fault",
                        lambda *a: calls.append(a[2]) or real(*a))
    vas = (np.arange(256, dtype=np.uint64) * PAGE + np.uint64(p))
    r = t.access(vas, np.ones(256, dtype=np.uint8))
    assert calls == [] and r.value == 256
    assert r.events["fault_anon"] == 256 and len(r.faults) == 256
