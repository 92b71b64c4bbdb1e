"""pytest setup for the benchmark suite: `cd /work/main && python -m pytest bench -q`.

* bench/ is not part of the default test run (pyproject testpaths = ["tests"]); files
  here are named bench_*.py and are collected only when bench/ (or a file in it) is
  named on the command line, or PYSIM_BENCH=1 is set.
* Every benchmark uses benchmark.pedantic with few rounds, puts its figures into
  benchmark.extra_info and hands them to the `report` fixture; the terminal summary
  (run from pytest's session finish) prints them as one table per group, since pytest
  captures prints made inside tests.
* Benchmarks report; they never assert on speed.
"""
import os

# Before numpy is imported anywhere: a BLAS thread pool was seen spinning on this
# shared 2-core machine, and none of the benchmarks uses BLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pathlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

BENCH_DIR = pathlib.Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))       # `pytest bench` as well as `python -m pytest bench`

_ROWS = pytest.StashKey[list]()
_START = pytest.StashKey[dict]()


# ------------------------------------------------------------------ collection
def _bench_requested(config) -> bool:
    if os.environ.get("PYSIM_BENCH") == "1":
        return True
    here = pathlib.Path(config.invocation_params.dir)
    for arg in config.args:
        p = (here / arg.split("::")[0]).resolve()
        if p == BENCH_DIR or BENCH_DIR in p.parents:
            return True
    return False


def pytest_collect_file(file_path, parent):
    """Collect bench_*.py (not matched by python_files) when bench/ was asked for."""
    if parent.session.isinitpath(file_path):
        return None         # named on the command line: pytest's python plugin collects it
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and _bench_requested(parent.config)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


# ------------------------------------------------------------------ reporting
class _Probe:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a, self.b = 0, {}


def interpreter_ms(rounds: int = 5) -> float:
    """Best-of-`rounds` milliseconds of a fixed pure-Python workload (attribute reads,
    small calls, dict updates: what pysim's Python layer spends its syscalls on).  The
    shared machine's speed moves from day to day by 2x and more; figures of Python-bound
    benchmarks compare across runs only beside this one."""
    def step(p: _Probe, i: int) -> int:
        p.a += i & 7
        p.b[i & 255] = p.a
        return p.a
    best = float("inf")
    for _ in range(rounds):
        p = _Probe()
        t = time.perf_counter()
        for i in range(200_000):
            step(p, i)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def _machine() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["loadavg"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def pytest_configure(config):
    config.stash[_ROWS] = []
    config.stash[_START] = dict(_machine(), t0=time.time(), interp=interpreter_ms())


@pytest.fixture
def report(request):
    """report(group, case, **figures): record one row for the summary table.

    Figures also go into benchmark.extra_info (when the test uses `benchmark`) and are
    printed (visible with -s)."""
    bench = request.getfixturevalue("benchmark") if "benchmark" in request.fixturenames else None

    def record(group, case, **figures):
        if bench is not None:
            for k, v in figures.items():
                bench.extra_info[k] = v
        request.config.stash[_ROWS].append((group, case, figures))
        print(f"[{group}] {case}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items()))

    return record


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else ("yes" if v else "NO")
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        if a >= 0.01:
            return f"{v:.3f}"
        return f"{v:.2e}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print every recorded row, one table per group (called from session finish)."""
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    tr = terminalreporter
    start = config.stash[_START]
    end = _machine()
    tr.write_sep("=", "pysim bench summary")
    tr.write_line(f"machine: {start.get('cpu', '?')}, {start.get('cpus')} cpus, python "
                  f"{start['python']}; load avg {start.get('loadavg', 0):.2f} at start, "
                  f"{end.get('loadavg', 0):.2f} at end; {time.time() - start['t0']:.0f} s")
    tr.write_line(f"interpreter reference (bench/conftest.py interpreter_ms): "
                  f"{start['interp']:.1f} ms at start, {interpreter_ms():.1f} ms at end")
    groups = {}
    for group, case, figs in rows:
        groups.setdefault(group, []).append((case, figs))
    for group, items in groups.items():
        cols = []
        for _, figs in items:
            for k in figs:
                if k not in cols:
                    cols.append(k)
        table = [["case"] + cols]
        for case, figs in items:
            table.append([case] + [_fmt(figs.get(k)) for k in cols])
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        tr.write_line("")
        tr.write_line(f"[{group}]")
        for n, r in enumerate(table):
            tr.write_line("  " + "  ".join(
                (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(r, widths))))
            if n == 0:
                tr.write_line("  " + "  ".join("-" * w for w in widths))
    tr.write_line("")


# ------------------------------------------------------------------ C baseline
@pytest.fixture(scope="session")
def baseline_walk(tmp_path_factory):
    """bench/baseline_walk.c compiled with gcc -O2 into a temp dir (None without gcc)."""
    cc = shutil.which(os.environ.get("CC", "gcc"))
    if cc is None:
        return None
    out = tmp_path_factory.mktemp("baseline") / "baseline_walk"
    proc = subprocess.run([cc, "-O2", "-o", str(out), str(BENCH_DIR / "baseline_walk.c")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"gcc failed on baseline_walk.c:\n{proc.stderr}")
    return out
