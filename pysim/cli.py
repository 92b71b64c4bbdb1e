"""The `pysim` command: reproduce (the main job), sweep and plot.

Every argparse parser of pysim is built here; each subcommand's function only turns
its arguments into one call of pysim.report (reproduce, plot) or pysim.sweeps and the
outcome into output and an exit status.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional

from .errors import ConfigError, PysimError
from .report.plot import plot_file
from .sweeps import BACKENDS, sweep


# ---------------------------------------------------------------- commands
_IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff",
                   ".webp")


def check_output_path(path: str, what: str, suffixes: tuple) -> Optional[str]:
    """Why path cannot be written as `what` (suffix, directory, permission), or None;
    tested before any work runs, leaving no file behind."""
    if not path:
        return f"{what} path is empty"
    if not path.lower().endswith(suffixes):
        return f"{what} {path!r} needs one of the suffixes {', '.join(suffixes)}"
    if os.path.isdir(path):
        return f"{what} {path!r} is a directory"
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        return f"cannot write {what} {path!r}: {e.strerror}"
    if not existed:
        os.remove(path)
    return None


def _reproduce(args: argparse.Namespace) -> int:
    """`pysim reproduce`: print the cover letter's table (or JSON), maybe a plot."""
    from .report.reproduce import reproduce
    if args.plot is not None:
        problem = check_output_path(args.plot, "plot", _IMAGE_SUFFIXES)
        if problem:
            print(f"pysim reproduce: error: {problem}", file=sys.stderr)
            return 2
    print(reproduce(as_json=args.json, plot_path=args.plot, iterations=args.iterations))
    if args.plot and not args.json:
        print(f"\nplot written to {args.plot}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """`pysim sweep`: run a grid into its table; exit 2 on a bad grid or option, 1 when
    a point failed, 130 on Ctrl-C (finished points stay stored in each case)."""
    out = args.out or os.path.splitext(os.path.basename(args.grid))[0] + ".parquet"
    try:
        df = sweep(args.grid, out=out, backend=args.backend, workers=args.workers,
                   scheduler=args.scheduler, progress=not args.no_progress, seed=args.seed,
                   retries=args.retries, overwrite=args.overwrite)
    except ConfigError as e:
        print(f"pysim sweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pysim sweep: interrupted; finished points are stored, run the same "
              "command again to resume", file=sys.stderr)
        return 130
    except PysimError as e:
        print(f"pysim sweep: {e}\n(finished points are stored; fix the cause and run the "
              f"same command again to resume)", file=sys.stderr)
        return 1
    info = df.attrs.get("pysim_sweep", {})
    print(f"{info.get('points', len(df))} points ({info.get('ran', '?')} run, "
          f"{info.get('stored', '?')} already stored) -> {info.get('out', out)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    """`pysim plot`: draw one picture of a stored table and print its path."""
    try:
        path = plot_file(args.table, x=args.x, y=args.y, hue=args.hue, where=args.where,
                         agg=args.agg, out=args.out, logx=args.logx, logy=args.logy,
                         title=args.title)
    except (ConfigError, FileNotFoundError) as e:
        print(f"pysim plot: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


# ---------------------------------------------------------------- parsers
def add_reproduce_parser(subparsers: Any) -> None:
    """Add `reproduce` to an argparse subparsers object."""
    r = subparsers.add_parser("reproduce",
                              help="reproduce the mprotect series' cover-letter table")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--plot", metavar="FILE.png", help="also write a bar chart")
    r.add_argument("--iterations", type=int, default=20, help="measured loop iterations")
    r.set_defaults(func=_reproduce)


def add_sweep_parser(subparsers: Any) -> None:
    """Add `sweep` to an argparse subparsers object."""
    sp = subparsers.add_parser(
        "sweep", help="run a parameter grid (one row per point) to Parquet/CSV",
        description="Run every point of a grid (TOML) and store one row per point. "
                    "Re-running with the same -o resumes: stored points are skipped.")
    sp.add_argument("grid", metavar="GRID.toml", help="the grid file")
    sp.add_argument("-o", "--out", help="output table (.parquet, or .csv); default: the "
                                        "grid's name with .parquet")
    sp.add_argument("--backend", choices=BACKENDS, default=None,
                    help="local processes (default), serial, or dask")
    sp.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: all cores)")
    sp.add_argument("--scheduler", metavar="ADDR", default=None,
                    help="dask scheduler address (implies --backend dask)")
    sp.add_argument("--seed", type=int, default=None, help="override the grid's seed")
    sp.add_argument("--retries", type=int, default=3,
                    help="re-runs of a point whose worker died (default 3)")
    sp.add_argument("--overwrite", action="store_true",
                    help="discard what OUT holds instead of resuming")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=_sweep)


def add_plot_parser(subparsers: Any) -> None:
    """Add `plot` to an argparse subparsers object."""
    pp = subparsers.add_parser(
        "plot", help="plot a sweep's table (matplotlib)",
        description="Plot one figure of a sweep against a parameter, one line per --hue "
                    "value; other varying parameters are aggregated (--agg) unless "
                    "pinned with --where.")
    pp.add_argument("table", metavar="OUT", help="a table written by `pysim sweep`")
    pp.add_argument("--x", required=True, help="column on the x axis (e.g. pages)")
    pp.add_argument("--y", required=True, help="column on the y axis (e.g. cycles)")
    pp.add_argument("--hue", default=None, help="one line per value of this column")
    pp.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                    help="keep rows with KEY == VALUE (repeatable)")
    pp.add_argument("--agg", default="mean", choices=("mean", "median", "min", "max"),
                    help="how to combine rows with the same x and hue (default mean)")
    pp.add_argument("-o", "--out", default=None,
                    help="image file (default: OUT with .png)")
    pp.add_argument("--logx", action="store_true", help="log-scale x axis")
    pp.add_argument("--logy", action="store_true", help="log-scale y axis")
    pp.add_argument("--title", default=None)
    pp.set_defaults(func=_plot)


def add_sweep_parsers(subparsers: Any) -> None:
    """Add the two subcommands of sweeps, `sweep` and `plot`."""
    add_sweep_parser(subparsers)
    add_plot_parser(subparsers)


def _list(args: argparse.Namespace) -> int:
    """`pysim list KIND`: print the presets, profiles, experiments or counters."""
    from .report.catalog import LISTS
    print("\n".join(LISTS[args.kind]()))
    return 0


def add_list_parser(subparsers: Any) -> None:
    """Add `list` to an argparse subparsers object."""
    from .report.catalog import KINDS
    lp = subparsers.add_parser("list", help="list presets, profiles, experiments or "
                                            "counters")
    lp.add_argument("kind", choices=KINDS)
    lp.set_defaults(func=_list)


# ---------------------------------------------------------------- host (issue 13)
def _hostbench(args: argparse.Namespace) -> int:
    """`pysim hostbench`: build and run the C microbenchmark, write its CSV."""
    from .host.hostbench import hostbench, main_log
    problem = check_output_path(args.out, "CSV", (".csv",))
    if problem:
        print(f"pysim hostbench: error: {problem}", file=sys.stderr)
        return 2
    counts = {"auto": None, "yes": True, "no": False}[args.counts]
    try:
        info = hostbench(args.out, runs=args.runs, reps=args.reps, max_pages=args.max_pages,
                         counts=counts, only=args.only, log=main_log)
    except ConfigError as e:
        print(f"pysim hostbench: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {info['cpu']}, kernel {info['kernel']}, counts {info['counts']}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """`pysim calibrate`: fit a preset to a hostbench CSV, write it as TOML, print the
    training cells and the held-out residuals by group."""
    from .config.toml_preset import preset_to_toml
    from .host.calibrate import TRAINING, calibrate, read_bench, summary, table, _cell_name
    problem = check_output_path(args.out, "preset", (".toml",))
    if problem:
        print(f"pysim calibrate: error: {problem}", file=sys.stderr)
        return 2
    try:
        bench = read_bench(args.csv)
        fit = calibrate(bench, base=args.base, name=args.name,
                        log=lambda m: print(m, file=sys.stderr))
    except ConfigError as e:
        print(f"pysim calibrate: error: {e}", file=sys.stderr)
        return 2
    with open(args.out, "w") as f:
        f.write(preset_to_toml(fit.preset, comment=f"made by: pysim calibrate {args.csv} "
                                                    f"-o {args.out}"))
    print("training cells: " + "; ".join(_cell_name(k) for k in TRAINING))
    print("\n".join(table(fit.rows)))
    print("\nheld-out residuals by group:")
    print("\n".join(summary(fit.rows)))
    print(f"\npreset written to {args.out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    """`pysim validate`: model vs machine for every hostbench cell; exit 1 on any count
    mismatch, 2 on a bad CSV or preset."""
    from .host.calibrate import compare, read_bench, summary, table
    from .host.model import host_config
    try:
        bench = read_bench(args.csv)
        from .config import get_preset
        preset = get_preset(args.preset)
        cfg = host_config(bench.info, profile=args.profile)
        rows = compare(bench, preset, cfg)
    except ConfigError as e:
        print(f"pysim validate: error: {e}", file=sys.stderr)
        return 2
    print(f"preset {preset.name}, profile {cfg.profile}, pti {cfg.pti}, pcid {cfg.pcid}, "
          f"invpcid {cfg.invpcid}, invlpgb {cfg.invlpgb}")
    print("\n".join(table(rows)))
    print("\nresiduals by group (held-out cells):")
    print("\n".join(summary(rows)))
    bad = [r for r in rows if r["counts_match"] is False]
    if not bench.has_counts():
        print("\nno counts in the CSV (hostbench ran without tracefs): counts not compared")
    elif bad:
        print(f"\n{len(bad)} of {len(rows)} cells: counts differ from the kernel's")
        return 1
    else:
        print(f"\ncounts equal the kernel's in all {len(rows)} cells")
    return 0


def add_hostbench_parser(subparsers: Any) -> None:
    """Add `hostbench` to an argparse subparsers object."""
    hp = subparsers.add_parser(
        "hostbench", help="measure this machine's mm paths (C microbenchmark) to CSV",
        description="Compile the shipped C microbenchmark with the system compiler and "
                    "run it: cycles per operation (medians and spread), and, as root "
                    "with tracefs, flush/IPI/fault counts per operation.")
    hp.add_argument("-o", "--out", default="hostbench.csv", help="output CSV")
    hp.add_argument("--runs", type=int, default=5, help="processes per scenario")
    hp.add_argument("--reps", type=int, default=31, help="timed operations per process")
    hp.add_argument("--max-pages", type=int, default=1 << 20,
                    help="skip scenarios populating more 4K pages than this")
    hp.add_argument("--counts", choices=("auto", "yes", "no"), default="auto",
                    help="tracepoint counts: when possible (auto), required, or never")
    hp.add_argument("--only", action="append", default=[], metavar="GROUP|SCENARIO",
                    help="run only these groups or scenarios (repeatable)")
    hp.set_defaults(func=_hostbench)


def add_calibrate_parser(subparsers: Any) -> None:
    """Add `calibrate` to an argparse subparsers object."""
    cp = subparsers.add_parser("calibrate", help="fit a preset to a hostbench CSV")
    cp.add_argument("csv", metavar="HOSTBENCH.csv")
    cp.add_argument("-o", "--out", required=True, metavar="PRESET.toml")
    cp.add_argument("--name", default="this-host", help="the preset's name")
    cp.add_argument("--base", default="kvm-2022-start",
                    help="preset the unfitted costs come from")
    cp.set_defaults(func=_calibrate)


def add_validate_parser(subparsers: Any) -> None:
    """Add `validate` to an argparse subparsers object."""
    vp = subparsers.add_parser("validate", help="compare a preset with a hostbench CSV")
    vp.add_argument("csv", metavar="HOSTBENCH.csv")
    vp.add_argument("--preset", required=True, help="preset name or PRESET.toml")
    vp.add_argument("--profile", default=None,
                    help="kernel profile (default: the newest v6.x not newer than the "
                         "CSV's kernel)")
    vp.set_defaults(func=_validate)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole `pysim` command."""
    from . import __version__
    p = argparse.ArgumentParser(prog="pysim", description="Simulate the Linux MMU and its "
                                "TLB-flush machinery.")
    p.add_argument("--version", action="version", version=f"pysim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    add_reproduce_parser(sub)
    add_sweep_parsers(sub)
    add_list_parser(sub)
    add_hostbench_parser(sub)
    add_calibrate_parser(sub)
    add_validate_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the `pysim` command on argv (default sys.argv[1:]); returns the exit status.
    A reader that closes the pipe early (`pysim reproduce | head -1`) ends it quietly."""
    args = build_parser().parse_args(argv)
    if getattr(args, "iterations", 1) is not None and getattr(args, "iterations", 1) < 1:
        print("pysim: --iterations must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader is gone: stop writing, and keep the interpreter's final flush quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":          # pragma: no cover
    sys.exit(main())
