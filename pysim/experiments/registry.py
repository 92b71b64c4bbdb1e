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

Experiments of other packages: a package declares an entry point in the group
`pysim.experiments`, pointing at a module (importing it registers its experiments) or
at a function (registered under the entry point's name):

    [project.entry-points."pysim.experiments"]
    my_walks = "mypkg.experiments:my_walks"

They are loaded the first time a name is not found (get_experiment) or when every
experiment is listed (load_entry_points); `pysim --import MODULE` loads one module by
name or file path (import_experiments).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import numbers
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Literal, Mapping, Optional, Tuple, Union

from ..errors import ConfigError

__all__ = ["experiment", "Experiment", "EXPERIMENTS", "get_experiment", "WALL_PREFIX",
           "COST_PREFIX", "figures_of", "scalar", "ENTRY_POINT_GROUP", "load_entry_points",
           "import_experiments"]

WALL_PREFIX = "wall_"        # figures with this prefix are wall-clock, not deterministic
COST_PREFIX = "cost_"        # cost_<key> parameters override preset costs
ENTRY_POINT_GROUP = "pysim.experiments"
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


_entry_points_loaded = False


def _entry_points() -> list:
    """The installed entry points of ENTRY_POINT_GROUP (Python 3.9's API and later)."""
    from importlib.metadata import entry_points
    eps = entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))             # pragma: no cover (3.9)


def load_entry_points(force: bool = False) -> list:
    """Load every entry point of the group pysim.experiments once (again when force);
    returns their names.  A module entry point registers its experiments by being
    imported; a function one that is not registered yet is registered under the entry
    point's name.  A plugin that fails to load is a ConfigError naming it."""
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return []
    _entry_points_loaded = True
    names = []
    for ep in _entry_points():
        try:
            obj = ep.load()
        except Exception as e:
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of group "
                              f"{ENTRY_POINT_GROUP} failed to load: "
                              f"{type(e).__name__}: {e}", field="experiment") from e
        if callable(obj) and not any(x.fn is obj for x in EXPERIMENTS.values()):
            experiment(ep.name)(obj)
        names.append(ep.name)
    return names


def import_experiments(module: str) -> Any:
    """Import a module that registers experiments: a dotted name (looked up on sys.path
    and in the current folder, as `python -m` does) or the path of a .py file.  Returns
    the module; a module that cannot be imported is a ConfigError naming it."""
    if not isinstance(module, str) or not module:
        raise ConfigError(f"--import needs a module name or a .py file, got {module!r}",
                          field="import")
    try:
        if module.endswith(".py") or os.sep in module:
            path = os.path.abspath(module)
            if not os.path.isfile(path):
                raise ConfigError(f"--import {module!r}: no such file", field="import")
            name = os.path.splitext(os.path.basename(path))[0]
            if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
                return sys.modules[name]
            spec = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod             # so that workers can unpickle by name
            try:
                spec.loader.exec_module(mod)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return mod
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--import {module!r} failed: {type(e).__name__}: {e}",
                          field="import") from e


def get_experiment(name: Any) -> Experiment:
    """The registered experiment called name (ConfigError listing the known ones); an
    unknown name first loads the installed pysim.experiments entry points."""
    if isinstance(name, Experiment):
        return name
    if isinstance(name, str) and name not in EXPERIMENTS:
        load_entry_points()
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
