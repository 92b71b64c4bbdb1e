"""Fit a preset to a hostbench CSV (`pysim calibrate`) and compare a preset with one
(`pysim validate`).

Measured cycles are the cell's median minus the 'empty' cell's median (the timer's
own cost).  The fit, in order:
1. direct measurements: each DIRECT cost is set from one cell whose model cycles grow
   linearly with it, k times per operation (k = 1 for most; the model tells k by running
   the cell with the cost at 0 and at 1000): value = (measured - model(cost = 0)) / k,
   in the order listed (the syscall from getppid first, since every other cell contains
   it);
2. least squares on the TRAINING cells, by relative error, for the FREE costs (at most
   eight; the model's cycles are linear in its costs, so the fit is linear on slopes
   taken by finite differences), as
   pysim.report.calibrate does for kvm-2022 with scipy;
   steps 1 and 2 alternate ROUNDS times, since they share cells;
3. every other cell is held out, and its residual reported by group.
Counts never depend on costs: they are compared, not fitted.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config import Preset, get_preset
from ..config.presets import COST_KEYS, MAX_FREE_PARAMS
from ..errors import ConfigError
from .hostbench import COLUMNS, COUNT_COLUMNS, Scenario
from .model import HostConfig, host_config, simulate

Key = Tuple[Tuple[str, int, int, int], str]          # ((scenario, n, threads, write), cell)

# cost <- the cell it is measured from
DIRECT: Tuple[Tuple[str, Key], ...] = (
    ("syscall", (("getppid", 1, 1, 0), "getppid")),
    ("mprotect_base", (("mprotect_noop", 1, 1, 0), "mprotect_noop")),
    ("fault_anon", (("fault_anon", 1, 1, 0), "fault")),
    ("fault_zero_page", (("fault_zero", 1, 1, 0), "fault")),
    ("fault_cow_copy", (("fault_cow", 1, 1, 0), "fault")),
    ("fault_thp", (("fault_thp", 1, 1, 0), "fault")),
    ("munmap_base", (("munmap", 1, 1, 0), "munmap")),
    ("madvise_base", (("dontneed", 1, 1, 0), "dontneed")),
    # mprotect of one unpopulated page: the call's VMA work (mprotect_fixup: vm_flags,
    # vma_set_page_prot, the walk down to an empty PMD, the gather) with no PTE and no
    # flush: per_vma, the first VMA's setup, beyond mprotect_noop's early return
    ("per_vma", (("seed_unpop", 1, 1, 0), "prot_read")),
    # the store after mprotect(RW) flushed the page: one TLB refill, a two-dimensional
    # walk of 24 references in this guest, with the page tables just touched (cache-hot)
    ("walk_ref", (("seed", 1, 1, 1), "write")),
    # 33 pages, the ceiling: 33 INVLPGs in flush_tlb_func's loop; the kernel's per-page
    # part of the flush (the INVLPG instruction is the hardware cost invlpg)
    ("flush_per_page", (("mprotect", 33, 1, 0), "prot_read")),
    # mprotect(PROT_READ) of one THP: change_huge_pmd() once (PMD lock, the exchange of
    # pmdp_invalidate_ad, the new entry) and one flush at the huge stride
    ("change_huge_pmd", (("thp", 1, 1, 0), "prot_read")),
)
FREE: Tuple[str, ...] = ("flush_base", "ipi_deliver", "per_pte", "can_change_pte_writable",
                         "per_pte_none", "per_extra_vma", "per_page_zap", "zap_huge_pmd")
TRAINING: Tuple[Key, ...] = (
    (("seed", 1, 1, 1), "prot_read"),            # flush_base
    (("seed", 1, 2, 1), "prot_read"),            # ipi_deliver
    (("mprotect", 4096, 1, 0), "prot_read"),     # per_pte
    (("mprotect", 4096, 1, 0), "prot_rw"),       # can_change_pte_writable
    (("span", 4096, 1, 0), "prot_read"),         # per_pte_none
    (("kvma", 16, 1, 0), "prot_read"),           # per_extra_vma
    (("munmap", 4096, 1, 0), "munmap"),          # per_page_zap
    (("munmap_thp", 4, 1, 0), "munmap"),         # zap_huge_pmd
)
BASE = "kvm-2022-start"
ROUNDS = 4               # alternations of the direct step and the least-squares step


@dataclass
class Bench:
    """A hostbench CSV: its header and, per cell, the row (numbers parsed)."""

    path: str
    info: Dict[str, str]
    rows: Dict[Key, Dict[str, Any]]

    def measured(self, key: Key) -> float:
        """The cell's median cycles less the timer's own (the empty region's median)."""
        empty = self.rows.get((("empty", 1, 1, 0), "empty"))
        return self.rows[key]["median"] - (empty["median"] if empty else 0.0)

    def scenarios(self) -> List[Scenario]:
        """The scenarios the CSV holds, in its order."""
        seen: Dict[Tuple[str, int, int, int], Scenario] = {}
        for (sk, _), r in self.rows.items():
            seen.setdefault(sk, Scenario(r["group"], *sk))
        return list(seen.values())

    def has_counts(self) -> bool:
        """Whether the rows carry tracepoint counts."""
        return any(r["tlb_local"] is not None for r in self.rows.values())


def read_bench(path: str) -> Bench:
    """Parse a hostbench CSV; ConfigError naming the file and line on anything odd."""
    try:
        with open(path, newline="") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read {path!r}: {e.strerror}", field="csv") from None
    info: Dict[str, str] = {}
    body: List[Tuple[int, str]] = []
    for i, line in enumerate(lines, 1):
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep and not body:
                info[key.strip()] = value.strip()
        elif line.strip():
            body.append((i, line))
    if not body:
        raise ConfigError(f"{path}: no header row", field="csv")
    header = next(csv.reader([body[0][1]]))
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{path} line {body[0][0]}: column {missing[0]!r} missing",
                          field=missing[0])
    rows: Dict[Key, Dict[str, Any]] = {}
    for lineno, line in body[1:]:
        values = next(csv.reader([line]))
        if len(values) != len(header):
            raise ConfigError(f"{path} line {lineno}: {len(values)} fields, header has "
                              f"{len(header)}", field="csv")
        r: Dict[str, Any] = dict(zip(header, values))
        try:
            for c in ("n", "threads", "write", "samples"):
                r[c] = int(r[c])
            for c in ("median", "q1", "q3", "run_min", "run_max"):
                r[c] = float(r[c])
                if not math.isfinite(r[c]) or r[c] < 0:
                    raise ValueError(r[c])
            for c in COUNT_COLUMNS:
                r[c] = int(r[c]) if r[c] != "" else None
            r["misplaced"] = int(r.get("misplaced") or 0)
        except ValueError:
            bad = next(c for c in COLUMNS if c in r and not _ok(r[c], c))
            raise ConfigError(f"{path} line {lineno}: {bad} {r[bad]!r} is not a valid "
                              f"number", field=bad) from None
        rows[((r["scenario"], r["n"], r["threads"], r["write"]), r["cell"])] = r
    return Bench(path, info, rows)


def _ok(value: Any, column: str) -> bool:
    """Whether a CSV field holds a value its column accepts."""
    if column in ("group", "scenario", "cell"):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value) and value >= 0
    if column in COUNT_COLUMNS and value == "":
        return True
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v >= 0 and (column not in ("n", "threads", "write",
                                                           "samples") or v.is_integer())


# ---------------------------------------------------------------- the model
class Evaluator:
    """Model cycles of chosen cells under a preset, simulating each scenario once."""

    def __init__(self, bench: Bench, cfg: HostConfig):
        self.bench, self.cfg = bench, cfg
        self.scen = {s.key: s for s in bench.scenarios()}

    def run(self, preset: Preset, keys: Sequence[Key]) -> Dict[Key, Tuple[float, Dict[str, int]]]:
        """(cycles, counts) per key under the preset."""
        out: Dict[Key, Tuple[float, Dict[str, int]]] = {}
        for sk in dict.fromkeys(k[0] for k in keys):
            for cell, v in simulate(self.scen[sk], preset, self.cfg).items():
                out[(sk, cell)] = v
        return {k: out[k] for k in keys}


@dataclass
class HostFit:
    """What a calibration produced: the preset, how each cost was set, the residuals."""

    preset: Preset
    direct: Dict[str, float]
    free: Dict[str, float]
    training: Tuple[Key, ...]
    rows: List[Dict[str, Any]] = field(default_factory=list)     # compare() rows


def _set(p: Preset, values: Dict[str, float]) -> Preset:
    """p with costs replaced, keeping its name (sources are written by the caller)."""
    return p.replace(name=p.name, **values)


def calibrate(bench: Bench, base: Any = BASE, free: Sequence[str] = FREE,
              training: Sequence[Key] = TRAINING, name: str = "this-host",
              cfg: Optional[HostConfig] = None,
              log: Callable[[str], None] = lambda s: None) -> HostFit:
    """Fit a preset to the bench (DIRECT costs, then FREE by least squares)."""
    from scipy.optimize import lsq_linear

    if len(free) > MAX_FREE_PARAMS:
        raise ConfigError(f"at most {MAX_FREE_PARAMS} free parameters, got {len(free)}",
                          field="free")
    for k in list(free) + [c for c, _ in DIRECT]:
        if k not in COST_KEYS:
            raise ConfigError(f"{k!r} is not a cost", field="free", allowed=COST_KEYS)
    cfg = cfg or host_config(bench.info)
    needed = [k for _, k in DIRECT] + list(training)
    absent = [k for k in needed if k not in bench.rows]
    if absent:
        raise ConfigError(f"{bench.path}: no row for {absent[0][0][0]} n={absent[0][0][1]} "
                          f"threads={absent[0][0][2]} cell {absent[0][1]} (run the full "
                          f"pysim hostbench)", field="csv")
    ev = Evaluator(bench, cfg)
    ghz = float(bench.info.get("tsc_ghz") or get_preset(base).ghz)
    p = dataclasses.replace(get_preset(base), name=name, ghz=ghz)
    direct: Dict[str, float] = {}
    training = tuple(training)
    y = np.array([bench.measured(k) for k in training])
    x = np.array([p.cost(k) for k in free], dtype=float)
    # the direct costs and the free ones share cells (every cell has a syscall, most a
    # flush): alternate the two steps until they agree
    for rnd in range(ROUNDS):
        for cost, key in DIRECT:
            zero, k = _direct_line(ev, p, cost, key)
            direct[cost] = float(round(max(0.0, (bench.measured(key) - zero) / k), 1))
            p = _set(p, {cost: direct[cost]})
            log(f"round {rnd + 1} direct: {cost} = ({bench.measured(key):.0f} measured - "
                f"{zero:.0f} model without it) / {k:g} = {direct[cost]:g}")
        c0 = np.array([ev.run(p, training)[k][0] for k in training])
        slopes = np.zeros((len(training), len(free)))
        for j, k in enumerate(free):
            step = max(abs(x[j]) * 0.5, 50.0)
            bumped = _set(p, {k: float(x[j] + step)})
            c1 = np.array([ev.run(bumped, training)[t][0] for t in training])
            slopes[:, j] = (c1 - c0) / step
        # relative residuals of the linearised model: (c0 + slopes (x' - x) - y) / y
        a = slopes / y[:, None]
        b = (y - c0 + slopes @ x) / y
        x = lsq_linear(a, b, bounds=(0.0, np.inf)).x
        p = _set(p, {k: float(round(v, 1)) for k, v in zip(free, x)})
        log(f"round {rnd + 1} least squares: " + ", ".join(
            f"{k}={v:.1f}" for k, v in zip(free, x)))
    fitted = {k: float(round(v, 1)) for k, v in zip(free, x)}
    p = _set(p, fitted)
    sources = dict(p.sources)
    sources["ghz"] = (f"measured: the cycle counter's rate ({bench.info.get('tsc_ghz')} GHz "
                      f"in {_basename(bench.path)}); hostbench's cycles are its ticks")
    for cost, key in DIRECT:
        zero, k = _direct_line(ev, p, cost, key)
        per = f", divided by the {k:g} times an operation pays it" if k != 1 else ""
        raw = (bench.measured(key) - zero) / k
        clip = (f" (the difference is {raw:.1f}: the rest of the model already exceeds "
                f"the cell, so the cost is clipped at 0)" if raw < 0 else "")
        sources[cost] = (f"measured: {_cell_name(key)} in {_basename(bench.path)} "
                         f"({bench.measured(key):.0f} cycles less the timer) minus the "
                         f"model's cycles without it{per} = {direct[cost]:g}{clip}")
    for k in free:
        sources[k] = (f"fitted: pysim calibrate (least squares, relative error) on the "
                      f"training cells of {_basename(bench.path)}, from "
                      f"{get_preset(base).cost(k):g} ({base}) to {fitted[k]:g}")
    for k in COST_KEYS:
        if k not in fitted and k not in direct:
            sources[k] = f"{base} (not fitted): {p.sources[k]}"
    desc = (f"{bench.info.get('cpu', '?')}, {bench.info.get('cpus', '?')} CPUs, kernel "
            f"{bench.info.get('kernel', '?')}, hypervisor {bench.info.get('hypervisor', '?')};"
            f" fitted by pysim calibrate to {_basename(bench.path)} (profile {cfg.profile}, "
            f"pti {cfg.pti}, pcid {cfg.pcid}, invpcid {cfg.invpcid})")
    p = dataclasses.replace(p, sources=sources, free_params=tuple(free), description=desc,
                            features={"pcid": cfg.pcid, "invpcid": cfg.invpcid,
                                      "invlpgb": cfg.invlpgb,
                                      "rar": False})      # hostbench does not detect RAR
    fit = HostFit(p, direct, fitted, training)
    fit.rows = compare(bench, p, cfg, training=training, log=log)
    return fit


def _direct_line(ev: Evaluator, p: Preset, cost: str, key: Key) -> Tuple[float, float]:
    """(model cycles of the cell with the cost at 0, times per operation the cell pays
    it): the cell's cycles are linear in each cost, so two runs give the line."""
    zero = ev.run(_set(p, {cost: 0.0}), [key])[key][0]
    k = (ev.run(_set(p, {cost: 1000.0}), [key])[key][0] - zero) / 1000.0
    if k <= 0:
        raise ConfigError(f"{_cell_name(key)} does not depend on {cost}: it cannot "
                          f"measure it", field=cost)
    return zero, round(k, 3)


def _basename(path: str) -> str:
    """The file name of a path."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _cell_name(key: Key) -> str:
    """A cell as 'scenario n=N threads=T [write] cell'."""
    (sc, n, t, w), cell = key
    return f"{sc} n={n} threads={t}{' write' if w else ''} {cell}"


# ---------------------------------------------------------------- comparing
def compare(bench: Bench, preset: Any, cfg: Optional[HostConfig] = None,
            training: Sequence[Key] = TRAINING,
            log: Callable[[str], None] = lambda s: None) -> List[Dict[str, Any]]:
    """Model vs machine for every cell: cycles, relative error, counts, and whether the
    cell took part in the fit (training or direct)."""
    cfg = cfg or host_config(bench.info)
    ev = Evaluator(bench, cfg)
    fitted_on = set(training) | {k for _, k in DIRECT}
    rows = []
    model = ev.run(get_preset(preset) if not isinstance(preset, Preset) else preset,
                   [k for k in bench.rows if k[0][0] != "empty"])
    for key, r in bench.rows.items():
        if key[0][0] == "empty":
            continue
        cyc, counts = model[key]
        meas = bench.measured(key)
        host_counts = {c: r[c] for c in COUNT_COLUMNS}
        rows.append({"key": key, "group": r["group"], "cell": _cell_name(key),
                     "measured": meas, "model": cyc,
                     "error": (cyc - meas) / meas if meas > 0 else float("nan"),
                     "host_counts": host_counts, "model_counts": counts,
                     "counts_match": None if host_counts["tlb_local"] is None
                     else host_counts == counts,
                     "role": "fit" if key in fitted_on else "held-out"})
    return rows


def summary(rows: Sequence[Dict[str, Any]], tol: float = 0.25) -> List[str]:
    """Held-out residuals by group: cells, median |error|, share within tol."""
    out = []
    held = [r for r in rows if r["role"] == "held-out"]
    groups: Dict[str, List[float]] = {}
    for r in held:
        groups.setdefault(r["group"], []).append(abs(r["error"]))
    out.append(f"{'group':10} {'cells':>5} {'median |err|':>13} {'within ' + str(round(tol * 100)) + '%':>11}")
    for g, errs in groups.items():
        within = sum(e <= tol for e in errs)
        out.append(f"{g:10} {len(errs):5d} {statistics.median(errs):12.1%} "
                   f"{within:5d}/{len(errs):<5d}")
    allerr = [abs(r["error"]) for r in held]
    if allerr:
        within = sum(e <= tol for e in allerr)
        out.append(f"{'all':10} {len(allerr):5d} {statistics.median(allerr):12.1%} "
                   f"{within:5d}/{len(allerr):<5d} ({within / len(allerr):.0%})")
    return out


def table(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Model vs machine side by side: cycles, error, and the five counts of each."""
    cols = "/".join(COUNT_COLUMNS)
    out = [f"{'cell':42} {'role':8} {'machine':>12} {'model':>12} {'error':>7}  "
           f"counts machine | model ({cols})"]
    for r in rows:
        hc = r["host_counts"]
        hs = "-" if hc["tlb_local"] is None else " ".join(str(hc[c]) for c in COUNT_COLUMNS)
        ms = " ".join(str(r["model_counts"][c]) for c in COUNT_COLUMNS)
        flag = "" if r["counts_match"] in (None, True) else "  COUNT MISMATCH"
        out.append(f"{r['cell']:42} {r['role']:8} {r['measured']:12.0f} {r['model']:12.0f} "
                   f"{r['error']:+7.1%}  {hs:>11} | {ms}{flag}")
    return out
