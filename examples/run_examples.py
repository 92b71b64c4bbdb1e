"""Run the example grids and draw their pictures.

    python examples/run_examples.py                  # every grid, into examples/out/
    python examples/run_examples.py mprotect_pages   # one grid
    python examples/run_examples.py --quick          # small page counts only

Each grid is swept with the local backend (all cores) to OUTDIR/NAME.parquet, resumed
if that file or its .parts folder is already there, then plotted to OUTDIR/NAME*.png.
The same can be done one grid at a time from the shell:

    pysim sweep examples/grids/mprotect_pages.toml -o mprotect_pages.parquet
    pysim plot mprotect_pages.parquet --x pages --y cycles --hue profile --logx --logy
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GRIDS = os.path.join(HERE, "grids")

# grid name -> pictures: (suffix, plot keyword arguments)
PLOTS = {
    "mprotect_pages": [
        ("", dict(x="pages", y="cycles", hue="profile", logx=True, logy=True)),
        ("_flushes", dict(x="pages", y="invlpg", hue="profile", logx=True,
                          where=["pages<=4096"])),
    ],
    "mprotect_vmas": [
        ("", dict(x="vmas", y="cycles", hue="profile", logx=True, logy=True,
                  where=["pages=4096"])),
        ("_flushes", dict(x="vmas", y="flush_tlb_mm_range", hue="profile", logx=True,
                          where=["pages=4096"])),
    ],
    "mprotect_thp": [
        ("", dict(x="thp_fraction", y="cycles", hue="profile", logy=True,
                  where=["pages=262144"])),
    ],
    "mprotect_cpus": [
        ("", dict(x="cpus", y="cycles", hue="lazy", logx=True, logy=True,
                  where=["profile=patched", "pages=1"])),
        ("_ipis", dict(x="cpus", y="ipi_sent", hue="lazy", logx=True,
                       where=["profile=patched", "pages=1"])),
    ],
    "mprotect_ceiling": [
        ("", dict(x="pages", y="cycles", hue="tlb_single_page_flush_ceiling",
                  where=["cost_invlpg=100"])),
    ],
    "profiles_presets": [
        ("", dict(x="profile", y="cycles", hue="preset", where=["pages=4096"])),
    ],
    "seed_loop": [
        ("_prot_read", dict(x="profile", y="prot_read_cycles", hue="threads",
                            where=["write=true"])),
        ("_prot_rw", dict(x="profile", y="prot_rw_cycles", hue="threads",
                          where=["write=true"])),
    ],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="grid names (default: all)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="output folder")
    ap.add_argument("--quick", action="store_true",
                    help="cap page counts at 65,536 (a fast smoke run)")
    ap.add_argument("--backend", default="local", choices=("local", "serial", "dask"))
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)

    import pysim.sweeps as sw
    from pysim import ConfigError
    from pysim.report.plot import plot_table

    os.makedirs(args.out, exist_ok=True)
    names = args.names or sorted(f[:-5] for f in os.listdir(GRIDS) if f.endswith(".toml"))
    for name in names:
        grid = sw.load_grid(os.path.join(GRIDS, f"{name}.toml"))
        tag = ""
        if args.quick and "pages" in grid.get("grid", {}):
            grid["grid"]["pages"] = [p for p in grid["grid"]["pages"] if p <= 65536]
            tag = "_quick"
        out = os.path.join(args.out, f"{name}{tag}.parquet")
        print(f"== {name}: {len(sw.plan(grid).points)} points -> {out}", flush=True)
        df = sw.sweep(grid, out=out, backend=args.backend, workers=args.workers)
        df.attrs["pysim_sweep"] = sw.read_table(out).attrs.get("pysim_sweep", {})
        for suffix, kw in PLOTS.get(name, []):
            try:
                fig = plot_table(df, **kw)
            except ConfigError as e:                    # e.g. --quick dropped the pages
                print(f"   (no {name}{suffix} picture: {e})")
                continue
            png = os.path.join(args.out, f"{name}{tag}{suffix}.png")
            fig.savefig(png, dpi=110)
            print(f"   {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
