"""Fitting a will-it-scale model to a published scaling table: simulate cells (a thread
count under a kernel), and least-squares fit at most five preset costs on named
training cells, judging the rest (held out) by their residuals.

A cell's residual is log(simulated / published): throughputs span an order of
magnitude across a table, and a ratio treats 300k and 1.3M alike.
"""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..config import get_preset
from ..errors import ConfigError

Cell = Tuple[int, str]                     # (threads, kernel label)
MAX_FREE_PARAMS = 5                        # a published result is fitted with at most 5


@dataclass(frozen=True)
class Setup:
    """How a table's cells are simulated: the preset, the profile of each kernel label,
    the machine size, the test and its options."""

    preset: str
    kernels: Mapping[str, str]             # label -> profile name
    cpus: int
    test: str = "tlb_flush2"
    mode: str = "threads"
    warmup_ms: float = 2.0
    figure: str = "ops_per_sec"            # the simulated number a cell reports


def simulate_cell(setup: Setup, costs: Mapping[str, float], cell: Cell,
                  iterations: int) -> Dict[str, Any]:
    """One cell's will-it-scale run with the preset's costs overridden."""
    from ..workloads import will_it_scale
    threads, kernel = cell
    preset = get_preset(setup.preset, **dict(costs))
    return will_it_scale.run(setup.test, setup.mode, threads=threads, cpus=setup.cpus,
                             iterations=iterations, preset=preset,
                             profile=setup.kernels[kernel], warmup_ms=setup.warmup_ms)


def _simulate_one(args) -> Dict[str, Any]:
    return simulate_cell(*args)


def simulate(setup: Setup, costs: Mapping[str, float], cells: Sequence[Cell],
             iterations: int, workers: int = 1) -> Dict[Cell, Dict[str, Any]]:
    """Every cell (in worker processes when workers > 1: cells are independent)."""
    jobs = [(setup, dict(costs), c, iterations) for c in cells]
    if workers > 1 and len(cells) > 1:
        # the biggest cells first, so the pool does not end on one long tail
        order = sorted(range(len(jobs)), key=lambda i: -cells[i][0])
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(_simulate_one, [jobs[i] for i in order]))
        out = {cells[i]: r for i, r in zip(order, done)}
        return {c: out[c] for c in cells}
    return {c: simulate_cell(*j) for c, j in zip(cells, jobs)}


@dataclass
class Fit:
    """The fitted costs, the start values, the training cells and the evaluations."""

    start: Dict[str, float]
    fitted: Dict[str, float]
    training: List[Cell]
    evaluations: int = 0
    cost: float = float("nan")              # half the sum of squared log residuals
    iterations: int = 0
    stored: bool = False                    # read from the entry, not refitted now
    history: List[Dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"free_params": list(self.fitted), "start": self.start,
                "fitted": {k: _rounded(v) for k, v in self.fitted.items()},
                "training": [{"threads": t, "kernel": k} for t, k in self.training],
                "evaluations": self.evaluations, "iterations": self.iterations,
                "residual_cost": self.cost, "stored": self.stored}


def _rounded(value: float) -> float:
    """A fitted value as reported: costs in cycles to 0.1, shares (below 10) to 0.001."""
    return round(value, 1) if abs(value) >= 10 else round(value, 3)


def fit(setup: Setup, start: Mapping[str, float], bounds: Mapping[str, Tuple[float, float]],
        training: Sequence[Cell], published: Mapping[Cell, float], iterations: int,
        workers: int = 1, max_evaluations: int = 60, polish: int = 40,
        log: Optional[Callable[[str], None]] = None) -> Fit:
    """Least squares (scipy.optimize.least_squares, trust region) of the free costs in
    `start` on the training cells' log residuals, then a derivative-free polish
    (Nelder-Mead, up to `polish` evaluations) from the best point evaluated."""
    missing = [c for c in training if c not in published]
    if missing:
        raise ConfigError(f"training cell {missing[0]} has no published value",
                          field="training")

    def residuals(costs: Dict[str, float]) -> List[float]:
        sim = simulate(setup, costs, list(training), iterations, workers)
        return [math.log(sim[c][setup.figure] / published[c]) for c in training]
    return fit_costs(start, bounds, residuals, list(training), iterations,
                     max_evaluations=max_evaluations, polish=polish, log=log)


def fit_costs(start: Mapping[str, float], bounds: Mapping[str, Tuple[float, float]],
              residuals: Callable[[Dict[str, float]], Sequence[float]],
              training: List[Any], iterations: int, max_evaluations: int = 60,
              polish: int = 40, diff_step: float = 0.05,
              log: Optional[Callable[[str], None]] = None) -> Fit:
    """The least squares behind fit(), for any residuals(costs) (log residuals of the
    training figures, whatever they are): the trust region from `start` (each cost
    scaled by its start value), then the Nelder-Mead polish; the best point evaluated
    is the fit."""
    import numpy as np
    from scipy.optimize import least_squares, minimize

    names = list(start)
    if not 1 <= len(names) <= MAX_FREE_PARAMS:
        raise ConfigError(f"a fit takes 1..{MAX_FREE_PARAMS} free parameters, got "
                          f"{len(names)}", field="free_params")
    scale = np.array([float(start[n]) for n in names])
    lo = np.array([bounds[n][0] for n in names]) / scale
    hi = np.array([bounds[n][1] for n in names]) / scale
    result = Fit(dict(start), dict(start), training, iterations=iterations)

    def scaled(x):
        costs = {n: float(v * s) for n, v, s in zip(names, x, scale)}
        r = np.asarray(residuals(costs), dtype=float)
        result.evaluations += 1
        result.history.append({"costs": costs, "cost": float(0.5 * (r ** 2).sum())})
        if log:
            log(f"  evaluation {result.evaluations}: " + ", ".join(
                f"{n}={_rounded(v):g}" for n, v in costs.items()) + f"  cost {0.5 * (r ** 2).sum():.4f}")
        return r

    # trf's max_nfev leaves out the evaluations of its finite-difference Jacobian (one
    # per free parameter each step): max_evaluations counts every simulation
    sol = least_squares(scaled, np.ones(len(names)), bounds=(lo, hi), diff_step=diff_step,
                        x_scale=1.0, max_nfev=max(1, max_evaluations // (len(names) + 1)),
                        method="trf")
    result.fitted = {n: float(v * s) for n, v, s in zip(names, sol.x, scale)}
    result.cost = float(sol.cost)
    # a simulation is a step function of its costs: finite differences can stall the
    # trust region on a plateau, so a simplex search goes on from the best point
    # evaluated, and the best point of all is the fit
    if polish > 0:
        best = min(result.history, key=lambda h: h["cost"])
        x0 = np.array([best["costs"][n] for n in names]) / scale
        minimize(lambda x: 0.5 * float((scaled(x) ** 2).sum()), x0,
                 method="Nelder-Mead", bounds=list(zip(lo, hi)),
                 options={"maxfev": polish, "initial_simplex": _simplex(x0, lo, hi)})
    best = min(result.history, key=lambda h: h["cost"], default=None)
    if best is not None and best["cost"] < result.cost:
        result.fitted, result.cost = dict(best["costs"]), best["cost"]
    return result


def _simplex(x0, lo, hi, step: float = 0.15):
    """Nelder-Mead's first simplex: x0 and x0 with one coordinate 15% larger (smaller
    where that would leave the bounds)."""
    import numpy as np
    pts = [x0]
    for i in range(len(x0)):
        x = x0.copy()
        up = x0[i] * (1 + step)
        x[i] = up if up <= hi[i] else max(lo[i], x0[i] * (1 - step))
        pts.append(x)
    return np.array(pts)


def residual(simulated: float, published: float) -> float:
    """simulated / published - 1."""
    return simulated / published - 1.0
