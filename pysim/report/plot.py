"""Pictures of sweep tables: one figure of a measure against one parameter; and the bar
chart a `pysim reproduce` entry draws of its simulated cells against published ones.

    pysim plot OUT --x pages --y cycles --hue profile --logx --logy --where 'pages<=4096'

Rows are filtered with `where` (conditions KEY OP VALUE, OP one of = == != < <= > >=,
or a dict of KEY: VALUE equalities), grouped by x and hue, and the y values of each
group combined with `agg` (mean by default).  The title states the filters, and a note
under it names the parameters that still varied inside the groups.

Figures are made with matplotlib's object API (matplotlib.figure.Figure), never through
pyplot: plotting leaves the caller's backend, current figure and interactive state as
they were, and nothing has to be closed.  The legend sits outside the axes, right of
the data, so it never hides a bar or a line; tick labels are plain numbers, without the
offset ("+1.234e6") matplotlib otherwise puts on large values.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, List, Mapping, Optional, Tuple, Union

from ..errors import ConfigError
from ..outputs import check_output
from ..sweeps.store import read_table

__all__ = ["plot_table", "plot_file", "parse_where", "image_suffixes", "Condition",
           "OPERATORS", "bars_against_published"]

OPERATORS = ("<=", ">=", "!=", "==", "<", ">", "=")    # longest first, for the parser
_COND = re.compile(r"^\s*(?P<key>[^<>=!]+?)\s*(?P<op><=|>=|!=|==|<|>|=)\s*(?P<value>.*?)\s*$")

Condition = Tuple[str, str, Any]         # (column, operator, value)


def image_suffixes() -> Tuple[str, ...]:
    """The file suffixes matplotlib can save a figure as (".png", ".pdf", ...)."""
    from matplotlib.backend_bases import FigureCanvasBase
    return tuple(f".{k}" for k in sorted(FigureCanvasBase.get_supported_filetypes()))


def parse_where(where: Union[None, Mapping[str, Any], Iterable[str]]) -> List[Condition]:
    """The filter conditions as (key, op, value) triples.

    where is None, a mapping (each item an equality), or strings "KEY OP VALUE" with OP
    one of = == != < <= > >= ("=" and "==" both mean equal); a malformed string is a
    ConfigError quoting it."""
    if where is None:
        return []
    if isinstance(where, Mapping):
        return [(str(k), "==", v) for k, v in where.items()]
    if isinstance(where, str):
        where = [where]
    out: List[Condition] = []
    for item in where:
        m = _COND.match(str(item))
        if not m or not m.group("key"):
            raise ConfigError(f"--where {item!r}: expected KEY=VALUE or a comparison "
                              f"KEY<VALUE (operators: {' '.join(OPERATORS)})",
                              field="where")
        op = "==" if m.group("op") == "=" else m.group("op")
        out.append((m.group("key"), op, m.group("value")))
    return out


def _typed(series, value: Any, op: str) -> Any:
    """value converted to the type of series' column (a string from the command line
    becomes a bool, int or float as the column is); ConfigError when it cannot be."""
    if not isinstance(value, str):
        return value
    kind = series.dtype.kind
    try:
        if kind == "b":
            low = value.lower()
            if low not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(value)
            return low in ("1", "true", "yes")
        if kind in "iu":
            f = float(value)
            return int(f) if f.is_integer() else f
        if kind == "f":
            return float(value)
    except ValueError:
        raise ConfigError(f"--where {series.name}{op}{value!r}: column {series.name!r} "
                          f"holds {series.dtype} values", field=str(series.name)) from None
    return value


def _mask(series, op: str, value: Any):
    """The rows of series for which `row OP value` holds.  Text columns compare as
    text under = and !=, and refuse an ordering unless both sides are numbers."""
    import pandas as pd
    value = _typed(series, value, op)
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if not numeric and op in ("==", "!="):
        left = series.astype(str) if isinstance(value, str) else series
        return (left == value) if op == "==" else (left != value)
    if not numeric and op not in ("==", "!="):
        if pd.api.types.is_bool_dtype(series):
            raise ConfigError(f"--where {series.name}{op}...: {series.name!r} is true or "
                              f"false; use = or !=", field=str(series.name))
        try:
            series = pd.to_numeric(series)
            value = float(value)
        except (ValueError, TypeError):
            raise ConfigError(f"--where {series.name}{op}{value!r}: column "
                              f"{series.name!r} is not numeric; use = or !=",
                              field=str(series.name)) from None
    return {"==": series.__eq__, "!=": series.__ne__, "<": series.__lt__,
            "<=": series.__le__, ">": series.__gt__, ">=": series.__ge__}[op](value)


def _describe(conds: List[Condition]) -> str:
    """The filters as the title shows them: "pages<=4096, profile=patched"."""
    return ", ".join(f"{k}{'=' if op == '==' else op}{v}" for k, op, v in conds)


def _plain_ticks(ax) -> None:
    """Plain numbers on every linear axis: no offset and no "1e7" multiplier, so a
    value reads the same on the axis as in the table."""
    from matplotlib.ticker import ScalarFormatter
    for axis in (ax.xaxis, ax.yaxis):
        if isinstance(axis.get_major_formatter(), ScalarFormatter):
            fmt = ScalarFormatter(useOffset=False)
            fmt.set_scientific(False)
            axis.set_major_formatter(fmt)


def plot_table(df, x: str, y: str, hue: Optional[str] = None, where=None,
               agg: str = "mean", logx: bool = False, logy: bool = False,
               title: Optional[str] = None, ax=None):
    """Plot df[y] against df[x], one line (or bar group) per hue value; returns the
    matplotlib Figure.

    A numeric x gives lines, any other x bars.  ax draws into an existing Axes (whose
    figure is returned); without one a new Figure is made with the object API, so the
    caller's pyplot state and backend are untouched.  Every problem with the columns
    or filters is a ConfigError naming the option."""
    import pandas as pd

    for role, col in (("x", x), ("y", y), ("hue", hue)):
        if col is not None and col not in df.columns:
            raise ConfigError(f"--{role} {col!r}: no such column; columns: "
                              f"{', '.join(map(str, df.columns))}", field=role,
                              allowed=tuple(df.columns))
    if hue is not None and hue == x:
        raise ConfigError(f"--hue {hue!r} is the x axis too; choose another column for "
                          f"--hue (or leave it out)", field="hue")
    if agg not in ("mean", "median", "min", "max"):
        raise ConfigError(f"agg {agg!r} unknown; allowed: mean, median, min, max",
                          field="agg")
    conds = parse_where(where)
    for key, op, value in conds:
        if key not in df.columns:
            raise ConfigError(f"--where {key!r}: no such column; columns: "
                              f"{', '.join(map(str, df.columns))}", field="where",
                              allowed=tuple(df.columns))
        df = df[_mask(df[key], op, value)]
    if len(df) == 0:
        raise ConfigError(f"no rows left to plot (--where {_describe(conds)})"
                          if conds else "the table has no rows to plot", field="where")
    if not pd.api.types.is_numeric_dtype(df[y]) or pd.api.types.is_bool_dtype(df[y]):
        raise ConfigError(f"--y {y!r} is not numeric", field="y")

    meta = df.attrs.get("pysim_sweep", {})
    keys = [x] + ([hue] if hue else [])
    params = [c for c in meta.get("params", []) if c not in keys and c != "seed"]
    grouped = df.groupby(keys, sort=True, dropna=False)
    varied = [c for c in params if c in df.columns
              and (grouped[c].nunique(dropna=False) > 1).any()]
    groups = grouped[y].agg(agg).reset_index()
    if ax is None:
        from matplotlib.figure import Figure
        fig = Figure(figsize=(8, 5), layout="constrained")
        ax = fig.add_subplot()
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
    _plain_ticks(ax)
    ax.set_xlabel(x)
    ax.set_ylabel(y if agg == "mean" and not varied else f"{y} ({agg})")
    ax.grid(True, which="major", alpha=0.3)
    if hue:
        # outside the axes, right of the data: it can never cover a bar or a point
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0)
    head = title or (f"{meta['experiment']}: {y} vs {x}" if "experiment" in meta
                     else f"{y} vs {x}")
    notes = []
    if conds:
        notes.append(f"where {_describe(conds)}")
    if varied:
        notes.append(f"{agg} over {', '.join(varied)}")
    if notes:
        head += "\n(" + "; ".join(notes) + ")"
    ax.set_title(head, fontsize="medium")
    return fig


def _read_pysim_table(table: Any):
    """The sweep table at path `table`; ConfigError (one line) when it is missing, a
    folder, unreadable, or a table that pysim did not write."""
    if not isinstance(table, (str, os.PathLike)) or not os.fspath(table):
        raise ConfigError(f"table path must be a file name, got {table!r}", field="table")
    table = os.fspath(table)
    if os.path.isdir(table):
        raise ConfigError(f"{table!r} is a directory, not a table written by pysim sweep",
                          field="table")
    if not os.path.exists(table):
        raise ConfigError(f"{table!r}: no such file", field="table")
    try:
        df = read_table(table)
    except ConfigError:
        raise
    except Exception as e:                           # not Parquet, not CSV, not text
        raise ConfigError(f"{table!r} is not a table written by pysim sweep "
                          f"({type(e).__name__})", field="table") from None
    if "pysim_sweep" not in df.attrs and "point_id" not in df.columns:
        raise ConfigError(f"{table!r} is not a table written by pysim sweep (no pysim "
                          f"metadata, no point_id column)", field="table")
    return df


def plot_file(table: str, x: str, y: str, hue: Optional[str] = None, where=None,
              agg: str = "mean", out: Optional[str] = None, logx: bool = False,
              logy: bool = False, title: Optional[str] = None) -> str:
    """Read a sweep table, plot it, save the picture; returns the image path.

    The image path (default: the table's name with .png) is checked first -- a suffix
    matplotlib can write, a folder that exists and may be written -- then the table is
    read and checked to be pysim's, so every refusal comes before any drawing."""
    default = out is None
    if default and isinstance(table, (str, os.PathLike)):
        out = os.path.splitext(os.fspath(table))[0] + ".png"
    path = check_output(out, "plot", image_suffixes())
    df = _read_pysim_table(table)
    fig = plot_table(df, x, y, hue=hue, where=where, agg=agg, logx=logx, logy=logy,
                     title=title)
    fig.savefig(path, dpi=120)
    return path


def bars_against_published(path: str, labels: List[str], simulated: List[float],
                           published: List[Optional[float]], ylabel: str,
                           title: Optional[str] = None,
                           published_label: str = "published") -> None:
    """A bar per cell (simulated) and a black marker on each cell that has a published
    value (None: none); saved to path (a `pysim reproduce NAME --plot`)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 1.2 * len(labels) + 1.5), 4))
    ax = fig.subplots()
    xs = list(range(len(labels)))
    ax.bar(xs, simulated, 0.5, color="#4c72b0", label="simulated")
    marked = [(x, p) for x, p in zip(xs, published) if p is not None]
    if marked:
        ax.scatter([x for x, _ in marked], [p for _, p in marked], marker="_", s=400,
                   color="black", zorder=3, label=published_label)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
