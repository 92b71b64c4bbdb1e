"""pysim: a fast, faithful simulator of the Linux MMU and its TLB-flush machinery.

    import pysim
    m = pysim.Machine(cpus=2, preset="skylake", profile="patched")
    proc = m.process()
    t0 = proc.thread(cpu=0)
    t1 = proc.thread(cpu=1); t1.busy()
    p = t0.mmap(4096, pysim.PROT_READ | pysim.PROT_WRITE)
    t0.write(p); r = t0.mprotect(p, 4096, pysim.PROT_READ)
    r.cycles, r.events, m.counters()
"""
from .constants import *  # noqa: F401,F403  PROT_*, MAP_*, MADV_*, VM_*, page sizes
from .errors import (ArgumentError, ConfigError, PysimError, SafetyViolation, SyscallError,
                     Violation)
from .config import PRESETS, PROFILES, Preset, Profile, get_preset, get_profile
from .machine import CPU, KERNEL_COUNTERS, Fault, Machine, OpResult, Process, Thread
from .mm import (MM, File, MMUGather, tlb_end_vma, tlb_finish_mmu, tlb_flush_mmu,
                 tlb_flush_pmd_range, tlb_flush_pte_range, tlb_gather_mmu, tlb_start_vma)
from .mm.mprotect import change_protection
from .arch.tlbflush import flush_tlb_mm_range, flush_tlb_range

from .sweeps import sweep  # noqa: E402  pysim.sweep(grid, ...) is a plain function
from . import replay  # noqa: E402,F401  pysim.replay(trace, ...): the package is callable

__version__ = "0.1.0"
