"""TLB safety checker (SPEC section 7): after an operation returns, no CPU may hold a
translation that grants more than the page table now does.

Which cached entries count: on a CPU running the mm (loaded and not lazy) every entry
of its current PCIDs, whatever its generation says; on other CPUs and other ASID slots
only slots that claim to be current (slot generation >= mm.tlb_gen).  Entries in stale
slots or on lazy CPUs are legitimately stale: the next switch to the mm flushes them.
With PTI, a user PCID whose flush is pending (user_pcid_flush_mask) is not live on any
slot, running or not: the exit to user space with that ASID flushes it first.
"""
from __future__ import annotations

from typing import Any, List, Sequence

from .errors import ConfigError, SafetyViolation, Violation

MODES = ("raise", "record", "off")


class Checker:
    """Runs after every operation; mode "raise" (default on), "record" or "off".  It is
    handed the machine's CPUs and mms (lists it reads, never owns)."""

    def __init__(self, cfg: Any, cpus: Sequence, mms: Sequence, mode: Any = True):
        if mode is True:
            mode = "raise"
        elif mode is False or mode is None:
            mode = "off"
        if mode not in MODES:
            raise ConfigError(f"checker must be True/False or one of {MODES}, got {mode!r}",
                              field="checker", allowed=MODES)
        self.cfg = cfg
        self.cpus = cpus
        self.mms = mms
        self.mode = mode
        self.violations: List[Violation] = []
        self.checks = 0

    def after(self, operation: str, result: Any) -> None:
        if self.mode == "off":
            return
        found = self.scan(operation)
        if found:
            self.violations.extend(found)
            if self.mode == "raise":
                raise SafetyViolation(found, f"{len(found)} stale TLB entr"
                                             f"{'y' if len(found) == 1 else 'ies'} after "
                                             f"{operation} on cpu {result.cpu}")

    def scan(self, operation: str) -> List[Violation]:
        """Every cached translation, on every CPU, that grants more than its mm allows."""
        self.checks += 1
        out: List[Violation] = []
        mms = {mm.ctx_id: mm for mm in self.mms}
        for cpu in self.cpus:
            ts = cpu.tlbstate
            loaded = ts.loaded_mm
            for asid, (ctx_id, gen) in enumerate(ts.asids):
                mm = mms.get(ctx_id)
                if mm is None:
                    continue
                running = (loaded is mm.context and not ts.is_lazy
                           and ts.loaded_mm_asid == asid)
                if not running and gen < mm.tlb_gen:
                    continue
                for pcid in cpu.arch.live_tags(cpu, asid, running):
                    for va, huge, entry, pte, reason in cpu.tlb.check(mm.pt, pcid):
                        out.append(Violation(cpu.id, va, entry, pte, operation,
                                             f"{'2M' if huge else '4K'} entry (pcid {pcid}): "
                                             f"{reason}"))
        return out
