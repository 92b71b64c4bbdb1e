"""Tutorial, part 3: sweep the custom experiment of my_experiments.py and plot it,
from Python (the same as `pysim sweep` and `pysim plot` do from a shell)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import my_experiments  # noqa: E402,F401  registers munmap_range
import pysim  # noqa: E402
from pysim.report.plot import plot_table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(out_dir: str = ".", backend: str = "local") -> str:
    """Run munmap.toml into out_dir/munmap.parquet (resuming what is stored) and draw
    cycles against pages for 4 CPUs; returns the picture's path."""
    table = os.path.join(out_dir, "munmap.parquet")
    df = pysim.sweep(os.path.join(HERE, "munmap.toml"), out=table, backend=backend,
                     progress=False)
    fig = plot_table(df, x="pages", y="cycles", hue="ceiling", where=["cpus=4"],
                     logx=True, logy=True)
    png = os.path.join(out_dir, "munmap.png")
    fig.savefig(png, dpi=100)
    return png


if __name__ == "__main__":
    print(main())
