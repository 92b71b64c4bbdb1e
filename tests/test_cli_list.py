"""`pysim --version` and `pysim list ...`: what a run can be made of, from the CLI."""
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
