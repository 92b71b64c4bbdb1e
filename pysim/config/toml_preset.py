"""Presets in TOML files: the writer (a small emitter for the shape below; tomllib only
reads), and the reader re-exported from pysim.config.presets, where it lives so that
built-in presets (this-host) and get_preset("file.toml") load files without importing
this module: the dependency runs one way, toml_preset -> presets.

    name = "this-host"
    geometry = "zen3-kvm"
    ghz = 2.6
    description = "..."
    arch = "x86"
    free_params = ["flush_base", ...]
    invlpgb_count_max = 1
    kvm_pv_preempt = 0.0
    [features]   pcid = true, invpcid = true, invlpgb = false
    [hw]         every hardware cost (cycles)
    [kernel]     every kernel cost (cycles)
    [sources]    one line per cost and for ghz: where the value comes from
"""
from __future__ import annotations

import json
from typing import Any

from .presets import Preset, load_preset_file, preset_from_dict

__all__ = ["load_preset_file", "preset_from_dict", "preset_to_toml"]


def _value(v: Any) -> str:
    """One TOML value (strings as JSON-escaped basic strings, valid TOML)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) and not v.is_integer() else \
            (repr(v) if isinstance(v, int) else repr(int(v)) + ".0")
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def preset_to_toml(p: "Preset", comment: str = "") -> str:
    """The TOML text load_preset_file reads back as an equal Preset."""
    lines = [f"# {c}" if c else "#" for c in comment.splitlines()]
    for key in ("name", "geometry", "ghz", "description", "arch", "free_params",
                "invlpgb_count_max", "kvm_pv_preempt"):
        lines.append(f"{key} = {_value(getattr(p, key))}")
    for table, values in (("features", p.features), ("hw", p.hw), ("kernel", p.kernel),
                          ("sources", p.sources)):
        lines.append(f"\n[{table}]")
        lines += [f"{k} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
