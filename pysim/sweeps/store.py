"""Storage of sweep results: the output table OUT and its part files in OUT.parts/.

While a sweep runs, finished rows are buffered and written now and then as a new part
file; every write goes to a temporary name in the same folder and is renamed into
place, so a kill leaves only whole files.  At the end the full table is written to OUT
in grid order (Parquet files carry the grid's description as schema metadata) and the
parts are removed.  A sweep that finds OUT or OUT.parts/ skips the points they hold.

Format: the suffix decides -- .parquet or .pq is Parquet (pyarrow), .csv is CSV, and
any other suffix is refused rather than written in a format its name does not say.
Without pyarrow a .parquet/.pq path is swapped for the same name with .csv, with a
warning.

Safety: a file that is not a pysim result (no pysim metadata in a Parquet file, no
point_id first column in a CSV file, an empty file) is never written over unless the
caller says overwrite; and the path is probed for writing before any point runs.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Collection, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..outputs import check_output, suffix_of

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Store", "open_store", "read_table", "write_table", "format_for", "has_pyarrow",
           "is_pysim_table", "META_KEY", "TABLE_SUFFIXES"]

PARTS_SUFFIX = ".parts"
MAX_PARTS = 64               # more part files than this are compacted into one
META_KEY = b"pysim.sweep"    # Parquet schema metadata key of the grid's description
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = PARQUET_SUFFIXES + (".csv",)


# ---------------------------------------------------------------- formats
def has_pyarrow() -> bool:
    """Whether pyarrow (with its Parquet module) can be imported."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        return True
    except ImportError:
        return False


def format_for(path: str, stacklevel: int = 1) -> Tuple[str, str]:
    """(path to write, "parquet" or "csv") for an output path, chosen by its suffix; a
    suffix that is neither is a ConfigError.  stacklevel, counted from the caller as in
    warnings.warn, places the warning about a missing pyarrow."""
    suffix = suffix_of(path)
    if suffix == ".csv":
        return path, "csv"
    if suffix not in PARQUET_SUFFIXES:
        raise ConfigError(f"out {path!r}: the suffix says which format to write; use "
                          f"one of {', '.join(TABLE_SUFFIXES)}", field="out",
                          allowed=TABLE_SUFFIXES)
    if has_pyarrow():
        return path, "parquet"
    new = os.path.splitext(path)[0] + ".csv"
    warnings.warn(f"pyarrow is not installed: writing CSV to {new} instead of "
                  f"Parquet to {path} (pip install pyarrow)", stacklevel=stacklevel + 1)
    return new, "csv"


def is_pysim_table(path: str) -> bool:
    """Whether the existing file at path is a table pysim wrote: Parquet with pysim's
    schema metadata, or CSV whose first column is point_id.  Reads only the head (the
    Parquet footer, the CSV header line)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head == b"PAR1":
                if not has_pyarrow():
                    return False
                import pyarrow.parquet as pq
                md = pq.read_schema(path).metadata or {}
                return META_KEY in md
            f.seek(0)
            first = f.readline(4096)
    except Exception:
        return False
    return first.split(b",")[0].strip().strip(b'"') == b"point_id"


def _isnan(v: Any) -> bool:
    """Whether v is a missing value as tables read it back (None or NaN)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _storable(df: "pd.DataFrame") -> "pd.DataFrame":
    """df with every column of mixed Python types (busy = [0, "rest"]) turned into
    strings, which both formats can hold; modifies and returns df."""
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if not _isnan(v)}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: v if v is None else str(v))
    return df


def write_table(df: "pd.DataFrame", path: str, fmt: str,
                meta: Optional[Dict[str, Any]] = None) -> None:
    """Write df to path in fmt atomically (a temporary file beside it, then a rename);
    meta goes into the Parquet schema metadata."""
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    df = _storable(df.copy())
    try:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pa.Table.from_pandas(df, preserve_index=False)
            if meta is not None:
                md = dict(table.schema.metadata or {})
                md[META_KEY] = json.dumps(meta).encode()
                table = table.replace_schema_metadata(md)
            pq.write_table(table, tmp)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: str) -> "pd.DataFrame":
    """A stored sweep table (Parquet or CSV, told apart by content); from Parquet, the
    grid's description is in df.attrs["pysim_sweep"]."""
    import pandas as pd
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        if not has_pyarrow():
            raise ConfigError(f"{path} is a Parquet file: reading it needs pyarrow "
                              f"(pip install pyarrow)", field="out")
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        df = table.to_pandas()
        md = table.schema.metadata or {}
        if META_KEY in md:
            df.attrs["pysim_sweep"] = json.loads(md[META_KEY])
        return df
    if os.path.getsize(path) == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


# ---------------------------------------------------------------- the store
class Store:
    """OUT and OUT.parts/ of one sweep: reads what is stored, buffers new rows, writes
    them as part files and finally the whole table."""

    def __init__(self, path: str, fmt: str, meta: Dict[str, Any]):
        self.path, self.fmt, self.meta = path, fmt, meta
        self.parts_dir = path + PARTS_SUFFIX
        self.ext = ".parquet" if fmt == "parquet" else ".csv"
        self.buffer: List[Dict[str, Any]] = []
        self.nparts = 0

    def _part_files(self) -> List[str]:
        """The part files in OUT.parts/, oldest first (names start with a timestamp)."""
        if not os.path.isdir(self.parts_dir):
            return []
        return sorted(os.path.join(self.parts_dir, f) for f in os.listdir(self.parts_dir)
                      if f.startswith("part-") and f.endswith(self.ext))

    def _read_stored(self, path: str) -> "pd.DataFrame":
        """One stored file as a table; ConfigError when it cannot be read."""
        try:
            return read_table(path)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"out: cannot read stored results {path!r} ({e}); remove it "
                              f"or use overwrite", field="out") from e

    def stored(self) -> Dict[str, Dict[str, Any]]:
        """{point_id: row} of every row in OUT and OUT.parts/ (the first copy wins)."""
        rows: Dict[str, Dict[str, Any]] = {}
        files = ([self.path] if os.path.exists(self.path) else []) + self._part_files()
        for f in files:
            df = self._read_stored(f)
            if len(df) == 0:
                continue
            if "point_id" not in df.columns:
                raise ConfigError(f"out: {f!r} is not a pysim sweep table (no point_id "
                                  f"column); choose another path or use overwrite",
                                  field="out")
            for rec in df.to_dict("records"):
                rows.setdefault(str(rec["point_id"]), rec)
        self.nparts = len(self._part_files())
        return rows

    def resume(self, point_ids: Collection[str],
               param_columns: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """{point_id: figures} already stored for a grid with these points; ConfigError
        when the store holds a row of any other point."""
        stored = self.stored()
        foreign = [k for k in stored if k not in point_ids]
        if foreign:
            raise ConfigError(f"out: {self.path!r} holds {len(foreign)} rows of another "
                              f"grid (other experiment, seed or parameters); use a new "
                              f"path or overwrite=True (--overwrite) to replace it",
                              field="out")
        params = set(param_columns) | {"point_id"}
        return {k: {c: v for c, v in row.items() if c not in params and not _isnan(v)}
                for k, row in stored.items()}

    def add(self, row: Dict[str, Any]) -> None:
        """Buffer one finished row until the next flush."""
        self.buffer.append(row)

    def flush(self) -> None:
        """Write the buffered rows as a new part file (compacting past MAX_PARTS)."""
        if not self.buffer:
            return
        import pandas as pd
        os.makedirs(self.parts_dir, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{os.getpid()}{self.ext}"
        write_table(pd.DataFrame.from_records(self.buffer),
                    os.path.join(self.parts_dir, name), self.fmt)
        self.buffer.clear()
        self.nparts += 1
        if self.nparts > MAX_PARTS:
            self.compact()

    def compact(self) -> None:
        """Merge the part files into one; the merged part is written before any old part
        goes, so a kill in between leaves duplicates, never a loss."""
        import pandas as pd
        files = self._part_files()
        frames = [read_table(f) for f in files]
        df = pd.concat([f for f in frames if len(f)], ignore_index=True)
        name = f"part-{time.time_ns():020d}-{os.getpid()}-merged{self.ext}"
        write_table(df, os.path.join(self.parts_dir, name), self.fmt)
        for f in files:
            os.unlink(f)
        self.nparts = 1

    def finish(self, df: "pd.DataFrame") -> None:
        """Write the whole table to OUT and drop the parts."""
        self.buffer.clear()
        write_table(df, self.path, self.fmt, self.meta)
        shutil.rmtree(self.parts_dir, ignore_errors=True)

    def remove(self) -> None:
        """Delete OUT and OUT.parts/ (overwrite)."""
        if os.path.exists(self.path):
            os.unlink(self.path)
        shutil.rmtree(self.parts_dir, ignore_errors=True)


def open_store(out: Any, meta: Dict[str, Any], overwrite: bool = False,
               stacklevel: int = 1) -> Store:
    """The store of an output path, checked before any work: a table suffix, a folder
    that exists, a file that may be written, and -- unless overwrite -- no existing
    file that pysim did not write.  With overwrite, OUT and OUT.parts/ are emptied
    first.  stacklevel as in format_for."""
    out = check_output(out, "out")
    path, fmt = format_for(out, stacklevel=stacklevel + 1)
    if path != out:
        check_output(path, "out")
    parts = path + PARTS_SUFFIX
    if os.path.exists(parts) and not os.path.isdir(parts):
        raise ConfigError(f"out: {parts!r} is in the way of the sweep's part files (it "
                          f"is not a folder); move it away", field="out")
    if not overwrite and os.path.exists(path) and not is_pysim_table(path):
        raise ConfigError(f"out: {path!r} exists and is not a pysim result; choose "
                          f"another path, or overwrite=True (--overwrite) to replace it",
                          field="out")
    store = Store(path, fmt, meta)
    if overwrite:
        store.remove()
    return store
