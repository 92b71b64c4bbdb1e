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
worker's tasks itself (on a cluster pysim starts, up to `retries` times).  A point that
raises is never re-run -- an experiment is deterministic, so it would only raise again:
its error is caught on the worker and reported once, with the point's parameters.

Parent death: a local worker asks the kernel to kill it when the sweep's process dies
(prctl PR_SET_PDEATHSIG on Linux; elsewhere a thread that watches the parent's pid), so
a `kill -9` of the sweep leaves no worker behind holding its memory.  After each point
a worker collects garbage and hands freed heap back to the system (glibc malloc_trim),
so one large point does not pin its memory for the rest of the sweep.

Dask: sweep(client=...) or scheduler=<a Client> uses that client, backend="dask" alone
uses the current client (distributed.default_client) when there is one and otherwise
starts a LocalCluster; pysim closes only what it started.  A scheduler address is
checked before use: a malformed one, or one that does not answer within
CONNECT_TIMEOUT seconds, is a ConfigError.
"""
from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
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
           "choose_backend", "check_available", "get_runner", "current_client",
           "check_scheduler", "release_memory", "CONNECT_TIMEOUT"]

BACKENDS = ("local", "serial", "dask")
CONNECT_TIMEOUT = 3.0        # seconds a scheduler address gets to answer

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


def release_memory() -> None:
    """Free what a finished point left: collect reference cycles, then return freed
    heap pages to the system where the C library can (glibc's malloc_trim), so that a
    worker's resident size falls back between points."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):          # not glibc (musl, ...): collect only
            pass


def _worker_point(fn: Callable[..., Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """run_point in a worker process, with the point's memory released afterwards."""
    try:
        return run_point(fn, params)
    finally:
        release_memory()


def _fail(point: Point, exc: BaseException) -> PointError:
    """The PointError reporting that point raised exc, chained to it."""
    msg = f"point {point.index} ({short_params(point.params)}) failed: " \
          f"{type(exc).__name__}: {exc}"
    err = PointError(msg, point)
    err.__cause__ = exc
    return err


# ---------------------------------------------------------------- choosing
def _is_client(obj: Any) -> bool:
    """Whether obj is a distributed.Client (checked without importing distributed)."""
    mod = sys.modules.get("distributed")
    return mod is not None and isinstance(obj, mod.Client)


def current_client() -> Any:
    """The running dask Client of this process (distributed.default_client), or None;
    distributed is not imported for this, since a client needs it loaded already."""
    mod = sys.modules.get("distributed")
    if mod is None:
        return None
    try:
        client = mod.default_client()
    except ValueError:                               # no client was made
        return None
    return client if getattr(client, "status", None) == "running" else None


def choose_backend(backend: Optional[str], scheduler: Any, client: Any = None) -> str:
    """The backend to use: dask when a scheduler or client is given, or (backend None)
    when a dask Client is already running here; else local.  ConfigError for an
    unknown name, or a scheduler or client given to another backend."""
    if client is not None and not _is_client(client):
        raise ConfigError(f"client must be a distributed.Client, got "
                          f"{type(client).__name__}", field="client")
    if backend is None:
        backend = "dask" if scheduler or client is not None or current_client() \
            else "local"
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} unknown; allowed: {', '.join(BACKENDS)}",
                          field="backend", allowed=BACKENDS)
    if (scheduler or client is not None) and backend != "dask":
        what = "client" if client is not None else "scheduler"
        raise ConfigError(f"{what} is only used by the dask backend, not {backend!r}",
                          field=what)
    return backend


def check_scheduler(address: Any, timeout: float = CONNECT_TIMEOUT) -> str:
    """The scheduler address, checked: well formed (scheme, host, port) and, for a TCP
    address, answering within timeout seconds.  ConfigError with one line otherwise,
    so an unreachable cluster is reported at once instead of after a long wait."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"scheduler must be an address such as tcp://HOST:8786 or a "
                          f"distributed.Client, got {address!r}", field="scheduler")
    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)
        host, port = parse_host_port(loc) if scheme in ("tcp", "tls", "ws", "wss") \
            else (None, None)
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(f"port {port} out of range 1..65535")
    except (ValueError, TypeError) as e:
        raise ConfigError(f"scheduler {address!r} is not a scheduler address ({e}); "
                          f"expected e.g. tcp://HOST:8786", field="scheduler") from None
    if host is not None:
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as e:
            why = e.strerror or str(e) or type(e).__name__
            raise ConfigError(f"scheduler {address!r} cannot be reached within "
                              f"{timeout:g} s: {why}", field="scheduler") from None
    return address


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
PR_SET_PDEATHSIG = 1         # linux/prctl.h


def _watch_parent(parent: int) -> None:
    """Make this worker die with the sweep's process whose pid is parent: the kernel's
    parent-death signal on Linux, a polling thread elsewhere; a parent already gone
    when the worker starts ends it at once."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:          # died before the prctl took hold
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def poll() -> None:
        """Exit the worker once its parent is gone (it is re-parented)."""
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=poll, name="pysim-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    """Pool worker initializer: Ctrl-C is for the parent to handle, not the workers,
    and the worker ends when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent)


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
    ex = cf.ProcessPoolExecutor(nworkers, mp_context=ctx, initializer=_init_worker,
                                initargs=(os.getpid(),))
    inflight: Dict[cf.Future, Point] = {}
    broken = False
    try:
        while batch or inflight:
            while batch and len(inflight) < window and not broken:
                pt = batch.popleft()
                try:
                    inflight[ex.submit(_worker_point, fn, pt.params)] = pt
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
def _dask_client(scheduler: Any, client: Any, workers: int,
                 retries: int) -> Tuple[Any, bool, Any]:
    """(client, owned, cluster): the given client, else one of the checked scheduler
    address, else the current client, else one of a new LocalCluster of `workers`
    single-threaded processes that reschedules a dead worker's point `retries` times.
    owned says whether pysim made the client (and must close it)."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if client is None and _is_client(scheduler):
        client, scheduler = scheduler, None
    if client is not None:
        return client, False, None
    if scheduler:
        address = check_scheduler(scheduler)
        try:
            return Client(address, timeout=f"{4 * CONNECT_TIMEOUT:g}s"), True, None
        except OSError as e:
            raise ConfigError(f"scheduler {address!r}: {e}", field="scheduler") from None
    current = current_client()
    if current is not None:
        return current, False, None
    with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR)
    return Client(cluster), True, cluster


def _dask_point(fn: Callable[..., Any], params: Dict[str, Any]) -> Tuple[str, Any]:
    """A point on a dask worker: ("ok", figures), or ("error", exception) when it
    raised.  Catching here keeps dask from logging and retrying a failed point; an
    exception that cannot be pickled travels as a RuntimeError with its text."""
    import pickle
    try:
        return "ok", run_point(fn, params)
    except Exception as e:
        try:
            pickle.dumps(e)
            return "error", e
        except Exception:
            return "error", RuntimeError(f"{type(e).__name__}: {e}")
    finally:
        release_memory()


def run_dask(fn: Callable[..., Any], todo: List[Point], workers: int, retries: int,
             scheduler: Any = None, client: Any = None, **_: Any) -> Iterator[Result]:
    """Run the points on dask.distributed, keeping a window of a few tasks per worker
    thread in flight; a client (and cluster) pysim started is closed at the end, one
    it was given is left open."""
    from distributed import as_completed

    client, owned, cluster = _dask_client(scheduler, client, workers, retries)
    token = uuid.uuid4().hex[:8]
    try:
        slots = sum(client.nthreads().values()) or workers
        window = max(4, 4 * slots)
        pending = deque(todo)
        ac = as_completed()
        index: Dict[Any, Point] = {}
        live: Dict[Any, Any] = {}                # futures not yet collected

        def submit() -> None:
            """Send the next pending point to the scheduler."""
            pt = pending.popleft()
            fut = client.submit(_dask_point, fn, pt.params, retries=0, pure=False,
                                key=f"pysim-{token}-{pt.index}-{pt.point_id}")
            index[fut.key] = pt
            live[fut.key] = fut
            ac.add(fut)

        while pending and ac.count() < window:
            submit()
        for fut in ac:
            if fut.status in ("lost", "pending"):
                # its result sat on a worker that died before we fetched it: the
                # scheduler computes it again, and the future is done once more
                ac.add(fut)
                continue
            pt = index.pop(fut.key)
            live.pop(fut.key, None)
            if fut.status != "finished":
                try:
                    exc = fut.exception()
                except Exception as e:                        # cancelled, lost ...
                    exc = e
                raise _fail(pt, exc)
            status, res = fut.result()
            fut.release()
            if status != "ok":
                raise _fail(pt, res)
            yield pt, res
            while pending and ac.count() < window:
                submit()
    finally:
        if owned:
            client.close()
        elif live:                               # a borrowed client: drop our work only
            try:
                client.cancel(list(live.values()))
            except Exception:
                pass
        if cluster is not None:
            cluster.close()
