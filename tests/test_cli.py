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
