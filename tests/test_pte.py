"""Unit tests of mmucore.pte: bit layout, pte_needs_flush / huge_pmd_needs_flush, pte_modify /
pmd_modify, the x86 protection map, PROT_NONE frame inversion and describe().

Expected values are written from /work/shared/SPEC.md section 2 and
/work/shared/reference/kernel-semantics.md sections 1.2 and 4, not from mmucore's code.
"""
import os
import sys

import pytest

import mmucore
from mmucore import huge_pmd_needs_flush, pmd_modify, pte_modify, pte_needs_flush

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

BIT = {"P": 0, "RW": 1, "US": 2, "PWT": 3, "PCD": 4, "A": 5, "D": 6, "PSE": 7, "G": 8,
       "SPECIAL": 9, "UFFD_WP": 10, "SOFT_DIRTY": 11, "PAT_LARGE": 12, "DEVMAP": 57,
       "SAVED_DIRTY": 58, "PKEY0": 59, "PKEY1": 60, "PKEY2": 61, "PKEY3": 62, "NX": 63}
B = {k: 1 << v for k, v in BIT.items()}
PFN = 0x12345                     # a 4K frame
HPFN = 0x12345 * 512              # a 2M-aligned frame
BASE = B["P"] | B["RW"] | B["US"] | B["A"] | B["D"] | B["NX"]
BASE_4K = (PFN << 12) | BASE
BASE_2M = (HPFN << 12) | BASE | B["PSE"]

FLUSH_ON_CHANGE = ["RW", "US", "PWT", "PCD", "PSE", "G", "PAT_LARGE", "PKEY0", "PKEY1",
                   "PKEY2", "PKEY3", "NX"]
SOFTWARE = ["SPECIAL", "UFFD_WP", "SOFT_DIRTY", "DEVMAP", "SAVED_DIRTY"]


# ------------------------------------------------------------------ bit layout
@pytest.mark.parametrize("name,bit", [
    ("PTE_P", 0), ("PTE_RW", 1), ("PTE_US", 2), ("PTE_PWT", 3), ("PTE_PCD", 4), ("PTE_A", 5),
    ("PTE_D", 6), ("PTE_PSE", 7), ("PTE_PAT", 7), ("PTE_G", 8), ("PTE_PROTNONE", 8),
    ("PTE_SPECIAL", 9), ("PTE_UFFD_WP", 10), ("PTE_SOFT_DIRTY", 11), ("PTE_PAT_LARGE", 12),
    ("PTE_DEVMAP", 57), ("PTE_SAVED_DIRTY", 58), ("PTE_NX", 63)])
def test_bit_positions_are_the_real_ones(name, bit):
    assert getattr(mmucore, name) == 1 << bit


def test_masks():
    assert mmucore.PTE_PKEY_MASK == 0xF << 59
    assert mmucore.PTE_PFN_MASK == ((1 << 52) - 1) ^ 0xFFF
    assert mmucore.PMD_PFN_MASK == ((1 << 52) - 1) ^ ((1 << 21) - 1)
    assert mmucore.PTE_TABLE_FLAGS == B["P"] | B["RW"] | B["US"] | B["A"] | B["D"]
    # the reference restates them independently
    assert (ref.PFN_MASK, ref.PMD_PFN_MASK, ref.PKEY_MASK) == (
        mmucore.PTE_PFN_MASK, mmucore.PMD_PFN_MASK, mmucore.PTE_PKEY_MASK)
    assert ref.COUNTER_NAMES == mmucore.COUNTER_NAMES, \
        "mmucore counters changed: teach tests/reference.py the new ones"


# ------------------------------------------------------------------ pte_needs_flush
@pytest.mark.parametrize("fn,entry", [(pte_needs_flush, BASE_4K),
                                      (huge_pmd_needs_flush, BASE_2M)])
def test_identical_entries_need_no_flush(fn, entry):
    assert fn(entry, entry) is False


@pytest.mark.parametrize("bit", ["D", "P"])
@pytest.mark.parametrize("fn,entry", [(pte_needs_flush, BASE_4K),
                                      (huge_pmd_needs_flush, BASE_2M)])
def test_flush_on_clear_bits(fn, entry, bit):
    assert fn(entry, entry & ~B[bit]) is True, f"{bit} 1->0 must flush"
    # setting it is free (for P: the old entry was not present)
    assert fn(entry & ~B[bit], entry) is False, f"{bit} 0->1 must not flush"


def test_d_set_needs_no_flush():
    assert pte_needs_flush(BASE_4K & ~B["D"], BASE_4K) is False
    assert huge_pmd_needs_flush(BASE_2M & ~B["D"], BASE_2M) is False


def test_accessed_clear_flushes_only_for_pmds():
    assert pte_needs_flush(BASE_4K, BASE_4K & ~B["A"]) is False
    assert huge_pmd_needs_flush(BASE_2M, BASE_2M & ~B["A"]) is True
    # setting A never flushes
    assert pte_needs_flush(BASE_4K & ~B["A"], BASE_4K) is False
    assert huge_pmd_needs_flush(BASE_2M & ~B["A"], BASE_2M) is False


@pytest.mark.parametrize("bit", FLUSH_ON_CHANGE)
@pytest.mark.parametrize("direction", ["set", "clear"])
def test_flush_on_change_bits_both_directions_pmd(bit, direction):
    on, off = BASE_2M | B[bit], BASE_2M & ~B[bit]
    old, new = (off, on) if direction == "set" else (on, off)
    assert huge_pmd_needs_flush(old, new) is True, f"PMD {bit} {direction} must flush"


@pytest.mark.parametrize("bit", [b for b in FLUSH_ON_CHANGE if b != "PAT_LARGE"])
@pytest.mark.parametrize("direction", ["set", "clear"])
def test_flush_on_change_bits_both_directions_pte(bit, direction):
    on, off = BASE_4K | B[bit], BASE_4K & ~B[bit]
    old, new = (off, on) if direction == "set" else (on, off)
    assert pte_needs_flush(old, new) is True, f"PTE {bit} {direction} must flush"


def test_pat_large_is_a_frame_bit_on_4k_ptes():
    # bit 12 of a 4K PTE is the low frame bit: changing it changes the frame -> flush
    assert pte_needs_flush(BASE_4K, BASE_4K ^ B["PAT_LARGE"]) is True
    assert mmucore.pte_pfn(BASE_4K ^ B["PAT_LARGE"]) == PFN ^ 1


@pytest.mark.parametrize("bit", SOFTWARE)
@pytest.mark.parametrize("fn,entry", [(pte_needs_flush, BASE_4K),
                                      (huge_pmd_needs_flush, BASE_2M)])
def test_software_bits_never_flush(fn, entry, bit):
    assert fn(entry, entry | B[bit]) is False
    assert fn(entry | B[bit], entry) is False


@pytest.mark.parametrize("fn,entry", [(pte_needs_flush, BASE_4K),
                                      (huge_pmd_needs_flush, BASE_2M)])
def test_old_not_present_never_flushes(fn, entry):
    everything = (0x7FFFF << 12) | 0xFFF | (0x3F << 57)
    for old in (0, entry & ~B["P"], 0x1234 << 12 | B["SOFT_DIRTY"]):
        assert fn(old, entry) is False
        assert fn(old, everything) is False
    # PROT_NONE (P clear, PROTNONE set) is "present" for the kernel but not for the rule
    protnone = pte_modify(BASE_4K, mmucore.PAGE_NONE)
    assert mmucore.pte_present(protnone)
    assert pte_needs_flush(protnone, BASE_4K) is False
    assert huge_pmd_needs_flush(pmd_modify(BASE_2M, mmucore.PAGE_NONE), BASE_2M) is False


def test_pfn_change_flushes():
    assert pte_needs_flush(BASE_4K, BASE_4K + (1 << 12)) is True
    assert pte_needs_flush(BASE_4K, (0x777 << 12) | BASE) is True
    assert huge_pmd_needs_flush(BASE_2M, BASE_2M + (512 << 12)) is True


def test_becoming_prot_none_flushes_and_keeps_the_frame():
    new = pte_modify(BASE_4K, mmucore.PAGE_NONE)
    assert not new & B["P"] and new & B["G"]           # P clear, PROTNONE set
    assert mmucore.pte_pfn(new) == PFN
    assert pte_needs_flush(BASE_4K, new) is True
    hnew = pmd_modify(BASE_2M, mmucore.PAGE_NONE)
    assert mmucore.pmd_pfn(hnew) == HPFN
    assert huge_pmd_needs_flush(BASE_2M, hnew) is True


@pytest.mark.parametrize("old_prot,new_prot,flush", [
    # kernel-semantics.md 4.3, private anonymous pages (D set: the page was written)
    ("PAGE_SHARED", "PAGE_READONLY", True),         # RW,D -> RO,D
    ("PAGE_COPY", "PAGE_COPY", False),              # RO -> READ|WRITE private: unchanged
    ("PAGE_READONLY", "PAGE_READONLY_EXEC", True),  # NX cleared
    ("PAGE_READONLY_EXEC", "PAGE_READONLY", True),  # NX set
    ("PAGE_READONLY", "PAGE_NONE", True),           # P cleared
    ("PAGE_NONE", "PAGE_SHARED", False),            # old not present
])
def test_mprotect_transition_table(old_prot, new_prot, flush):
    old = mmucore.mk_pte(PFN, getattr(mmucore, old_prot)) | B["D"]
    new = pte_modify(old, getattr(mmucore, new_prot))
    assert pte_needs_flush(old, new) is flush


def test_needs_flush_agrees_with_reference_on_random_pairs():
    import random
    rng = random.Random(5)
    bits = [B[k] for k in BIT] + [1 << 12, 1 << 20, 1 << 30]
    for _ in range(3000):
        old = sum(b for b in bits if rng.random() < 0.4) | (rng.randrange(4) << 21)
        new = old
        for b in rng.sample(bits, rng.randrange(1, 3)):
            new ^= b
        assert pte_needs_flush(old, new) == ref.pte_needs_flush(old, new), (hex(old), hex(new))
        assert huge_pmd_needs_flush(old, new) == ref.huge_pmd_needs_flush(old, new), \
            (hex(old), hex(new))


# ------------------------------------------------------------------ pte_modify / pmd_modify
KEEP_4K = ["PWT", "PCD", "A", "D"] + SOFTWARE
TAKE_4K = ["P", "RW", "US", "PSE", "G", "PKEY0", "PKEY1", "PKEY2", "PKEY3", "NX"]
KEEP_2M = KEEP_4K + ["PSE", "PAT_LARGE"]
TAKE_2M = ["P", "RW", "US", "G", "PKEY0", "PKEY1", "PKEY2", "PKEY3", "NX"]


@pytest.mark.parametrize("fn,keep,take,pfn_shift", [
    (pte_modify, KEEP_4K, TAKE_4K, 12), (pmd_modify, KEEP_2M, TAKE_2M, 21)])
def test_modify_keeps_and_takes(fn, keep, take, pfn_shift):
    frame = 0xABCDE << pfn_shift
    for bit in keep:
        # old has it, newprot does not: kept; old lacks it, newprot has it: not taken
        assert fn(frame | B["P"] | B[bit], B["P"]) & B[bit], f"{bit} must be kept from old"
        assert not fn(frame | B["P"], B["P"] | B[bit]) & B[bit], f"{bit} must not be taken"
    for bit in take:
        if bit == "P":
            continue
        assert fn(frame | B["P"], B["P"] | B[bit]) & B[bit], f"{bit} must come from newprot"
        assert not fn(frame | B["P"] | B[bit], B["P"]) & B[bit], f"{bit} must not be kept"
    # the frame always comes from old, never from newprot
    got = fn(frame | B["P"], B["P"] | (0x55555 << pfn_shift))
    assert got & mmucore.PTE_PFN_MASK == frame
    # P comes from newprot (a present old entry and a PROT_NONE newprot -> not present)
    assert not fn(frame | B["P"], mmucore.PAGE_NONE) & B["P"]


def test_pte_modify_exact_value():
    old = (PFN << 12) | B["P"] | B["RW"] | B["US"] | B["A"] | B["D"] | B["SOFT_DIRTY"] | B["G"]
    assert pte_modify(old, mmucore.PAGE_READONLY) == \
        (PFN << 12) | B["P"] | B["US"] | B["A"] | B["D"] | B["SOFT_DIRTY"] | B["NX"]


# ------------------------------------------------------------------ protection map
# kernel-semantics.md 1.2, as raw bits
_NONE = B["A"] | B["G"]                                   # PROTNONE is bit 8, P clear
_RO = B["P"] | B["US"] | B["A"] | B["NX"]                 # PAGE_READONLY == PAGE_COPY
_RO_X = B["P"] | B["US"] | B["A"]                         # PAGE_READONLY_EXEC == COPY_EXEC
_SH = B["P"] | B["RW"] | B["US"] | B["A"] | B["NX"]
_SH_X = B["P"] | B["RW"] | B["US"] | B["A"]
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 1, 2, 4, 8
PROTECTION_MAP = {
    0: _NONE, VM_READ: _RO, VM_WRITE: _RO, VM_READ | VM_WRITE: _RO,
    VM_EXEC: _RO_X, VM_READ | VM_EXEC: _RO_X, VM_WRITE | VM_EXEC: _RO_X,
    VM_READ | VM_WRITE | VM_EXEC: _RO_X,
    VM_SHARED: _NONE, VM_SHARED | VM_READ: _RO, VM_SHARED | VM_WRITE: _SH,
    VM_SHARED | VM_READ | VM_WRITE: _SH, VM_SHARED | VM_EXEC: _RO_X,
    VM_SHARED | VM_READ | VM_EXEC: _RO_X, VM_SHARED | VM_WRITE | VM_EXEC: _SH_X,
    VM_SHARED | VM_READ | VM_WRITE | VM_EXEC: _SH_X,
}


@pytest.mark.parametrize("vm_flags", range(16))
def test_protection_map(vm_flags):
    assert mmucore.vm_get_page_prot(vm_flags) == PROTECTION_MAP[vm_flags], \
        f"vm_flags 0x{vm_flags:x}: {mmucore.describe(mmucore.vm_get_page_prot(vm_flags))}"


def test_protection_map_ignores_other_vm_flags():
    VM_MAYREAD, VM_MAYWRITE = 0x10, 0x20
    for f in range(16):
        assert mmucore.vm_get_page_prot(f | VM_MAYREAD | VM_MAYWRITE | (1 << 40)) == \
            mmucore.vm_get_page_prot(f)


def test_pgprot_constants():
    assert mmucore.PAGE_NONE == _NONE
    assert mmucore.PAGE_READONLY == mmucore.PAGE_COPY == _RO
    assert mmucore.PAGE_READONLY_EXEC == mmucore.PAGE_COPY_EXEC == _RO_X
    assert mmucore.PAGE_SHARED == _SH
    assert mmucore.PAGE_SHARED_EXEC == _SH_X


# ------------------------------------------------------------------ PROT_NONE inversion
def test_prot_none_pfn_inversion_round_trip():
    pte = mmucore.mk_pte(PFN, mmucore.PAGE_READONLY)
    assert pte & mmucore.PTE_PFN_MASK == PFN << 12
    none = pte_modify(pte, mmucore.PAGE_NONE)
    # the frame bits are stored inverted (L1TF guard) but read back as the same frame
    assert none & mmucore.PTE_PFN_MASK == (~(PFN << 12)) & mmucore.PTE_PFN_MASK
    assert mmucore.pte_pfn(none) == PFN
    assert mmucore.pte_present(none) and not none & B["P"]
    assert pte_modify(none, mmucore.PAGE_READONLY) == pte
    # staying in PROT_NONE does not invert twice
    assert pte_modify(none, mmucore.PAGE_NONE) == none
    # mk_pte with PAGE_NONE gives the inverted form directly
    assert mmucore.mk_pte(PFN, mmucore.PAGE_NONE) == none & ~B["D"]


def test_prot_none_huge_round_trip():
    pmd = (HPFN << 12) | mmucore.PAGE_SHARED | B["PSE"] | B["D"]
    none = pmd_modify(pmd, mmucore.PAGE_NONE)
    assert not none & B["P"] and none & B["PSE"]
    assert none & mmucore.PMD_PFN_MASK != pmd & mmucore.PMD_PFN_MASK
    assert mmucore.pmd_pfn(none) == HPFN
    assert pmd_modify(none, mmucore.PAGE_SHARED) == pmd


def test_present_and_pfn_helpers():
    assert not mmucore.pte_present(0)
    assert not mmucore.pte_present(PFN << 12 | B["SOFT_DIRTY"])
    assert mmucore.pte_present(BASE_4K)
    assert mmucore.pte_pfn(BASE_4K) == PFN
    assert mmucore.pmd_pfn(BASE_2M | B["PAT_LARGE"]) == HPFN


def test_entry_helpers_reject_bad_values():
    for fn in (mmucore.pte_present, mmucore.pte_pfn, mmucore.describe):
        with pytest.raises(ValueError):
            fn(-1)
        with pytest.raises(ValueError):
            fn(1 << 64)
    with pytest.raises(ValueError):
        pte_needs_flush(1 << 64, 0)
    with pytest.raises(ValueError):
        pte_modify(0, -5)
    with pytest.raises(ValueError):
        mmucore.mk_pte(1 << 40, mmucore.PAGE_SHARED)


# ------------------------------------------------------------------ describe
def test_describe():
    assert mmucore.describe(0) == "pfn=0x0 0"
    assert mmucore.describe(mmucore.mk_pte(0x1234, mmucore.PAGE_SHARED) | B["D"]) == \
        "pfn=0x1234 P|RW|US|A|D|NX"
    # PROT_NONE: bit 8 reads as PROTNONE and the frame is un-inverted
    assert mmucore.describe(mmucore.mk_pte(0x1234, mmucore.PAGE_NONE)) == \
        "pfn=0x1234 A|PROTNONE"
    assert mmucore.describe(mmucore.mk_pte(0x1234, mmucore.PAGE_READONLY) | (5 << 59)
                            | B["G"]) == "pfn=0x1234 P|US|A|G|NX|PKEY=5"
    assert mmucore.describe(B["P"] | B["UFFD_WP"] | B["SOFT_DIRTY"] | B["SPECIAL"]
                            | B["DEVMAP"] | B["SAVED_DIRTY"] | B["PSE"] | B["PWT"]
                            | B["PCD"]) == \
        "pfn=0x0 P|PWT|PCD|PSE|SPECIAL|UFFD_WP|SOFT_DIRTY|DEVMAP|SAVED_DIRTY"
