"""Presets in TOML files: load one (every error names the file and the field) and
write one (a small emitter for the shape below; tomllib only reads).

    name = "this-host"
    geometry = "zen3-kvm"
    ghz = 2.6
    description = "..."
    arch = "x86"
    free_params = ["flush_base", ...]
    invlpgb_count_max = 1
    [features]   pcid = true, invpcid = true, invlpgb = false
    [hw]         every hardware cost (cycles)
    [kernel]     every kernel cost (cycles)
    [sources]    one line per cost and for ghz: where the value comes from
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:                       # presets imports this module for this-host
    from .presets import Preset

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover - declared for <3.11
    import tomli as tomllib

_TOP = {"name": str, "geometry": str, "ghz": (int, float), "description": str,
        "arch": str, "free_params": list, "invlpgb_count_max": int, "features": dict,
        "asid_bits": int,
        "hw": dict, "kernel": dict, "sources": dict}
_REQUIRED = ("name", "geometry", "ghz", "hw", "kernel", "sources")


def load_preset_file(path: str) -> "Preset":
    """The Preset a TOML file describes; ConfigError naming the file and field."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"preset file {path!r}: cannot read: {e.strerror}",
                          field="preset") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"preset file {path!r}: not valid TOML: {e}",
                          field="preset") from None
    return preset_from_dict(data, where=f"preset file {path!r}")


def preset_from_dict(data: Dict[str, Any], where: str = "preset") -> "Preset":
    """A Preset from a parsed TOML table, checked field by field before Preset's own
    validation (whose errors are prefixed with `where`)."""
    import importlib
    presets = importlib.import_module("pysim.config.presets")   # no import circle
    COST_KEYS, FEATURES, HW_KEYS, KERNEL_KEYS, Preset = (
        presets.COST_KEYS, presets.FEATURES, presets.HW_KEYS, presets.KERNEL_KEYS,
        presets.Preset)
    for key in data:
        if key not in _TOP:
            raise ConfigError(f"{where}: field {key!r} unknown; allowed: "
                              f"{', '.join(_TOP)}", field=key, allowed=tuple(_TOP))
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{where}: field {key!r} missing", field=key)
    for key, typ in _TOP.items():
        if key in data and (not isinstance(data[key], typ) or isinstance(data[key], bool)
                            and typ is not dict):
            want = typ.__name__ if isinstance(typ, type) else "number"
            raise ConfigError(f"{where}: field {key!r} must be a {want}, got "
                              f"{data[key]!r}", field=key)
    for table, keys in (("hw", HW_KEYS), ("kernel", KERNEL_KEYS)):
        for key, value in data[table].items():
            if key not in keys:
                other = "kernel" if table == "hw" else "hw"
                hint = f" (it belongs in [{other}])" if key in COST_KEYS else ""
                raise ConfigError(f"{where}: [{table}] {key!r} unknown{hint}; allowed: "
                                  f"{', '.join(keys)}", field=key, allowed=keys)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: [{table}] {key} must be a number of cycles, "
                                  f"got {value!r}", field=key)
        if table == "kernel" and data.get("arch", "x86") == "x86":
            # files written before the arm64 keys existed: those costs are 0 on x86
            for key in presets.ARM64_KEYS:
                if key not in data[table]:
                    data[table][key] = 0
                    data.setdefault("sources", {}).setdefault(
                        key, "not used on x86: an arm64 broadcast-TLBI cost")
        missing = [k for k in keys if k not in data[table]]
        if missing:
            raise ConfigError(f"{where}: [{table}] lacks {missing[0]!r}", field=missing[0])
    fields = dict(data)
    fields["free_params"] = tuple(data.get("free_params", ()))
    fields["features"] = {**FEATURES, **data.get("features", {})}
    try:
        return Preset(**fields)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}", field=getattr(e, "field", None)) from None


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
                "invlpgb_count_max", "asid_bits"):
        lines.append(f"{key} = {_value(getattr(p, key))}")
    for table, values in (("features", p.features), ("hw", p.hw), ("kernel", p.kernel),
                          ("sources", p.sources)):
        lines.append(f"\n[{table}]")
        lines += [f"{k} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"
