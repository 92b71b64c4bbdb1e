"""Kernel paths on one address space: the mm_struct, VMAs, mmap/munmap, mprotect,
madvise, faults and populate, and the mmu_gather API.  Every path is handed the CPU it
runs on (the CPU object of the machine layer: its counters, TLB state, frozen config
and arch hooks; annotated "CPU" here, never imported, since that layer sits above) and
the mm."""
from .mm import MM, File
from .mmu_gather import (MMUGather, tlb_end_vma, tlb_finish_mmu, tlb_flush_mmu,
                         tlb_flush_pmd_range, tlb_flush_pte_range, tlb_gather_mmu,
                         tlb_start_vma)
