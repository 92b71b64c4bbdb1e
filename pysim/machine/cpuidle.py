"""cpuidle on the timeline: which idle state a sleeping CPU enters, and what entering
it does to the CPU's mm.

A CPU whose thread blocks runs the idle task, and cpuidle_idle_call() asks the
governor for a state.  The menu governor picks the deepest enabled state whose
target_residency does not exceed the predicted idle time (and whose exit latency the
PM QoS limit allows; the test machine sets none).  Here the prediction is the sleep
the timeline already knows (the writer's release plus the hand-off): an ideal
governor, which the menu governor approaches for the regular sleeps of a steady
benchmark and never beats.

cpuidle_enter_state() calls leave_mm() before a state flagged
CPUIDLE_FLAG_TLB_FLUSHED (the core loses its TLB there): the CPU switches to
init_mm.  Before 6.14 that switch cleared the CPU's bit in the mm's cpumask; with the
lazy mask (209954cbc7d0) the bit stays and the CPU is no longer lazy, so a flush
before its thread wakes sends it an IPI, which waits for the state's exit latency.

Tables are intel_idle's, in microseconds, named as in drivers/idle/intel_idle.c.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..errors import ConfigError


@dataclass(frozen=True)
class IdleState:
    """One cpuidle state: name, exit_latency and target_residency in microseconds,
    and whether entering it calls leave_mm() (CPUIDLE_FLAG_TLB_FLUSHED)."""

    name: str
    exit_latency_us: float
    target_residency_us: float
    tlb_flushed: bool = False


# skx_cstates[] (Skylake-X / Xeon Scalable, the robot's lkp-skl-fpga01), after the
# POLL state cpuidle_poll_state_init() puts first (exit latency and residency 0).
SKX_CSTATES: Tuple[IdleState, ...] = (
    IdleState("POLL", 0.0, 0.0),
    IdleState("C1", 2.0, 2.0),                        # MWAIT 0x00, intel_idle_irq
    IdleState("C1E", 10.0, 20.0),                     # MWAIT 0x01
    IdleState("C6", 133.0, 600.0, tlb_flushed=True),  # MWAIT 0x20
)

TABLES: Dict[str, Tuple[IdleState, ...]] = {"skx": SKX_CSTATES}


def table(name: Optional[str]) -> Optional[Tuple[IdleState, ...]]:
    """The idle-state table called name (None: no table, one preset idle_exit)."""
    if name is None:
        return None
    if name not in TABLES:
        raise ConfigError(f"cpuidle table {name!r} unknown; allowed: {', '.join(TABLES)}",
                          field="cpuidle", allowed=tuple(TABLES))
    return TABLES[name]


def menu_select(states: Tuple[IdleState, ...], predicted_us: float) -> IdleState:
    """menu_select() with the idle time known: the deepest state whose
    target_residency is at most predicted_us (the first state if none is)."""
    chosen = states[0]
    for s in states[1:]:
        if s.target_residency_us <= predicted_us:
            chosen = s
    return chosen
