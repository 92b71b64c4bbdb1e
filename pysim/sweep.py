"""Parameter sweeps: a grid of points, one experiment call per point, one row per point.

    import pysim.sweep
    df = pysim.sweep({"experiment": "mprotect_range", "seed": 1,
                      "grid": {"pages": [1, 33, 34], "profile": ["mmots", "patched"]},
                      "fixed": {"preset": "skylake"}}, out="mprotect.parquet")

or from the command line, `pysim sweep GRID.toml -o OUT [--backend local|dask|serial]`
(the parser is in pysim.cli).

A grid (a TOML file or a dict) has the keys
    experiment   the name of a registered experiment (pysim.experiments)
    seed         an integer >= 0 (default 0; sweep(seed=...) overrides it)
    [grid]       axes: name = [values...], crossed in the order given (last fastest)
    [[cases]]    optional: tables setting several parameters together (busy = "rest",
                 lazy = 0 / busy = 0, lazy = "rest"), one more axis after [grid]'s
    [fixed]      name = value, the same for every point
    description  free text, ignored
Everything is checked before any point runs: an unknown key, an unknown experiment, an
axis that is not a non-empty list of distinct scalars, a parameter the experiment does
not take, a missing required one, a value of the wrong type, or a combination the
experiment's check rejects raises ConfigError naming the key.

Each point is one call of the experiment with keyword parameters (axes + fixed values,
plus `seed` when the function takes one and the grid does not set it).  The seed of a
point comes from the grid seed and the point's parameters through numpy's SeedSequence
over a SHA-256 of their canonical JSON, so it is the same whichever backend, worker or
order runs the point; the point id (16 hex digits of another such hash) keys the
stored rows.  Rows come back in grid order with columns point_id, the parameters, seed
and every figure the experiment returned.  Figures named wall_* are wall-clock times:
they are the only values allowed to differ between two runs of the same grid.

Storage: with `out`, finished rows are written every `checkpoint` seconds to part files
in OUT.parts/ (each written to a temporary name and renamed, so a kill leaves whole
parts), and at the end the whole table goes to OUT in grid order and the parts are
removed.  Parquet (pyarrow) when available, CSV when the path ends in .csv or pyarrow
is absent.  Re-running with the same out path reads OUT and OUT.parts/, skips every
point already stored and runs the rest: the final table equals an uninterrupted run.

Backends: "local" (a process pool, os.cpu_count() workers by default; a worker that
dies breaks the pool, which is rebuilt, and its in-flight points are retried, points
that keep killing workers being retried alone), "serial" (in this process) and "dask"
(dask.distributed: `scheduler=ADDRESS`, or a LocalCluster of `workers` processes; the
scheduler reschedules the points of a dead worker and `retries` re-runs failed ones).
"""
from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
import types
import uuid
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError, PysimError
from .experiments import COST_PREFIX, WALL_PREFIX, Experiment, figures_of, get_experiment

__all__ = ["sweep", "load_grid", "plan", "Plan", "Point", "read_table", "run_point",
           "PointError", "BACKENDS", "GRID_KEYS", "deterministic"]

GRID_KEYS = ("experiment", "seed", "grid", "cases", "fixed", "description")
_CASES = "\0cases"            # the axis holding [[cases]] in Plan.axes
BACKENDS = ("local", "serial", "dask")
_PARTS_SUFFIX = ".parts"
_MAX_PARTS = 64               # compact OUT.parts/ into one part beyond this many files
_META_KEY = b"pysim.sweep"


class PointError(PysimError):
    """A point's experiment raised, or killed its worker more often than allowed."""

    def __init__(self, message: str, point: Optional["Point"] = None):
        super().__init__(message)
        self.point = point

    def __reduce__(self):
        return (type(self), (str(self), self.point))


# ====================================================================== grids
def load_grid(grid: Any) -> Dict[str, Any]:
    """A grid as a dict: a TOML path (str or os.PathLike) is read, a dict is copied."""
    if isinstance(grid, Mapping):
        return dict(grid)
    if isinstance(grid, (str, os.PathLike)):
        path = os.fspath(grid)
        try:
            import tomllib
        except ImportError:                                     # Python < 3.11
            try:
                import tomli as tomllib                         # type: ignore[no-redef]
            except ImportError:
                raise ConfigError("reading a TOML grid needs Python >= 3.11 or the tomli "
                                  "package", field="grid") from None
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"grid file {path!r} not found", field="grid") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"grid file {path!r} is not valid TOML: {e}",
                              field="grid") from None
    raise ConfigError(f"a grid must be a TOML file path or a dict, got "
                      f"{type(grid).__name__}", field="grid")


@dataclass(frozen=True)
class Point:
    """One point of a grid: its position, id, parameters (with the seed if passed)."""

    index: int
    point_id: str
    params: Dict[str, Any]


@dataclass
class Plan:
    """A validated grid: the experiment, the seed, the axes, the fixed values, the points."""

    experiment: Experiment
    seed: int
    axes: List[Tuple[str, List[Any]]]
    fixed: Dict[str, Any]
    points: List[Point] = field(default_factory=list)
    seed_column: Optional[str] = None     # "seed" when the sweep derives it per point

    @property
    def param_columns(self) -> List[str]:
        cols: List[str] = []
        for k, values in self.axes:
            cols.extend(values[0] if k == _CASES else [k])
        cols += list(self.fixed)
        if self.seed_column:
            cols.append(self.seed_column)
        return cols

    def meta(self) -> Dict[str, Any]:
        return {"experiment": self.experiment.name, "seed": self.seed,
                "axes": [k for k, _ in self.axes if k != _CASES],
                "cases": [list(v[0]) for k, v in self.axes if k == _CASES],
                "fixed": list(self.fixed),
                "params": self.param_columns}


def _is_scalar(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return v is None or isinstance(v, (bool, int, str))


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def point_identity(experiment: str, grid_seed: int,
                   params: Mapping[str, Any]) -> Tuple[str, int]:
    """(point id, derived seed) of a point: stable across processes, hosts and Python
    versions (SHA-256 of canonical JSON; numpy SeedSequence for the seed)."""
    body = _canon({"experiment": experiment, "params": dict(params)}).encode()
    pid = hashlib.sha256(b"%d|" % grid_seed + body).hexdigest()[:16]
    words = np.frombuffer(hashlib.sha256(body).digest(), dtype="<u4")
    ss = np.random.SeedSequence(entropy=grid_seed, spawn_key=tuple(int(w) for w in words))
    seed = int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))     # fits int64
    return pid, seed


def plan(grid: Any, seed: Optional[int] = None) -> Plan:
    """Validate a grid completely and list its points (no point runs)."""
    g = load_grid(grid)
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
    grid_seed = g.get("seed", 0) if seed is None else seed
    where = "seed" if seed is None else "sweep(seed=...)"
    if isinstance(grid_seed, bool) or not isinstance(grid_seed, int) or grid_seed < 0:
        raise ConfigError(f"{where}: seed must be an integer >= 0, got {grid_seed!r}",
                          field="seed")

    axes_in = g.get("grid", {})
    fixed_in = g.get("fixed", {})
    cases_in = g.get("cases", [])
    for name, table in (("grid", axes_in), ("fixed", fixed_in)):
        if not isinstance(table, Mapping):
            raise ConfigError(f"grid: [{name}] must be a table of parameters, got "
                              f"{type(table).__name__}", field=name)
    axes: List[Tuple[str, List[Any]]] = []
    for key, values in axes_in.items():
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
        axes.append((key, out))
    cases_keys = _check_cases(exp, cases_in, axes_in, given="cases" in g)
    if cases_in:
        axes.append((_CASES, [dict(zip(cases_keys, (exp.coerce(k, c[k], f"cases[{i}]")
                                                    for k in cases_keys)))
                              for i, c in enumerate(cases_in)]))
    fixed: Dict[str, Any] = {}
    for key, v in fixed_in.items():
        if not isinstance(key, str):
            raise ConfigError(f"grid: fixed name {key!r} must be a string", field=str(key))
        exp.check_name(key, "[fixed]")
        if key in axes_in or key in cases_keys:
            raise ConfigError(f"fixed.{key}: {key!r} is both an axis and a fixed value",
                              field=key)
        if not _is_scalar(v):
            raise ConfigError(f"fixed.{key}: a fixed value must be a number, boolean or "
                              f"string, got {v!r}", field=key)
        fixed[key] = exp.coerce(key, v, "[fixed]")
    given = set(axes_in) | set(fixed) | set(cases_keys)
    for key in exp.required():
        if key not in given and not (key == "seed"):
            raise ConfigError(f"grid: experiment {exp.name!r} needs parameter {key!r}; "
                              f"set it in [grid] or [fixed]", field=key)
    derive_seed = exp.takes_seed and "seed" not in given
    p = Plan(exp, grid_seed, axes, fixed, seed_column="seed" if derive_seed else None)

    defaults = exp.defaults()
    names = [k for k, _ in axes]
    index = 0
    for combo in _product([vals for _, vals in axes]):
        params: Dict[str, Any] = {}
        for name, value in zip(names, combo):
            if name == _CASES:
                params.update(value)
            else:
                params[name] = value
        params.update(fixed)
        pid, pseed = point_identity(exp.name, grid_seed, params)
        if derive_seed:
            params["seed"] = pseed
        if exp.check is not None:
            full = {**defaults, **params}
            try:
                exp.check(full)
            except ConfigError as e:
                where = _where(e.field, axes_in, fixed, cases_keys)
                raise ConfigError(f"{where}: {e} (point {_short(params)})",
                                  field=e.field, allowed=e.allowed) from None
        p.points.append(Point(index, pid, params))
        index += 1
    return p


def _check_cases(exp: Experiment, cases: Any, axes: Mapping[str, Any],
                 given: bool) -> List[str]:
    """The parameter names of [[cases]]: a list of tables, all with the same keys."""
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


def _where(key: Optional[str], axes: Mapping[str, Any], fixed: Mapping[str, Any],
           cases: Sequence[str] = ()) -> str:
    if key is not None and key not in axes and key not in fixed and key not in cases:
        key = f"{COST_PREFIX}{key}"                  # a preset cost's override parameter
    if key in cases:
        return f"cases.{key}"
    if key in axes:
        return f"grid.{key}"
    if key in fixed:
        return f"fixed.{key}"
    return key or "grid"


def _short(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "seed")


def _product(lists: List[List[Any]]) -> Iterator[Tuple[Any, ...]]:
    if not lists:
        yield ()
        return
    import itertools
    yield from itertools.product(*lists)


def deterministic(df) -> Any:
    """The columns that must match between runs (everything but wall_* figures)."""
    return df[[c for c in df.columns if not str(c).startswith(WALL_PREFIX)]]


# ====================================================================== points
def run_point(fn: Callable[..., Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """Run one point: fn(**params) as a flat dict of Python scalars (the worker side)."""
    return figures_of(fn(**params))


def _ignore_sigint() -> None:                  # pool initializer: Ctrl-C is the parent's
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _fail(point: Point, exc: BaseException) -> PointError:
    msg = f"point {point.index} ({_short(point.params)}) failed: {type(exc).__name__}: {exc}"
    err = PointError(msg, point)
    err.__cause__ = exc
    return err


def _serial(fn: Callable, todo: List[Point], **_: Any) -> Iterator[Tuple[Point, Dict]]:
    for pt in todo:
        try:
            res = run_point(fn, pt.params)
        except Exception as e:
            raise _fail(pt, e) from e
        yield pt, res


def _mp_context(name: Optional[str]):
    if name is not None:
        return multiprocessing.get_context(name)
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")      # workers inherit registrations
    return None


def _kill_pool(ex: cf.ProcessPoolExecutor) -> None:
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except Exception:
            pass
    ex.shutdown(wait=False, cancel_futures=True)


def _local(fn: Callable, todo: List[Point], workers: int, retries: int,
           mp_context: Optional[str] = None, **_: Any) -> Iterator[Tuple[Point, Dict]]:
    """A process pool; when a worker dies the pool is rebuilt and the in-flight points
    resubmitted; a point caught in a second break runs alone in a pool of its own, and
    fails after `retries` + 1 lost attempts."""
    ctx = _mp_context(mp_context)
    pending = deque(todo)
    lost: Dict[int, int] = {}
    while pending:
        suspects = [pt for pt in pending if lost.get(pt.index, 0) >= 2]
        if suspects:
            pt = suspects[0]
            pending.remove(pt)
            batch, nworkers = deque([pt]), 1
        else:
            batch, pending = pending, deque()
            nworkers = max(1, min(workers, len(batch)))
        window = 2 * nworkers
        ex = cf.ProcessPoolExecutor(nworkers, mp_context=ctx, initializer=_ignore_sigint)
        inflight: Dict[cf.Future, Point] = {}
        broken = False
        try:
            while batch or inflight:
                while batch and len(inflight) < window and not broken:
                    pt = batch.popleft()
                    try:
                        inflight[ex.submit(run_point, fn, pt.params)] = pt
                    except BrokenProcessPool:
                        batch.appendleft(pt)
                        broken = True
                if not inflight:
                    break
                done, _ = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: inflight[f].index):
                    pt = inflight.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        yield pt, fut.result()
                    elif isinstance(exc, BrokenProcessPool):
                        broken = True
                        lost[pt.index] = lost.get(pt.index, 0) + 1
                        if lost[pt.index] > retries:
                            raise PointError(
                                f"point {pt.index} ({_short(pt.params)}): its worker died "
                                f"{lost[pt.index]} times (retries={retries})", pt)
                        batch.appendleft(pt)
                    else:
                        raise _fail(pt, exc)
                if broken and inflight:
                    continue                 # collect the other casualties of the break
                if broken:
                    break
        except BaseException:
            _kill_pool(ex)
            raise
        if broken:
            _kill_pool(ex)
            back = sorted(batch, key=lambda p: p.index)
            pending = deque(sorted(list(pending) + back, key=lambda p: p.index))
        else:
            ex.shutdown(wait=True)


def _dask(fn: Callable, todo: List[Point], workers: int, retries: int,
          scheduler: Optional[str] = None, **_: Any) -> Iterator[Tuple[Point, Dict]]:
    """dask.distributed: an existing scheduler or a LocalCluster of single-threaded
    worker processes.  A dead worker's tasks are rescheduled by the scheduler (up to its
    allowed-failures); `retries` re-runs points that raised."""
    import logging

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    token = uuid.uuid4().hex[:8]
    try:
        slots = sum(client.nthreads().values()) or workers
        window = max(4, 4 * slots)
        pending = deque(todo)
        ac = as_completed()
        index: Dict[Any, Point] = {}

        def submit() -> None:
            pt = pending.popleft()
            fut = client.submit(run_point, fn, pt.params, retries=retries, pure=False,
                                key=f"pysim-{token}-{pt.index}-{pt.point_id}")
            index[fut.key] = pt
            ac.add(fut)

        while pending and ac.count() < window:
            submit()
        for fut in ac:
            pt = index.pop(fut.key)
            if fut.status != "finished":
                try:
                    exc = fut.exception()
                except Exception as e:                        # cancelled, lost ...
                    exc = e
                raise _fail(pt, exc)
            res = fut.result()
            fut.release()
            yield pt, res
            while pending and ac.count() < window:
                submit()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


_RUNNERS = {"serial": _serial, "local": _local, "dask": _dask}


# ====================================================================== storage
def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        return True
    except ImportError:
        return False


def _format_for(path: str) -> Tuple[str, str]:
    """(path, "parquet" | "csv") for an output path."""
    low = path.lower()
    if low.endswith(".csv"):
        return path, "csv"
    if _has_pyarrow():
        return path, "parquet"
    if low.endswith((".parquet", ".pq")):
        new = os.path.splitext(path)[0] + ".csv"
        warnings.warn(f"pyarrow is not installed: writing CSV to {new} instead of "
                      f"Parquet to {path} (pip install pyarrow)", stacklevel=3)
        return new, "csv"
    return path, "csv"


def _storable(df):
    """Columns of mixed Python types (say busy = [0, "rest"]) as strings, which both
    formats can hold; the returned table keeps the original values."""
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None
                     and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: v if v is None else str(v))
    return df


def _write_table(df, path: str, fmt: str, meta: Optional[Dict[str, Any]] = None) -> None:
    """Write df to path atomically (temporary file in the same folder, then rename)."""
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    df = _storable(df.copy())
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pa.Table.from_pandas(df, preserve_index=False)
            if meta is not None:
                md = dict(table.schema.metadata or {})
                md[_META_KEY] = json.dumps(meta).encode()
                table = table.replace_schema_metadata(md)
            pq.write_table(table, tmp)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: str):
    """A sweep's output (Parquet or CSV, by content) as a DataFrame; the sweep's
    metadata (experiment, seed, parameter columns) is in df.attrs["pysim_sweep"] when
    the file is Parquet."""
    import pandas as pd
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        if not _has_pyarrow():
            raise ConfigError(f"{path} is a Parquet file: reading it needs pyarrow "
                              f"(pip install pyarrow)", field="out")
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        df = table.to_pandas()
        md = table.schema.metadata or {}
        if _META_KEY in md:
            df.attrs["pysim_sweep"] = json.loads(md[_META_KEY])
        return df
    if os.path.getsize(path) == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


class Store:
    """OUT plus OUT.parts/: what is already stored, and incremental part files."""

    def __init__(self, path: str, fmt: str, meta: Dict[str, Any]):
        self.path, self.fmt, self.meta = path, fmt, meta
        self.parts_dir = path + _PARTS_SUFFIX
        self.ext = ".parquet" if fmt == "parquet" else ".csv"
        self.buffer: List[Dict[str, Any]] = []
        self.nparts = 0

    def _part_files(self) -> List[str]:
        if not os.path.isdir(self.parts_dir):
            return []
        return sorted(os.path.join(self.parts_dir, f) for f in os.listdir(self.parts_dir)
                      if f.startswith("part-") and f.endswith(self.ext))

    def stored(self) -> Dict[str, Dict[str, Any]]:
        """{point_id: row} of everything in OUT and OUT.parts/ (first copy wins)."""
        rows: Dict[str, Dict[str, Any]] = {}
        files = ([self.path] if os.path.exists(self.path) else []) + self._part_files()
        for f in files:
            try:
                df = read_table(f)
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(f"out: cannot read stored results {f!r} ({e}); remove it "
                                  f"or use overwrite", field="out") from e
            if len(df) == 0:
                continue
            if "point_id" not in df.columns:
                raise ConfigError(f"out: {f!r} is not a pysim sweep table (no point_id "
                                  f"column); choose another path or use overwrite",
                                  field="out")
            for rec in df.to_dict("records"):
                rows.setdefault(str(rec["point_id"]), rec)
        self.nparts = len(self._part_files())
        return rows

    def add(self, row: Dict[str, Any]) -> None:
        self.buffer.append(row)

    def flush(self) -> None:
        if not self.buffer:
            return
        import pandas as pd
        os.makedirs(self.parts_dir, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{os.getpid()}{self.ext}"
        _write_table(pd.DataFrame.from_records(self.buffer), os.path.join(self.parts_dir, name),
                     self.fmt)
        self.buffer.clear()
        self.nparts += 1
        if self.nparts > _MAX_PARTS:
            self.compact()

    def compact(self) -> None:
        """Merge the part files into one (the merged part is written before any old
        part is removed, so a kill in between only leaves duplicates)."""
        import pandas as pd
        files = self._part_files()
        frames = [read_table(f) for f in files]
        df = pd.concat([f for f in frames if len(f)], ignore_index=True)
        name = f"part-{time.time_ns():020d}-{os.getpid()}-merged{self.ext}"
        _write_table(df, os.path.join(self.parts_dir, name), self.fmt)
        for f in files:
            os.unlink(f)
        self.nparts = 1

    def finish(self, df) -> None:
        """Write the final table to OUT and drop the parts."""
        self.buffer.clear()
        _write_table(df, self.path, self.fmt, self.meta)
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def remove(self) -> None:
        for f in (self.path,):
            if os.path.exists(f):
                os.unlink(f)
        shutil.rmtree(self.parts_dir, ignore_errors=True)


# ====================================================================== progress
class _Progress:
    """tqdm when installed (shown after 1 s), else a plain counter on stderr."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.total, self.n, self.enabled = total, initial, enabled
        self.bar = None
        self.t0 = self.last = time.monotonic()
        self.shown = False
        self.desc = desc
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return

        class _Bar(tqdm):
            monitor_interval = 0          # no monitor thread (worker pools fork)

        self.bar = _Bar(total=total, initial=initial, desc=desc, unit="pt", delay=1.0,
                        file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(self, k: int = 1) -> None:
        self.n += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        if now - self.t0 >= 1.0 and (now - self.last >= 0.5 or self.n == self.total):
            rate = self.n / max(now - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total} points ({rate:.1f}/s)")
            sys.stderr.flush()
            self.last, self.shown = now, True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ====================================================================== the sweep
def sweep(grid: Any, out: Optional[str] = None, backend: Optional[str] = None,
          workers: Optional[int] = None, scheduler: Optional[str] = None,
          progress: bool = True, seed: Optional[int] = None, *, retries: int = 3,
          checkpoint: float = 1.0, overwrite: bool = False,
          mp_context: Optional[str] = None):
    """Run every point of grid and return one row per point as a pandas DataFrame.

    grid: a TOML path or a dict (see the module docstring).  out: Parquet or CSV path,
    written incrementally and resumed from (None: keep nothing).  backend: "local"
    (default; "dask" when a scheduler is given), "serial" or "dask".  workers: processes
    (default os.cpu_count()).  scheduler: a dask scheduler address.  seed: overrides
    the grid's seed.  retries: re-runs of a point whose worker died (or, with dask,
    which raised).  checkpoint: seconds between part-file writes.  overwrite: discard
    what out holds instead of resuming.  The frame's attrs["pysim_sweep"] says what ran.
    """
    import pandas as pd

    p = plan(grid, seed)
    if backend is None:
        backend = "dask" if scheduler else "local"
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} unknown; allowed: {', '.join(BACKENDS)}",
                          field="backend", allowed=BACKENDS)
    if scheduler and backend != "dask":
        raise ConfigError(f"scheduler is only used by the dask backend, not {backend!r}",
                          field="scheduler")
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}",
                          field="workers")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries must be an integer >= 0, got {retries!r}",
                          field="retries")
    if not isinstance(checkpoint, (int, float)) or checkpoint < 0:
        raise ConfigError(f"checkpoint must be seconds >= 0, got {checkpoint!r}",
                          field="checkpoint")
    if backend == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError("the dask backend needs dask.distributed: pip install "
                              "'pysim[sweep]' (or 'dask[distributed]')",
                              field="backend") from None

    store: Optional[Store] = None
    done: Dict[str, Dict[str, Any]] = {}
    if out is not None:
        out = os.fspath(out)
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise ConfigError(f"out: folder {parent!r} does not exist", field="out")
        if os.path.isdir(out):
            raise ConfigError(f"out: {out!r} is a folder; give a file path", field="out")
        out, fmt = _format_for(out)
        store = Store(out, fmt, p.meta())
        if overwrite:
            store.remove()
        stored = store.stored()
        ids = {pt.point_id for pt in p.points}
        foreign = [k for k in stored if k not in ids]
        if foreign:
            raise ConfigError(f"out: {out!r} holds {len(foreign)} rows of another grid "
                              f"(other experiment, seed or parameters); use a new path or "
                              f"overwrite=True (--overwrite) to replace it", field="out")
        params = set(p.param_columns) | {"point_id"}
        for k, row in stored.items():
            done[k] = {c: v for c, v in row.items() if c not in params and not _isnan(v)}

    todo = [pt for pt in p.points if pt.point_id not in done]
    results: Dict[str, Dict[str, Any]] = dict(done)
    bar = _Progress(len(p.points), len(p.points) - len(todo), progress and bool(todo),
                    desc=f"sweep {p.experiment.name}")
    last = time.monotonic()
    try:
        if todo:
            runner = _RUNNERS[backend]
            for pt, figs in runner(p.experiment.fn, todo, workers=workers, retries=retries,
                                   scheduler=scheduler, mp_context=mp_context):
                clash = [k for k in figs if k in pt.params or k == "point_id"]
                for k in clash:
                    if k == "point_id" or figs[k] != pt.params[k]:
                        raise PointError(f"point {pt.index}: figure {k!r} clashes with the "
                                         f"parameter of that name", pt)
                    del figs[k]
                results[pt.point_id] = figs
                if store is not None:
                    store.add({"point_id": pt.point_id, **pt.params, **figs})
                    now = time.monotonic()
                    if now - last >= checkpoint:
                        store.flush()
                        last = now
                bar.update()
    finally:
        bar.close()
        if store is not None:
            store.flush()

    rows = []
    figure_cols: Dict[str, None] = {}
    for pt in p.points:
        figs = results[pt.point_id]
        for k in figs:
            figure_cols.setdefault(k, None)
        rows.append({"point_id": pt.point_id, **pt.params, **figs})
    columns = ["point_id"] + p.param_columns + [c for c in figure_cols
                                                if c not in p.param_columns]
    df = pd.DataFrame.from_records(rows, columns=columns)
    if store is not None:
        store.finish(df)
    df.attrs["pysim_sweep"] = dict(p.meta(), points=len(p.points), ran=len(todo),
                                   stored=len(p.points) - len(todo), backend=backend,
                                   out=out)
    return df


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# `import pysim.sweep; pysim.sweep(grid)` works whether pysim's namespace holds this
# module or the function: the module is callable and calls sweep().
class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kw: Any):
        return sweep(*args, **kw)


sys.modules[__name__].__class__ = _CallableModule
