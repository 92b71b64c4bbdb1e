"""mmucore: the Cython MMU core of pysim (page table, TLBs, walk, range loops, costs).

    import numpy as np, mmucore
    pt = mmucore.PageTable()
    pt.map(va, npages, flags=mmucore.PTE_RW | mmucore.PTE_US)   # huge=True: 2M PMDs
    tlb = mmucore.TLB(mmucore.geometry("skylake"))
    res = mmucore.access_stream(pt, tlb, vas, kinds)            # uint64[:], uint8[:]
    res.accesses, res.l1_hits, res.stlb_hits, res.walks, res.faults, res.stopped_at
"""
from mmucore.pte import *  # noqa: F401,F403  bit constants, pgprots and entry rules
from mmucore.pte import (describe, huge_pmd_needs_flush, mk_pte, pmd_modify, pmd_pfn,
                         pte_modify, pte_needs_flush, pte_pfn, pte_present, vm_get_page_prot)
from mmucore.gather import Gather, TASK_SIZE
from mmucore.cost import COST_FIELDS, COUNTER_NAMES, CYCLE_NAMES, CostModel
from mmucore.pagetable import (CP_DIRTY_ACCT, CP_RECORD_ALL, CP_RECORD_NEEDED, CP_RECORD_NEEDED_ARM64,
                               CP_TRY_WRITABLE, CP_UFFD_WP, CP_UFFD_WP_RESOLVE,
                               CP_WRITABLE_NEEDS_DIRTY, FILE_PFN_BASE, HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE,
                               PMD_SHIFT, PMD_SIZE, VA_LIMIT, PageTable)
from mmucore.pagetable import ZAP_BATCH_FULL, ZAP_DONE, ZAP_FORCE_FLUSH
from mmucore.tlb import (FAULT_NAMES, FAULT_NONE, FAULT_NOT_PRESENT, FAULT_NX, FAULT_USER,
                         FAULT_WRITE, FETCH, GEOMETRIES, PCID_MAX, READ, WRITE, StreamResult,
                         TLB, access, access_stream, geometry)

COUNTER_INDEX = {name: i for i, name in enumerate(COUNTER_NAMES)}
