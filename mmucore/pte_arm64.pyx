# cython: language_level=3
"""Python face of the arm64 descriptor format and rules in pte_arm64.pxd: the bit
constants, the arm64 pgprots and protection_map (arch/arm64/mm/mmap.c), the codec
between canonical entries and descriptors, and pte_needs_flush on descriptors."""
from libc.stdint cimport uint64_t

PTE_VALID = A64_VALID
PTE_TABLE_BIT = A64_TABLE_BIT
PTE_TYPE_PAGE = A64_VALID | A64_TABLE_BIT
PMD_TYPE_SECT = A64_VALID
PTE_ATTRINDX_MASK = A64_ATTRINDX_MASK
PTE_USER = A64_USER
PTE_RDONLY = A64_RDONLY
PTE_SHARED = A64_SHARED
PTE_AF = A64_AF
PTE_NG = A64_NG
PTE_PRESENT_INVALID = A64_PRESENT_INVALID
PTE_ADDR_MASK = A64_ADDR_MASK
PTE_DBM = A64_DBM
PTE_WRITE = A64_DBM
PTE_CONT = A64_CONT
PTE_PXN = A64_PXN
PTE_UXN = A64_UXN
PTE_DIRTY = A64_DIRTY
PTE_SPECIAL = A64_SPECIAL
PTE_DEVMAP = A64_DEVMAP
PTE_UFFD_WP = A64_UFFD_WP
PTE_SWBITS_MASK = A64_SWBITS_MASK

# arch/arm64/include/asm/pgtable-prot.h (MT_NORMAL is AttrIndx 0)
_PAGE_DEFAULT = PTE_TYPE_PAGE | A64_AF | A64_SHARED
PAGE_NONE = (_PAGE_DEFAULT & ~A64_VALID) | A64_PRESENT_INVALID | A64_RDONLY | A64_NG \
    | A64_PXN | A64_UXN
PAGE_SHARED = _PAGE_DEFAULT | A64_USER | A64_RDONLY | A64_NG | A64_PXN | A64_UXN | A64_DBM
PAGE_SHARED_EXEC = _PAGE_DEFAULT | A64_USER | A64_RDONLY | A64_NG | A64_PXN | A64_DBM
PAGE_READONLY = _PAGE_DEFAULT | A64_USER | A64_RDONLY | A64_NG | A64_PXN | A64_UXN
PAGE_READONLY_EXEC = _PAGE_DEFAULT | A64_USER | A64_RDONLY | A64_NG | A64_PXN

# arch/arm64/mm/mmap.c protection_map[], index VM_READ=1 | VM_WRITE=2 | VM_EXEC=4 |
# VM_SHARED=8 (private writable mappings are read-only until the write fault: COW)
PROTECTION_MAP = (
    PAGE_NONE, PAGE_READONLY, PAGE_READONLY, PAGE_READONLY,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_READONLY_EXEC,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_SHARED_EXEC, PAGE_SHARED_EXEC,
)

# pte_modify()'s mask: the bits newprot replaces (arm64 pgtable.h; GP and PIIndex are 0
# in the model)
_MODIFY_MASK = (A64_USER | A64_PXN | A64_UXN | A64_RDONLY | A64_PRESENT_INVALID
                | A64_VALID | A64_DBM | A64_ATTRINDX_MASK)


cdef inline uint64_t c_arm64_canon(uint64_t d, bint block) noexcept nogil:
    """The canonical entry of descriptor d (the inverse of c_arm64_desc on what the
    canonical entry holds)."""
    cdef uint64_t v = 0
    cdef bint valid = (d & A64_VALID) != 0
    if not valid and not (d & A64_PRESENT_INVALID):
        return 0
    if d & A64_AF:
        v |= MMU_A
    if not (d & A64_NG):
        v |= MMU_G
    if d & A64_DIRTY:
        v |= MMU_D
    if valid:
        v |= MMU_P
        if d & A64_USER:
            v |= MMU_US
            if d & A64_UXN:
                v |= MMU_NX
        elif d & A64_PXN:
            v |= MMU_NX
        if d & A64_DBM:
            v |= MMU_RW
            if not (d & A64_RDONLY):
                v |= MMU_D                      # pte_hw_dirty()
    else:
        v |= MMU_PROTNONE
    if block:
        v |= MMU_PSE
    if d & A64_SPECIAL:
        v |= MMU_SPECIAL
    if d & A64_DEVMAP:
        v |= MMU_DEVMAP
    if d & A64_UFFD_WP:
        v |= MMU_UFFD_WP
    return c_flip_protnone_guard(0, (((d & A64_ADDR_MASK) >> 12) << 12) | v, MMU_PFN_MASK)


def _u64(v, what="descriptor"):
    """v if it fits in 64 bits, else a ValueError naming what."""
    if not 0 <= v < (1 << 64):
        raise ValueError(f"{what} {v:#x} does not fit in 64 bits" if v >= 0
                         else f"{what} {v} is negative")
    return v


def to_desc(v: int, block: bool = False) -> int:
    """The arm64 descriptor of canonical entry v (a level-2 block with block)."""
    return c_arm64_desc(_u64(v, "entry"), block)


def from_desc(d: int, block: bool = False) -> int:
    """The canonical entry of arm64 descriptor d."""
    return c_arm64_canon(_u64(d), block)


def vm_get_page_prot(vm_flags: int) -> int:
    """arm64 vm_get_page_prot(): protection_map[] as a descriptor pgprot."""
    return PROTECTION_MAP[_u64(vm_flags, "vm_flags") & 0xF]


def vm_get_page_prot_canon(vm_flags: int) -> int:
    """The same pgprot in the canonical spelling (a pgprot has no frame: no PROT_NONE
    inversion of the PFN field)."""
    return c_arm64_canon(PROTECTION_MAP[_u64(vm_flags, "vm_flags") & 0xF], False) \
        & ~MMU_PFN_MASK


def pte_modify(d: int, newprot: int) -> int:
    """arm64 pte_modify() on descriptors: permissions from newprot; keep OA, AF, nG,
    SH and the software bits; hardware dirtiness survives (PTE_DIRTY, then
    pte_mkdirty clears AP[2] again if the result is writable)."""
    cdef uint64_t v = _u64(d), p = _u64(newprot, "prot")
    if (v & A64_DBM) and not (v & A64_RDONLY):
        v |= A64_DIRTY                          # pte_hw_dirty -> PTE_DIRTY
    v = (v & ~_MODIFY_MASK) | (p & _MODIFY_MASK)
    if (v & A64_DIRTY) and (v & A64_DBM):
        v &= ~A64_RDONLY                        # pte_mkdirty of a writable pte
    return v


def pte_needs_flush(old: int, new: int) -> bool:
    """arm64 pte_needs_flush(old, new) on descriptors (2025 rule, c320dbb7c80d)."""
    return c_arm64_flags_need_flush(_u64(old), _u64(new))


def pte_needs_flush_canon(old: int, new: int, block: bool = False) -> bool:
    """The same rule on canonical entries, as the change_protection loop applies it."""
    if block:
        return c_arm64_huge_pmd_needs_flush(_u64(old, "entry"), _u64(new, "entry"))
    return c_arm64_pte_needs_flush(_u64(old, "entry"), _u64(new, "entry"))


_NAMES = [(A64_VALID, "VALID"), (A64_USER, "USER"), (A64_RDONLY, "RDONLY"),
          (A64_AF, "AF"), (A64_NG, "nG"), (A64_DBM, "DBM"), (A64_CONT, "CONT"),
          (A64_PXN, "PXN"), (A64_UXN, "UXN"), (A64_DIRTY, "DIRTY"),
          (A64_SPECIAL, "SPECIAL"), (A64_DEVMAP, "DEVMAP"), (A64_UFFD_WP, "UFFD_WP")]


def describe(d: int) -> str:
    """A readable descriptor: 'oa=0x1234 VALID|USER|RDONLY|AF|nG|DBM|PXN|UXN'."""
    d = _u64(d)
    names = [n for bit, n in _NAMES if d & bit]
    if not d & A64_VALID and d & A64_PRESENT_INVALID:
        names = ["PRESENT_INVALID" if n == "nG" else n for n in names]
    return f"oa=0x{(d & A64_ADDR_MASK) >> 12:x} " + ("|".join(names) or "0")
