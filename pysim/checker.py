"""TLB safety checker (SPEC section 7): after an operation returns, no CPU may hold a
translation that grants more than the page table now does.

Which cached entries count: on a CPU running the mm (loaded and not lazy) every entry
of its current PCIDs, whatever its generation says; on other CPUs and other ASID slots
only slots that claim to be current (slot generation >= mm.tlb_gen).  Entries in stale
slots or on lazy CPUs are legitimately stale: the next switch to the mm flushes them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List

from .errors import ConfigError, SafetyViolation, Violation
from .tlbflush import kern_pcid, user_pcid

if TYPE_CHECKING:                                   # pragma: no cover
    from .machine import Machine, OpResult

MODES = ("raise", "record", "off")


class Checker:
    """Runs after every operation; mode "raise" (default on), "record" or "off"."""

    def __init__(self, machine: "Machine", mode: Any = True):
        if mode is True:
            mode = "raise"
        elif mode is False or mode is None:
            mode = "off"
        if mode not in MODES:
            raise ConfigError(f"checker must be True/False or one of {MODES}, got {mode!r}",
                              field="checker", allowed=MODES)
        self.machine = machine
        self.mode = mode
        self.violations: List[Violation] = []
        self.checks = 0

    def after(self, operation: str, result: "OpResult") -> None:
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
        pti = self.machine.profile.pti
        for cpu in self.machine.cpus:
            for asid, (ctx_id, gen) in enumerate(cpu.asids):
                mm = self._mm(ctx_id)
                if mm is None:
                    continue
                running = cpu.loaded_mm is mm and not cpu.is_lazy and cpu.loaded_asid == asid
                if not running and gen < mm.tlb_gen:
                    continue
                if running and pti and asid in cpu.user_flush_pending:
                    pcids = [kern_pcid(asid)]        # user copy is flushed on the way out
                else:
                    pcids = [kern_pcid(asid)] + ([user_pcid(asid)] if pti else [])
                if not self.machine.profile.pcid:
                    pcids = [kern_pcid(0)] if running else []
                for pcid in pcids:
                    for va, huge, entry, pte, reason in cpu.tlb.check(mm.pt, pcid):
                        out.append(Violation(cpu.id, va, entry, pte, operation,
                                             f"{'2M' if huge else '4K'} entry (pcid {pcid}): "
                                             f"{reason}"))
        return out

    def _mm(self, ctx_id: int):
        for mm in self.machine.mms:
            if mm.ctx_id == ctx_id:
                return mm
        return None
