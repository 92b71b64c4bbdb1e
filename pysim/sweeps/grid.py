"""Grids: read one, check it against its experiment, and list its points.

A grid is a TOML file or a dict with these keys:
    experiment   name of a registered experiment (pysim.experiments)
    seed         integer >= 0, default 0 (sweep(seed=...) takes precedence)
    [grid]       the axes, name = [values...], crossed in order with the last one fastest
    [[cases]]    optional tables that set several parameters together, e.g.
                 {busy = "rest", lazy = 0} then {busy = 0, lazy = "rest"}; they form
                 one more axis, after those of [grid]
    [fixed]      name = value, shared by every point
    description  free text, not used
`plan` checks all of it before anything runs and raises ConfigError naming the key:
unknown keys or experiments, axes that are not non-empty lists of distinct scalars,
parameters the experiment does not take or needs, values of the wrong type, and
combinations the experiment's own check refuses.

A point's id and seed are hashes of the experiment, the grid seed and the point's
parameters (SHA-256 over canonical JSON, numpy SeedSequence for the seed), so they do
not depend on which backend, worker or order runs the point.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..config.tomlfile import read_toml
from ..errors import ConfigError
from ..experiments import COST_PREFIX, Experiment, get_experiment

__all__ = ["GRID_KEYS", "CASES_AXIS", "load_grid", "Point", "Plan", "plan",
           "point_identity", "short_params"]

GRID_KEYS = ("experiment", "seed", "grid", "cases", "fixed", "description")
CASES_AXIS = "\0cases"        # the name under which [[cases]] sits in Plan.axes

Axis = Tuple[str, List[Any]]


# ---------------------------------------------------------------- reading
def _plain(v: Any) -> Any:
    """v with numpy scalars made Python scalars (np.int64(2) -> 2, np.bool_ -> bool) and
    numpy arrays made lists, through dicts, lists and tuples: a grid built from numpy
    values is the grid of the same Python values (same checks, same point ids)."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v


def load_grid(grid: Any) -> Dict[str, Any]:
    """The grid as a new dict: a mapping is copied (numpy scalars and arrays in it
    becoming the Python values they hold), a str or PathLike is read as TOML."""
    if isinstance(grid, Mapping):
        return _plain(grid)
    if not isinstance(grid, (str, os.PathLike)):
        raise ConfigError(f"a grid must be a TOML file path or a dict, got "
                          f"{type(grid).__name__}", field="grid")
    return read_toml(os.fspath(grid), "grid", "grid")


# ---------------------------------------------------------------- points and plans
@dataclass(frozen=True)
class Point:
    """One point of a grid: its place in grid order, its id and its call parameters."""

    index: int
    point_id: str
    params: Dict[str, Any]


@dataclass
class Plan:
    """A checked grid: experiment, grid seed, axes, fixed values and every point."""

    experiment: Experiment
    seed: int
    axes: List[Axis]
    fixed: Dict[str, Any]
    points: List[Point] = field(default_factory=list)
    seed_column: Optional[str] = None     # "seed" when each point gets a derived seed

    @property
    def param_columns(self) -> List[str]:
        """The parameter columns of the result table, in order: axes, fixed, seed."""
        cols: List[str] = []
        for name, values in self.axes:
            cols.extend(values[0] if name == CASES_AXIS else [name])
        cols += list(self.fixed)
        if self.seed_column:
            cols.append(self.seed_column)
        return cols

    def meta(self) -> Dict[str, Any]:
        """What the stored table records about its grid (JSON-ready)."""
        return {"experiment": self.experiment.name, "seed": self.seed,
                "axes": [k for k, _ in self.axes if k != CASES_AXIS],
                "cases": [list(v[0]) for k, v in self.axes if k == CASES_AXIS],
                "fixed": list(self.fixed),
                "params": self.param_columns}


def _is_scalar(v: Any) -> bool:
    """Whether v may be a grid value: None, bool, int, str or a finite float."""
    if isinstance(v, float):
        return math.isfinite(v)
    return v is None or isinstance(v, (bool, int, str))


def _canon(v: Any) -> str:
    """Canonical JSON of v, the input of every hash and duplicate test here."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def point_identity(experiment: str, grid_seed: int,
                   params: Mapping[str, Any]) -> Tuple[str, int]:
    """(point id, derived seed) of a point; both are pinned, because stored tables are
    keyed by the id and must survive new processes, hosts and Python versions."""
    body = _canon({"experiment": experiment, "params": dict(params)}).encode()
    pid = hashlib.sha256(b"%d|" % grid_seed + body).hexdigest()[:16]
    words = np.frombuffer(hashlib.sha256(body).digest(), dtype="<u4")
    ss = np.random.SeedSequence(entropy=grid_seed, spawn_key=tuple(int(w) for w in words))
    seed = int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))     # fits int64
    return pid, seed


def short_params(params: Mapping[str, Any]) -> str:
    """The parameters of a point as k=v text for messages (the seed left out)."""
    return ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "seed")


# ---------------------------------------------------------------- checking
def _check_header(g: Mapping[str, Any]) -> Experiment:
    """The top level of a grid: known keys only, a registered experiment, a text
    description; returns the experiment."""
    for key in g:
        if not isinstance(key, str) or key not in GRID_KEYS:
            raise ConfigError(f"grid: unknown top-level key {key!r}; allowed: "
                              f"{', '.join(GRID_KEYS)}", field=str(key), allowed=GRID_KEYS)
    if "experiment" not in g:
        raise ConfigError("grid: key 'experiment' is missing (the name of a registered "
                          "experiment)", field="experiment")
    if not isinstance(g["experiment"], str):
        raise ConfigError(f"grid: experiment must be a string, got {g['experiment']!r}",
                          field="experiment")
    exp = get_experiment(g["experiment"])
    if "description" in g and not isinstance(g["description"], str):
        raise ConfigError("grid: description must be a string", field="description")
    return exp


def _grid_seed(g: Mapping[str, Any], seed: Optional[int]) -> int:
    """The seed of the sweep: the override when given, else the grid's (default 0)."""
    value = g.get("seed", 0) if seed is None else seed
    where = "seed" if seed is None else "sweep(seed=...)"
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: seed must be an integer >= 0, got {value!r}",
                          field="seed")
    return value


def _tables(g: Mapping[str, Any]) -> Tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The [grid] and [fixed] tables of g, each checked to be a table."""
    axes, fixed = g.get("grid", {}), g.get("fixed", {})
    for name, table in (("grid", axes), ("fixed", fixed)):
        if not isinstance(table, Mapping):
            raise ConfigError(f"grid: [{name}] must be a table of parameters, got "
                              f"{type(table).__name__}", field=name)
    return axes, fixed


def _axis(exp: Experiment, key: Any, values: Any) -> Axis:
    """One [grid] axis checked and coerced: a non-empty list of distinct scalars."""
    where = f"grid.{key}"
    if not isinstance(key, str):
        raise ConfigError(f"grid: axis name {key!r} must be a string", field=str(key))
    exp.check_name(key, "[grid]")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"{where}: an axis must be a non-empty list of values, got "
                          f"{values!r}", field=key)
    if len(values) == 0:
        raise ConfigError(f"{where}: an axis must be a non-empty list of values, got "
                          f"an empty list", field=key)
    out = []
    for v in values:
        if not _is_scalar(v):
            raise ConfigError(f"{where}: axis values must be numbers, booleans or "
                              f"strings, got {v!r}", field=key)
        out.append(exp.coerce(key, v, "[grid]"))
    canon = [_canon(v) for v in out]
    if len(set(canon)) != len(canon):
        dup = next(v for i, v in enumerate(out) if canon.index(canon[i]) != i)
        raise ConfigError(f"{where}: value {dup!r} appears twice", field=key)
    return key, out


def _check_cases(exp: Experiment, cases: Any, axes: Mapping[str, Any],
                 given: bool) -> List[str]:
    """The parameter names [[cases]] sets: a list of distinct tables sharing one set of
    keys, none of them an axis of [grid]."""
    if not isinstance(cases, list) or not all(isinstance(c, Mapping) for c in cases):
        raise ConfigError("grid: cases must be a list of tables ([[cases]] in TOML), "
                          "each naming the same parameters", field="cases")
    if not cases:
        if given:
            raise ConfigError("grid: cases must hold at least one case", field="cases")
        return []
    keys = list(cases[0])
    if not keys:
        raise ConfigError("cases[0]: a case must set at least one parameter", field="cases")
    for i, case in enumerate(cases):
        if set(case) != set(keys):
            extra = [k for k in case if k not in keys]
            missing = [k for k in keys if k not in case]
            what = f"sets {extra[0]!r}" if extra else f"lacks {missing[0]!r}"
            raise ConfigError(f"cases[{i}]: every case must set the same parameters as "
                              f"cases[0] ({', '.join(keys)}); this one {what}",
                              field=(extra or missing)[0])
        for k, v in case.items():
            exp.check_name(k, f"cases[{i}]")
            if k in axes:
                raise ConfigError(f"cases[{i}].{k}: {k!r} is also an axis in [grid]",
                                  field=k)
            if not _is_scalar(v):
                raise ConfigError(f"cases[{i}].{k}: values must be numbers, booleans or "
                                  f"strings, got {v!r}", field=k)
    canon = [_canon({k: c[k] for k in keys}) for c in cases]
    if len(set(canon)) != len(canon):
        raise ConfigError("cases: two cases are identical", field="cases")
    return keys


def _cases_axis(exp: Experiment, cases: List[Mapping[str, Any]],
                keys: List[str]) -> Axis:
    """[[cases]] as one axis whose values are dicts of coerced parameters."""
    values = [{k: exp.coerce(k, case[k], f"cases[{i}]") for k in keys}
              for i, case in enumerate(cases)]
    return CASES_AXIS, values


def _fixed(exp: Experiment, fixed_in: Mapping[str, Any], axes: Mapping[str, Any],
           cases_keys: Sequence[str]) -> Dict[str, Any]:
    """The [fixed] values checked and coerced; none may also be an axis or a case key."""
    fixed: Dict[str, Any] = {}
    for key, v in fixed_in.items():
        if not isinstance(key, str):
            raise ConfigError(f"grid: fixed name {key!r} must be a string", field=str(key))
        exp.check_name(key, "[fixed]")
        if key in axes or key in cases_keys:
            raise ConfigError(f"fixed.{key}: {key!r} is both an axis and a fixed value",
                              field=key)
        if not _is_scalar(v):
            raise ConfigError(f"fixed.{key}: a fixed value must be a number, boolean or "
                              f"string, got {v!r}", field=key)
        fixed[key] = exp.coerce(key, v, "[fixed]")
    return fixed


def _check_required(exp: Experiment, given: set) -> None:
    """ConfigError for the first required parameter (other than seed) nobody sets."""
    for key in exp.required():
        if key not in given and key != "seed":
            raise ConfigError(f"grid: experiment {exp.name!r} needs parameter {key!r}; "
                              f"set it in [grid] or [fixed]", field=key)


def _where(key: Optional[str], axes: Mapping[str, Any], fixed: Mapping[str, Any],
           cases: Sequence[str] = ()) -> str:
    """Where in the grid parameter key was set (grid.k, fixed.k, cases.k), for messages."""
    if key is not None and key not in axes and key not in fixed and key not in cases:
        key = f"{COST_PREFIX}{key}"                  # a preset cost's override parameter
    if key in cases:
        return f"cases.{key}"
    if key in axes:
        return f"grid.{key}"
    if key in fixed:
        return f"fixed.{key}"
    return key or "grid"


# ---------------------------------------------------------------- planning
def _combinations(axes: List[Axis], fixed: Mapping[str, Any]) -> Iterator[Dict[str, Any]]:
    """The parameters of every point in grid order (last axis fastest), fixed last."""
    names = [name for name, _ in axes]
    for combo in itertools.product(*(values for _, values in axes)):
        params: Dict[str, Any] = {}
        for name, value in zip(names, combo):
            if name == CASES_AXIS:
                params.update(value)
            else:
                params[name] = value
        params.update(fixed)
        yield params


def _check_point(exp: Experiment, params: Dict[str, Any], defaults: Mapping[str, Any],
                 where: Tuple[Mapping[str, Any], Mapping[str, Any], Sequence[str]]) -> None:
    """Run the experiment's own check on one point; its ConfigError is re-raised naming
    the grid key and the point."""
    if exp.check is None:
        return
    try:
        exp.check({**defaults, **params})
    except ConfigError as e:
        place = _where(e.field, *where)
        raise ConfigError(f"{place}: {e} (point {short_params(params)})",
                          field=e.field, allowed=e.allowed) from None


def plan(grid: Any, seed: Optional[int] = None) -> Plan:
    """Check a whole grid and list its points without running any, so that a mistake
    anywhere in it is reported before the first point's work."""
    g = load_grid(grid)
    exp = _check_header(g)
    grid_seed = _grid_seed(g, seed)
    axes_in, fixed_in = _tables(g)
    axes = [_axis(exp, key, values) for key, values in axes_in.items()]
    cases_in = g.get("cases", [])
    cases_keys = _check_cases(exp, cases_in, axes_in, given="cases" in g)
    if cases_in:
        axes.append(_cases_axis(exp, cases_in, cases_keys))
    fixed = _fixed(exp, fixed_in, axes_in, cases_keys)
    given = set(axes_in) | set(fixed) | set(cases_keys)
    _check_required(exp, given)
    derive_seed = exp.takes_seed and "seed" not in given
    p = Plan(exp, grid_seed, axes, fixed, seed_column="seed" if derive_seed else None)
    defaults = exp.defaults()
    for index, params in enumerate(_combinations(axes, fixed)):
        pid, pseed = point_identity(exp.name, grid_seed, params)
        if derive_seed:
            params["seed"] = pseed
        _check_point(exp, params, defaults, (axes_in, fixed, cases_keys))
        p.points.append(Point(index, pid, params))
    return p
