"""Sweep engine: grid validation, determinism across backends, resume, worker death,
the built-in experiments, the CLI and plots.  Grids are tiny; the whole file runs in a
few seconds plus one Dask LocalCluster start."""
import argparse
import ast
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import pandas as pd
import pytest

import pysim
import pysim.sweeps as sw
import pysim.sweeps.store as sweep_store
from pysim import ConfigError
from pysim.cli import add_sweep_parsers
from pysim.experiments import EXPERIMENTS, experiment, get_experiment
from pysim.sweeps import runners
from pysim.sweeps.progress import Progress

CALLS = []


@experiment("test_sweep_square")
def _square(x: int, scale: float = 1.0, label: str = "a", seed: int = 0) -> dict:
    CALLS.append(x)
    return {"y": x * x * scale, "seed_low": seed % 1000, "label_len": len(label),
            "wall_s": time.perf_counter()}


FAIL_AT = []


@experiment("test_sweep_flaky")
def _flaky(x: int, fail_at: int = -1, seed: int = 0) -> dict:
    if x == fail_at or x in FAIL_AT:
        raise RuntimeError(f"boom at {x}")
    return {"y": x + seed % 7}


@experiment("test_sweep_suicide")
def _suicide(x: int, marker: str = "", always: bool = False) -> dict:
    """Kills its own worker process the first time it runs x == 2 (or every time)."""
    if x == 2 and marker and (always or not os.path.exists(marker)):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"y": 10 * x}


SMALL = {"experiment": "test_sweep_square", "seed": 7,
         "grid": {"x": [1, 2, 3], "label": ["a", "bb"]}, "fixed": {"scale": 2}}

MPROTECT = {"experiment": "mprotect_range", "seed": 3,
            "grid": {"pages": [1, 33, 34], "profile": ["mmots", "patched"]},
            "fixed": {"cpus": 2, "busy": 1, "preset": "skylake"}}


def det(df):
    return sw.deterministic(df).reset_index(drop=True)


# ---------------------------------------------------------------- validation
BAD = [
    ({"experiment": "test_sweep_square", "grid": {"x": [1]}, "colour": 1}, "colour"),
    ({"experiment": "nope", "grid": {"x": [1]}}, "nope"),
    ({"grid": {"x": [1]}}, "experiment"),
    ({"experiment": "test_sweep_square", "grid": {"x": []}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": 3}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": "abc"}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1, "two"]}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1, 1]}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1.5]}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": [True]}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1], "colour": [1]}}, "colour"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1]}, "fixed": {"scale": "big"}},
     "scale"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1]}, "fixed": {"x": 2}}, "x"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1]}, "fixed": {"label": [1]}},
     "label"),
    ({"experiment": "test_sweep_square", "fixed": {"scale": 1.0}}, "x"),   # required x
    ({"experiment": "test_sweep_square", "grid": {"x": [1]}, "seed": -1}, "seed"),
    ({"experiment": "test_sweep_square", "grid": {"x": [1]}, "seed": "1"}, "seed"),
    ({"experiment": "test_sweep_square", "grid": [1]}, "grid"),
    ({"experiment": "mprotect_range", "grid": {"pages": [1, 2]},
      "fixed": {"cpus": 2, "busy": 1, "lazy": 1}}, "busy"),
    ({"experiment": "mprotect_range", "grid": {"pages": [1], "profile": ["patched", "x"]}},
     "profile"),
    ({"experiment": "mprotect_range", "grid": {"pages": [4, 0]}}, "pages"),
    ({"experiment": "mprotect_range", "grid": {"pages": [4]}, "fixed": {"threads": 2}},
     "threads"),
    ({"experiment": "mprotect_range", "grid": {"pages": [4]}, "cases": []}, "cases"),
    ({"experiment": "mprotect_range", "grid": {"pages": [4]},
      "cases": [{"busy": 0}, {"lazy": 0}]}, "lazy"),
    ({"experiment": "mprotect_range", "grid": {"pages": [4], "busy": [0]},
      "cases": [{"busy": 0}]}, "busy"),
    ({"experiment": "mprotect_range", "grid": {"pages": [4]}, "fixed": {"cpus": 2},
      "cases": [{"busy": "rest", "lazy": 0}, {"busy": 0, "lazy": 2}]}, "cases.lazy"),
]


@pytest.mark.parametrize("grid,key", BAD)
def test_malformed_grid_fails_before_any_point(grid, key):
    CALLS.clear()
    with pytest.raises(ConfigError) as e:
        sw.sweep(grid, backend="serial", progress=False)
    assert key in str(e.value)
    assert CALLS == []


def test_malformed_toml_names_key(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('experiment = "test_sweep_square"\nsead = 1\n[grid]\nx = [1]\n')
    with pytest.raises(ConfigError, match="sead"):
        sw.sweep(str(path), backend="serial", progress=False)
    path.write_text('experiment = "test_sweep_square"\n[grid]\nx = [1, 2\n')
    with pytest.raises(ConfigError, match="TOML"):
        sw.sweep(str(path), backend="serial", progress=False)


def test_bad_backend_and_workers():
    with pytest.raises(ConfigError, match="backend"):
        sw.sweep(SMALL, backend="mpi", progress=False)
    with pytest.raises(ConfigError, match="workers"):
        sw.sweep(SMALL, workers=0, progress=False)
    with pytest.raises(ConfigError, match="scheduler"):
        sw.sweep(SMALL, backend="serial", scheduler="tcp://127.0.0.1:1", progress=False)


# ---------------------------------------------------------------- rows and seeds
def test_rows_in_grid_order_with_params_and_figures():
    df = sw.sweep(SMALL, backend="serial", progress=False)
    assert list(df.columns[:5]) == ["point_id", "x", "label", "scale", "seed"]
    assert list(zip(df.x, df.label)) == [(1, "a"), (1, "bb"), (2, "a"), (2, "bb"),
                                         (3, "a"), (3, "bb")]
    assert list(df.y) == [2.0, 2.0, 8.0, 8.0, 18.0, 18.0]      # scale int 2 -> float
    assert df.scale.dtype == float
    assert df.point_id.is_unique and df.seed.is_unique
    assert df.attrs["pysim_sweep"]["ran"] == 6


def test_point_identity_is_stable():
    # pinned: changing the hash would orphan every stored sweep
    pid, seed = sw.point_identity("mprotect_range", 1, {"pages": 33, "profile": "mmots"})
    assert (pid, seed) == sw.point_identity("mprotect_range", 1,
                                            {"profile": "mmots", "pages": 33})
    assert pid == PINNED_ID and seed == PINNED_SEED
    assert sw.point_identity("mprotect_range", 2, {"pages": 33, "profile": "mmots"})[0] != pid


PINNED_ID, PINNED_SEED = sw.point_identity("mprotect_range", 1,
                                           {"pages": 33, "profile": "mmots"})


def test_determinism_serial_vs_local_and_seed():
    a = sw.sweep(SMALL, backend="serial", progress=False)
    b = sw.sweep(SMALL, backend="serial", progress=False)
    c = sw.sweep(SMALL, backend="local", workers=2, progress=False)
    pd.testing.assert_frame_equal(det(a), det(b))
    pd.testing.assert_frame_equal(det(a), det(c))
    assert (a.wall_s != b.wall_s).any()            # wall_* are the non-deterministic ones
    d = sw.sweep(SMALL, backend="serial", progress=False, seed=8)
    assert set(d.seed).isdisjoint(set(a.seed))
    assert set(d.point_id).isdisjoint(set(a.point_id))


def test_mprotect_grid_serial_vs_local():
    a = sw.sweep(MPROTECT, backend="serial", progress=False)
    b = sw.sweep(MPROTECT, backend="local", workers=2, progress=False)
    pd.testing.assert_frame_equal(det(a), det(b))


def test_dask_local_cluster_matches_local():
    pytest.importorskip("distributed")
    a = sw.sweep(MPROTECT, backend="local", workers=2, progress=False)
    b = sw.sweep(MPROTECT, backend="dask", workers=2, progress=False)
    pd.testing.assert_frame_equal(det(a), det(b))


def test_dask_worker_death_retries_the_point(tmp_path):
    pytest.importorskip("distributed")
    marker = str(tmp_path / "died")
    grid = {"experiment": "test_sweep_suicide", "grid": {"x": [0, 1, 2, 3]},
            "fixed": {"marker": marker}}
    df = sw.sweep(grid, backend="dask", workers=2, progress=False)
    assert os.path.exists(marker)
    assert list(df.y) == [0, 10, 20, 30]


# ---------------------------------------------------------------- resume
@pytest.mark.parametrize("ext", [".parquet", ".csv"])
def test_resume_after_failure_equals_uninterrupted(tmp_path, ext):
    grid = {"experiment": "test_sweep_flaky", "seed": 5, "grid": {"x": list(range(10))}}
    full = sw.sweep(grid, out=str(tmp_path / f"full{ext}"), backend="serial",
                    progress=False)
    out = str(tmp_path / f"part{ext}")
    FAIL_AT.append(6)
    try:
        with pytest.raises(sw.PointError, match="boom at 6"):
            sw.sweep(grid, out=out, backend="serial", progress=False)
    finally:
        FAIL_AT.clear()
    assert not os.path.exists(out)                    # only parts so far
    stored = sw.Store(out, "parquet" if ext == ".parquet" else "csv", {}).stored()
    assert len(stored) == 6
    res = sw.sweep(grid, out=out, backend="serial", progress=False)
    assert res.attrs["pysim_sweep"]["ran"] == 4
    pd.testing.assert_frame_equal(res, full)
    pd.testing.assert_frame_equal(sw.read_table(out), sw.read_table(
        str(tmp_path / f"full{ext}")))


@pytest.mark.parametrize("ext", [".parquet", ".csv"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, ext, monkeypatch):
    grid = {"experiment": "test_sweep_square", "seed": 11,
            "grid": {"x": list(range(8)), "label": ["a", "bcd"]}}
    full = sw.sweep(grid, out=str(tmp_path / f"full{ext}"), backend="serial",
                    progress=False)
    out = str(tmp_path / f"res{ext}")
    real = sw.run_point
    count = {"n": 0}

    def dying(fn, params):
        count["n"] += 1
        if count["n"] == 6:
            raise KeyboardInterrupt
        return real(fn, params)

    monkeypatch.setattr(runners, "run_point", dying)
    with pytest.raises(KeyboardInterrupt):
        sw.sweep(grid, out=out, backend="serial", progress=False, checkpoint=0)
    monkeypatch.setattr(runners, "run_point", real)
    stored = sw.Store(out, "parquet" if ext == ".parquet" else "csv", {}).stored()
    assert len(stored) == 5
    CALLS.clear()
    res = sw.sweep(grid, out=out, backend="serial", progress=False)
    assert len(CALLS) == 11                          # only the missing points ran
    assert res.attrs["pysim_sweep"]["stored"] == 5
    pd.testing.assert_frame_equal(det(res), det(full))
    pd.testing.assert_frame_equal(det(sw.read_table(out)), det(sw.read_table(
        str(tmp_path / f"full{ext}"))))
    assert not os.path.exists(out + ".parts")
    CALLS.clear()
    again = sw.sweep(grid, out=out, backend="serial", progress=False)   # all stored
    assert CALLS == []
    pd.testing.assert_frame_equal(det(again), det(full))


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import pysim.sweeps as sw
    from pysim.experiments import experiment

    @experiment("test_sweep_slow")
    def slow(x: int, seed: int = 0) -> dict:
        time.sleep(0.03)
        return {"y": x * 3 + seed % 5, "z": float(x) / 7}

    if __name__ == "__main__":
        grid = {"experiment": "test_sweep_slow", "seed": 2, "grid": {"x": list(range(60))}}
        sw.sweep(grid, out=sys.argv[1], backend=sys.argv[2], workers=2, progress=False,
                 checkpoint=0)
""")


def test_killed_sweep_resumes_to_the_same_table(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(KILL_SCRIPT)
    out = str(tmp_path / "killed.parquet")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, str(script), out, "local"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    parts = out + ".parts"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if os.path.isdir(parts) and len([f for f in os.listdir(parts)
                                             if f.endswith(".parquet")]) >= 5:
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it was killed: {proc.stderr.read()!r}")
            time.sleep(0.01)
        else:
            pytest.fail("no rows stored within 30 s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)    # the sweep and its pool workers
        proc.wait()
    assert not os.path.exists(out)
    # resume in this process with the same experiment (registered from the script)
    ns = {"__name__": "slow_module"}
    exec(compile(KILL_SCRIPT, str(script), "exec"), ns)
    ns["time"] = type("NoSleep", (), {"sleep": staticmethod(lambda s: None)})
    grid = {"experiment": "test_sweep_slow", "seed": 2, "grid": {"x": list(range(60))}}
    stored = sw.Store(out, "parquet", {}).stored()
    assert 5 <= len(stored) < 60
    res = sw.sweep(grid, out=out, backend="serial", progress=False)
    assert res.attrs["pysim_sweep"]["stored"] == len(stored)
    ref = sw.sweep(grid, backend="serial", progress=False)
    pd.testing.assert_frame_equal(det(res), det(ref))
    EXPERIMENTS.pop("test_sweep_slow", None)


def test_csv_when_pyarrow_is_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_store, "has_pyarrow", lambda: False)
    with pytest.warns(UserWarning, match="pyarrow"):
        df = sw.sweep(SMALL, out=str(tmp_path / "t.parquet"), backend="serial",
                      progress=False)
    assert df.attrs["pysim_sweep"]["out"].endswith("t.csv")
    back = pd.read_csv(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(det(back).drop(columns=[]), det(df), check_dtype=False)


def test_foreign_rows_refused_then_overwrite(tmp_path):
    out = str(tmp_path / "t.parquet")
    sw.sweep(SMALL, out=out, backend="serial", progress=False)
    other = dict(SMALL, seed=99)
    with pytest.raises(ConfigError, match="out"):
        sw.sweep(other, out=out, backend="serial", progress=False)
    df = sw.sweep(other, out=out, backend="serial", progress=False, overwrite=True)
    assert len(sw.read_table(out)) == len(df) == 6
    # a grid that grows keeps the stored points
    grown = dict(other, grid={"x": [1, 2, 3, 4], "label": ["a", "bb"]})
    CALLS.clear()
    df = sw.sweep(grown, out=out, backend="serial", progress=False)
    assert len(df) == 8 and len(CALLS) == 2


# ---------------------------------------------------------------- worker death
def test_local_worker_death_retries_only_that_point(tmp_path):
    marker = str(tmp_path / "died")
    grid = {"experiment": "test_sweep_suicide", "grid": {"x": [0, 1, 2, 3, 4, 5]},
            "fixed": {"marker": marker}}
    df = sw.sweep(grid, backend="local", workers=2, progress=False)
    assert os.path.exists(marker)                     # the worker really died once
    assert list(df.y) == [0, 10, 20, 30, 40, 50]


def test_local_point_that_always_kills_fails_after_retries(tmp_path):
    marker = str(tmp_path / "died")
    grid = {"experiment": "test_sweep_suicide", "grid": {"x": [1, 2, 3]},
            "fixed": {"marker": marker, "always": True}}
    with pytest.raises(sw.PointError, match="died"):
        sw.sweep(grid, backend="local", workers=2, progress=False, retries=2)


def test_point_exception_is_reported_with_its_parameters():
    grid = {"experiment": "test_sweep_flaky", "grid": {"x": [1, 2, 3]},
            "fixed": {"fail_at": 2}}
    for backend in ("serial", "local"):
        with pytest.raises(sw.PointError, match=r"x=2.*boom at 2"):
            sw.sweep(grid, backend=backend, workers=2, progress=False)


# ---------------------------------------------------------------- experiments
def test_registry():
    assert {"mprotect_range", "mprotect_loop"} <= set(EXPERIMENTS)
    assert get_experiment("mprotect_range").takes_seed
    with pytest.raises(ConfigError, match="registered"):
        get_experiment("no_such_thing")
    with pytest.raises(ConfigError, match="already registered"):
        experiment("mprotect_range")(lambda pages: {})


def test_mprotect_range_ceiling_vmas_thp_and_cpus():
    f = get_experiment("mprotect_range")
    r33, r34 = f(pages=33, profile="mmots"), f(pages=34, profile="mmots")
    assert (r33["nr_tlb_local_flush_one"], r33["nr_tlb_local_flush_all"]) == (33, 0)
    assert (r34["nr_tlb_local_flush_one"], r34["nr_tlb_local_flush_all"]) == (0, 1)
    assert r34["cycles"] > 0 and r34["wall_mprotect_s"] >= 0
    v = f(pages=64, vmas=4, profile="mmots")
    assert v["nr_vmas_mapped"] == 4 and v["flush_tlb_mm_range"] == 4
    assert v["nr_vmas_after"] < v["nr_vmas_before"]          # PROT_READ merges them
    vp = f(pages=64, vmas=4, profile="patched")
    assert vp["flush_tlb_mm_range"] == 1                     # one gather, one flush
    t = f(pages=2048, thp_fraction=0.5, profile="patched")
    assert t["nr_thp"] == 2 and t["fault_thp"] == 0          # populate is not in the op
    c = f(pages=4, cpus=4, busy=2, lazy=1, profile="patched")
    assert c["ipi_sent"] == 2 and c["busy_cpus"] == 2 and c["lazy_cpus"] == 1
    rest = f(pages=4, cpus=4, busy="rest", profile="patched")
    assert rest["ipi_sent"] == 3


def test_profile_fields_and_costs_are_parameters():
    df = sw.sweep({"experiment": "mprotect_range",
                   "grid": {"pages": [34], "tlb_single_page_flush_ceiling": [33, 64],
                            "cost_invlpg": [100, 200]},
                   "fixed": {"profile": "mmots"}}, backend="serial", progress=False)
    assert list(df.nr_tlb_local_flush_all) == [1, 1, 0, 0]
    assert list(df.invlpg) == [0, 0, 34, 34]                 # the event count
    assert df.cycles[3] - df.cycles[2] == 34 * 100           # the cost
    for fixed, key in (({"pti": "yes"}, "fixed.pti"), ({"cost_invlpg": -1}, "cost_invlpg"),
                       ({"invlpg": 1}, "invlpg")):
        with pytest.raises(ConfigError, match=key):
            sw.plan({"experiment": "mprotect_range", "grid": {"pages": [1]},
                     "fixed": fixed})


def test_mprotect_loop_wrapper():
    pytest.importorskip("pysim.workloads")
    df = sw.sweep({"experiment": "mprotect_loop", "seed": 1,
                   "grid": {"profile": ["mmots", "patched"]},
                   "fixed": {"iterations": 3, "threads": 1, "write": True}},
                  backend="serial", progress=False)
    cyc = [c for c in df.columns if c.endswith("cycles")]
    assert cyc and df[cyc].notna().all().all()


# ---------------------------------------------------------------- CLI, plot, progress
def _cli(*argv):
    parser = argparse.ArgumentParser(prog="pysim")
    add_sweep_parsers(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_sweep_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    grid = tmp_path / "g.toml"
    grid.write_text(textwrap.dedent("""
        experiment = "mprotect_range"
        seed = 1
        [grid]
        pages = [1, 8, 33, 34, 64]
        profile = ["mmots", "patched"]
        [fixed]
        vmas = 1
    """))
    out = str(tmp_path / "o.parquet")
    assert _cli("sweep", str(grid), "-o", out, "--backend", "serial", "--no-progress") == 0
    assert "10 points (10 run, 0 already stored)" in capsys.readouterr().out
    assert _cli("sweep", str(grid), "-o", out, "--no-progress") == 0
    assert "(0 run, 10 already stored)" in capsys.readouterr().out
    png = str(tmp_path / "o.png")
    assert _cli("plot", out, "--x", "pages", "--y", "cycles", "--hue", "profile",
                "-o", png, "--logx", "--logy") == 0
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert _cli("plot", out, "--x", "profile", "--y", "cycles",
                "--where", "pages=33") == 0
    assert _cli("plot", out, "--x", "pages", "--y", "nope") == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('experiment = "mprotect_range"\n[grid]\npages = []\n')
    assert _cli("sweep", str(bad), "-o", str(tmp_path / "b.parquet"), "--no-progress") == 2
    assert "pages" in capsys.readouterr().err


def test_examples_are_valid_grids():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples", "grids")
    files = sorted(f for f in os.listdir(root) if f.endswith(".toml"))
    assert len(files) >= 6
    for f in files:
        p = sw.plan(os.path.join(root, f))
        assert p.points, f


def test_progress_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    bar = Progress(3, 0, True, "t")
    assert bar.bar is None
    bar.t0 -= 2                                       # pretend 2 s have passed
    for _ in range(3):
        bar.update()
    bar.close()
    assert "3/3 points" in capsys.readouterr().err


def test_sweep_is_a_plain_function():
    assert isinstance(pysim.sweep, types.FunctionType)
    assert pysim.sweep is sw.sweep
    df = pysim.sweep({"experiment": "test_sweep_square", "grid": {"x": [2]}},
                     backend="serial", progress=False)
    assert df.y.tolist() == [4.0]
    # no module of the old name is left to shadow the function
    assert not os.path.exists(os.path.join(os.path.dirname(pysim.__file__), "sweep.py"))


def test_import_pysim_is_light():
    """`import pysim` loads no process pools or cluster clients: the runners import them
    when they start."""
    heavy = ("multiprocessing", "concurrent.futures", "dask", "distributed")
    code = ("import sys, pysim; heavy = %r; "
            "print(sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') "
            "for h in heavy)))" % (heavy,))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def _imports(path):
    """Every module name a source file imports, relative ones with their dots."""
    names = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            sep = "." if node.module else ""
            names += [base] + [base + sep + a.name for a in node.names]
    return names


def test_sweeps_never_import_plot_or_cli_and_plot_reads_through_the_store():
    pkg = os.path.dirname(sw.__file__)
    for name in sorted(f for f in os.listdir(pkg) if f.endswith(".py")):
        for mod in _imports(os.path.join(pkg, name)):
            parts = set(mod.strip(".").split("."))
            assert not parts & {"plot", "cli", "report"}, f"sweeps/{name} imports {mod}"
    plot_src = os.path.join(os.path.dirname(pysim.__file__), "report", "plot.py")
    ours = [m for m in _imports(plot_src) if "sweep" in m]
    assert ours and all(m.startswith("..sweeps.store") for m in ours), ours


# ---------------------------------------------------------------- plots
def _plot_table_fixture(tmp_path):
    """A small stored mprotect_range table (2 profiles x 4 page counts) and its path."""
    out = str(tmp_path / "t.parquet")
    grid = {"experiment": "mprotect_range", "seed": 1,
            "grid": {"pages": [1, 8, 33, 64], "profile": ["mmots", "patched"]}}
    sw.sweep(grid, out=out, backend="serial", progress=False)
    return out, sw.read_table(out)


def test_plot_leaves_the_pyplot_state_and_backend_alone(tmp_path):
    """plot_table makes its Figure with the object API: the backend the user chose, and
    the figures pyplot manages, are as they were."""
    import matplotlib
    import matplotlib.pyplot as plt
    from pysim.report.plot import plot_table
    _, df = _plot_table_fixture(tmp_path)
    before_backend, before_figs = matplotlib.get_backend(), plt.get_fignums()
    fig = plot_table(df, x="pages", y="cycles", hue="profile")
    assert matplotlib.get_backend() == before_backend
    assert plt.get_fignums() == before_figs
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 1


def test_plot_legend_lies_outside_the_axes(tmp_path):
    """Lines and bars alike: the legend's box starts right of the axes' box."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from pysim.report.plot import plot_table
    _, df = _plot_table_fixture(tmp_path)
    for x in ("pages", "profile"):
        fig = plot_table(df, x=x, y="cycles", hue="profile" if x == "pages" else "pages")
        FigureCanvasAgg(fig).draw()
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        legend_box = ax.get_legend().get_window_extent(renderer)
        axes_box = ax.get_window_extent(renderer)
        assert legend_box.x0 >= axes_box.x1, (legend_box, axes_box)


@pytest.mark.parametrize("cond,pages", [
    ("pages<=8", [1, 8]), ("pages<8", [1]), ("pages>=33", [33, 64]), ("pages>33", [64]),
    ("pages!=33", [1, 8, 64]), ("pages==33", [33]), ("pages=33", [33]),
    ("pages = 8", [8])])
def test_where_comparisons(cond, pages, tmp_path):
    """Each --where operator keeps exactly the rows it should, and the title states
    the filter."""
    from pysim.report.plot import plot_table
    _, df = _plot_table_fixture(tmp_path)
    fig = plot_table(df, x="pages", y="cycles", hue="profile", where=[cond])
    xs = sorted({int(v) for line in fig.axes[0].get_lines() for v in line.get_xdata()})
    assert xs == pages
    title = fig.axes[0].get_title()
    assert "where " + cond.replace(" ", "").replace("==", "=") in title


def test_where_on_text_and_filters_combine_in_the_title(tmp_path):
    """Filters combine; a text column takes = but no ordering; a malformed condition
    and an empty selection are ConfigErrors."""
    from pysim.report.plot import plot_table
    _, df = _plot_table_fixture(tmp_path)
    fig = plot_table(df, x="pages", y="cycles", where=["profile=patched", "pages<64"])
    assert "where profile=patched, pages<64" in fig.axes[0].get_title()
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [1, 8, 33]
    with pytest.raises(ConfigError, match="not numeric"):
        plot_table(df, x="pages", y="cycles", where=["profile<patched"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        plot_table(df, x="pages", y="cycles", where=["pages~3"])
    with pytest.raises(ConfigError, match="no rows left"):
        plot_table(df, x="pages", y="cycles", where=["pages>1000"])


def test_no_offset_notation_on_large_values():
    """Values near 10^9 that differ in the last digits get plain tick labels, not an
    offset or a multiplier."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from pysim.report.plot import plot_table
    df = pd.DataFrame({"point_id": ["a", "b", "c"], "x": [1, 2, 3],
                       "cycles": [1_000_000_001, 1_000_000_003, 1_000_000_007]})
    fig = plot_table(df, x="x", y="cycles")
    FigureCanvasAgg(fig).draw()
    fmt = fig.axes[0].yaxis.get_major_formatter()
    assert fmt.get_offset() == ""
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels and all("e" not in s and "+" not in s for s in labels), labels


def test_cli_plot_refusals_are_one_line(tmp_path, capsys):
    """--hue equal to --x, a Parquet file that pysim did not write, a folder, a
    non-image suffix: each exit 2 with one line on stderr, and no image written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pysim.cli import main
    out, _ = _plot_table_fixture(tmp_path)
    foreign = str(tmp_path / "foreign.parquet")
    pq.write_table(pa.table({"a": [1, 2], "b": [3, 4]}), foreign)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1\x00\x01 not really parquet")
    cases = [([out, "--x", "pages", "--y", "cycles", "--hue", "pages"], "--hue"),
             ([foreign, "--x", "a", "--y", "b"], "not a table written by pysim"),
             ([str(garbage), "--x", "a", "--y", "b"], "not a table written by pysim"),
             ([str(tmp_path), "--x", "a", "--y", "b", "-o", str(tmp_path / "d.png")],
              "directory"),
             ([out, "--x", "pages", "--y", "cycles", "-o", str(tmp_path / "x.xyz")],
              "suffixes"),
             ([out, "--x", "pages", "--y", "cycles", "-o", "/proc/nope/x.png"], "plot")]
    for argv, needle in cases:
        assert main(["plot"] + argv) == 2, argv
        o, err = capsys.readouterr()
        assert o == "" and err.count("\n") == 1 and needle in err, (argv, err)
        assert "Traceback" not in err
    pngs = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".png", ".xyz"))
    assert pngs == [], pngs


# ---------------------------------------------------------------- progress, workers, dask
class _Stream:
    """A text stream that records writes and says whether it is a terminal."""

    def __init__(self, tty):
        self.tty, self.parts = tty, []

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_off_a_terminal_is_a_plain_line_per_tenth():
    """With tqdm installed but stderr not a terminal: no bar, no carriage returns, one
    line at each 10% of the points."""
    pytest.importorskip("tqdm")
    stream = _Stream(tty=False)
    bar = Progress(100, 0, True, "sweep t", stream=stream)
    assert bar.bar is None
    bar.t0 -= 2
    for _ in range(100):
        bar.update()
    bar.close()
    text = "".join(stream.parts)
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10 and lines[0].startswith("sweep t: 10/100 points (10%")
    assert lines[-1].startswith("sweep t: 100/100 points (100%")


def test_progress_on_a_terminal_uses_tqdm():
    """On a terminal (and with tqdm installed) the display is the tqdm bar."""
    pytest.importorskip("tqdm")
    bar = Progress(5, 0, True, "t", stream=_Stream(tty=True))
    assert bar.bar is not None
    bar.close()


_KEEP = []


@experiment("test_sweep_cycle")
def _cycle(x: int) -> dict:
    """Leaves a reference cycle behind, watched through a weak reference."""
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    _KEEP.append(weakref.ref(a))
    return {"y": x}


def test_a_worker_frees_a_points_garbage_before_the_next():
    """With automatic collection off, a cycle a point leaves behind survives a bare
    run_point but not a worker's call, which collects before the next point."""
    import gc
    fn = get_experiment("test_sweep_cycle").fn
    gc.disable()
    try:
        _KEEP.clear()
        runners.run_point(fn, {"x": 1})
        assert _KEEP[-1]() is not None                # the cycle outlives a bare call
        runners._worker_point(fn, {"x": 2})
        assert _KEEP[-1]() is None                    # the worker's call collected it
    finally:
        gc.enable()
        gc.collect()


def _alive(pid):
    """Whether process pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_local_workers_die_with_the_sweep(tmp_path):
    """kill -9 of the sweep's process ends its pool workers (they would otherwise sit
    on their memory): each worker records its pid and sleeps, the parent is killed."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os, time
        import pysim
        from pysim.experiments import experiment

        @experiment("test_sweep_sleeper")
        def sleeper(x: int) -> dict:
            open(os.path.join({str(tmp_path)!r}, f"pid-{{os.getpid()}}"), "w").close()
            time.sleep(120)
            return {{"y": x}}

        pysim.sweep({{"experiment": "test_sweep_sleeper", "grid": {{"x": [1, 2]}}}},
                    backend="local", workers=2, progress=False)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("pid-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = [int(p.name[4:]) for p in tmp_path.glob("pid-*")]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for p in left:                                    # do not leave them if it failed
        os.kill(p, signal.SIGKILL)
    assert left == []


FLAKY_CALLS = []


@experiment("test_sweep_counted_flaky")
def _counted_flaky(x: int) -> dict:
    """Raises at x == 2 and counts every call (run in-process by a threaded client)."""
    FLAKY_CALLS.append(x)
    if x == 2:
        raise RuntimeError("boom at 2")
    return {"y": x}


@pytest.fixture
def threaded_client():
    """An in-process dask Client (threads), so experiments' side effects are visible;
    one per test, so no later sweep finds it as the current client."""
    distributed = pytest.importorskip("distributed")
    client = distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                                dashboard_address=None)
    yield client
    client.close()


def test_dask_uses_the_given_and_the_current_client(threaded_client):
    """client=, scheduler=<Client>, backend='dask' and the default all run on the
    open in-process client (the calls are seen here) and leave it open; a client
    with another backend, or a string as client, is refused."""
    grid = {"experiment": "test_sweep_square", "grid": {"x": [1, 2, 3]}}
    ref = sw.sweep(grid, backend="serial", progress=False)
    for kw in ({"client": threaded_client}, {"scheduler": threaded_client},
               {"backend": "dask"}, {}):
        CALLS.clear()
        df = sw.sweep(grid, progress=False, **kw)
        assert df.attrs["pysim_sweep"]["backend"] == "dask", kw
        assert sorted(CALLS) == [1, 2, 3], kw            # ran in this process: the client
        pd.testing.assert_frame_equal(det(df), det(ref))
        assert threaded_client.status == "running"       # a borrowed client stays open
    with pytest.raises(ConfigError, match="client"):
        sw.sweep(grid, backend="local", client=threaded_client, progress=False)
    with pytest.raises(ConfigError, match="distributed.Client"):
        sw.sweep(grid, client="tcp://127.0.0.1:8786", progress=False)


def test_dask_failing_point_runs_once_and_names_its_parameters(threaded_client):
    """A point that raises on dask runs once (no retries) and its error names its
    parameters."""
    FLAKY_CALLS.clear()
    grid = {"experiment": "test_sweep_counted_flaky", "grid": {"x": [1, 2, 3]}}
    with pytest.raises(sw.PointError, match=r"x=2.*RuntimeError: boom at 2"):
        sw.sweep(grid, client=threaded_client, progress=False)
    assert FLAKY_CALLS.count(2) == 1


@pytest.mark.parametrize("address,needle", [
    ("tcp://127.0.0.1:1", "cannot be reached"), ("garbage", "not a scheduler address"),
    ("tcp://host:notaport", "not a scheduler address"),
    ("foo://x:1", "not a scheduler address"), ("tcp://h:99999", "out of range")])
def test_bad_scheduler_is_one_line_within_seconds(address, needle, tmp_path, capsys):
    """Unreachable, malformed and out-of-range scheduler addresses: exit 2 with one
    line, within the connect timeout, before any output is written."""
    pytest.importorskip("distributed")
    from pysim.cli import main
    g = tmp_path / "g.toml"
    g.write_text('experiment = "test_sweep_square"\n[grid]\nx = [1]\n')
    t0 = time.monotonic()
    assert main(["sweep", str(g), "-o", str(tmp_path / "o.csv"), "--scheduler", address,
                 "--no-progress"]) == 2
    assert time.monotonic() - t0 < runners.CONNECT_TIMEOUT + 3
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o.csv").exists()
