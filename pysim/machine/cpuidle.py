"""cpuidle on the timeline: which idle state a sleeping CPU enters, and what entering
it does to the CPU's mm.

A CPU whose thread blocks runs the idle task, and cpuidle_idle_call() asks the
governor for a state.  The menu governor picks the deepest enabled state whose
target_residency does not exceed the predicted idle time (and whose exit latency the
PM QoS limit allows; the test machine sets none).  The prediction is made when the
CPU goes idle, before anyone knows when it will be woken (Menu below, after
drivers/cpuidle/governors/menu.c of 5.x-6.13): the smaller of the next timer event
scaled by a learnt correction factor and the typical interval of the CPU's last 8
sleeps.  Assumption: the only timer a CPU asleep on a lock has is its tick, and the
tick keeps running (menu.c does not stop it for a predicted idle under one tick), so
the next timer event is the next jiffy; a sleep longer than that is woken by each tick
and the idle loop chooses again (the timeline's tick events), with the tick-length
periods in the CPU's history.

cpuidle_enter_state() calls leave_mm() before a state flagged
CPUIDLE_FLAG_TLB_FLUSHED (the core loses its TLB there): the CPU switches to
init_mm.  Before 6.14 that switch cleared the CPU's bit in the mm's cpumask; with the
lazy mask (209954cbc7d0) the bit stays and the CPU is no longer lazy, so a flush
before its thread wakes sends it an IPI, which waits for the state's exit latency.

Tables are intel_idle's, in microseconds, named as in drivers/idle/intel_idle.c.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..errors import ConfigError


@dataclass(frozen=True)
class IdleState:
    """One cpuidle state: name, exit_latency and target_residency in microseconds as
    the driver declares them, whether entering it calls leave_mm()
    (CPUIDLE_FLAG_TLB_FLUSHED), and what a wake-up from it takes here (wake_us; by
    default the declared exit_latency, which is a worst case)."""

    name: str
    exit_latency_us: float
    target_residency_us: float
    tlb_flushed: bool = False
    wake_us: Optional[float] = None

    @property
    def wake_latency_us(self) -> float:
        """How long a wake-up from this state takes on the timeline."""
        return self.exit_latency_us if self.wake_us is None else self.wake_us


# skx_cstates[] (Skylake-X / Xeon Scalable, the robot's lkp-skl-fpga01), after the
# POLL state cpuidle_poll_state_init() puts first (exit latency and residency 0).
# C6's declared 133 us is package C6's exit (cpuidle takes the worst case).  A core
# woken while other CPUs run cannot be in package C6 (PC6 needs every core in core
# C6), so its wake-up is core C6's: 92 us, the 99.99th percentile wult measured on
# SKX (commit 64233338 "intel_idle: Adjust the SKX C6 parameters if PC6 is
# disabled", which uses it as the exit latency when PC6 is off).  Still a tail figure.
SKX_CSTATES: Tuple[IdleState, ...] = (
    IdleState("POLL", 0.0, 0.0),
    IdleState("C1", 2.0, 2.0),                        # MWAIT 0x00, intel_idle_irq
    IdleState("C1E", 10.0, 20.0),                     # MWAIT 0x01
    IdleState("C6", 133.0, 600.0, tlb_flushed=True, wake_us=92.0),  # MWAIT 0x20
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


# menu.c: the correction factor is a fixed-point ratio (RESOLUTION * DECAY = 1.0) that
# decays by 1/DECAY per sleep; BUCKETS split the next-timer distances by decade.
RESOLUTION, DECAY, INTERVALS = 1024, 8, 8
_BUCKET_LIMITS_US = (10.0, 100.0, 1000.0, 10_000.0, 100_000.0)


def until_tick(now: float, tick: float) -> float:
    """Time from now to the next tick of period `tick` (a full period at a tick: a
    rounding error of a millionth of a period counts as being at the tick)."""
    left = tick - math.fmod(now, tick)
    return tick if left < 1e-6 * tick else left


def which_bucket(next_timer_us: float) -> int:
    """which_bucket(): the decade of the next timer's distance (no I/O waiters here)."""
    for i, limit in enumerate(_BUCKET_LIMITS_US):
        if next_timer_us < limit:
            return i
    return len(_BUCKET_LIMITS_US)


def typical_interval(intervals: List[float]) -> float:
    """get_typical_interval(): the mean of the recent sleeps if they are regular (their
    variance at most 400 us^2, or the mean above six standard deviations with at
    least 3/4 of them kept), dropping the longest one at a time while 3/4 remain;
    inf when there is no pattern."""
    values = [v for v in intervals if v >= 0.0]
    if len(values) < INTERVALS:
        return math.inf
    while True:
        n = len(values)
        avg = sum(values) / n
        variance = sum(v * v for v in values) / n - avg * avg
        if (avg * avg > 36.0 * variance and 4 * n >= 3 * INTERVALS) or variance <= 400.0:
            return avg
        if 4 * n <= 3 * INTERVALS:
            return math.inf
        values.remove(max(values))


@dataclass
class Menu:
    """The menu governor's state on one CPU: its last sleeps and the correction
    factors, by next-timer bucket, of how long it really slept against the timer."""

    tick_us: float                                      # 1e6 / HZ
    intervals: List[float] = field(default_factory=lambda: [-1.0] * INTERVALS)
    next_interval: int = 0
    correction: List[float] = field(
        default_factory=lambda: [float(RESOLUTION * DECAY)] * (len(_BUCKET_LIMITS_US) + 1))
    _bucket: int = 0
    _next_timer_us: float = 0.0

    def predict(self, now_us: float) -> float:
        """menu_select()'s predicted idle time in us for a sleep starting at now_us."""
        timer = until_tick(now_us, self.tick_us)
        self._next_timer_us = timer
        self._bucket = which_bucket(timer)
        scaled = timer * self.correction[self._bucket] / (RESOLUTION * DECAY)
        return min(scaled, typical_interval(self.intervals))

    def select(self, states: Tuple[IdleState, ...], now_us: float) -> IdleState:
        """The state for a sleep starting at now_us: menu_select() on the prediction,
        no deeper than the next tick allows (the tick is not stopped)."""
        predicted = self.predict(now_us)
        return menu_select(states, min(predicted, self._next_timer_us))

    def reflect(self, slept_us: float) -> None:
        """menu_update(): learn from a sleep that lasted slept_us."""
        b = self._bucket
        timer = self._next_timer_us
        measured = min(slept_us, timer)         # the tick woke it then at the latest
        factor = self.correction[b] - self.correction[b] / DECAY
        factor += RESOLUTION * measured / timer if timer > 0.0 else RESOLUTION
        self.correction[b] = factor if factor > 0.0 else 1.0
        self.intervals[self.next_interval] = measured
        self.next_interval = (self.next_interval + 1) % INTERVALS
