# cython: language_level=3
"""arm64 stage-1 descriptors (4K granule, 4 levels, 48-bit VA/OA) at their real bit
positions (arch/arm64/include/asm/pgtable-hwdef.h, pgtable-prot.h), and the arm64 rules
defined on them.

How the format is chosen.  The page-table core (mmucore.pagetable) and the walker
(mmucore.tlb) store and read one canonical entry, whose layout is x86-64's; the x86
paths read it directly and stay as fast as before.  On arm64 the canonical entry is the
kernel's pte in a neutral spelling: c_arm64_desc() turns it into the descriptor an arm64
MMU would hold (valid, AttrIndx, AP[1] user, AP[2] read-only, SH, AF, nG, OA, DBM,
contiguous, PXN, UXN, software bits 55-58), and c_arm64_canon() goes back.  Every arm64
rule that depends on bits (pte_needs_flush, the protection map, describe) is written on
the descriptor, so it reads like the kernel's; the permission semantics both spellings
share (write = DBM on arm64, dirty = software PTE_DIRTY or DBM with AP[2] clear) are the
codec's contract, which tests/test_arm64.py checks both ways.

What the canonical entry cannot hold, the codec drops: AttrIndx other than MT_NORMAL,
the contiguous bit (the model builds no contpte blocks), POE/PIIndex (no arm64 pkeys),
soft-dirty (arm64 has none).  A descriptor with those set does not round-trip.
"""
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #define A64_VALID        (1ULL << 0)
    #define A64_TABLE_BIT    (1ULL << 1)    /* level 3: page (0b11); levels 0-2: table */
    #define A64_ATTRINDX_MASK (7ULL << 2)   /* MAIR index; MT_NORMAL = 0 */
    #define A64_USER         (1ULL << 6)    /* AP[1]: EL0 access */
    #define A64_RDONLY       (1ULL << 7)    /* AP[2]: read-only */
    #define A64_SHARED       (3ULL << 8)    /* SH[1:0] = inner shareable */
    #define A64_AF           (1ULL << 10)   /* access flag */
    #define A64_NG           (1ULL << 11)   /* not global (ASID-tagged) */
    #define A64_PRESENT_INVALID (1ULL << 11) /* with VALID clear: PROT_NONE (6.10+) */
    #define A64_ADDR_MASK    0x0000FFFFFFFFF000ULL  /* OA[47:12] */
    #define A64_PMD_ADDR_MASK 0x0000FFFFFFE00000ULL
    #define A64_DBM          (1ULL << 51)   /* dirty bit modifier = PTE_WRITE */
    #define A64_CONT         (1ULL << 52)   /* contiguous hint */
    #define A64_PXN          (1ULL << 53)
    #define A64_UXN          (1ULL << 54)
    #define A64_DIRTY        (1ULL << 55)   /* software: PTE_DIRTY */
    #define A64_SPECIAL      (1ULL << 56)   /* software: PTE_SPECIAL */
    #define A64_DEVMAP       (1ULL << 57)   /* software: PTE_DEVMAP */
    #define A64_UFFD_WP      (1ULL << 58)   /* software: PTE_UFFD_WP */
    #define A64_SWBITS_MASK  (0xFULL << 55) /* bits 55-58: what pte_needs_flush ignores */
    """
    const uint64_t A64_VALID, A64_TABLE_BIT, A64_ATTRINDX_MASK, A64_USER, A64_RDONLY
    const uint64_t A64_SHARED, A64_AF, A64_NG, A64_PRESENT_INVALID, A64_ADDR_MASK
    const uint64_t A64_PMD_ADDR_MASK, A64_DBM, A64_CONT, A64_PXN, A64_UXN, A64_DIRTY
    const uint64_t A64_SPECIAL, A64_DEVMAP, A64_UFFD_WP, A64_SWBITS_MASK

from mmucore.pte cimport (MMU_P, MMU_RW, MMU_US, MMU_A, MMU_D, MMU_G, MMU_NX, MMU_PSE,
                          MMU_PROTNONE, MMU_SPECIAL, MMU_UFFD_WP, MMU_DEVMAP,
                          MMU_PFN_MASK, c_pte_pfn, c_pmd_pfn, c_flip_protnone_guard)


cdef inline uint64_t c_arm64_desc(uint64_t v, bint block) noexcept nogil:
    """The arm64 descriptor of canonical entry v: a level-3 page, or with block a
    level-2 block (bits[1:0] = 0b01).  0 stays 0 (an invalid, non-present entry)."""
    cdef uint64_t d, pfn
    cdef bint present = (v & MMU_P) != 0
    cdef bint protnone = (not present) and (v & MMU_PROTNONE) != 0
    if not present and not protnone:
        return 0
    pfn = c_pmd_pfn(v) if block else c_pte_pfn(v)
    d = (pfn << 12) | A64_SHARED               # AttrIndx MT_NORMAL (0), inner shareable
    if present:
        d |= A64_VALID
    else:
        d |= A64_PRESENT_INVALID | A64_RDONLY | A64_PXN | A64_UXN   # PAGE_NONE
    if not block:
        d |= A64_TABLE_BIT
    if v & MMU_A:
        d |= A64_AF
    if not (v & MMU_G):
        d |= A64_NG
    if present:
        if v & MMU_US:
            d |= A64_USER | A64_PXN             # user pages never run at EL1
            if v & MMU_NX:
                d |= A64_UXN
        else:
            d |= A64_UXN                        # kernel pages never run at EL0
            if v & MMU_NX:
                d |= A64_PXN
        if v & MMU_RW:
            d |= A64_DBM                        # PTE_WRITE
            if not (v & MMU_D):
                d |= A64_RDONLY                 # writable-clean: DBM clears AP[2]
        else:
            d |= A64_RDONLY
    if v & MMU_D:
        d |= A64_DIRTY                          # pte_mkdirty() sets PTE_DIRTY
    if v & MMU_SPECIAL:
        d |= A64_SPECIAL
    if v & MMU_DEVMAP:
        d |= A64_DEVMAP
    if v & MMU_UFFD_WP:
        d |= A64_UFFD_WP
    return d


cdef inline bint c_arm64_flags_need_flush(uint64_t oldval, uint64_t newval) noexcept nogil:
    """__pte_flags_need_flush() of the 2025 arm64 pte_needs_flush (Dev Jain,
    c320dbb7c80d): an invalid old descriptor was never in a TLB (invalid -> valid needs
    no flush); otherwise any difference outside the software bits 55-58 needs one."""
    if not (oldval & A64_VALID):
        return False
    return ((oldval ^ newval) & ~A64_SWBITS_MASK) != 0


cdef inline bint c_arm64_pte_needs_flush(uint64_t old, uint64_t new) noexcept nogil:
    """arm64 pte_needs_flush(old, new) on canonical entries (encoded as level-3 pages)."""
    return c_arm64_flags_need_flush(c_arm64_desc(old, False), c_arm64_desc(new, False))


cdef inline bint c_arm64_huge_pmd_needs_flush(uint64_t old, uint64_t new) noexcept nogil:
    """arm64 huge_pmd_needs_flush(): the same rule on level-2 block descriptors."""
    return c_arm64_flags_need_flush(c_arm64_desc(old, True), c_arm64_desc(new, True))
