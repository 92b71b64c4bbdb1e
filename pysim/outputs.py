"""Output paths, checked before any work runs.

A command that will write a file (a sweep table, a plot, a chart) asks here first
whether the path can be written at all: a wrong suffix, a folder, a missing parent
folder or a place the user may not write (/proc, /sys, a read-only mount) is found in
a fraction of a second instead of after the points or the model ran.  The probe opens
the file for appending, which never changes an existing file, and removes the file
again when it created it, so no check leaves anything behind.  This module sits under
everything (like errors), so sweeps, reports and the CLI share one rule.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from .errors import ConfigError

__all__ = ["output_problem", "check_output", "suffix_of"]


def suffix_of(path: str) -> str:
    """The lower-case suffix of path with its dot ('' when it has none)."""
    return os.path.splitext(path)[1].lower()


def output_problem(path: Any, what: str,
                   suffixes: Optional[Sequence[str]] = None) -> Optional[str]:
    """Why path cannot be written as `what`, or None when it can.

    suffixes, when given, are the allowed endings (with their dots, any case).  The
    answer is a sentence for the user, naming the path."""
    if path is None or not isinstance(path, (str, os.PathLike)):
        return f"{what} path must be a file name, got {path!r}"
    path = os.fspath(path)
    if not path:
        return f"{what} path is empty"
    if suffixes is not None and suffix_of(path) not in {s.lower() for s in suffixes}:
        return f"{what} {path!r} needs one of the suffixes {', '.join(suffixes)}"
    if os.path.isdir(path):
        return f"{what} {path!r} is a directory; give a file path"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"{what} {path!r}: folder {parent!r} does not exist"
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as e:
        return f"cannot write {what} {path!r}: {e.strerror or e}"
    if not existed:
        try:
            os.remove(path)
        except OSError:
            pass
    return None


def check_output(path: Any, what: str, suffixes: Optional[Sequence[str]] = None) -> str:
    """path as a str when it can be written as `what`, else a ConfigError naming it."""
    problem = output_problem(path, what, suffixes)
    if problem:
        raise ConfigError(problem, field=what)
    return os.fspath(path)
