"""Sphinx extension of pysim's documentation: pages generated from pysim at build time.

* one page per preset (hardware: geometry, clock, features, every cost with its
  source) and per profile (kernel behaviour: every field, its default and what the
  code says about it), from pysim.config.PRESETS and PROFILES;
* the command line's help, from pysim.cli.build_parser();
* plain_docstring: pysim's docstrings are prose with indented code examples, not reST;
  this turns them into reST that renders as written (indented blocks become literal
  blocks, markup characters are escaped), so autodoc builds them without warnings.

The pages are written to docs/generated/ (not kept in git) when the builder starts.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
import tokenize
from typing import Dict, List, Tuple

GENERATED = "generated"


# ---------------------------------------------------------------- reST helpers
def esc(text: object) -> str:
    """text with reST inline markup characters escaped, to show as plain text."""
    s = str(text).replace("\\", "\\\\")
    s = re.sub(r"([*`|])", r"\\\1", s)
    s = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", s)          # "cost_" is no reference
    return s


def title(text: str, char: str = "=") -> List[str]:
    """A reST section title."""
    return [text, char * max(len(text), 3), ""]


def slug(name: str) -> str:
    """A document name for a preset or profile name (dots and odd characters out)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def table(header: List[str], rows: List[List[str]], widths: str = "auto") -> List[str]:
    """A list-table of already escaped cells."""
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header] + rows:
        out.append(f"   * - {row[0] or ' '}")
        out += [f"     - {c or ' '}" for c in row[1:]]
    return out + [""]


# ---------------------------------------------------------------- source comments
def _comments_before(path: str, start: str, end: str) -> Dict[str, str]:
    """{name: comment} for the lines between the first line starting with `start` and
    the next line starting with `end`: each `name: ...` or `"name": ...` line takes
    the comment lines just above it and its own trailing comment."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    comments: Dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i in range(first + 1, len(lines)) if lines[i].startswith(end))
    out: Dict[str, str] = {}
    pending: List[str] = []
    for i in range(first + 1, last):
        line = lines[i].strip()
        if line.startswith("#"):
            pending.append(comments.get(i + 1, ""))
            continue
        m = re.match(r'^"?([A-Za-z_][\w.-]*)"?\s*:', line)
        if m:
            own = comments.get(i + 1, "") if "#" in line else ""
            out[m.group(1)] = " ".join(pending + ([own] if own else []))
        pending = []
    return out


# ---------------------------------------------------------------- pages
def preset_page(name: str, p) -> List[str]:
    """The page of one preset: what it is, its features and every cost with its source."""
    lines = title(f"Preset ``{name}``") + [esc(p.description or "(no description)"), ""]
    feats = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in p.features.items())
    lines += [f"* architecture: {esc(p.arch)}",
              f"* TLB geometry: ``{p.geometry}``",
              f"* clock: {p.ghz:g} GHz -- {esc(p.sources.get('ghz', 'no source given'))}",
              f"* CPU features: {esc(feats)}",
              "* SMT: " + (f"CPUs i and i + N/2 share a core; each keeps {p.smt_speed:g} of "
                           f"its speed while the other is busy (timeline)"
                           if p.smt_speed < 1.0 else "none modelled")]
    if p.free_params:
        lines.append(f"* fitted by the calibration: {esc(', '.join(p.free_params))}")
    lines += ["", f"Use it as ``pysim.Machine(preset=\"{name}\")`` or as "
              f"``preset = \"{name}\"`` in a grid; override one cost with "
              f"``get_preset(\"{name}\", invlpg=...)`` or a ``cost_<key>`` grid "
              "parameter.", ""]
    for group, costs in (("Hardware costs (charged by the core per event)", p.hw),
                         ("Kernel costs (charged by the kernel paths)", p.kernel)):
        lines += title(group, "-")
        rows = [[f"``{k}``", f"{v:g}" + (" (fitted)" if k in p.free_params else ""),
                 esc(p.sources.get(k, "no source given"))] for k, v in costs.items()]
        lines += table(["cost", "cycles", "source"], rows, "20 12 68")
    return lines


def profile_page(name: str, p, base, field_notes: Dict[str, str], entry_note: str,
                 aliases: List[str]) -> List[str]:
    """The page of one profile: what it models and every field beside the default."""
    lines = title(f"Profile ``{name}``") + [esc(entry_note or "(no description)"), ""]
    if aliases:
        lines += [f"Also known as {', '.join(f'``{a}``' for a in aliases)}.", ""]
    lines += [f"Use it as ``pysim.Machine(profile=\"{name}\")``; change a field with "
              f"``get_profile(\"{name}\", field=value)`` or as a keyword of "
              "``Machine``.", ""]
    rows = []
    for f in dataclasses.fields(p):
        if f.name == "name":
            continue
        value, default = getattr(p, f.name), getattr(base, f.name)
        mark = f"**{esc(value)}**" if value != default else esc(value)
        rows.append([f"``{f.name}``", mark, esc(default),
                     esc(field_notes.get(f.name, ""))])
    lines += ["Fields that differ from the defaults are in bold.", ""]
    lines += table(["field", "value", "default", "meaning and source"], rows,
                   "24 10 10 56")
    return lines


def cli_page() -> List[str]:
    """The help text of `pysim` and of each subcommand, as argparse prints it."""
    import argparse

    from pysim.cli import build_parser
    os.environ.setdefault("COLUMNS", "88")
    parser = build_parser()
    lines = title("Command-line help") + [
        "Generated from ``pysim.cli.build_parser()`` when these pages were built.", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for cmd, sp in [("pysim", parser)] + list(sub.choices.items()):
        head = cmd if cmd == "pysim" else f"pysim {cmd}"
        lines += title(f"``{head}``", "-") + [".. code-block:: text", ""]
        lines += ["   " + line if line else "" for line in sp.format_help().splitlines()]
        lines.append("")
    return lines


def generate(srcdir: str) -> None:
    """Write every generated page under srcdir/generated/ (files that did not change
    are left alone, so an incremental build stays incremental)."""
    import pysim.config.profiles as profiles_mod
    from pysim.config import PRESETS, PROFILES, Profile
    from pysim.config.profiles import ALIASES

    pages: Dict[str, List[str]] = {}
    for name, p in PRESETS.items():
        pages[f"presets/{slug(name)}"] = preset_page(name, p)
    path = profiles_mod.__file__
    field_notes = _comments_before(path, "class Profile", "    def ")
    entry_notes = _comments_before(path, "PROFILES", "}")
    base = Profile(name="defaults")
    for name, p in PROFILES.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        pages[f"profiles/{slug(name)}"] = profile_page(
            name, p, base, field_notes, entry_notes.get(name, ""), aliases)

    pages["presets"] = title("Presets (hardware)") + [
        "A preset is the hardware: TLB geometry, clock, CPU features and every cycle "
        "cost, each with its source (``pysim.PRESETS``, ``pysim list presets``).", "",
        ".. toctree::", "   :maxdepth: 1", ""] + [
        f"   presets/{slug(n)}" for n in PRESETS] + [""] + table(
        ["preset", "geometry", "GHz", "description"],
        [[f":doc:`{n} <presets/{slug(n)}>`", f"``{p.geometry}``", f"{p.ghz:g}",
          esc(p.description)] for n, p in PRESETS.items()], "15 15 8 62")
    pages["profiles"] = title("Profiles (kernel behaviour)") + [
        "A profile is the kernel: which patches and later changes it has, and its "
        "flush knobs (``pysim.PROFILES``, ``pysim list profiles``).", "",
        ".. toctree::", "   :maxdepth: 1", ""] + [
        f"   profiles/{slug(n)}" for n in PROFILES] + [""] + table(
        ["profile", "what it is"],
        [[f":doc:`{n} <profiles/{slug(n)}>`", esc(entry_notes.get(n, ""))]
         for n in PROFILES], "20 80")
    pages["cli"] = cli_page()

    root = os.path.join(srcdir, GENERATED)
    for doc, lines in pages.items():
        target = os.path.join(root, doc + ".rst")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        text = "\n".join(lines).rstrip() + "\n"
        if os.path.exists(target):
            with open(target, encoding="utf-8") as f:
                if f.read() == text:
                    continue
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)


# ---------------------------------------------------------------- docstrings
_SECTION = re.compile(r"^\s*([=\-~^\"'`#*+<>])\1{2,}\s*$")
_ITEM = re.compile(r"^(?:[-*+]|\d+[.)])\s+")


def plain_docstring(lines: List[str]) -> List[str]:
    """reST that shows a plain-prose docstring as written: a block indented deeper
    than the text before it (other than a list item's continuation) becomes a literal
    block; markup characters elsewhere are escaped; list items stay lists.  Lines are
    changed in place and returned."""
    out: List[str] = []
    base = None                    # indent of the running prose
    cont = None                    # indent of the current list item's continuation
    literal = None                 # indent of the literal block being copied
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if literal is not None:
            if not stripped or indent >= literal:
                out.append(line)
                continue
            literal = None
            if out and out[-1].strip():
                out.append("")
        if not stripped:
            out.append(line)
            continue
        if base is None:
            base = indent
        if indent > base and indent != cont:
            if out and out[-1].strip():
                out.append("")
            out += ["::", ""]
            literal = indent
            out.append(line)
            continue
        m = _ITEM.match(stripped) if indent == base else None
        if indent == base and (m is not None) != (cont is not None) and out \
                and out[-1].strip():
            out.append("")             # a list starts or ends: reST wants a blank line
        if indent == base:
            cont = None
        if _SECTION.match(line):
            out.append(" " * indent + "\\" + stripped)
            continue
        if m:
            cont = indent + len(m.group(0))
            out.append(" " * indent + m.group(0) + esc(stripped[len(m.group(0)):]))
            continue
        out.append(" " * indent + esc(stripped))
    lines[:] = out
    return lines


def _process_docstring(app, what, name, obj, options, lines) -> None:
    """autodoc-process-docstring: apply plain_docstring when configured."""
    if app.config.pysim_plain_docstrings:
        plain_docstring(lines)


def _builder_inited(app) -> None:
    """Generate the pages before Sphinx reads the sources."""
    generate(app.srcdir)


def setup(app):
    """Register the generator and the docstring filter with Sphinx."""
    app.add_config_value("pysim_plain_docstrings", True, "env")
    app.connect("builder-inited", _builder_inited)
    app.connect("autodoc-process-docstring", _process_docstring)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
