"""Runners: where a sweep's points are computed -- in this process ("serial"), in a
pool of local processes ("local") or on a dask.distributed cluster ("dask").

A runner is a generator called as runner(fn, todo, workers=, retries=, scheduler=,
mp_context=) that yields (point, figures) as points finish, in any order; a point that
raises ends the sweep with a PointError naming its parameters.  Each runner imports its
process machinery (multiprocessing, concurrent.futures, distributed) when it starts, so
that importing pysim does not.

Worker deaths: the local pool breaks when a worker dies; it is rebuilt and the points
that were in flight run again, a point caught in two breaks runs alone, and a point that
has lost more than `retries` attempts fails.  Under dask the scheduler reschedules a dead
worker's tasks itself, and `retries` re-runs points that raised.
"""
from __future__ import annotations

import signal
import sys
import uuid
from collections import deque
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, Generator, Iterator, List,
                    Optional, Tuple)

from ..errors import ConfigError, PysimError
from ..experiments import figures_of
from .grid import Point, short_params

if TYPE_CHECKING:                      # only for annotations: loaded when a pool starts
    import concurrent.futures as cf
    from multiprocessing.context import BaseContext

__all__ = ["BACKENDS", "PointError", "run_point", "run_serial", "run_local", "run_dask",
           "choose_backend", "check_available", "get_runner"]

BACKENDS = ("local", "serial", "dask")

Result = Tuple[Point, Dict[str, Any]]
Runner = Callable[..., Iterator[Result]]


class PointError(PysimError):
    """A point's experiment raised, or killed its worker more often than allowed."""

    def __init__(self, message: str, point: Optional[Point] = None):
        super().__init__(message)
        self.point = point

    def __reduce__(self):
        """Pickle with the point, so the error crosses process boundaries whole."""
        return (type(self), (str(self), self.point))


def run_point(fn: Callable[..., Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """Run one point on the worker side: fn(**params) flattened to Python scalars."""
    return figures_of(fn(**params))


def _fail(point: Point, exc: BaseException) -> PointError:
    """The PointError reporting that point raised exc, chained to it."""
    msg = f"point {point.index} ({short_params(point.params)}) failed: " \
          f"{type(exc).__name__}: {exc}"
    err = PointError(msg, point)
    err.__cause__ = exc
    return err


# ---------------------------------------------------------------- choosing
def choose_backend(backend: Optional[str], scheduler: Optional[str]) -> str:
    """The backend to use: dask when only a scheduler is given, else local by default;
    ConfigError for an unknown name or a scheduler without dask."""
    if backend is None:
        backend = "dask" if scheduler else "local"
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} unknown; allowed: {', '.join(BACKENDS)}",
                          field="backend", allowed=BACKENDS)
    if scheduler and backend != "dask":
        raise ConfigError(f"scheduler is only used by the dask backend, not {backend!r}",
                          field="scheduler")
    return backend


def check_available(backend: str) -> None:
    """ConfigError when backend needs a package that is not installed (dask)."""
    if backend != "dask":
        return
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigError("the dask backend needs dask.distributed: pip install "
                          "'pysim[sweep]' (or 'dask[distributed]')",
                          field="backend") from None


def get_runner(backend: str) -> Runner:
    """The runner generator function of a backend name from BACKENDS."""
    return {"serial": run_serial, "local": run_local, "dask": run_dask}[backend]


# ---------------------------------------------------------------- serial
def run_serial(fn: Callable[..., Any], todo: List[Point], **_: Any) -> Iterator[Result]:
    """Run the points one after another in this process, in grid order."""
    for pt in todo:
        try:
            res = run_point(fn, pt.params)
        except Exception as e:
            raise _fail(pt, e) from e
        yield pt, res


# ---------------------------------------------------------------- local pool
def _ignore_sigint() -> None:
    """Pool worker initializer: Ctrl-C is for the parent to handle, not the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _mp_context(name: Optional[str]) -> Optional["BaseContext"]:
    """The multiprocessing context: the named one, else fork on Linux (workers inherit
    experiments registered at run time), else the platform default."""
    import multiprocessing
    if name is not None:
        return multiprocessing.get_context(name)
    linux = sys.platform.startswith("linux")
    if linux and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def _kill_pool(ex: "cf.ProcessPoolExecutor") -> None:
    """Stop a pool now: terminate its workers and drop the queued work."""
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        try:
            proc.terminate()
        except Exception:
            pass
    ex.shutdown(wait=False, cancel_futures=True)


def _next_batch(pending: Deque[Point], lost: Dict[int, int],
                workers: int) -> Tuple[Deque[Point], int]:
    """Take the next pool's points off pending, with its size: a point already lost
    twice runs alone, otherwise every pending point shares one pool."""
    suspect = next((pt for pt in pending if lost.get(pt.index, 0) >= 2), None)
    if suspect is not None:
        pending.remove(suspect)
        return deque([suspect]), 1
    batch = deque(pending)
    pending.clear()
    return batch, max(1, min(workers, len(batch)))


def _count_loss(pt: Point, lost: Dict[int, int], retries: int) -> None:
    """Count one attempt of pt lost with its worker; PointError past retries."""
    lost[pt.index] = lost.get(pt.index, 0) + 1
    if lost[pt.index] > retries:
        raise PointError(f"point {pt.index} ({short_params(pt.params)}): its worker died "
                         f"{lost[pt.index]} times (retries={retries})", pt)


def _pool_round(fn: Callable[..., Any], batch: Deque[Point], nworkers: int,
                ctx: Optional["BaseContext"], lost: Dict[int, int],
                retries: int) -> Generator[Result, None, List[Point]]:
    """Run batch in one fresh pool, yielding finished points; when a worker dies, wait
    for the other casualties and return the points still to run ([] after a clean run)."""
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

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
                    _count_loss(pt, lost, retries)
                    batch.appendleft(pt)
                else:
                    raise _fail(pt, exc)
            if broken and not inflight:
                break                        # every casualty of the break is collected
    except BaseException:
        _kill_pool(ex)
        raise
    if broken:
        _kill_pool(ex)
        return sorted(batch, key=lambda p: p.index)
    ex.shutdown(wait=True)
    return []


def run_local(fn: Callable[..., Any], todo: List[Point], workers: int, retries: int,
              mp_context: Optional[str] = None, **_: Any) -> Iterator[Result]:
    """Run the points in a local process pool of up to `workers` processes, rebuilding
    the pool whenever a worker dies (see the module docstring for the retry rules)."""
    ctx = _mp_context(mp_context)
    pending: Deque[Point] = deque(todo)
    lost: Dict[int, int] = {}
    while pending:
        batch, nworkers = _next_batch(pending, lost, workers)
        left = yield from _pool_round(fn, batch, nworkers, ctx, lost, retries)
        if left:
            pending = deque(sorted(list(pending) + left, key=lambda p: p.index))


# ---------------------------------------------------------------- dask
def _dask_client(scheduler: Optional[str], workers: int) -> Tuple[Any, Any]:
    """(client, cluster): a client of the given scheduler (cluster None), or of a new
    LocalCluster of `workers` single-threaded processes."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_dask(fn: Callable[..., Any], todo: List[Point], workers: int, retries: int,
             scheduler: Optional[str] = None, **_: Any) -> Iterator[Result]:
    """Run the points on dask.distributed, keeping a window of a few tasks per worker
    thread in flight; the client (and any cluster it started) is closed at the end."""
    from distributed import as_completed

    client, cluster = _dask_client(scheduler, workers)
    token = uuid.uuid4().hex[:8]
    try:
        slots = sum(client.nthreads().values()) or workers
        window = max(4, 4 * slots)
        pending = deque(todo)
        ac = as_completed()
        index: Dict[Any, Point] = {}

        def submit() -> None:
            """Send the next pending point to the scheduler."""
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
