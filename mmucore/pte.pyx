"""Python face of the x86-64 entry rules in pte.pxd (the C versions are what loops use)."""
from libc.stdint cimport uint64_t

PTE_P = MMU_P
PTE_RW = MMU_RW
PTE_US = MMU_US
PTE_PWT = MMU_PWT
PTE_PCD = MMU_PCD
PTE_A = MMU_A
PTE_D = MMU_D
PTE_PSE = MMU_PSE
PTE_PAT = MMU_PAT
PTE_G = MMU_G
PTE_PROTNONE = MMU_PROTNONE
PTE_SPECIAL = MMU_SPECIAL
PTE_UFFD_WP = MMU_UFFD_WP
PTE_SOFT_DIRTY = MMU_SOFT_DIRTY
PTE_PAT_LARGE = MMU_PAT_LARGE
PTE_DEVMAP = MMU_DEVMAP
PTE_SAVED_DIRTY = MMU_SAVED_DIRTY
PTE_PKEY_MASK = MMU_PKEY_MASK
PTE_NX = MMU_NX
PTE_PFN_MASK = MMU_PFN_MASK
PMD_PFN_MASK = MMU_PMD_PFN_MASK
PTE_SOFTW_MASK = MMU_SOFTW_MASK
PTE_CHG_MASK = MMU_CHG_MASK
HPAGE_CHG_MASK = MMU_HPAGE_CHG_MASK
PTE_TABLE_FLAGS = MMU_TABLE_FLAGS

# pgprot values of arch/x86/include/asm/pgtable_types.h
PAGE_NONE = MMU_PROTNONE | MMU_A
PAGE_SHARED = MMU_P | MMU_RW | MMU_US | MMU_A | MMU_NX
PAGE_SHARED_EXEC = MMU_P | MMU_RW | MMU_US | MMU_A
PAGE_COPY = MMU_P | MMU_US | MMU_A | MMU_NX
PAGE_COPY_EXEC = MMU_P | MMU_US | MMU_A
PAGE_READONLY = MMU_P | MMU_US | MMU_A | MMU_NX
PAGE_READONLY_EXEC = MMU_P | MMU_US | MMU_A

cdef uint64_t _PROT_MAP[16]
# index: VM_READ=1 | VM_WRITE=2 | VM_EXEC=4 | VM_SHARED=8 (x86 protection_map)
_PROT_MAP[:] = [
    PAGE_NONE, PAGE_READONLY, PAGE_COPY, PAGE_COPY,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_COPY_EXEC, PAGE_COPY_EXEC,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_SHARED_EXEC, PAGE_SHARED_EXEC,
]


cdef uint64_t c_vm_get_page_prot(uint64_t vm_flags) noexcept nogil:
    return _PROT_MAP[vm_flags & 0xF]


def _u64(v, what="entry"):
    if not 0 <= v < (1 << 64):
        raise ValueError(f"{what} 0x{v:x} does not fit in 64 bits" if v >= 0
                         else f"{what} {v} is negative")
    return v


def vm_get_page_prot(vm_flags: int) -> int:
    """The pgprot for vm_flags (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED), as protection_map."""
    return _PROT_MAP[_u64(vm_flags, "vm_flags") & 0xF]


def pte_present(v: int) -> bool:
    """pte_present(): P or PROT_NONE."""
    return c_pte_present(_u64(v))


def pte_pfn(v: int) -> int:
    """Frame number of a 4K PTE (PROT_NONE inversion undone)."""
    return c_pte_pfn(_u64(v))


def pmd_pfn(v: int) -> int:
    """4K frame number of the first page of a huge PMD."""
    return c_pmd_pfn(_u64(v))


def mk_pte(pfn: int, prot: int) -> int:
    """An entry for frame pfn with pgprot prot (PROT_NONE entries get inverted PFN bits)."""
    if not 0 <= pfn < (1 << 40):
        raise ValueError(f"pfn 0x{pfn:x} is beyond the 40-bit frame field")
    return c_flip_protnone_guard(0, (pfn << 12) | (_u64(prot, "prot") & ~MMU_PFN_MASK),
                                 MMU_PFN_MASK)


def pte_modify(old: int, newprot: int) -> int:
    """pte_modify(): keep PFN, PCD/PWT, A/D and software bits of old; the rest from newprot."""
    return c_pte_modify(_u64(old), _u64(newprot, "prot"))


def pmd_modify(old: int, newprot: int) -> int:
    """pmd_modify(): pte_modify for huge PMDs (also keeps PSE and PAT_LARGE)."""
    return c_pmd_modify(_u64(old), _u64(newprot, "prot"))


def pte_needs_flush(old: int, new: int) -> bool:
    """x86 pte_needs_flush(old, new): does replacing old by new require a TLB flush?"""
    return c_pte_needs_flush(_u64(old), _u64(new))


def huge_pmd_needs_flush(old: int, new: int) -> bool:
    """x86 huge_pmd_needs_flush(old, new): as pte_needs_flush, A clearing flushes too."""
    return c_huge_pmd_needs_flush(_u64(old), _u64(new))


_NAMES = [(MMU_P, "P"), (MMU_RW, "RW"), (MMU_US, "US"), (MMU_PWT, "PWT"), (MMU_PCD, "PCD"),
          (MMU_A, "A"), (MMU_D, "D"), (MMU_PSE, "PSE"), (MMU_G, "G"),
          (MMU_SPECIAL, "SPECIAL"), (MMU_UFFD_WP, "UFFD_WP"), (MMU_SOFT_DIRTY, "SOFT_DIRTY"),
          (MMU_DEVMAP, "DEVMAP"), (MMU_SAVED_DIRTY, "SAVED_DIRTY"), (MMU_NX, "NX")]


def describe(v: int) -> str:
    """A human-readable entry: 'pfn=0x1234 P|RW|US|A|D|NX'."""
    v = _u64(v)
    names = [n for bit, n in _NAMES if v & bit]
    if not v & MMU_P and v & MMU_PROTNONE:
        names = [("PROTNONE" if n == "G" else n) for n in names]
    pkey = (v & MMU_PKEY_MASK) >> 59
    if pkey:
        names.append(f"PKEY={pkey}")
    return f"pfn=0x{c_pte_pfn(v):x} " + ("|".join(names) or "0")
