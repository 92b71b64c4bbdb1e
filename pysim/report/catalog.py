"""`pysim list`: what a run can be made of, as plain text: presets (hardware), profiles
(kernel behaviour), experiments (with their parameters) and counters."""
from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Dict, List

import mmucore

from ..config import PRESETS, PROFILES, Profile
from ..results import BREAKDOWN, KERNEL_COUNTERS

KINDS = ("presets", "profiles", "experiments", "counters", "results")


def presets() -> List[str]:
    """One line per preset: name, architecture, TLB geometry, clock, CPU features."""
    out = []
    for name, p in PRESETS.items():
        feats = ", ".join(k for k, v in p.features.items() if v) or "none"
        fitted = f"; fitted: {', '.join(p.free_params)}" if p.free_params else ""
        out.append(f"{name:16s} {p.arch} {p.geometry}, {p.ghz:g} GHz, features: {feats}"
                   f"{fitted} - {p.description}")
    return out


def profiles() -> List[str]:
    """One line per profile: its name and the fields it sets away from the defaults."""
    base = Profile(name="defaults")
    out = []
    for name, p in PROFILES.items():
        diff = [f"{f.name}={getattr(p, f.name)}" for f in dataclasses.fields(Profile)
                if f.name != "name" and getattr(p, f.name) != getattr(base, f.name)]
        out.append(f"{name:12s} {', '.join(diff) or '(the defaults)'}")
    defaults = ", ".join(f"{f.name}={getattr(base, f.name)}"
                         for f in dataclasses.fields(Profile) if f.name != "name")
    return out + [f"{'defaults':12s} {defaults}"]


def experiments() -> List[str]:
    """One line per registered experiment: its signature and the first docstring line
    (the installed pysim.experiments entry points loaded first, so they show too)."""
    from ..experiments import EXPERIMENTS, load_entry_points
    load_entry_points()
    out = []
    for name, e in EXPERIMENTS.items():
        params = ", ".join(str(p).replace("'", "").replace('"', '') for p in e.params.values())
        first = (inspect.getdoc(e.fn) or "").split("\n")[0]
        out.append(f"{name}({params})\n    {first}")
    return out


def counters() -> List[str]:
    """The kernel counters, the core's hardware counters and the cycle categories."""
    return [f"kernel:    {', '.join(KERNEL_COUNTERS)}",
            f"hardware:  {', '.join(mmucore.COUNTER_NAMES)}",
            f"cycles by: {', '.join(BREAKDOWN)}"]


def results() -> List[str]:
    """The published results `pysim reproduce NAME` reproduces."""
    from .reproduce import listing
    return listing().splitlines()


LISTS: Dict[str, Callable[[], List[str]]] = {
    "presets": presets, "profiles": profiles, "experiments": experiments,
    "counters": counters, "results": results}
