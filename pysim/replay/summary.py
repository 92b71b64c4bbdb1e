"""A replay's summary: one row per (profile, preset) it ran under, side by side.

Columns: calls (traced memory and process calls), match, diverged, unsupported,
accesses (user accesses run by the access model), flushes (flush_tlb_mm_range calls),
ranged_flushes (flush_tlb_func page-by-page, local plus remote), full_flushes (local
plus remote full flushes), invlpg (INVLPG instructions), ipis (IPIs sent), faults (page
faults taken), cycles (summed over every record's initiating CPU).
"""
from __future__ import annotations

from typing import Iterable, List

import numpy as np

from .records import EVENT_NAMES, Records

__all__ = ["summarize", "summary_row", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ("profile", "preset", "calls", "match", "diverged", "unsupported",
                   "accesses", "flushes", "ranged_flushes", "full_flushes", "invlpg",
                   "ipis", "faults", "cycles")
_IDX = {n: i for i, n in enumerate(EVENT_NAMES)}


def summary_row(rec: Records) -> dict:
    """The summary of one Records (see the module docstring)."""
    ev = rec.events_array()
    tot = ev.sum(axis=0) if len(ev) else np.zeros(len(EVENT_NAMES), dtype=np.int64)
    st = rec.statuses
    g = lambda n: int(tot[_IDX[n]])     # noqa: E731
    calls = sum(v for k, v in st.items() if k != "access")
    return {"profile": rec.profile, "preset": rec.preset, "calls": calls,
            "match": st.get("match", 0), "diverged": st.get("diverged", 0),
            "unsupported": st.get("unsupported", 0), "accesses": g("accesses"),
            "flushes": g("flush_tlb_mm_range"),
            "ranged_flushes": g("nr_tlb_local_flush_one") + g("remote_flush_one"),
            "full_flushes": g("nr_tlb_local_flush_all") + g("remote_flush_all"),
            "invlpg": g("invlpg"), "ipis": g("ipi_sent"), "faults": g("faults"),
            "cycles": float(sum(rec.column("cycles")))}


def summarize(records: Iterable[Records]):
    """A DataFrame with one summary row per Records."""
    import pandas as pd
    rows: List[dict] = [summary_row(r) for r in records]
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
