"""`pysim reproduce arm64-pte-needs-flush-2025`: Dev Jain's arm64 pte_needs_flush()
(c320dbb7c80d, "arm64/mm: Elide TLB flush in certain pte protection transitions"):
a program flipping a mapping between PROT_NONE and PROT_READ|PROT_WRITE measured the
none -> rw mprotect at 3.2 us before and 2.85 us after (-12.3%).

The model: one thread on the altra preset (the post does not name its machine: an
assumption), one written anonymous page (assumption: the post does not give the size;
a present page is needed, else neither kernel flushes), the loop mprotect(PROT_NONE);
mprotect(PROT_READ|PROT_WRITE); *p = 0.  Before = profile v6.18 (generic
pte_needs_flush: every present PTE flushes), after = v6.19 (the 2025 rule: the old
PROT_NONE entry is invalid, so no flush).  Calibration: one free parameter,
mprotect_base, fitted on the after cell (no flush in it: syscall and PTE work only);
the before cell is held out, predicted from the assumed TLBI/DSB costs.

Also the cover letter's loop (mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE);
*p = 0) on arm64 under mmots, patched, v6.2 and v6.19 with 1 and 2 threads: no
published number, what an arm64 server user would measure on this model.
"""
from __future__ import annotations

from typing import Any, Dict, List

import pysim

PRESET = "altra"
PUBLISHED_US = {"before": 3.2, "after": 2.85}
PROFILES = {"before": "v6.18", "after": "v6.19"}
FREE = ("mprotect_base",)
TRAINING = ("after",)
TOLERANCE = 0.15
COVER_PROFILES = ("mmots", "patched", "v6.2", "v6.19")
RW = pysim.PROT_READ | pysim.PROT_WRITE


def none_to_rw(preset: Any, profile: str, iterations: int) -> Dict[str, float]:
    """Mean cycles and events per none -> rw mprotect over the loop (warm-up dropped)."""
    m = pysim.Machine(cpus=1, preset=preset, profile=profile)
    t = m.process().thread(cpu=0)
    p = t.mmap(4096, RW)
    t.write(p)
    cyc, tlbi, flushes = 0.0, 0, 0
    for i in range(iterations + 1):
        t.mprotect(p, 4096, pysim.PROT_NONE)
        r = t.mprotect(p, 4096, RW)
        t.write(p)
        if i:
            cyc += r.cycles
            tlbi += r.events["tlbi"]
            flushes += r.events["flush_tlb_mm_range"]
    return {"cycles": cyc / iterations, "tlbi": tlbi / iterations,
            "flush_tlb_mm_range": flushes / iterations}


def fit(iterations: int) -> Dict[str, Any]:
    """mprotect_base from the after cell: cycles are linear in it with slope 1 (charged
    once per mprotect), so one simulation and one step land on the target."""
    start = pysim.get_preset(PRESET)
    target = PUBLISHED_US["after"] * 1000 * start.ghz
    sim = none_to_rw(start, PROFILES["after"], iterations)["cycles"]
    value = max(0.0, start.cost("mprotect_base") + target - sim)
    return {"free_params": list(FREE), "training": list(TRAINING),
            "start": {"mprotect_base": start.cost("mprotect_base")},
            "fitted": {"mprotect_base": round(value, 1)},
            "preset": start.replace(mprotect_base=round(value, 1))}


def cover_letter_loop(iterations: int) -> List[Dict[str, Any]]:
    """The v6 cover letter's loop on altra (uncalibrated), per profile and threads."""
    out = []
    for prof in COVER_PROFILES:
        for threads in (1, 2):
            m = pysim.Machine(cpus=threads, preset=PRESET, profile=prof)
            proc = m.process()
            t = proc.thread(cpu=0)
            if threads == 2:
                proc.thread(cpu=1).busy()
            p = t.mmap(4096, RW)
            t.write(p)
            acc = {op: [0.0, 0] for op in ("PROT_READ", "PROT_READ|PROT_WRITE")}
            for i in range(iterations + 1):
                for op, prot in (("PROT_READ", pysim.PROT_READ),
                                 ("PROT_READ|PROT_WRITE", RW)):
                    r = t.mprotect(p, 4096, prot)
                    if i:
                        acc[op][0] += r.cycles
                        acc[op][1] += r.events["tlbi"]
                t.write(p)
            for op, (c, n) in acc.items():
                out.append({"op": op, "threads": threads, "profile": prof,
                            "cycles": round(c / iterations, 1),
                            "tlbi": n / iterations, "published": None})
    return out


def run(iterations: int = 20, refit: bool = False) -> Dict[str, Any]:
    """Fit (cheap: it runs every time), simulate both cells and the cover letter loop."""
    f = fit(iterations)
    preset = f.pop("preset")
    cells = []
    for kernel in ("before", "after"):
        r = none_to_rw(preset, PROFILES[kernel], iterations)
        us = r["cycles"] / preset.ghz / 1000
        pub = PUBLISHED_US[kernel]
        cells.append({"op": "mprotect PROT_NONE -> PROT_READ|PROT_WRITE", "kernel": kernel,
                      "profile": PROFILES[kernel], "simulated_us": round(us, 3),
                      "published_us": pub, "residual": round((us - pub) / pub, 4),
                      "held_out": kernel not in TRAINING,
                      "within_15pct": abs(us - pub) / pub <= TOLERANCE,
                      "events": {"tlbi": r["tlbi"],
                                 "flush_tlb_mm_range": r["flush_tlb_mm_range"]}})
    b, a = cells[0]["simulated_us"], cells[1]["simulated_us"]
    return {"name": "arm64-pte-needs-flush-2025", "preset": preset.name,
            "iterations": iterations, "cells": cells, "fit": f,
            "simulated_change_pct": round((a - b) / b * 100, 1),
            "published_change_pct": -12.3,
            "cover_letter_loop": cover_letter_loop(iterations)}


def format_text(d: Dict[str, Any]) -> str:
    """The report a person reads."""
    lines: List[str] = []
    w = lines.append
    w("pysim reproduce: arm64 pte_needs_flush() (Dev Jain, c320dbb7c80d)")
    w(f"preset {d['preset']} (Neoverse N1 class; the post names no machine: assumption), "
      f"1 thread, one written page")
    w("mprotect PROT_NONE -> PROT_READ|PROT_WRITE, microseconds: simulated / published")
    for c in d["cells"]:
        w(f"  {c['kernel']:6} ({c['profile']:5})  {c['simulated_us']:6.3f} / "
          f"{c['published_us']:<5}  residual {c['residual'] * 100:+6.1f}%  "
          f"{'held out' if c['held_out'] else 'training'}"
          f"{'' if c['within_15pct'] else '  OUTSIDE 15%'}   TLBIs/op {c['events']['tlbi']:g}")
    w(f"  change: simulated {d['simulated_change_pct']:+.1f}%, published "
      f"{d['published_change_pct']:+.1f}%")
    f = d["fit"]
    w(f"Calibration: {len(f['free_params'])} free parameter, fitted on "
      f"{', '.join(f['training'])}, the other cell held out")
    for k in f["free_params"]:
        w(f"  {k:16} {f['start'][k]:>9.1f} -> {f['fitted'][k]:>9.1f} cycles")
    w("  The before cell is a prediction: the fit cannot move the flush (TLBI, DSB ISH")
    w("  with 80 CPUs' DVM acknowledgements, the arm64 flush path), whose costs are assumed.")
    w("")
    w("The cover letter's loop on arm64 (altra, uncalibrated; no published number), cycles/op")
    w(f"{'':24}" + "".join(f"{p + ' ' + str(t) + 'T':>14}" for p in COVER_PROFILES
                           for t in (1, 2)))
    rows = {(c["op"], c["profile"], c["threads"]): c for c in d["cover_letter_loop"]}
    for op in ("PROT_READ", "PROT_READ|PROT_WRITE"):
        w(f"{op:24}" + "".join(f"{rows[(op, p, t)]['cycles']:>14.0f}"
                               for p in COVER_PROFILES for t in (1, 2)))
        w(f"{'  TLBIs':24}" + "".join(f"{rows[(op, p, t)]['tlbi']:>14g}"
                                      for p in COVER_PROFILES for t in (1, 2)))
    w("  No IPIs on arm64: a second thread adds no shootdown round trip, only the DVM")
    w("  fan-out every TLBI pays anyway.  patched flushes PROT_READ|PROT_WRITE on arm64")
    w("  (generic pte_needs_flush is always true); from v6.2 mprotect makes the page")
    w("  writable itself, a valid-entry change that v6.19's rule still flushes.")
    return "\n".join(lines)


def plot(d: Dict[str, Any], path: str) -> None:
    """Bars: simulated before/after with the published values as markers."""
    from .plot import bars_against_published
    cells = d["cells"]
    bars_against_published(path, [f"{c['kernel']}\n{c['profile']}" for c in cells],
                           [c["simulated_us"] for c in cells],
                           [c["published_us"] for c in cells],
                           "us per none -> rw mprotect")
