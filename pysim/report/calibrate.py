"""Calibrate the kvm-2022 preset to the cover letter's table with a few free parameters.

The model is run for every cell; scipy's least_squares fits at most five named costs
(`FREE`) to the *training* cells only, by relative error, and the other cells are judged
held out.  Counts never depend on costs, so every evaluation re-runs the same events
with new prices.  No cell has a term of its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from ..config import Preset, get_preset
from ..workloads import mprotect_loop

# (operation, threads, write, profile) -> published cycles (cover letter, KVM guest)
PUBLISHED: Dict[Tuple[str, int, bool, str], float] = {
    ("PROT_READ", 1, True, "mmots"): 3494, ("PROT_READ", 1, True, "patched"): 2725,
    ("PROT_READ", 2, True, "mmots"): 8630, ("PROT_READ", 2, True, "patched"): 7788,
    ("PROT_READ|PROT_WRITE", 1, True, "mmots"): 3952,
    ("PROT_READ|PROT_WRITE", 1, True, "patched"): 2724,
    ("PROT_READ|PROT_WRITE", 2, True, "mmots"): 9075,
    ("PROT_READ|PROT_WRITE", 2, True, "patched"): 2865,
    # "both operations on the patched kernel take roughly ~1500 cycles (with either 1 or
    # 2 threads)" without the write
    ("PROT_READ", 1, False, "patched"): 1500, ("PROT_READ|PROT_WRITE", 1, False, "patched"): 1500,
    ("PROT_READ", 2, False, "patched"): 1500, ("PROT_READ|PROT_WRITE", 2, False, "patched"): 1500,
}
# fitted on these; every other published cell is held out
TRAINING = (
    ("PROT_READ", 1, True, "mmots"), ("PROT_READ|PROT_WRITE", 1, True, "patched"),
    ("PROT_READ|PROT_WRITE", 2, True, "mmots"), ("PROT_READ", 2, True, "patched"),
    ("PROT_READ", 1, False, "patched"),
)
FREE = ("mprotect_base", "flush_base", "ipi_deliver", "walk_ref")
# The guest kernel's configuration is not in the cover letter.  PTI on and no INVPCID in
# the guest is an assumption: it is what lets a flush cost the loop its own user-space
# TLB entries (invalidate_user_asid), the only mechanism the model has for the -22% and
# for PROT_READ|WRITE costing more with the write than without.  The report also shows
# the table with PTI off.
ENVIRONMENT: Dict[str, Any] = {"pti": True, "invpcid": False}

Cell = Tuple[str, int, bool, str]


@dataclass
class Fit:
    """The fitted values, the residual of every cell and which cells were held out."""

    preset: Preset
    start: Dict[str, float]
    values: Dict[str, float]
    simulated: Dict[Cell, float]
    residuals: Dict[Cell, float] = field(default_factory=dict)
    training: Tuple[Cell, ...] = TRAINING
    cost: float = 0.0
    nfev: int = 0

    def as_dict(self) -> Dict[str, Any]:
        return {
            "free_params": list(self.values), "start": self.start, "fitted": self.values,
            "environment": ENVIRONMENT, "cost": self.cost, "evaluations": self.nfev,
            "cells": [{"op": c[0], "threads": c[1], "write": c[2], "profile": c[3],
                       "published": PUBLISHED[c], "simulated": self.simulated[c],
                       "residual": self.residuals[c], "held_out": c not in self.training}
                      for c in PUBLISHED],
        }


def simulate(preset: Preset, cells: Sequence[Cell], iterations: int = 12,
             env: Optional[Dict[str, Any]] = None, **kw: Any) -> Dict[Cell, Any]:
    """Run the loop once per (threads, write, profile) and pick the cells' LoopResults."""
    env = ENVIRONMENT if env is None else env
    runs: Dict[Tuple[int, bool, str], Any] = {}
    out: Dict[Cell, Any] = {}
    for op, threads, write, profile in cells:
        key = (threads, write, profile)
        if key not in runs:
            runs[key] = mprotect_loop(threads=threads, write=write, profile=profile,
                                      preset=preset, iterations=iterations, warmup=3,
                                      checker=False, **env, **kw)
        out[(op, threads, write, profile)] = runs[key]
    return out


def fit(base: Any = "kvm-2022-start", free: Sequence[str] = FREE, iterations: int = 12,
        training: Sequence[Cell] = TRAINING) -> Fit:
    """Least-squares fit of `free` (at most five costs) on the training cells."""
    from scipy.optimize import least_squares

    if len(free) > 5:
        raise ValueError(f"at most five free parameters, got {len(free)}")
    base = get_preset(base)
    x0 = np.array([base.cost(k) for k in free], dtype=float)
    training = tuple(training)

    def residual(x: np.ndarray) -> np.ndarray:
        p = base.replace(**dict(zip(free, map(float, x))))
        sim = simulate(p, training, iterations)
        return np.array([(sim[c].cycles[c[0]] - PUBLISHED[c]) / PUBLISHED[c] for c in training])

    sol = least_squares(residual, x0, bounds=(0.0, np.inf), x_scale=np.maximum(x0, 100.0),
                        diff_step=0.05, max_nfev=60)
    values = {k: float(round(v, 1)) for k, v in zip(free, sol.x)}
    fitted = base.replace(name="kvm-2022", **values)
    sim = simulate(fitted, tuple(PUBLISHED), iterations)
    cycles = {c: sim[c].cycles[c[0]] for c in PUBLISHED}
    return Fit(fitted, dict(zip(free, map(float, x0))), values, cycles,
               {c: (cycles[c] - PUBLISHED[c]) / PUBLISHED[c] for c in PUBLISHED},
               training, float(sol.cost), int(sol.nfev))
