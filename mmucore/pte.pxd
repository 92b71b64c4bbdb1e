# cython: language_level=3
"""x86-64 page-table entry layout and the per-entry rules the hot loops need.

Bit positions are the real ones (arch/x86/include/asm/pgtable_types.h) so users can read
raw values.  Everything here is an inline C function: the range loops in pagetable.pyx
and the walker in tlb.pyx call them with no Python in between.
"""
from libc.stdint cimport uint64_t

cdef enum:
    BIT_P = 0
    BIT_RW = 1
    BIT_US = 2
    BIT_PWT = 3
    BIT_PCD = 4
    BIT_A = 5
    BIT_D = 6
    BIT_PSE = 7
    BIT_G = 8
    BIT_SOFTW1 = 9
    BIT_SOFTW2 = 10
    BIT_SOFTW3 = 11
    BIT_PAT_LARGE = 12
    BIT_SOFTW4 = 57
    BIT_SOFTW5 = 58
    BIT_PKEY0 = 59
    BIT_NX = 63

cdef extern from *:
    """
    #define MMU_P          (1ULL << 0)
    #define MMU_RW         (1ULL << 1)
    #define MMU_US         (1ULL << 2)
    #define MMU_PWT        (1ULL << 3)
    #define MMU_PCD        (1ULL << 4)
    #define MMU_A          (1ULL << 5)
    #define MMU_D          (1ULL << 6)
    #define MMU_PSE        (1ULL << 7)
    #define MMU_PAT        (1ULL << 7)
    #define MMU_G          (1ULL << 8)
    #define MMU_PROTNONE   (1ULL << 8)
    #define MMU_SPECIAL    (1ULL << 9)
    #define MMU_UFFD_WP    (1ULL << 10)
    #define MMU_SOFT_DIRTY (1ULL << 11)
    #define MMU_PAT_LARGE  (1ULL << 12)
    #define MMU_DEVMAP     (1ULL << 57)
    #define MMU_SAVED_DIRTY (1ULL << 58)
    #define MMU_PKEY_MASK  (0xFULL << 59)
    #define MMU_NX         (1ULL << 63)
    #define MMU_PFN_MASK   0x000FFFFFFFFFF000ULL
    #define MMU_PMD_PFN_MASK 0x000FFFFFFFE00000ULL
    #define MMU_SOFTW_MASK (MMU_SPECIAL | MMU_UFFD_WP | MMU_SOFT_DIRTY | MMU_DEVMAP | MMU_SAVED_DIRTY)
    #define MMU_FLUSH_ON_CLEAR (MMU_D | MMU_P | MMU_A)
    #define MMU_FLUSH_ON_CHANGE (MMU_RW | MMU_US | MMU_PWT | MMU_PCD | MMU_PSE | MMU_G | \\
                                 MMU_PAT_LARGE | MMU_PKEY_MASK | MMU_NX)
    #define MMU_CHG_MASK (MMU_PFN_MASK | MMU_PCD | MMU_PWT | MMU_A | MMU_D | MMU_SOFTW_MASK)
    #define MMU_HPAGE_CHG_MASK (MMU_CHG_MASK | MMU_PSE | MMU_PAT_LARGE)
    /* Upper-level (non-leaf) entries as the kernel writes them: _PAGE_TABLE. */
    #define MMU_TABLE_FLAGS (MMU_P | MMU_RW | MMU_US | MMU_A | MMU_D)
    """
    const uint64_t MMU_P, MMU_RW, MMU_US, MMU_PWT, MMU_PCD, MMU_A, MMU_D, MMU_PSE, MMU_PAT
    const uint64_t MMU_G, MMU_PROTNONE, MMU_SPECIAL, MMU_UFFD_WP, MMU_SOFT_DIRTY
    const uint64_t MMU_PAT_LARGE, MMU_DEVMAP, MMU_SAVED_DIRTY, MMU_PKEY_MASK, MMU_NX
    const uint64_t MMU_PFN_MASK, MMU_PMD_PFN_MASK, MMU_SOFTW_MASK, MMU_FLUSH_ON_CLEAR
    const uint64_t MMU_FLUSH_ON_CHANGE, MMU_CHG_MASK, MMU_HPAGE_CHG_MASK, MMU_TABLE_FLAGS


cdef inline bint c_pte_present(uint64_t v) noexcept nogil:
    """pte_present(): P set, or PROT_NONE (P clear with the PROTNONE bit)."""
    return (v & (MMU_P | MMU_PROTNONE)) != 0


cdef inline uint64_t c_protnone_mask(uint64_t v) noexcept nogil:
    """All ones for a PROT_NONE entry, whose PFN bits are stored inverted (L1TF guard)."""
    if (v & (MMU_P | MMU_PROTNONE)) == MMU_PROTNONE:
        return <uint64_t>0xFFFFFFFFFFFFFFFF
    return 0


cdef inline uint64_t c_pte_pfn(uint64_t v) noexcept nogil:
    """The page frame number, undoing the PROT_NONE inversion."""
    return ((v ^ c_protnone_mask(v)) & MMU_PFN_MASK) >> 12


cdef inline uint64_t c_pmd_pfn(uint64_t v) noexcept nogil:
    """The 4K frame number of a huge PMD's first page."""
    return ((v ^ c_protnone_mask(v)) & MMU_PMD_PFN_MASK) >> 12


cdef inline uint64_t c_flip_protnone_guard(uint64_t oldval, uint64_t val,
                                           uint64_t mask) noexcept nogil:
    """Invert the PFN bits when an entry moves in or out of PROT_NONE."""
    if c_protnone_mask(oldval) != c_protnone_mask(val):
        val = (val & ~mask) | (~val & mask)
    return val


cdef inline uint64_t c_pte_modify(uint64_t old, uint64_t newprot) noexcept nogil:
    """pte_modify(): keep PFN, caching, A/D and software bits; the rest from newprot."""
    cdef uint64_t val = (old & MMU_CHG_MASK) | (newprot & ~MMU_CHG_MASK)
    return c_flip_protnone_guard(old, val, MMU_PFN_MASK)


cdef inline uint64_t c_pmd_modify(uint64_t old, uint64_t newprot) noexcept nogil:
    """pmd_modify(): as pte_modify, also keeping PSE and PAT_LARGE."""
    cdef uint64_t val = (old & MMU_HPAGE_CHG_MASK) | (newprot & ~MMU_HPAGE_CHG_MASK)
    return c_flip_protnone_guard(old, val, MMU_PMD_PFN_MASK)


cdef inline bint c_pte_flags_need_flush(uint64_t old, uint64_t new,
                                        bint ignore_access) noexcept nogil:
    """pte_flags_need_flush() on flag bits only (PFN already masked off by the caller):
    clear-class bits going 1->0, change-class bits in either direction; software bits never."""
    cdef uint64_t flush_on_clear = MMU_FLUSH_ON_CLEAR
    cdef uint64_t oldf = old
    cdef uint64_t newf = new
    if ignore_access:
        flush_on_clear &= ~MMU_A
        oldf &= ~MMU_A
        newf &= ~MMU_A
    if (oldf & ~newf) & flush_on_clear:
        return True
    if (oldf ^ newf) & MMU_FLUSH_ON_CHANGE:
        return True
    return False


cdef inline bint c_pte_needs_flush(uint64_t old, uint64_t new) noexcept nogil:
    """pte_needs_flush() (x86, 5.19+): would a CPU's cached copy of old be unsafe after new?"""
    if not (old & MMU_P):
        return False
    if c_pte_pfn(old) != c_pte_pfn(new):
        return True
    return c_pte_flags_need_flush(old & ~MMU_PFN_MASK, new & ~MMU_PFN_MASK, True)


cdef inline bint c_huge_pmd_needs_flush(uint64_t old, uint64_t new) noexcept nogil:
    """huge_pmd_needs_flush(): as pte_needs_flush, but clearing A also needs a flush."""
    if not (old & MMU_P):
        return False
    if c_pmd_pfn(old) != c_pmd_pfn(new):
        return True
    return c_pte_flags_need_flush(old & ~MMU_PMD_PFN_MASK, new & ~MMU_PMD_PFN_MASK, False)


cdef uint64_t c_vm_get_page_prot(uint64_t vm_flags) noexcept nogil


cdef inline uint64_t u64(object x, str what) except *:
    """x as an unsigned 64-bit value for C, or a TypeError/ValueError naming `what`
    (Python entry points take untyped addresses and entries and convert them here, so a
    negative address is a clear error, not a bare OverflowError)."""
    cdef object v
    try:
        v = x.__index__()
    except AttributeError:
        raise TypeError(f"{what} must be an integer, got {type(x).__name__}") from None
    if v < 0 or v > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"{what} {v:#x} is not an unsigned 64-bit value")
    return <uint64_t>v
