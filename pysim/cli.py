"""The `pysim` command: reproduce (the main job), sweep and plot."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _reproduce(args: argparse.Namespace) -> int:
    from .report import reproduce
    print(reproduce(as_json=args.json, plot_path=args.plot, iterations=args.iterations))
    if args.plot and not args.json:
        print(f"\nplot written to {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pysim", description="Simulate the Linux MMU and its "
                                "TLB-flush machinery.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("reproduce", help="reproduce the mprotect series' cover-letter table")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument("--plot", metavar="FILE.png", help="also write a bar chart")
    r.add_argument("--iterations", type=int, default=20, help="measured loop iterations")
    r.set_defaults(func=_reproduce)
    try:
        from .sweep import add_sweep_parsers
    except ImportError:              # the sweep extra is optional
        pass
    else:
        add_sweep_parsers(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "iterations", 1) is not None and getattr(args, "iterations", 1) < 1:
        print("pysim: --iterations must be >= 1", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":          # pragma: no cover
    sys.exit(main())
