"""The `pysim` command: reproduce (the main job), sweep, plot and list.

Every argparse parser of pysim is built here; each subcommand's function only turns
its arguments into one call of pysim.report (reproduce, plot, catalog) or pysim.sweeps
and the outcome into output and an exit status.

Conventions, the same for every subcommand:
  * an error is one line on stderr, "pysim CMD: error: ...", and no traceback; exit 2
    for a usage or configuration error (a bad option, grid, path or table), 1 when the
    work itself failed (a sweep point raised), 130 on Ctrl-C;
  * `--debug` (before or after the subcommand) shows the traceback instead;
  * output paths are checked before any work runs, a file that is not a pysim result
    is never written over without --overwrite, and an output's suffix names its format
    (a suffix pysim cannot write is refused);
  * `--import MODULE` (a dotted name or a .py file, repeatable) registers custom
    experiments before the command runs; installed packages can offer them through the
    entry-point group pysim.experiments.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any, Callable, List, Optional

from .errors import ConfigError, PysimError
from .outputs import output_problem
from .report.plot import plot_file
from .sweeps import BACKENDS, sweep


# ---------------------------------------------------------------- commands
_IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff",
                   ".webp")


def check_output_path(path: str, what: str, suffixes: tuple) -> Optional[str]:
    """Why path cannot be written as `what` (suffix, directory, permission), or None;
    tested before any work runs, leaving no file behind (see pysim.outputs)."""
    return output_problem(path, what, suffixes)


def _one_line(e: BaseException) -> str:
    """The message of e on one line (newlines folded), for stderr."""
    return " ".join(str(e).split()) or type(e).__name__


def _debug(args: argparse.Namespace) -> bool:
    """Whether --debug was given (tracebacks wanted instead of one-line errors)."""
    return bool(getattr(args, "debug", False))


def _report(cmd: str, e: BaseException, resume_hint: bool = False) -> int:
    """Print the one-line error of command cmd for exception e; returns the exit status
    (2 configuration, 1 failed work or an internal error, 130 interrupted)."""
    hint = (" (finished points are stored; run the same command again to resume)"
            if resume_hint else "")
    if isinstance(e, KeyboardInterrupt):
        print(f"{cmd}: interrupted{hint}", file=sys.stderr)
        return 130
    if isinstance(e, ConfigError):
        print(f"{cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    if isinstance(e, PysimError):
        print(f"{cmd}: error: {_one_line(e)}{hint}", file=sys.stderr)
        return 1
    if isinstance(e, OSError):
        print(f"{cmd}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    print(f"{cmd}: internal error: {type(e).__name__}: {_one_line(e)} (run again with "
          f"--debug for the traceback)", file=sys.stderr)
    return 1


def _command(cmd: str, resume_hint: bool = False) -> Callable:
    """Decorator of a subcommand function: any exception but a closed pipe becomes
    _report's one line and exit status, unless --debug asks for the traceback."""
    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(fn)
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except (BrokenPipeError, SystemExit):
                raise
            except BaseException as e:          # noqa: B902 - Ctrl-C too, by design
                if _debug(args):
                    raise
                return _report(cmd, e, resume_hint)
        return run
    return wrap


def _reproduce(args: argparse.Namespace) -> int:
    """`pysim reproduce [NAME]`: print a published result reproduced (or JSON), maybe
    a plot; --list names them."""
    from .report.reproduce import get_entry, listing, reproduce
    if args.list:
        print(listing())
        return 0
    get_entry(args.name)                    # an unknown name fails before any work
    if args.iterations is not None and args.iterations < 1:
        print(f"pysim reproduce: error: --iterations must be >= 1, got {args.iterations}",
              file=sys.stderr)
        return 2
    if args.plot is not None:
        problem = check_output_path(args.plot, "plot", _IMAGE_SUFFIXES)
        if problem:
            print(f"pysim reproduce: error: {problem}", file=sys.stderr)
            return 2
    print(reproduce(args.name, as_json=args.json, plot_path=args.plot,
                    iterations=args.iterations, refit=args.refit))
    if args.plot and not args.json:
        print(f"\nplot written to {args.plot}")
    return 0


@_command("pysim sweep", resume_hint=True)
def _sweep(args: argparse.Namespace) -> int:
    """`pysim sweep`: run a grid into its table; exit 2 on a bad grid, option or output
    path (found before any point runs), 1 when a point failed, 130 on Ctrl-C (finished
    points stay stored in each case)."""
    _import_all(getattr(args, "sub_imports", None))
    out = args.out or os.path.splitext(os.path.basename(args.grid))[0] + ".parquet"
    df = sweep(args.grid, out=out, backend=args.backend, workers=args.workers,
               scheduler=args.scheduler, progress=not args.no_progress, seed=args.seed,
               retries=args.retries, overwrite=args.overwrite)
    info = df.attrs.get("pysim_sweep", {})
    print(f"{info.get('points', len(df))} points ({info.get('ran', '?')} run, "
          f"{info.get('stored', '?')} already stored) -> {info.get('out', out)}")
    return 0


@_command("pysim plot")
def _plot(args: argparse.Namespace) -> int:
    """`pysim plot`: draw one picture of a stored table and print its path; the image
    path and the table are checked before anything is drawn."""
    path = plot_file(args.table, x=args.x, y=args.y, hue=args.hue, where=args.where,
                     agg=args.agg, out=args.out, logx=args.logx, logy=args.logy,
                     title=args.title)
    print(path)
    return 0


def _import_all(modules: Optional[List[str]]) -> None:
    """Import every --import module (registering its experiments); ConfigError on the
    first that fails."""
    from .experiments import import_experiments
    for mod in modules or []:
        import_experiments(mod)


# ---------------------------------------------------------------- parsers
class _Parser(argparse.ArgumentParser):
    """argparse with pysim's error convention: a usage error is one line on stderr
    (pointing at --help instead of repeating the usage) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print `PROG: error: MESSAGE (see PROG --help)` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_conventions(parser: argparse.ArgumentParser, imports: bool) -> None:
    """--debug (and --import when imports) on a subcommand, so they may come after it
    too; defaults are suppressed so the top-level values are not overwritten."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    if imports:
        parser.add_argument("--import", dest="sub_imports", action="append",
                            metavar="MODULE", default=argparse.SUPPRESS,
                            help="import MODULE (a name or a .py file) first, to "
                                 "register its experiments (repeatable)")
def add_reproduce_parser(subparsers: Any) -> None:
    """Add `reproduce` to an argparse subparsers object."""
    from .report.reproduce import DEFAULT, REGISTRY
    r = subparsers.add_parser("reproduce",
                              help="reproduce a published result (default: the mprotect "
                                   "series' cover-letter table)")
    r.add_argument("name", nargs="?", default=DEFAULT, metavar="NAME",
                   help=f"which result: {', '.join(REGISTRY)} (default {DEFAULT})")
    r.add_argument("--list", action="store_true", help="list the published results")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--plot", metavar="FILE.png", help="also write a chart")
    r.add_argument("--iterations", type=int, default=None,
                   help="measured iterations per cell (default: the entry's own)")
    r.add_argument("--refit", action="store_true",
                   help="fit the free parameters again instead of using the stored fit")
    r.set_defaults(func=_reproduce)


def add_sweep_parser(subparsers: Any) -> None:
    """Add `sweep` to an argparse subparsers object."""
    sp = subparsers.add_parser(
        "sweep", help="run a parameter grid (one row per point) to Parquet/CSV",
        description="Run every point of a grid (TOML) and store one row per point. "
                    "Re-running with the same -o resumes: stored points are skipped.")
    sp.add_argument("grid", metavar="GRID.toml", help="the grid file")
    sp.add_argument("-o", "--out", help="output table, .parquet (or .pq) or .csv, the "
                                        "suffix giving the format; default: the grid's "
                                        "name with .parquet")
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
                    help="discard what OUT holds instead of resuming; needed to replace a "
                         "file that is not a pysim result")
    sp.add_argument("--no-progress", action="store_true", help="no progress display")
    _add_conventions(sp, imports=True)
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
                    help="keep rows with KEY = VALUE, or a comparison KEY<VALUE with "
                         "< <= > >= != == (quote it in a shell; repeatable)")
    pp.add_argument("--agg", default="mean", choices=("mean", "median", "min", "max"),
                    help="how to combine rows with the same x and hue (default mean)")
    pp.add_argument("-o", "--out", default=None,
                    help="image file, its suffix giving the format (.png, .pdf, .svg, "
                         "...); default: OUT with .png")
    pp.add_argument("--logx", action="store_true", help="log-scale x axis")
    pp.add_argument("--logy", action="store_true", help="log-scale y axis")
    pp.add_argument("--title", default=None, help="the title (default: what is plotted "
                                                   "and the --where filters)")
    _add_conventions(pp, imports=False)
    pp.set_defaults(func=_plot)


def add_sweep_parsers(subparsers: Any) -> None:
    """Add the two subcommands of sweeps, `sweep` and `plot`."""
    add_sweep_parser(subparsers)
    add_plot_parser(subparsers)


@_command("pysim list")
def _list(args: argparse.Namespace) -> int:
    """`pysim list KIND`: print the presets, profiles, experiments or counters (custom
    experiments of --import modules and installed entry points included)."""
    _import_all(getattr(args, "sub_imports", None))
    from .report.catalog import LISTS
    print("\n".join(LISTS[args.kind]()))
    return 0


def add_list_parser(subparsers: Any) -> None:
    """Add `list` to an argparse subparsers object."""
    from .report.catalog import KINDS
    lp = subparsers.add_parser("list", help="list presets, profiles, experiments, "
                                            "counters or published results")
    lp.add_argument("kind", choices=KINDS)
    _add_conventions(lp, imports=True)
    lp.set_defaults(func=_list)


def _replay(args: argparse.Namespace) -> int:
    """`pysim replay TRACE`: replay a trace under each --profile, print the summary (or
    every record as JSON), maybe write the records; exit 2 on a bad trace or option."""
    from .replay import ReplayResult, TraceError, replay
    out = args.out
    if out is not None:
        problem = check_output_path(out, "records", (".parquet", ".json", ".csv"))
        if problem:
            print(f"pysim replay: error: {problem}", file=sys.stderr)
            return 2
    try:
        res: ReplayResult = replay(args.trace, profile=args.profile or ["patched"],
                                   preset=args.preset, access=args.access, cpus=args.cpus,
                                   pin=args.pin, checker=args.check, faults=args.faults,
                                   elf=not args.no_elf, timeline=args.timeline)
    except (TraceError, ConfigError) as e:
        print(f"pysim replay: error: {e}", file=sys.stderr)
        return 2
    except PysimError as e:
        print(f"pysim replay: {e}", file=sys.stderr)
        return 1
    if out is not None:
        if out.endswith(".parquet"):
            if len(res.records) == 1:
                res.records[0].to_parquet(out)
            else:
                df = res.to_dataframe()
                df.attrs = {}
                df.to_parquet(out, index=False)
        elif out.endswith(".csv"):
            res.to_dataframe().to_csv(out, index=False)
        else:
            import json
            with open(out, "w") as f:
                json.dump(_replay_json(res), f)
    if args.json:
        import json
        print(json.dumps(_replay_json(res)))
        return 0
    print(f"{res.trace.source}: {len(res.trace.calls)} calls, {len(res.trace.pids)} tasks, "
          f"{res.cpus} CPUs (pinned {res.pin}), access model {res.access}")
    for n in res.notes:
        print(f"  note: {n}")
    print(res.summary().to_string(index=False))
    if args.timeline:
        for r in (r for r in res.records if r.timeline is not None):
            print(f"timeline ({r.profile}, {r.preset}): {r.timeline.seconds * 1e3:.3f} ms "
                  f"simulated; per task (seconds):")
            print(_task_times_text(r.task_times))
    div = res.records[0].diverged()
    for d in div[:10]:
        print(f"  diverged line {d['line']}: {d['call']}({d['args']}) traced "
              f"{d['traced_errno'] or d['traced']} simulated {d['sim_errno'] or d['sim']}"
              f"{': ' + d['note'] if d['note'] else ''}")
    if len(div) > 10:
        print(f"  ... and {len(div) - 10} more diverged calls")
    if out is not None:
        print(f"records written to {out}")
    return 0


def _task_times_text(rows: list) -> str:
    """A timeline replay's per-task times as an aligned table."""
    import pandas as pd
    return pd.DataFrame(rows).to_string(index=False)


def _replay_json(res: Any) -> dict:
    """The JSON document of a replay: settings, notes, summary rows and records (and a
    timeline replay's per-task times)."""
    runs = []
    for r in res.records:
        run = {"profile": r.profile, "preset": r.preset, "records": r.to_json_list()}
        if r.task_times is not None:
            run["timeline_seconds"] = r.timeline.seconds if r.timeline is not None else 0.0
            run["task_times"] = r.task_times
        runs.append(run)
    return {"trace": res.trace.source, "access": res.access, "pin": res.pin,
            "cpus": res.cpus, "notes": res.notes,
            "summary": res.summary().to_dict(orient="records"), "runs": runs}


def add_replay_parser(subparsers: Any) -> None:
    """Add `replay` to an argparse subparsers object."""
    from .replay import ACCESS_MODELS, PIN_POLICIES
    rp = subparsers.add_parser(
        "replay", help="replay a real program's memory syscalls (strace or JSON lines)",
        description="Replay every call of a trace (strace -f -tt [-y] text, or pysim's "
                    "JSON-lines format) at its traced address, each call's traced result "
                    "beside the simulated one; one summary row per --profile.")
    rp.add_argument("trace", metavar="TRACE",
                    help="the trace file (gzip-compressed when its name ends in .gz)")
    rp.add_argument("--profile", action="append", default=None, metavar="P",
                    help="kernel profile (repeat for several side by side; default "
                         "patched)")
    rp.add_argument("--preset", default="skylake", help="hardware preset (default skylake)")
    rp.add_argument("--access", choices=ACCESS_MODELS, default="none",
                    help="where user accesses come from (default none)")
    rp.add_argument("--faults", metavar="FILE", default=None,
                    help="page faults to merge (JSON lines; default TRACE.faults.jsonl "
                         "when present)")
    rp.add_argument("--cpus", type=int, default=None,
                    help="CPUs of the machine (default: one per task, at most 8)")
    rp.add_argument("--pin", choices=PIN_POLICIES, default="round-robin",
                    help="how tasks are placed on CPUs (default round-robin)")
    rp.add_argument("--timeline", action="store_true",
                    help="run the tasks at once on the timeline (each CPU its own clock; "
                         "per-task simulated time beside traced time) instead of one "
                         "after another")
    rp.add_argument("--check", action="store_true", help="run the TLB safety checker")
    rp.add_argument("--no-elf", action="store_true",
                    help="infer exec images from the trace only, without reading ELF files")
    rp.add_argument("--json", action="store_true", help="print every record as JSON")
    rp.add_argument("-o", "--out", default=None, metavar="RECORDS",
                    help="write the records (.parquet, .json or .csv)")
    rp.set_defaults(func=_replay)


def _capture(args: argparse.Namespace) -> int:
    """`pysim capture -o TRACE -- CMD ARGS`: record a trace; say what was not captured;
    exit with 2 when nothing could run, else the program's own exit status."""
    from .replay.capture import CaptureError, capture
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    try:
        res = capture(args.out, cmd, faults=not args.no_faults)
    except CaptureError as e:
        print(f"pysim capture: error: {e}", file=sys.stderr)
        return 2
    print(f"trace written to {res.trace}", file=sys.stderr)
    if res.faults:
        print(f"{res.nfaults} page faults written to {res.faults}", file=sys.stderr)
    for m in res.missing:
        print(f"not captured: {m}", file=sys.stderr)
    return res.returncode


def add_capture_parser(subparsers: Any) -> None:
    """Add `capture` to an argparse subparsers object."""
    cp = subparsers.add_parser(
        "capture", help="record a program's memory syscalls (and page faults) as a trace",
        description="Run CMD under strace -f -tt -y -e trace=memory,process; when root "
                    "and tracefs allow, also record its page faults (TRACE.faults.jsonl).")
    cp.add_argument("-o", "--out", required=True, metavar="TRACE", help="trace file")
    cp.add_argument("--no-faults", action="store_true", help="do not record page faults")
    cp.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                    help="the program to run")
    cp.set_defaults(func=_capture)


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
    p = _Parser(prog="pysim", description="Simulate the Linux MMU and its TLB-flush "
                "machinery.", epilog="Errors are one line; --debug shows the traceback. "
                "Documentation: docs/ (python -m sphinx docs docs/_build/html).")
    p.add_argument("--version", action="version", version=f"pysim {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error instead of one line")
    p.add_argument("--import", dest="imports", action="append", default=[],
                   metavar="MODULE", help="import MODULE (a dotted name or a .py file) "
                   "before the command, to register custom experiments (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)
    add_reproduce_parser(sub)
    add_sweep_parsers(sub)
    add_list_parser(sub)
    add_replay_parser(sub)
    add_capture_parser(sub)
    add_hostbench_parser(sub)
    add_calibrate_parser(sub)
    add_validate_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the `pysim` command on argv (default sys.argv[1:]); returns the exit status.

    The top-level --import modules are imported first; any error a subcommand lets
    through is still one line (exit 2 for configuration, 1 otherwise) unless --debug.
    A reader that closes the pipe early (`pysim reproduce | head -1`) ends it quietly."""
    args = build_parser().parse_args(argv)
    if getattr(args, "iterations", 1) is not None and getattr(args, "iterations", 1) < 1:
        print("pysim: --iterations must be >= 1", file=sys.stderr)
        return 2
    try:
        try:
            _import_all(args.imports)
            return args.func(args)
        except (BrokenPipeError, SystemExit):
            raise
        except BaseException as e:              # noqa: B902 - Ctrl-C too, by design
            if _debug(args):
                raise
            return _report(f"pysim {args.command}", e)
    except BrokenPipeError:
        # the reader is gone: stop writing, and keep the interpreter's final flush quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":          # pragma: no cover
    sys.exit(main())
