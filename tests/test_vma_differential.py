"""mmucore.vma (the VMA bookkeeping in Cython) against the plain-Python VMAList it
replaced (tests/vma_reference.py): random operation sequences, edge addresses included
(unaligned, negative, past TASK_SIZE, beyond 64 bits), must give the same results, the
same VMAs and the same errors (class, errno and message) on both; the same as a
hypothesis state machine, whose failures shrink (it catches each of six merge-rule
mutations planted in the reference: name, flags, soft-dirty, anon_vma, both pgoff
rules).  Also: the constants
mmucore.vma restates, that mmucore never imports pysim, pickling, and the index methods
pysim.mm.memory uses in place of the old parallel lists."""
import bisect
import copy
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest

import mmucore.vma as cvma
import pysim.constants as C
from pysim.constants import (MAP_ANONYMOUS, MAP_PRIVATE, PAGE_SIZE, PMD_SIZE, PROT_EXEC,
                             PROT_READ, PROT_WRITE, TASK_SIZE, VM_ACCOUNT, VM_PFNMAP,
                             VM_SEALED, VM_SOFTDIRTY)
from pysim.errors import PysimError, SyscallError
from pysim.mm.vma import VMA, VMAList, mmap_vm_flags, mprotect_newflags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vma_reference as ref  # noqa: E402

P = PAGE_SIZE
BASE = 0x10000000
WINDOW = 64                      # pages the operations mostly work in
ANON = MAP_PRIVATE | MAP_ANONYMOUS
PROTS = [0, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC]
EDGES = [0, -P, -1, P - 1, TASK_SIZE, TASK_SIZE + P, TASK_SIZE - P, 1 << 62, (1 << 63) - P,
         1 << 63, 1 << 64, 1 << 70, -(1 << 63), -(1 << 70)]


class Token:
    """An anon_vma stand-in numbered in creation order (the same order on both sides)."""

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return f"Token({self.n})"


FILES = (object(), object())


def norm(x):
    """A comparable form of a result: VMAs as field tuples, anon_vmas by number."""
    if isinstance(x, (VMA, ref.RefVMA)):
        av = x.anon_vma
        return ("vma", x.start, x.end, x.flags, bool(x.anon), bool(x.shared), x.pgoff,
                FILES.index(x.file) if x.file is not None else None,
                av.n if isinstance(av, Token) else av, x.name, x.page_prot)
    if isinstance(x, (list, tuple)):
        return type(x).__name__, tuple(norm(v) for v in x)
    if isinstance(x, Token):
        return ("token", x.n)
    return x


def outcome(fn):
    """fn()'s normalised result, or its error as (class, errno, message)."""
    try:
        return norm(fn())
    except (PysimError, AssertionError) as e:
        return ("error", type(e).__name__, getattr(e, "errno", None), str(e))


def page_prot(vma):
    """A page_prot_fn that depends on the flags (recomputed on every flag change)."""
    return (vma.flags * 0x9E3779B1) & 0xFFFFFFFFFFFF


class Side:
    """One implementation's list plus its anon_vma factory."""

    def __init__(self, vma_cls, list_cls, **kw):
        self.VMA, self.vl, self.made = vma_cls, list_cls(page_prot_fn=page_prot, **kw), 0

    def factory(self):
        self.made += 1
        return Token(self.made)


class Gen:
    """Random arguments, the same for both sides."""

    def __init__(self, rng):
        self.rng = rng

    def addr(self):
        r = self.rng.random()
        if r < 0.08:
            return self.rng.choice(EDGES)
        page = BASE + self.rng.randrange(-4, WINDOW + 4) * P
        return page + (self.rng.choice([1, 8, P // 2]) if r < 0.14 else 0)

    def range(self):
        s = self.addr()
        if self.rng.random() < 0.9 and -(1 << 60) < s < (1 << 60):
            return s, s + self.rng.choice([1, 1, 2, 3, 5, 9, 17]) * P
        return s, self.addr()

    def flags(self):
        f = mmap_vm_flags(self.rng.choice(PROTS), ANON)
        extra = self.rng.choices([0, VM_SOFTDIRTY, VM_PFNMAP, VM_ACCOUNT, VM_SEALED],
                                 [20, 3, 1, 2, 1])[0]
        return f | extra

    def name(self):
        return self.rng.choice([None, None, None, "heap", "".join(["he", "ap"]), "x"])

    def vma_args(self):
        s, e = self.range()
        kind = self.rng.random()
        kw = {"name": self.name()}
        if kind < 0.25:
            kw.update(anon=False, file=self.rng.choice(FILES),
                      pgoff=self.rng.choice([None, 0, 7, 1 << 40]))
        elif kind < 0.3:
            kw.update(shared=True)
        return (s, e, self.flags()), kw


def _pick(side, k):
    """VMA k of the side's list (a stranger VMA when k is None)."""
    if k is None:
        return side.VMA(BASE - 8 * P, BASE - 7 * P, 0x73)
    vmas = side.vl.vmas()
    return vmas[k % len(vmas)] if vmas else None


OPS = ("insert", "insert_merging", "remove_range", "split_vma", "vma_merge",
       "vma_modify_flags", "mprotect_fixup", "anon_vma_prepare", "get_unmapped_area",
       "bottomup", "lookups", "neighbours")


def make_op(gen, name=None):
    """One random operation as a function of a Side (of kind `name`, else drawn)."""
    rng = gen.rng
    if name is None:
        name = rng.choices(OPS, [2, 8, 4, 3, 2, 3, 6, 2, 3, 1, 4, 2])[0]
    k = None if rng.random() < 0.05 else rng.randrange(1 << 16)
    if name in ("insert", "insert_merging"):
        args, kw = gen.vma_args()
        return name, lambda sd: getattr(sd.vl, name)(sd.VMA(*args, **kw))
    if name == "neighbours":
        # two mappings side by side, inserted in either order, that differ in at most
        # one of what the merge rule compares (is_mergeable_vma(), the page offsets of
        # can_vma_merge_before/after, is_mergeable_anon_vma()): merge or not, exactly
        lo = BASE + rng.randrange(0, WINDOW - 8) * P
        n1, n2 = rng.randrange(1, 4), rng.randrange(1, 4)
        first, fl, f = rng.random() < 0.5, gen.flags(), rng.choice((None,) + FILES)
        p1 = rng.randrange(0, 16) if f is not None else None
        differ = rng.choice(["none", "name", "file", "pgoff", "flags", "softdirty",
                             "anon_vma"])
        kw1 = dict(anon=f is None, file=f, pgoff=p1, name="heap")
        kw2 = dict(kw1, pgoff=None if p1 is None else p1 + n1, name="".join(["he", "ap"]))
        fl2 = fl
        if differ == "name":
            kw2["name"] = rng.choice([None, "x"])
        elif differ == "file":
            kw2.update(anon=False, file=FILES[0] if f is not FILES[0] else FILES[1],
                       pgoff=kw2["pgoff"] or 0)
        elif differ == "pgoff" and p1 is not None:
            kw2["pgoff"] = p1 + n1 + rng.choice([-1, 1])
        elif differ == "flags":
            fl2 = fl ^ PROT_WRITE if fl & PROT_WRITE else fl | 0x2
        elif differ == "softdirty":
            fl2 = fl ^ VM_SOFTDIRTY
        lower = ((lo, lo + n1 * P, fl), kw1)
        upper = ((lo + n1 * P, lo + (n1 + n2) * P, fl2), kw2)

        def neighbours(sd):
            sd.vl.remove_range(lo, lo + (n1 + n2) * P)
            a, b = (lower, upper) if first else (upper, lower)
            va = sd.vl.insert_merging(sd.VMA(*a[0], **a[1]))
            if differ == "anon_vma":
                sd.vl.anon_vma_prepare(va, sd.factory)
                vb = sd.VMA(*b[0], **b[1])
                vb.anon_vma = sd.factory()  # a second, different anon_vma
                return va, sd.vl.insert_merging(vb)
            return va, sd.vl.insert_merging(sd.VMA(*b[0], **b[1]))
        return name, neighbours
    if name == "remove_range":
        s, e = gen.range()
        return name, lambda sd: sd.vl.remove_range(s, e)
    if name == "split_vma":
        a, nb, inside = gen.addr(), rng.random() < 0.5, rng.random() < 0.7

        def split(sd):
            vma = _pick(sd, k)
            if vma is None:
                return None
            at = vma.start + P * rng_split[0] if inside and vma.pages > 1 else a
            return sd.vl.split_vma(vma, at, nb)
        rng_split = [rng.randrange(1, 8)]
        return name, split
    if name == "vma_merge":
        s, e = gen.range()
        flags, name_, pgoff = gen.flags(), gen.name(), rng.choice([None, None, 3, BASE // P])
        anon, use_prev, file = rng.random() < 0.8, rng.random() < 0.5, rng.choice((None,) + FILES)

        def merge(sd):
            prev = _pick(sd, k) if use_prev else None
            return sd.vl.vma_merge(prev, s, e, flags, None, file, pgoff, name_, anon=anon,
                                   shared=False)
        return name, merge
    if name in ("vma_modify_flags", "mprotect_fixup"):
        prot, use_prev, inside = rng.choice(PROTS), rng.random() < 0.3, rng.random() < 0.85
        s0, e0 = gen.range()
        offs = (rng.randrange(8), rng.randrange(8))

        def modify(sd):
            vma = _pick(sd, k)
            if vma is None:
                return None
            if inside:
                s = min(vma.start + offs[0] * P, vma.end - P)
                e = min(s + (1 + offs[1]) * P, vma.end)
            else:
                s, e = s0, e0
            prev = _pick(sd, k - 1) if use_prev and k else None
            newflags = mprotect_newflags(vma.flags, prot)
            return getattr(sd.vl, name)(vma, prev, s, e, newflags)
        return name, modify
    if name == "anon_vma_prepare":
        def prepare(sd):
            vma = _pick(sd, k)
            return None if vma is None else sd.vl.anon_vma_prepare(vma, sd.factory)
        return name, prepare
    if name == "get_unmapped_area":
        length = rng.choice([P, P, 3 * P, 17 * P, 0, -P, P + 1, 300 * P, TASK_SIZE + P])
        align = rng.choice([P, P, P, 4 * P, PMD_SIZE, 3 * P, P // 2, 1 << 50, 1 << 70])
        hint = rng.choice([None, None, 0, gen.addr()])
        return name, lambda sd: sd.vl.get_unmapped_area(length, align, hint)
    if name == "bottomup":
        low = BASE + rng.randrange(-4, WINDOW) * P
        args = (rng.choice([P, 2 * P, 5 * P]), rng.choice([P, 4 * P]), low,
                low + rng.randrange(1, 40) * P)
        return name, lambda sd: sd.vl._unmapped_area_bottomup(*args)
    s, e = gen.range()
    a = gen.addr()
    mask = rng.choice([0x2, VM_SEALED, VM_PFNMAP, -1, ~0x2, 1 << 70 | 0x1])

    def lookups(sd):
        vl = sd.vl
        return (vl.find_vma(a), vl.find_vma_prev(a), vl.vma_lookup(a),
                vl.find_vma_intersection(s, e), vl.vmas_in(s, e), vl.any_flags(s, e, mask),
                vl.first_hole(s, e), vl.first_hole(a, s), len(vl), vl.map_count)
    return name, lookups


def run_both(seed, n_ops, **kw):
    """Drive both implementations with the same random operations, comparing each."""
    rng = random.Random(seed)
    gen = Gen(rng)
    new = Side(VMA, VMAList, **kw)
    old = Side(ref.RefVMA, ref.RefVMAList, **kw)
    for step in range(n_ops):
        name, op = make_op(gen)
        got, want = outcome(lambda: op(new)), outcome(lambda: op(old))
        assert got == want, f"step {step} {name}: {got} != {want}"
        assert norm(new.vl.vmas()) == norm(old.vl.vmas()), f"step {step} {name}"
        assert repr(new.vl) == repr(old.vl)
        assert outcome(new.vl.check_invariants) == outcome(old.vl.check_invariants)
    return new, old


@pytest.mark.parametrize("seed", range(16))
def test_same_results_vmas_and_errors_as_the_python_vmalist(seed):
    run_both(seed, 400, mmap_base=BASE + (WINDOW - 8) * P, mmap_min_addr=BASE - 2 * P)


@pytest.mark.parametrize("seed", range(4))
def test_same_at_a_small_max_map_count_and_the_default_layout(seed):
    run_both(100 + seed, 300, max_map_count=6)
    run_both(200 + seed, 200)


from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule  # noqa: E402


class SameAsThePythonVMAList(RuleBasedStateMachine):
    """The same comparison as run_both, as a state machine: hypothesis draws the
    operation kinds and their arguments' seeds, and a failure shrinks to the fewest
    and simplest operations that still tell the two implementations apart."""

    def __init__(self):
        super().__init__()
        kw = dict(mmap_base=BASE + (WINDOW - 8) * P, mmap_min_addr=BASE - 2 * P)
        self.new = Side(VMA, VMAList, **kw)
        self.old = Side(ref.RefVMA, ref.RefVMAList, **kw)

    @rule(name=st.sampled_from(OPS), seed=st.integers(0, 2 ** 32 - 1))
    def operation(self, name, seed):
        _, op = make_op(Gen(random.Random(seed)), name)
        got, want = outcome(lambda: op(self.new)), outcome(lambda: op(self.old))
        assert got == want, f"{name}: {got} != {want}"

    @invariant()
    def same_vmas(self):
        assert norm(self.new.vl.vmas()) == norm(self.old.vl.vmas())
        assert repr(self.new.vl) == repr(self.old.vl)
        assert outcome(self.new.vl.check_invariants) == \
            outcome(self.old.vl.check_invariants)


SameAsThePythonVMAList.TestCase.settings = settings(
    max_examples=60, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_the_vma_state_machine_agrees_with_the_python_vmalist = SameAsThePythonVMAList.TestCase


def test_constructor_and_field_errors_are_unchanged():
    for args in [(-P, P, 0), (P, P, 0), (0, TASK_SIZE + P, 0), (P + 1, 2 * P, 0),
                 (1 << 70, 1 << 71, 0), (2 * P, P, 0)]:
        assert outcome(lambda: VMA(*args)) == outcome(lambda: ref.RefVMA(*args))
    with pytest.raises(PysimError, match="mmap_base 0x1001 must be page aligned"):
        VMAList(mmap_base=P + 1)
    v = VMA(P, 4 * P, 0x73)
    assert (v.pages, v.contains(2 * P), v.contains(-1), v.contains(1 << 80)) == (3, True,
                                                                                 False, False)
    assert v.pgoff_at(0) == ref.RefVMA(P, 4 * P, 0x73).pgoff_at(0) == 0
    assert repr(v) == repr(ref.RefVMA(P, 4 * P, 0x73))
    v.flags |= VM_SEALED                     # the top bit fits the uint64 field
    assert v.flags >> 63 == 1
    with pytest.raises(OverflowError):       # typed fields take no negative int
        v.page_prot = -1


def test_constants_restated_in_mmucore_vma_equal_pysims():
    names = ["PAGE_SHIFT", "PAGE_SIZE", "TASK_SIZE", "TASK_UNMAPPED_BASE",
             "DEFAULT_MMAP_BASE", "DEFAULT_MMAP_MIN_ADDR", "DEFAULT_MAX_MAP_COUNT"]
    names += [n for n in dir(cvma) if n.startswith("VM_")]
    assert len(names) > 20
    for n in names:
        assert getattr(cvma, n) == getattr(C, n), n


def test_mmucore_vma_imports_no_pysim_and_raises_pysims_errors_once_handed_them():
    code = ("import sys, mmucore.vma as v\n"
            "assert not any(m.split('.')[0] == 'pysim' for m in sys.modules), 'pysim'\n"
            "try:\n    v.VMAList().remove_range(1, 2)\nexcept OSError as e:\n"
            "    assert type(e) is OSError and e.errno == 22\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cvma.__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    with pytest.raises(SyscallError) as e:
        VMAList().remove_range(1, 2)
    assert type(e.value) is SyscallError and str(e.value) == \
        "[EINVAL] munmap: bad range [0x1, 0x2)"


@pytest.mark.parametrize("copier", [lambda x: pickle.loads(pickle.dumps(x)),
                                    lambda x: pickle.loads(pickle.dumps(x, protocol=0)),
                                    copy.deepcopy])
def test_pickle_keeps_the_state_and_shared_identities(copier):
    new, _ = run_both(7, 200, mmap_base=BASE + (WINDOW - 8) * P, mmap_min_addr=BASE - 2 * P)
    vl = new.vl
    shared, f = Token(99), FILES[0]
    vl.remove_range(BASE, BASE + 8 * P)
    a = vl.insert(VMA(BASE, BASE + 2 * P, 0x73, anon=False, file=f, anon_vma=shared))
    b = vl.insert(VMA(BASE + 4 * P, BASE + 6 * P, 0x71, anon=False, file=f, anon_vma=shared))
    vl.get_unmapped_area(P)                   # leave something in the search cache
    machine_like = {"vmas": vl, "also": a}
    got = copier(machine_like)
    cl = got["vmas"]
    assert got["also"] is cl.find_vma(BASE)
    ca, cb = cl.find_vma(BASE), cl.find_vma(BASE + 4 * P)
    assert ca.anon_vma is cb.anon_vma and ca.file is cb.file
    fields = [(v.start, v.end, v.flags, v.anon, v.shared, v.pgoff, v.name, v.page_prot)
              for v in vl]
    assert [(v.start, v.end, v.flags, v.anon, v.shared, v.pgoff, v.name, v.page_prot)
            for v in cl] == fields
    assert (cl.mmap_base, cl.mmap_min_addr, cl.max_map_count, cl.page_prot_fn) == \
        (vl.mmap_base, vl.mmap_min_addr, vl.max_map_count, vl.page_prot_fn)
    for length in (P, 3 * P, 9 * P):          # the same answers, the cache included
        assert cl.get_unmapped_area(length) == vl.get_unmapped_area(length)
    cl.check_invariants(check_merged=False)
    assert b is vl.find_vma(BASE + 4 * P)


def test_index_methods_match_a_bisect_over_the_starts():
    rng = random.Random(5)
    vl = VMAList()
    for k in range(40):
        s = BASE + k * 3 * P
        vl.insert(VMA(s, s + rng.randint(1, 2) * P, 0x73 if k % 2 else 0x71))
    starts = [v.start for v in vl]
    vas = np.array([rng.randrange(BASE - 4 * P, BASE + 130 * P) for _ in range(300)]
                   + [0, BASE, TASK_SIZE - 1, (1 << 64) - 1], dtype=np.uint64)
    want = sorted({bisect.bisect_right(starts, int(v)) - 1 for v in vas} - {-1})
    assert vl.indices_at(vas) == want
    assert vl.indices_at(vas[:0]) == []
    for v in vas.tolist() + [-1, -(1 << 70), 1 << 70]:
        assert vl.index_at(v) == bisect.bisect_right(starts, v) - 1
    assert [vl.vma_at(j) for j in range(len(vl))] == vl.vmas()
    assert vl.vma_at(-1) is vl.vmas()[-1]
    with pytest.raises(IndexError):
        vl.vma_at(len(vl))
