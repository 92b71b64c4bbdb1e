"""Parameter sweeps: every point of a grid is one call of a registered experiment, and
each call gives one row of a table.

    import pysim
    df = pysim.sweep({"experiment": "mprotect_range", "seed": 1,
                      "grid": {"pages": [1, 33, 34], "profile": ["mmots", "patched"]},
                      "fixed": {"preset": "skylake"}}, out="mprotect.parquet")

or `pysim sweep GRID.toml -o OUT [--backend local|dask|serial]` from a shell.

A point's keyword parameters are its axis values and the fixed values, plus `seed` (a
hash of the grid seed and the parameters, see pysim.sweeps.grid) when the experiment
takes one and the grid does not set it.  Rows come back in grid order: point_id, the
parameters, the seed, then the experiment's figures.  Figures named wall_* are
wall-clock times, the only values that may differ between two runs of one grid.

The modules: grid (reading, checking, points), runners (serial, local pool, dask),
store (the output table, its parts and resume), progress (the progress display).
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ..errors import ConfigError, no_unknown_keywords
from ..experiments import WALL_PREFIX
from . import runners
from .grid import GRID_KEYS, Plan, Point, load_grid, plan, point_identity
from .progress import Progress
from .runners import BACKENDS, PointError, run_point
from .store import Store, open_store, read_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["sweep", "load_grid", "plan", "Plan", "Point", "point_identity", "read_table",
           "Store", "run_point", "PointError", "BACKENDS", "GRID_KEYS", "deterministic"]

Figures = Dict[str, Dict[str, Any]]


def deterministic(df: "pd.DataFrame") -> "pd.DataFrame":
    """The columns of a sweep table that must match between runs (all but wall_*)."""
    return df[[c for c in df.columns if not str(c).startswith(WALL_PREFIX)]]


def _count(value: Any, name: str, least: int) -> int:
    """value as an int when it is an integer >= least (numpy integers too; bools
    refused), else a ConfigError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}",
                          field=name)
    return int(value)


def _check_checkpoint(checkpoint: Any) -> None:
    """ConfigError unless checkpoint is a number of seconds >= 0 (numpy numbers too;
    not a bool, not NaN)."""
    if isinstance(checkpoint, (bool, np.bool_)) \
            or not isinstance(checkpoint, (int, float, np.integer, np.floating)) \
            or not checkpoint >= 0:
        raise ConfigError(f"checkpoint must be seconds >= 0, got {checkpoint!r}",
                          field="checkpoint")


def _own_figures(pt: Point, figs: Dict[str, Any]) -> Dict[str, Any]:
    """figs without the figures that merely repeat one of pt's parameters; PointError
    when a figure contradicts its parameter or is called point_id."""
    for k in [k for k in figs if k in pt.params or k == "point_id"]:
        if k == "point_id" or figs[k] != pt.params[k]:
            raise PointError(f"point {pt.index}: figure {k!r} clashes with the "
                             f"parameter of that name", pt)
        del figs[k]
    return figs


def _run(p: Plan, todo: List[Point], results: Figures, store: Optional[Store],
         backend: str, checkpoint: float, bar: Progress, **runner_kw: Any) -> None:
    """Run the todo points on backend, putting each one's figures in results and its row
    in the store, which writes a part file every checkpoint seconds."""
    last = time.monotonic()
    runner = runners.get_runner(backend)
    for pt, figs in runner(p.experiment.fn, todo, **runner_kw):
        figs = _own_figures(pt, figs)
        results[pt.point_id] = figs
        if store is not None:
            store.add({"point_id": pt.point_id, **pt.params, **figs})
            now = time.monotonic()
            if now - last >= checkpoint:
                store.flush()
                last = now
        bar.update()


def _table(p: Plan, results: Figures) -> "pd.DataFrame":
    """The result table in grid order: point_id, parameters, then the figures in the
    order they first appear."""
    import pandas as pd
    rows = []
    figure_cols: Dict[str, None] = {}
    for pt in p.points:
        figs = results[pt.point_id]
        for k in figs:
            figure_cols.setdefault(k, None)
        rows.append({"point_id": pt.point_id, **pt.params, **figs})
    params = p.param_columns
    columns = ["point_id"] + params + [c for c in figure_cols if c not in params]
    return pd.DataFrame.from_records(rows, columns=columns)


def sweep(grid: Any, out: Optional[str] = None, backend: Optional[str] = None,
          workers: Optional[int] = None, scheduler: Optional[str] = None,
          progress: bool = True, seed: Optional[int] = None, *, retries: int = 3,
          checkpoint: float = 1.0, overwrite: bool = False,
          mp_context: Optional[str] = None, client: Any = None,
          **unknown: Any) -> "pd.DataFrame":
    """Run every point of grid and return one row per point as a pandas DataFrame.

    grid: a TOML path or a dict (see pysim.sweeps.grid).  out: a .parquet/.pq or .csv
    path (the suffix gives the format), written as points finish and resumed from
    (None: nothing is kept); an existing file that pysim did not write is refused.
    backend: "local" (the default; "dask" when a scheduler or client is given or a dask
    Client is already running in this process), "serial" or "dask".  workers:
    processes (default os.cpu_count()).  scheduler: a dask scheduler address (or a
    Client).  client: a distributed.Client to run on (left open).  seed: replaces the
    grid's seed.  retries: re-runs of a point whose worker died (a point that raises
    is reported at once).  checkpoint: seconds between part-file writes.  overwrite:
    discard what out holds instead of resuming, even a file pysim did not write.
    mp_context: the multiprocessing start method of the local pool.
    df.attrs["pysim_sweep"] describes the run.  Everything is checked -- grid, options,
    output path, scheduler address -- before the first point runs.
    """
    no_unknown_keywords("sweep", unknown, (
        "out", "backend", "workers", "scheduler", "progress", "seed", "retries",
        "checkpoint", "overwrite", "mp_context", "client"))
    p = plan(grid, seed)
    backend = runners.choose_backend(backend, scheduler, client)
    workers = _count((os.cpu_count() or 1) if workers is None else workers, "workers", 1)
    _count(retries, "retries", 0)
    _check_checkpoint(checkpoint)
    runners.check_available(backend)
    if backend == "dask" and client is None and isinstance(scheduler, str):
        runners.check_scheduler(scheduler)

    store: Optional[Store] = None
    results: Figures = {}
    if out is not None:
        store = open_store(out, p.meta(), overwrite, stacklevel=2)
        results = store.resume({pt.point_id for pt in p.points}, p.param_columns)
    todo = [pt for pt in p.points if pt.point_id not in results]
    bar = Progress(len(p.points), len(p.points) - len(todo), progress and bool(todo),
                   desc=f"sweep {p.experiment.name}")
    try:
        if todo:
            _run(p, todo, results, store, backend, checkpoint, bar, workers=workers,
                 retries=retries, scheduler=scheduler, mp_context=mp_context,
                 client=client)
    finally:
        bar.close()
        if store is not None:
            store.flush()

    df = _table(p, results)
    if store is not None:
        store.finish(df)
    df.attrs["pysim_sweep"] = dict(p.meta(), points=len(p.points), ran=len(todo),
                                   stored=len(p.points) - len(todo), backend=backend,
                                   out=None if store is None else store.path)
    return df
