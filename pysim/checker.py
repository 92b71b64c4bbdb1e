"""TLB safety checker (SPEC section 7): after an operation returns, no CPU may hold a
translation that grants more than the page table now does.

Which cached entries count: on a CPU running the mm (loaded and not lazy) every entry
of its current PCIDs, whatever its generation says; on other CPUs and other ASID slots
only slots that claim to be current (slot generation >= mm.tlb_gen).  Entries in stale
slots or on lazy CPUs are legitimately stale: the next switch to the mm flushes them.
With PTI, a user PCID whose flush is pending (user_pcid_flush_mask) is not live on any
slot, running or not: the exit to user space with that ASID flushes it first.

Broadcast invalidation (x86 INVLPGB, 6.15): an mm with a global ASID has the same PCID
on every CPU and no switch ever flushes it, so that PCID counts as current on every
CPU, running the mm or not (lazy, or switched away: it comes back without a flush).
An issued INVLPGB takes effect only at its CPU's TLBSYNC; until then the entries it
names are still in the TLBs and are reported, with the pending INVLPGB named.  arm64
(pysim.arch.arm64) is the same with TLBI and the issuing CPU's DSB ISH: an mm's ASID is
live on every CPU that ran it, and arch.pending_note names an uncompleted TLBI.

After an operation on a known mm the scan covers that mm's slots on every CPU, and every
slot of the CPUs the operation touched: an operation changes only its own page table
(the shared kernel half is static), so another mm's translations can go wrong only
through the TLB state of a CPU the operation ran on (an ASID switch, a pending user
flush cleared).  The cost then follows the operation, not the machine.  An explicit
check (Machine.check) scans everything.
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

    def after(self, operation: str, result: Any, mm: Any = None) -> None:
        """The check after an operation (on mm, if the caller knows which)."""
        if self.mode == "off":
            return
        found = (self.scan(operation) if mm is None
                 else self.scan_op(operation, mm, result.cpus))
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
            for asid, ctx_id, gen in cpu.arch.cpu_slots(cpu):
                mm = mms.get(ctx_id)
                if mm is not None:
                    self._slot(cpu, asid, gen, mm, operation, out)
        if self.cpus:
            for mm in self.mms:
                for cpu_id, asid, gen in self.cpus[0].arch.global_slots(mm):
                    self._slot(self.cpus[cpu_id], asid, gen, mm, operation, out)
        return out

    def scan_op(self, operation: str, mm: Any, touched: Sequence[int]) -> List[Violation]:
        """The same, for what an operation on mm can have made wrong: mm's slots on
        every CPU (found in C) and every slot of the CPUs in touched."""
        self.checks += 1
        out: List[Violation] = []
        cpus = self.cpus
        mms = None
        for cpu_id in touched:
            for asid, ctx_id, gen in cpus[cpu_id].arch.cpu_slots(cpus[cpu_id]):
                if ctx_id == mm.ctx_id or ctx_id < 0:
                    continue
                if mms is None:
                    mms = {m.ctx_id: m for m in self.mms}
                other = mms.get(ctx_id)
                if other is not None:
                    self._slot(cpus[cpu_id], asid, gen, other, operation, out)
        for cpu_id, asid, gen in cpus[0].arch.slots_caching(mm):
            self._slot(cpus[cpu_id], asid, gen, mm, operation, out)
        return out

    def _slot(self, cpu: Any, asid: int, gen: int, mm: Any, operation: str,
              out: List[Violation]) -> None:
        """Check one ASID slot of cpu holding mm (generation gen) into out."""
        ts = cpu.tlbstate
        loaded = ts.loaded_mm is mm.context and ts.loaded_mm_asid == asid
        if not (loaded and not ts.is_lazy) and gen < mm.tlb_gen:
            return                      # behind: the next switch to mm flushes the slot
        for pcid in cpu.arch.live_tags(cpu, asid, loaded):
            for va, huge, entry, pte, reason in cpu.tlb.check(mm.pt, pcid):
                out.append(Violation(cpu.id, va, entry, pte, operation,
                                     f"{'2M' if huge else '4K'} entry (pcid {pcid}): "
                                     f"{reason}{self._pending_broadcast(pcid, va)}"
                                     f"{cpu.arch.pending_note(pcid, va)}"))

    def _pending_broadcast(self, pcid: int, va: int) -> str:
        """A note naming an issued, uncompleted broadcast invalidation that covers
        (pcid, va): it does not count until its completion (TLBSYNC)."""
        for other in self.cpus:
            pending = getattr(other.tlbstate, "pending_invlpgb", ())
            for kind, p, addr, nr, pmd in pending:
                step = (2 << 20) if pmd else 4096
                if kind == "all" or (p == pcid and (
                        kind == "pcid" or addr <= va < addr + nr * step)):
                    return (f"; INVLPGB issued on cpu {other.id} not completed "
                            f"(no TLBSYNC)")
        return ""
