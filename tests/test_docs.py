"""The documentation: the Sphinx site builds with warnings as errors, its generated
pages cover every preset and profile with their sources, and the tutorial's code
(docs/tutorial/*.py, included in the pages) runs and shows what the text says."""
import html
import importlib
import os
import subprocess
import sys

import pytest

import pysim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
TUTORIAL = os.path.join(DOCS, "tutorial")


def _env():
    """The environment of a child process that must import this checkout's pysim."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + sys.path))


def _tutorial(name):
    """Import docs/tutorial/NAME.py as a module."""
    if TUTORIAL not in sys.path:
        sys.path.insert(0, TUTORIAL)
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The HTML site, built once with -W (every warning an error) from scratch."""
    try:
        import sphinx  # noqa: F401
    except ImportError:
        why = ("sphinx is not installed; the test extra installs it: "
               "pip install -e '.[test]' (or '.[docs]')")
        if os.environ.get("PYSIM_REQUIRE_DOCS"):          # CI (.ci/run): never skip
            pytest.fail(why)
        pytest.skip(why)
    out = tmp_path_factory.mktemp("html")
    p = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q",
                        "-b", "html", DOCS, str(out)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stderr.strip() == "", p.stderr
    return out


def _page(site, doc):
    """The text of one built page, entities decoded."""
    with open(os.path.join(site, doc + ".html"), encoding="utf-8") as f:
        return html.unescape(f.read())


def test_docs_build_without_warnings_and_reference_the_api(site):
    """The site builds with -W and its API page documents the main entry points."""
    api = _page(site, "api")
    for name in ("pysim.machine.machine.Machine", "pysim.sweeps.sweep",
                 "pysim.mm.mmu_gather.tlb_gather_mmu", "pysim.report.plot.plot_table",
                 "pysim.experiments.registry.experiment"):
        assert f'id="{name}"' in api, name
    for doc in ("index", "guide", "cli", "tutorial/seed_loop", "tutorial/kernel_path",
                "tutorial/sweep"):
        assert os.path.exists(os.path.join(site, doc + ".html")), doc


def test_a_page_per_preset_and_profile_with_its_sources(site):
    """Generated from pysim.config at build time: every cost's source is on its
    preset's page, every profile's fields on its page."""
    from pysim.config import PRESETS, PROFILES
    for name, preset in PRESETS.items():
        text = _page(site, f"generated/presets/{name.replace('.', '-')}")
        assert name in text
        for key, source in preset.sources.items():
            assert source in text, (name, key)
    for name, profile in PROFILES.items():
        text = _page(site, f"generated/profiles/{name.replace('.', '-')}")
        for field in ("use_mmu_gather", "tlb_single_page_flush_ceiling", "lazy_tlb"):
            assert field in text
        assert "4a18419f71cd" in text                  # patch 1's commit, from the code


def test_cli_page_is_the_parsers_help(site):
    """The command-line page holds the parsers' own help (generated, so it names the
    current options)."""
    text = _page(site, "cli")
    for needle in ("--import MODULE", "--debug", "--overwrite", "--where KEY=VALUE"):
        assert needle in text, needle


def test_tutorial_seed_loop_shows_the_patch_removing_the_ipi():
    """Tutorial step 1 shows what its text says: the patched kernel sends no IPI for
    PROT_READ|PROT_WRITE and is cheaper there."""
    loop = _tutorial("seed_loop").loop
    before, after = loop("mmots", iterations=4), loop("patched", iterations=4)
    assert before["ipis"]["PROT_READ|PROT_WRITE"] == 4
    assert after["ipis"]["PROT_READ|PROT_WRITE"] == 0
    assert after["cycles"]["PROT_READ|PROT_WRITE"] < before["cycles"]["PROT_READ|PROT_WRITE"]
    assert len(after["counters"]) == 2                       # one row per CPU


def test_tutorial_kernel_path_flushes_once_and_the_bug_is_caught():
    """Tutorial step 2: one flush and one IPI for 8 pages (an INVLPG per page on
    each CPU), and the unrecorded variant is caught by the checker."""
    out = _tutorial("kernel_path").demo()
    assert out["flushes"] == 1 and out["ipis"] == 1 and out["invlpg"] == 16
    assert "stale TLB entr" in out["caught"]


def test_tutorial_sweep_and_plot_from_python_and_the_shell(tmp_path):
    """Tutorial step 3 from Python and with the shell commands printed on its page:
    the table shows the 33-page ceiling and the plots are written."""
    png = _tutorial("sweep_plot").main(str(tmp_path), backend="serial")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    df = pysim.sweeps.read_table(str(tmp_path / "munmap.parquet"))
    assert len(df) == 40
    step = df[(df.cpus == 4) & (df.ceiling == 33)].set_index("pages")
    assert step.loc[33, "page_flushes"] == 33 and step.loc[34, "full_flushes"] == 1
    # the shell commands of the tutorial page, as printed there
    cmds = [["--import", "docs/tutorial/my_experiments.py", "sweep",
             "docs/tutorial/munmap.toml", "-o", str(tmp_path / "cli.parquet"),
             "--backend", "serial"],
            ["plot", str(tmp_path / "cli.parquet"), "--x", "pages", "--y", "cycles",
             "--hue", "ceiling", "--where", "cpus=4", "--logx", "--logy"]]
    for argv in cmds:
        p = subprocess.run([sys.executable, "-m", "pysim", *argv], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    assert (tmp_path / "cli.png").exists()


def test_plain_docstrings_become_literal_blocks_and_escaped_prose():
    """The docstring filter: an indented block becomes a literal block, markup
    characters are escaped, a list stays a list with blank lines around it."""
    sys.path.insert(0, os.path.join(DOCS, "_ext"))
    from pysim_catalog import plain_docstring
    doc = ["Call it so:", "    f(**kw)", "then *p = 0 with cost_ keys.", "- a",
           "  b", "end"]
    assert plain_docstring(doc) == ["Call it so:", "", "::", "", "    f(**kw)", "",
                                    "then \\*p = 0 with cost\\_ keys.", "", "- a", "  b",
                                    "", "end"]
