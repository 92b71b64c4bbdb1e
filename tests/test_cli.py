"""The `pysim` command line: --version, `pysim list ...`, and errors found before work runs."""
import pytest

import pysim
from pysim.cli import main
from pysim.config import PRESETS, PROFILES


def test_version(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0 and capsys.readouterr().out.strip() == f"pysim {pysim.__version__}"


def test_list_presets_and_profiles_name_every_one(capsys):
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(PRESETS)
    assert "features: pcid, invpcid" in out
    assert main(["list", "profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PROFILES) + ["defaults"]
    assert "change_writable=exclusive" in lines[list(PROFILES).index("v6.2")]


def test_list_experiments_and_counters(capsys):
    assert main(["list", "experiments"]) == 0
    out = capsys.readouterr().out
    assert "mprotect_range(pages: int" in out and "mprotect_loop(" in out
    assert main(["list", "counters"]) == 0
    out = capsys.readouterr().out
    for name in ("nr_tlb_remote_flush", "walks", "ipi_handler"):
        assert name in out


def test_list_of_an_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["list", "widgets"])
    assert ei.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["", "x.xyz", "/proc/no/such/dir/x.png", "."])
def test_reproduce_checks_its_plot_path_before_running(bad, capsys, tmp_path):
    """A plot path that cannot be written is one line on stderr and exit 2, before the
    model runs (nothing on stdout) and with no file left behind."""
    assert main(["reproduce", "--plot", bad]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("pysim reproduce: error: ") and err.count("\n") == 1


def test_check_output_path_leaves_no_file(tmp_path):
    from pysim.cli import check_output_path
    target = tmp_path / "t.png"
    assert check_output_path(str(target), "plot", (".png",)) is None
    assert not target.exists()


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`pysim ... | head -c 1`: the command stops when the reader goes, with no traceback
    (the listing is made long enough that writing it must hit the closed pipe)."""
    import subprocess
    import sys
    script = tmp_path / "long_list.py"
    script.write_text("import sys\n"
                      "import pysim.cli as cli\n"
                      "from pysim.report import catalog\n"
                      "catalog.LISTS['counters'] = lambda: ['x' * 100] * 200_000\n"
                      "sys.exit(cli.main(['list', 'counters']))\n")
    p = subprocess.run(f'"{sys.executable}" "{script}" | head -c 1 > /dev/null',
                       shell=True, capture_output=True, text=True)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


# ---------------------------------------------------------------- conventions
import os
import subprocess
import sys
import textwrap

GRID = 'experiment = "test_cli_double"\n[grid]\nx = [1, 2, 3]\n'
PLUGIN = textwrap.dedent('''
    from pysim.experiments import experiment

    @experiment("test_cli_double")
    def double(x: int, seed: int = 0) -> dict:
        """Twice x (a custom experiment of a test)."""
        return {"y": 2 * x}
''')


def _run(*argv, cwd, env_extra=None):
    """`python -m pysim ARGV` in cwd, with this checkout first on the path."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here] + (env_extra or [])))
    return subprocess.run([sys.executable, "-m", "pysim", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_usage_errors_are_one_line_with_exit_2(capsys):
    """argparse's usage errors follow the convention: one line pointing at --help,
    exit 2."""
    for argv in (["sweep"], ["plot", "t.parquet"], ["--nope"], ["sweep", "g", "--workers",
                                                              "x"]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        err = capsys.readouterr().err
        assert ei.value.code == 2 and err.count("\n") == 1 and "error:" in err, (argv, err)


def test_import_a_custom_experiment_by_module_and_by_file(tmp_path):
    """`pysim --import MODULE sweep ...` and `pysim sweep ... --import FILE.py` register
    the module's experiments before the grid is checked."""
    (tmp_path / "myexps.py").write_text(PLUGIN)
    (tmp_path / "g.toml").write_text(GRID)
    p = _run("--import", "myexps", "sweep", "g.toml", "-o", "a.csv", "--backend",
             "serial", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "a.csv").read_text().count("\n") == 4
    p = _run("sweep", "g.toml", "-o", "b.csv", "--import", str(tmp_path / "myexps.py"),
             "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = _run("list", "experiments", "--import", "myexps", cwd=tmp_path)
    assert "test_cli_double(x: int, seed: int = 0)" in p.stdout


def test_import_failures_and_unknown_experiments_are_one_line(tmp_path):
    """A module that is missing or raises on import, and a grid naming an experiment
    nothing registered, are each one line with exit 2 and no output file."""
    (tmp_path / "broken.py").write_text("raise RuntimeError('plugin is broken')\n")
    (tmp_path / "g.toml").write_text(GRID)
    for argv, needle in ((["--import", "no_such_module_xyz", "list", "experiments"],
                          "no_such_module_xyz"),
                         (["--import", "broken", "list", "experiments"], "plugin is broken"),
                         (["sweep", "g.toml", "--no-progress"], "test_cli_double")):
        p = _run(*argv, cwd=tmp_path)
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.count("\n") == 1 and needle in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "g.parquet").exists()


def test_entry_point_group_registers_experiments(tmp_path):
    """An installed distribution with an entry point in group pysim.experiments (here a
    dist-info folder on PYTHONPATH) is found by name, without --import."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "plugpkg_exps.py").write_text(PLUGIN.replace("test_cli_double",
                                                         "registered_by_module"))
    (site / "plugfn.py").write_text("def tripled(x: int) -> dict:\n"
                                    "    '''Three times x.'''\n"
                                    "    return {'y': 3 * x}\n")
    info = site / "pysim_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pysim-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text("[pysim.experiments]\n"
                                           "mod = plugpkg_exps\n"
                                           "tripled = plugfn:tripled\n")
    (tmp_path / "g.toml").write_text('experiment = "tripled"\n[grid]\nx = [1, 2]\n')
    p = _run("sweep", "g.toml", "-o", "t.csv", "--backend", "serial", "--no-progress",
             cwd=tmp_path, env_extra=[str(site)])
    assert p.returncode == 0, p.stderr
    assert "3\n" in (tmp_path / "t.csv").read_text()
    p = _run("list", "experiments", cwd=tmp_path, env_extra=[str(site)])
    assert "tripled(x: int)" in p.stdout and "registered_by_module(" in p.stdout


def test_debug_shows_the_traceback_and_otherwise_one_line(tmp_path):
    """The same configuration error: one line without --debug, the traceback with it
    (before or after the subcommand)."""
    (tmp_path / "g.toml").write_text('experiment = "mprotect_range"\n[grid]\npages = []\n')
    p = _run("sweep", "g.toml", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    for argv in (["--debug", "sweep", "g.toml"], ["sweep", "g.toml", "--debug"]):
        p = _run(*argv, cwd=tmp_path)
        assert p.returncode != 0 and "Traceback" in p.stderr and "ConfigError" in p.stderr


def test_an_internal_error_is_one_line_pointing_at_debug(monkeypatch, capsys):
    """An exception pysim did not mean to raise is still one line (naming its type
    and --debug, exit 1); --debug lets it through."""
    from pysim.report import catalog
    monkeypatch.setitem(catalog.LISTS, "counters", lambda: [][1])
    assert main(["list", "counters"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "IndexError" in err and "--debug" in err
    with pytest.raises(IndexError):
        main(["--debug", "list", "counters"])


def _small_grid(tmp_path):
    """A two-point mprotect_range grid file in tmp_path and its path."""
    g = tmp_path / "g.toml"
    g.write_text('experiment = "mprotect_range"\n[grid]\npages = [1, 2]\n')
    return str(g)


@pytest.mark.parametrize("content", [b"my notes, important\nline two\n", b"",
                                     b"\x00\x01binary", b"PAR1 not a parquet file"])
def test_sweep_never_overwrites_a_file_that_is_not_a_pysim_result(content, tmp_path,
                                                                  capsys):
    """Text, an empty file, binary and a fake Parquet file are kept byte for byte
    (exit 2, no parts folder); --overwrite replaces them."""
    grid = _small_grid(tmp_path)
    notes = tmp_path / ("notes.parquet" if content.startswith(b"PAR1") else "notes.csv")
    notes.write_bytes(content)
    assert main(["sweep", grid, "-o", str(notes), "--backend", "serial",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not a pysim result" in err and "--overwrite" in err and err.count("\n") == 1
    assert notes.read_bytes() == content
    assert not os.path.exists(str(notes) + ".parts")
    assert main(["sweep", grid, "-o", str(notes), "--backend", "serial", "--no-progress",
                 "--overwrite"]) == 0
    assert notes.read_bytes() != content


def test_a_foreign_parquet_file_is_not_overwritten(tmp_path, capsys):
    """A real Parquet file with a point_id column but without pysim's metadata is
    not pysim's, so it is kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    grid = _small_grid(tmp_path)
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"point_id": ["x"], "v": [1]}), str(path))
    before = path.read_bytes()
    assert main(["sweep", grid, "-o", str(path), "--no-progress"]) == 2
    assert path.read_bytes() == before and "not a pysim result" in capsys.readouterr().err


@pytest.mark.parametrize("out,needle", [("out.json", "suffix"), ("results", "suffix"),
                                        ("/proc/pysim-test.parquet", "cannot write"),
                                        ("/no/such/dir/o.csv", "does not exist"),
                                        (".", "directory")])
def test_sweep_output_path_refused_before_any_point(out, needle, tmp_path, capsys,
                                                    monkeypatch):
    """A bad -o is exit 2 with one line, before the first point runs and leaving no
    file (the experiment would record a call)."""
    from pysim.experiments import experiment
    calls = []

    @experiment("test_cli_recorder")
    def _recorder(x: int) -> dict:
        """Records that it ran."""
        calls.append(x)
        return {"y": x}

    g = tmp_path / "g.toml"
    g.write_text('experiment = "test_cli_recorder"\n[grid]\nx = [1]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(g), "-o", out, "--backend", "serial", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and calls == []
    assert sorted(os.listdir(tmp_path)) == ["g.toml"]


def test_bad_grid_files_are_one_line(tmp_path, capsys):
    """A grid that is not UTF-8, a folder, or missing: one line each, exit 2."""
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00 not text")
    for grid, needle in ((str(bad), "UTF-8"), (str(tmp_path), "directory"),
                         (str(tmp_path / "none.toml"), "not found")):
        assert main(["sweep", grid, "-o", str(tmp_path / "o.csv"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
