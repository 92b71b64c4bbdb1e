"""pysim hostbench / calibrate / validate and TOML presets (issue 13, items 3-5)."""
import os
import shutil

import pytest

from pysim.cli import main
from pysim.config import get_preset
from pysim.config.toml_preset import load_preset_file, preset_to_toml
from pysim.errors import ConfigError
from pysim.host import hostbench as hb
from pysim.host.calibrate import calibrate, compare, read_bench

DATA = os.path.join(os.path.dirname(__file__), "..", "pysim", "config", "data")
CSV = os.path.join(DATA, "this-host.csv")
TOML = os.path.join(DATA, "this-host.toml")
HAVE_CC = any(shutil.which(c) for c in ("cc", "gcc", "clang"))


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler")
def test_hostbench_tiny_run_writes_a_wellformed_csv(tmp_path, monkeypatch):
    """The C file compiles and a few reps of small scenarios give a parseable CSV."""
    monkeypatch.setenv("PYSIM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "hb.csv"
    info = hb.hostbench(str(out), runs=2, reps=3, max_pages=16, counts=False,
                        only=("baseline", "seed"))
    bench = read_bench(str(out))
    assert info["kernel"] == bench.info["kernel"]
    names = {k[0][0] for k in bench.rows}
    assert names == {"empty", "getppid", "mprotect_noop", "seed", "seed_none", "seed_unpop"}
    for (sk, _), r in bench.rows.items():
        # one thread: every sample kept; two: misplaced ones dropped, at least half kept
        if sk[2] == 1:
            assert r["samples"] == 6 and r["misplaced"] == 0
        else:
            assert r["samples"] >= 3 and r["samples"] + r["misplaced"] >= 6
        assert r["q1"] <= r["median"] <= r["q3"]
        assert r["tlb_local"] is None            # counts off


def test_no_compiler_is_a_usage_error(monkeypatch, capsys):
    """No compiler: one line on stderr and exit status 2."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert main(["hostbench", "-o", "/tmp/pysim-nocc.csv", "--counts", "no"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no C compiler" in err[0]


def test_parse_counts_attributes_events_to_marked_operations():
    """Counts come from between the markers; an IPI counts only inside flush_tlb_multi."""
    trace = "\n".join([
        " hb-1 [000] ...1. 1.0: tracing_mark_write: pysim-B prot_read",
        " hb-1 [000] ...1. 1.1: tlb_flush: pages:1 reason:remote IPI send (4)",
        " hb-1 [000] ...2. 1.2: ipi_send_cpu: cpu=1 callsite=on_each_cpu_cond_mask+0x20",
        " hb-1 [000] d..2. 1.3: tlb_flush: pages:1 reason:local MM shootdown (3)",
        " hb-2 [001] d.h.. 1.4: tlb_flush: pages:1 reason:remote shootdown (1)",
        " hb-1 [000] ...2. 1.5: ipi_send_cpu: cpu=1 callsite=smp_call_function_many",
        " hb-1 [000] ...1. 1.6: tracing_mark_write: pysim-E prot_read",
        " hb-1 [000] ...1. 1.7: page_fault_user: address=0x1 ip=0x2 error_code=0x6",
        " hb-1 [000] ...1. 1.8: tracing_mark_write: pysim-B write",
        " hb-1 [000] ...1. 1.9: page_fault_user: address=0x1 ip=0x2 error_code=0x7",
        " hb-1 [000] d..2. 2.0: tlb_flush: pages:-1 reason:local MM shootdown (3)",
        " hb-1 [000] ...1. 2.1: tracing_mark_write: pysim-E write",
    ])
    got = hb.parse_counts(trace)
    assert got["prot_read"] == [dict(tlb_local=1, tlb_local_full=0, tlb_remote=1, ipi=1,
                                     faults=0)]
    assert got["write"] == [dict(tlb_local=1, tlb_local_full=1, tlb_remote=0, ipi=0,
                                 faults=1)]


def test_parse_counts_drops_misplaced_operations():
    """An operation whose end marker says misplaced (the spinner was not on CPU 1) is
    left out of the counts and counted as dropped."""
    trace = "\n".join([
        " hb-1 [000] ...1. 1.0: tracing_mark_write: pysim-B prot_read",
        " hb-1 [000] ...1. 1.1: tlb_flush: pages:1 reason:remote IPI send (4)",
        " hb-1 [000] d..2. 1.3: tlb_flush: pages:1 reason:local MM shootdown (3)",
        " hb-1 [000] ...1. 1.6: tracing_mark_write: pysim-E prot_read misplaced",
        " hb-1 [000] ...1. 1.7: tracing_mark_write: pysim-B prot_read",
        " hb-1 [000] ...1. 1.8: tlb_flush: pages:1 reason:remote IPI send (4)",
        " hb-1 [000] ...2. 1.9: ipi_send_cpu: cpu=1 callsite=on_each_cpu_cond_mask+0x20",
        " hb-1 [000] d..2. 2.0: tlb_flush: pages:1 reason:local MM shootdown (3)",
        " hb-2 [001] d.h.. 2.1: tlb_flush: pages:1 reason:remote shootdown (1)",
        " hb-1 [000] ...1. 2.2: tracing_mark_write: pysim-E prot_read",
    ])
    dropped = {}
    got = hb.parse_counts(trace, dropped)
    assert got["prot_read"] == [dict(tlb_local=1, tlb_local_full=0, tlb_remote=1, ipi=1,
                                     faults=0)]
    assert dropped == {"prot_read": 1}


def test_model_thp_munmap_frees_no_upper_table():
    """The host model's process has its exec image mapped, so munmap of n THPs frees no
    PMD/PUD table and flushes n 2 MiB pages at the huge stride (no full flush), as the
    6.18 kernel's tracepoints count."""
    from pysim.host.hostbench import Scenario
    from pysim.host.model import host_config, simulate
    cfg = host_config(read_bench(CSV).info)
    for n in (1, 4):
        _, counts = simulate(Scenario("thp", "munmap_thp", n), "this-host", cfg)["munmap"]
        assert counts["tlb_local"] == 1 and counts["tlb_local_full"] == 0


def test_calibrate_reproduces_the_committed_preset(tmp_path):
    """calibrate on the committed CSV gives the committed TOML's costs."""
    fit = calibrate(read_bench(CSV))
    committed = load_preset_file(TOML)
    assert fit.preset.costs() == pytest.approx(committed.costs(), rel=1e-6, abs=0.11)
    assert fit.preset.free_params == committed.free_params
    assert get_preset("this-host").costs() == committed.costs()


def test_validate_compares_counts(tmp_path, capsys):
    """validate: model counts vs the CSV's; a changed count makes it exit 1."""
    bench = read_bench(CSV)
    rows = compare(bench, "this-host")
    seed = next(r for r in rows if r["key"] == (("seed", 1, 2, 1), "prot_read"))
    assert seed["model_counts"] == {"tlb_local": 1, "tlb_local_full": 0, "tlb_remote": 1,
                                    "ipi": 1, "faults": 0}
    assert seed["counts_match"] is True
    lines = open(CSV).read().splitlines()
    header = [i for i, l in enumerate(lines) if l.startswith("group,")][0]
    cols = lines[header].split(",")
    keep = [lines[header]]
    for l in lines[header + 1:]:
        f = l.split(",")
        if f[1] in ("empty", "getppid", "mprotect_noop", "seed") and f[2] == "1":
            if f[1] == "seed" and f[5] == "prot_read" and f[3] == "2" and f[4] == "1":
                f[cols.index("ipi")] = "5"
            keep.append(",".join(f))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines[:header] + keep) + "\n")
    assert main(["validate", str(bad), "--preset", "this-host"]) == 1
    assert "COUNT MISMATCH" in capsys.readouterr().out


def test_unreadable_csv_names_the_line(tmp_path, capsys):
    """A CSV with a bad number: exit 2, the message names the line."""
    text = open(CSV).read().splitlines()
    i = [n for n, l in enumerate(text) if l.startswith("baseline,getppid")][0]
    f = text[i].split(",")
    f[7] = "lots"
    text[i] = ",".join(f)
    p = tmp_path / "x.csv"
    p.write_text("\n".join(text) + "\n")
    assert main(["validate", str(p), "--preset", "this-host"]) == 2
    err = capsys.readouterr().err
    assert f"line {i + 1}" in err and "median" in err


def test_toml_preset_round_trip_and_bad_fields(tmp_path):
    """A preset written as TOML loads back equal; bad fields are named."""
    p = get_preset("skylake")
    good = tmp_path / "p.toml"
    good.write_text(preset_to_toml(p))
    q = get_preset(str(good))
    assert q.costs() == p.costs() and q.sources == p.sources and q.geometry == p.geometry
    text = good.read_text()
    cases = {
        "colour = 1\n" + text: "'colour' unknown",
        text.replace("per_pte = 20", "per_pte = \"x\""): "per_pte must be a number",
        text.replace('geometry = "skylake"', 'geometry = "pentium"'): "geometry",
        text.replace("[kernel]\n", "[kernel]\ninvlpg_remote = 3\n"): "belongs in [hw]",
        text.replace("fault_thp =", "fault_thq ="): "fault_thq",
        text.replace('name = "skylake"\n', ""): "'name' missing",
    }
    for body, needle in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(ConfigError) as e:
            get_preset(str(bad))
        assert needle in str(e.value) and "bad.toml" in str(e.value)


def test_direct_costs_paid_several_times_are_divided_by_their_count():
    """walk_ref is measured from the seed loop's store after the flush: one 2D walk of
    24 references, so the cell's excess over the model without it is divided by 24, and
    the fitted preset reproduces the cell."""
    bench = read_bench(CSV)
    p = get_preset("this-host")
    assert "divided by the 24 times" in p.sources["walk_ref"]
    rows = {r["key"]: r for r in compare(bench, p)}
    for key in ((("seed", 1, 1, 1), "write"), (("seed_unpop", 1, 1, 0), "prot_read"),
                (("thp", 1, 1, 0), "prot_read")):
        assert rows[key]["role"] == "fit"
        assert abs(rows[key]["error"]) < 0.02


def test_this_host_meets_the_held_out_target():
    """Issue 13's acceptance on the committed CSV: counts equal in every cell, at least
    90% of held-out cells within 25%, and the faults, zap and THP groups within 30%
    median error."""
    import statistics
    rows = compare(read_bench(CSV), "this-host")
    assert all(r["counts_match"] for r in rows)
    held = [r for r in rows if r["role"] == "held-out"]
    assert sum(abs(r["error"]) <= 0.25 for r in held) >= 0.9 * len(held)
    for group in ("faults", "zap", "thp"):
        errs = [abs(r["error"]) for r in held if r["group"] == group]
        assert errs and statistics.median(errs) <= 0.30
