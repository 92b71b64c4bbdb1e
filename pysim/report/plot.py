"""Pictures of sweep tables (matplotlib, Agg backend): one figure against one parameter.

    pysim plot OUT --x pages --y cycles --hue profile --logx --logy

Rows are filtered with `where` (KEY=VALUE strings or a dict), grouped by x and hue, and
the y values of each group combined with `agg` (mean by default); a note under the
title names the parameters that still varied inside the groups.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from ..errors import ConfigError
from ..sweeps.store import read_table

__all__ = ["plot_table", "plot_file", "parse_where"]


def parse_where(where: Union[None, Mapping[str, Any], Iterable[str]]) -> Dict[str, str]:
    """KEY=VALUE strings (or a dict) as a dict."""
    if where is None:
        return {}
    if isinstance(where, Mapping):
        return dict(where)
    out: Dict[str, str] = {}
    for item in where:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"--where {item!r}: expected KEY=VALUE", field="where")
        out[key.strip()] = value.strip()
    return out


def _match(series, value: Any):
    """Rows of series equal to value; a string value is compared as the column's type."""
    if isinstance(value, str):
        kind = series.dtype.kind
        try:
            if kind == "b":
                return series == (value.lower() in ("1", "true", "yes"))
            if kind in "iu":
                return series == int(value)
            if kind == "f":
                return series == float(value)
        except ValueError:
            raise ConfigError(f"--where {series.name}={value!r}: not a "
                              f"{series.dtype} value", field=str(series.name)) from None
        return series.astype(str) == value
    return series == value


def plot_table(df, x: str, y: str, hue: Optional[str] = None, where=None,
               agg: str = "mean", logx: bool = False, logy: bool = False,
               title: Optional[str] = None, ax=None):
    """Plot df[y] against df[x], one line (or bar group) per hue value; returns the
    matplotlib Figure."""
    import matplotlib
    if ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    for role, col in (("x", x), ("y", y), ("hue", hue)):
        if col is not None and col not in df.columns:
            raise ConfigError(f"--{role} {col!r}: no such column; columns: "
                              f"{', '.join(map(str, df.columns))}", field=role,
                              allowed=tuple(df.columns))
    if agg not in ("mean", "median", "min", "max"):
        raise ConfigError(f"agg {agg!r} unknown; allowed: mean, median, min, max",
                          field="agg")
    for key, value in parse_where(where).items():
        if key not in df.columns:
            raise ConfigError(f"--where {key!r}: no such column", field="where",
                              allowed=tuple(df.columns))
        df = df[_match(df[key], value)]
    if len(df) == 0:
        raise ConfigError("no rows left to plot (check --where)", field="where")
    if not pd.api.types.is_numeric_dtype(df[y]):
        raise ConfigError(f"--y {y!r} is not numeric", field="y")

    meta = df.attrs.get("pysim_sweep", {})
    keys = [x] + ([hue] if hue else [])
    params = [c for c in meta.get("params", []) if c not in keys and c != "seed"]
    grouped = df.groupby(keys, sort=True, dropna=False)
    varied = [c for c in params if c in df.columns
              and (grouped[c].nunique(dropna=False) > 1).any()]
    groups = grouped[y].agg(agg).reset_index()
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    else:
        fig = ax.figure
    numeric_x = pd.api.types.is_numeric_dtype(df[x]) and not pd.api.types.is_bool_dtype(df[x])
    hues: List[Any] = list(pd.unique(df[hue])) if hue else [None]    # grid order
    if numeric_x:
        # distinct markers and dashes, so that lines lying on top of each other show
        styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"),
                  ("x", "--"), ("P", "-."), ("*", ":")]
        for i, h in enumerate(hues):
            g = groups if h is None else groups[groups[hue] == h]
            g = g.sort_values(x)
            marker, dash = styles[i % len(styles)]
            ax.plot(g[x], g[y], marker=marker, linestyle=dash, markersize=4,
                    linewidth=1.3, markerfacecolor="none",
                    label=None if h is None else f"{hue}={h}")
    else:
        cats = list(pd.unique(df[x]))
        width = 0.8 / len(hues)
        for i, h in enumerate(hues):
            g = groups if h is None else groups[groups[hue] == h]
            vals = dict(zip(g[x].tolist(), g[y].tolist()))
            pos = [j + (i - (len(hues) - 1) / 2) * width for j in range(len(cats))]
            ax.bar(pos, [vals.get(c, float("nan")) for c in cats], width=width,
                   label=None if h is None else f"{hue}={h}")
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([str(c) for c in cats], rotation=30 if len(cats) > 6 else 0)
    if logx and numeric_x:
        ax.set_xscale("log", base=2 if df[x].min() >= 1 else 10)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y if agg == "mean" and not varied else f"{y} ({agg})")
    ax.grid(True, which="major", alpha=0.3)
    if hue:
        ax.legend(fontsize="small")
    head = title or (f"{meta['experiment']}: {y} vs {x}" if "experiment" in meta
                     else f"{y} vs {x}")
    if varied:
        head += f"\n({agg} over {', '.join(varied)})"
    ax.set_title(head, fontsize="medium")
    return fig


def plot_file(table: str, x: str, y: str, hue: Optional[str] = None, where=None,
              agg: str = "mean", out: Optional[str] = None, logx: bool = False,
              logy: bool = False, title: Optional[str] = None) -> str:
    """Read a sweep table, plot it, save the picture; returns the image path."""
    if not os.path.exists(table):
        raise FileNotFoundError(f"{table}: no such file")
    df = read_table(table)
    fig = plot_table(df, x, y, hue=hue, where=where, agg=agg, logx=logx, logy=logy,
                     title=title)
    path = out or os.path.splitext(table)[0] + ".png"
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path
