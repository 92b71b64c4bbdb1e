"""Experiments: named functions of keyword parameters that return a flat dict of figures.

A sweep (pysim.sweep) crosses parameter values and calls one registered experiment per
point.  Register your own with the decorator:

    from pysim.experiments import experiment

    @experiment("my_walks")
    def my_walks(pages: int, profile: str = "patched", seed: int = 0) -> dict:
        ...
        return {"cycles": r.cycles, "walks": r.events["walks"]}

The signature is the experiment's schema: a grid may only name parameters the function
accepts, required ones must be given, and values are checked against the annotations
(int, float, bool, str, Optional/Union/Literal of those) before any point runs.  A
parameter named `seed` receives the point's derived seed unless the grid sets it.  An
optional `check(params)` runs on every point's full parameter set up front, to reject
combinations (busy + lazy > cpus - 1, ...) with a ConfigError naming the key.

Figures are numbers (or short strings); names starting with "wall_" are wall-clock
times, the only figures allowed to differ between runs of the same point.
"""
from __future__ import annotations

import inspect
import math
import numbers
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Literal, Mapping, Optional, Tuple, Union

from .errors import ConfigError

__all__ = ["experiment", "Experiment", "EXPERIMENTS", "get_experiment", "WALL_PREFIX",
           "mprotect_range", "mprotect_loop", "figures_of", "split_overrides"]

WALL_PREFIX = "wall_"        # figures with this prefix are wall-clock, not deterministic
COST_PREFIX = "cost_"        # cost_<key> parameters override preset costs
_MISSING = inspect.Parameter.empty


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its function, parameter schema and optional point check."""

    name: str
    fn: Callable[..., Mapping[str, Any]]
    check: Optional[Callable[[Dict[str, Any]], None]] = None
    description: str = ""
    params: Dict[str, inspect.Parameter] = field(default_factory=dict)
    types: Dict[str, Any] = field(default_factory=dict)
    var_kwargs: bool = False

    def __call__(self, **params: Any) -> Mapping[str, Any]:
        return self.fn(**params)

    @property
    def takes_seed(self) -> bool:
        return "seed" in self.params or self.var_kwargs

    def defaults(self) -> Dict[str, Any]:
        """Parameters with default values."""
        return {k: p.default for k, p in self.params.items() if p.default is not _MISSING}

    def required(self) -> Tuple[str, ...]:
        return tuple(k for k, p in self.params.items() if p.default is _MISSING)

    def check_name(self, key: str, where: str) -> None:
        """ConfigError unless the function accepts a parameter called key."""
        if key not in self.params and not self.var_kwargs:
            raise ConfigError(f"{where}: experiment {self.name!r} has no parameter {key!r}; "
                              f"its parameters: {', '.join(self.params)}",
                              field=key, allowed=tuple(self.params))

    def coerce(self, key: str, value: Any, where: str) -> Any:
        """value checked against key's annotation; ints become floats for float params."""
        ann = self.types.get(key, Any)
        ok, out = _conform(value, ann)
        if not ok:
            raise ConfigError(f"{where}: {key} must be {_describe(ann)}, got {value!r} "
                              f"({type(value).__name__})", field=key)
        return out


def _conform(value: Any, ann: Any) -> Tuple[bool, Any]:
    """(matches, normalised value) for a scalar value against a type annotation."""
    if ann is Any or ann is _MISSING:
        return True, value
    origin = typing.get_origin(ann)
    if origin is Union:
        for arg in typing.get_args(ann):
            ok, out = _conform(value, arg)
            if ok:
                return True, out
        return False, value
    if origin is Literal:
        for allowed in typing.get_args(ann):
            if type(value) is type(allowed) and value == allowed:
                return True, value
        return False, value
    if ann is type(None):
        return value is None, value
    if ann is bool:
        return isinstance(value, bool), value
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if ann is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return math.isfinite(value), float(value)
    if ann is str:
        return isinstance(value, str), value
    if isinstance(ann, type):
        return isinstance(value, ann), value
    return True, value                                  # an annotation we do not check


def _describe(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is Union:
        return " or ".join(_describe(a) for a in typing.get_args(ann))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "None"
    if ann is float:
        return "a number"
    if isinstance(ann, type):
        return {"int": "an integer", "bool": "true or false", "str": "a string"}.get(
            ann.__name__, ann.__name__)
    return str(ann)


EXPERIMENTS: Dict[str, Experiment] = {}


def experiment(name: str, *, check: Optional[Callable[[Dict[str, Any]], None]] = None,
               description: str = "") -> Callable:
    """Decorator registering fn as experiment `name` (fn is returned unchanged)."""
    if not isinstance(name, str) or not name:
        raise ConfigError("experiment name must be a non-empty string", field="experiment")

    def register(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:                       # unresolvable annotations: check nothing
            hints = {}
        params: Dict[str, inspect.Parameter] = {}
        var_kw = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params[p.name] = p
            elif p.kind is p.VAR_POSITIONAL:
                continue
            else:
                raise ConfigError(f"experiment {name!r}: parameter {p.name!r} is "
                                  f"positional-only; experiments take keywords",
                                  field=p.name)
        old = EXPERIMENTS.get(name)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != \
                (fn.__module__, fn.__qualname__):
            raise ConfigError(f"experiment {name!r} is already registered by "
                              f"{old.fn.__module__}.{old.fn.__qualname__}",
                              field="experiment")
        doc = description or (inspect.getdoc(fn) or "").split("\n\n")[0]
        EXPERIMENTS[name] = Experiment(
            name=name, fn=fn, check=check, description=doc, params=params,
            types={k: hints.get(k, Any) for k in params}, var_kwargs=var_kw)
        return fn

    return register


def get_experiment(name: Any) -> Experiment:
    """The registered experiment called name (ConfigError listing the known ones)."""
    if isinstance(name, Experiment):
        return name
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ConfigError(f"experiment {name!r} unknown; registered: "
                          f"{', '.join(sorted(EXPERIMENTS))}", field="experiment",
                          allowed=tuple(sorted(EXPERIMENTS)))
    return EXPERIMENTS[name]


def figures_of(result: Any, prefix: str = "") -> Dict[str, Any]:
    """A flat {name: number} dict from a result: dicts are flattened with "_" joins,
    objects with as_dict() are converted, numpy scalars become Python numbers."""
    if hasattr(result, "as_dict") and not isinstance(result, Mapping):
        result = result.as_dict()
    if not isinstance(result, Mapping):
        raise TypeError(f"an experiment must return a dict of figures, got "
                        f"{type(result).__name__}")
    out: Dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(figures_of(value, prefix=f"{name}_"))
            continue
        out[name] = scalar(value, name)
    return out


def scalar(value: Any, name: str) -> Any:
    """A figure as a plain Python bool, int, float or str (TypeError otherwise)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:   # numpy 0-d
        return scalar(value.item(), name)
    raise TypeError(f"figure {name!r} must be a number, bool or string, got "
                    f"{type(value).__name__}")


# ====================================================================== built-ins
_BIG_BASE = 0x100000000000       # 16 TiB, 2 MiB aligned, far from the default mmap area
_PMD_PAGES = 512


def _resolve_roles(cpus: int, busy: Any, lazy: Any) -> Tuple[int, int]:
    """busy / lazy as counts among the cpus - 1 CPUs besides the initiator ("rest" = all
    those not otherwise assigned)."""
    others = cpus - 1
    if busy == "rest" and lazy == "rest":
        raise ConfigError("busy and lazy cannot both be 'rest'", field="lazy")
    if busy == "rest":
        busy = others - lazy
    if lazy == "rest":
        lazy = others - busy
    return busy, lazy


_ROLE_KEYS = ("pages", "vmas", "cpus", "busy", "lazy", "thp_fraction", "profile", "preset",
              "seed")
_LOOP_KEYS = ("threads", "write", "pages", "iterations", "profile", "preset", "checker",
              "seed")


def split_overrides(overrides: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Extra experiment parameters as (profile field overrides, preset cost overrides):
    tlb_single_page_flush_ceiling=64, pti=True, cost_invlpg=150, ... (ConfigError
    otherwise).  Costs carry the cost_ prefix: their names (invlpg, ...) are also
    event counters, which are figures."""
    from .config import COST_KEYS, FEATURES, PROFILE_FIELDS
    fields = PROFILE_FIELDS + tuple(FEATURES)
    prof: Dict[str, Any] = {}
    costs: Dict[str, Any] = {}
    for key, value in overrides.items():
        if key in fields:
            prof[key] = value
        elif key.startswith(COST_PREFIX) and key[len(COST_PREFIX):] in COST_KEYS:
            costs[key[len(COST_PREFIX):]] = value
        else:
            raise ConfigError(f"parameter {key!r} unknown: not a parameter of the experiment, "
                              f"a profile field ({', '.join(fields)}) or a preset cost "
                              f"named {COST_PREFIX}<key> (keys: {', '.join(COST_KEYS)})",
                              field=key, allowed=fields + tuple(COST_PREFIX + k
                                                                for k in COST_KEYS))
    return prof, costs


def _check_overrides(p: Dict[str, Any], own: Tuple[str, ...], preset_default: str) -> None:
    from .config import get_preset, resolve
    prof, costs = split_overrides({k: v for k, v in p.items() if k not in own})
    resolve(p.get("profile", "patched"), get_preset(p.get("preset", preset_default), **costs),
            **prof)


def _check_mprotect_range(p: Dict[str, Any]) -> None:
    cpus, pages, vmas = p.get("cpus", 1), p["pages"], p.get("vmas", 1)
    if pages < 1:
        raise ConfigError(f"pages must be >= 1, got {pages}", field="pages")
    if pages > 1 << 27:
        raise ConfigError(f"pages must be <= {1 << 27} (512 GiB), got {pages}",
                          field="pages")
    if not 1 <= cpus <= 4096:
        raise ConfigError(f"cpus must be 1..4096, got {cpus}", field="cpus")
    if not 1 <= vmas <= pages:
        raise ConfigError(f"vmas must be 1..pages ({pages}), got {vmas}", field="vmas")
    frac = p.get("thp_fraction", 0.0)
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(f"thp_fraction must be in [0, 1], got {frac}",
                          field="thp_fraction")
    for key in ("busy", "lazy"):
        v = p.get(key, 0)
        if v != "rest" and (isinstance(v, str) or v < 0):
            raise ConfigError(f"{key} must be a count >= 0 or 'rest', got {v!r}", field=key)
    busy, lazy = _resolve_roles(cpus, p.get("busy", 0), p.get("lazy", 0))
    if busy < 0 or lazy < 0 or busy + lazy > cpus - 1:
        raise ConfigError(f"busy ({p.get('busy', 0)}) + lazy ({p.get('lazy', 0)}) must be "
                          f"at most cpus - 1 = {cpus - 1} (CPU 0 runs the mprotect)",
                          field="busy" if p.get("busy", 0) else "lazy")
    _check_overrides(p, _ROLE_KEYS, "skylake")


def _layout(pages: int, vmas: int, thp_fraction: float) -> list:
    """[(start_page, end_page, huge)] pieces of the range: the THP part first (whole 2 MiB
    regions), then 4K pages; VMA boundaries split equally, rounded to 2 MiB in the THP
    part so that every THP stays whole."""
    n_thp = int(thp_fraction * pages) // _PMD_PAGES
    thp_end = n_thp * _PMD_PAGES
    cuts = {0, pages, thp_end}
    for i in range(1, vmas):
        c = (pages * i) // vmas
        if c < thp_end:
            c = (c // _PMD_PAGES) * _PMD_PAGES
        cuts.add(c)
    cuts_sorted = sorted(cuts)
    return [(a, b, a < thp_end) for a, b in zip(cuts_sorted, cuts_sorted[1:]) if b > a]


@experiment("mprotect_range", check=_check_mprotect_range)
def mprotect_range(pages: int, vmas: int = 1, cpus: int = 1,
                   busy: Union[int, Literal["rest"]] = 0,
                   lazy: Union[int, Literal["rest"]] = 0,
                   thp_fraction: float = 0.0, profile: str = "patched",
                   preset: str = "skylake", seed: int = 0,
                   **overrides: Any) -> Dict[str, Any]:
    """One mprotect(PROT_READ) over `pages` populated anonymous pages in `vmas` VMAs.

    CPU 0 runs the process's main thread, which maps the range (MAP_FIXED pieces with
    alternating RW / RWX so neighbours do not merge; the first `thp_fraction` of the
    range as 2 MiB THPs), populates it with writes (MAP_POPULATE) and times one
    mprotect(PROT_READ) over all of it.  Of the other CPUs, `busy` run a busy thread of
    the same process, `lazy` ran one that went to sleep (lazy TLB), and the rest run a
    thread of another process; "rest" means all the CPUs not otherwise assigned.
    Any other parameter overrides a profile field (tlb_single_page_flush_ceiling, pti,
    pcid, ...) or, prefixed cost_, a preset cost (cost_invlpg, cost_ipi_send, ...).  Returns the call's cycles (initiator; all CPUs), its breakdown, every event count,
    the VMA and THP counts and the wall time of the call.
    """
    import mmucore

    from .constants import (MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, PAGE_SIZE,
                            PROT_EXEC, PROT_READ, PROT_WRITE)
    from .machine import BREAKDOWN, KERNEL_COUNTERS, Machine

    t_start = time.perf_counter()
    busy, lazy = _resolve_roles(cpus, busy, lazy)
    from .config import get_preset
    prof_over, costs = split_overrides(overrides)
    m = Machine(cpus=cpus, preset=get_preset(preset, **costs), profile=profile,
                checker=False, seed=seed, **prof_over)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    others = proc.thread                                 # same process
    cpu = 1
    for _ in range(busy):
        others(cpu=cpu).busy()
        cpu += 1
    for _ in range(lazy):
        others(cpu=cpu).sleep()
        cpu += 1
    if cpu < cpus:
        idle = m.process()
        for c in range(cpu, cpus):
            idle.thread(cpu=c)
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE
    n_thp = 0
    pieces = _layout(pages, vmas, thp_fraction)
    for i, (a, b, huge) in enumerate(pieces):
        prot = PROT_READ | PROT_WRITE | (PROT_EXEC if i % 2 else 0)
        t0.mmap((b - a) * PAGE_SIZE, prot, flags, addr=_BIG_BASE + a * PAGE_SIZE, huge=huge)
        if huge:
            n_thp += (b - a) // _PMD_PAGES
    vmas_before = m.mms[0].vmas.map_count
    t_call = time.perf_counter()
    r = t0.mprotect(_BIG_BASE, pages * PAGE_SIZE, PROT_READ)
    t_end = time.perf_counter()
    out: Dict[str, Any] = {
        "cycles": float(r.cycles),
        "cycles_all_cpus": float(sum(r.cpu_cycles.values())),
        "cycles_remote": float(sum(v for c, v in r.cpu_cycles.items() if c != r.cpu)),
    }
    for cat in BREAKDOWN:
        out[f"cycles_{cat}"] = float(r.breakdown.get(cat, 0.0))
    for name in KERNEL_COUNTERS + tuple(mmucore.COUNTER_NAMES):
        out[name] = int(r.events.get(name, 0))
    for name, v in sorted(r.events.items()):             # anything else the model adds
        out.setdefault(name, int(v))
    out.update(nr_vmas_mapped=len(pieces), nr_vmas_before=vmas_before,
               nr_vmas_after=m.mms[0].vmas.map_count, nr_thp=n_thp, busy_cpus=busy,
               lazy_cpus=lazy, wall_mprotect_s=t_end - t_call, wall_point_s=t_end - t_start)
    return out


def _check_mprotect_loop(p: Dict[str, Any]) -> None:
    if p.get("threads", 1) not in (1, 2):
        raise ConfigError(f"threads must be 1 or 2, got {p.get('threads')!r}",
                          field="threads")
    for key, lo in (("pages", 1), ("iterations", 1)):
        if p.get(key, lo) < lo:
            raise ConfigError(f"{key} must be >= {lo}, got {p.get(key)!r}", field=key)
    _check_overrides(p, _LOOP_KEYS, "kvm-2022")


@experiment("mprotect_loop", check=_check_mprotect_loop)
def mprotect_loop(threads: int = 1, write: bool = True, pages: int = 1,
                  iterations: int = 50, profile: str = "patched",
                  preset: str = "kvm-2022", checker: bool = False,
                  seed: int = 0, **overrides: Any) -> Dict[str, Any]:
    """The cover letter's loop, mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE);
    [*p = 0], via pysim.workloads.mprotect_loop: cycles per step and events per
    iteration, one column each (prot_read_cycles, prot_rw_ipi_sent, ...).  Other
    parameters override profile fields or preset costs, as for mprotect_range."""
    from .config import get_preset
    from .workloads import mprotect_loop as loop       # lazy: the workload is optional

    prof_over, costs = split_overrides(overrides)
    kw: Dict[str, Any] = dict(threads=threads, write=write, pages=pages,
                              iterations=iterations, profile=profile,
                              preset=get_preset(preset, **costs) if costs else preset,
                              **prof_over)
    accepted = inspect.signature(loop).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    for key, value in (("seed", seed), ("checker", checker)):
        if key in accepted or takes_any:
            kw[key] = value
    t0 = time.perf_counter()
    res = loop(**kw)
    wall = time.perf_counter() - t0
    out = figures_of(res)
    for key in _LOOP_KEYS + tuple(overrides):
        out.pop(key, None)                               # parameters are columns already
    out["wall_point_s"] = wall
    return out
