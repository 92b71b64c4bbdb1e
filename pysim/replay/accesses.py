"""Access models: where a replay's user memory accesses come from.

An strace holds no memory accesses, so every replay names its model:

* `none`: syscalls only;
* `touch-on-map`: each successful mmap's pages are touched once right after it (a write
  when the mapping is writable, else a read, a fetch for execute-only), as a program that
  uses all it maps would;
* `touch-before-protect`: before each mprotect/pkey_mprotect the range's pages are
  touched by what their VMA allows (write, read or fetch), so the TLBs hold entries the
  change must flush: the worst case for the flush, the best for reading its cost;
* `faults`: the page faults captured beside the syscalls (the exceptions:page_fault_user
  tracepoint, or `perf trace -F all`), merged into the stream in time order; each run of
  one task's faults between two of its calls is one Thread.access batch (numpy arrays),
  so first-touch faults do not cost a Python call each.

A model is an AccessModel with optional hooks the engine calls: before(replay, thread,
call) ahead of each memory call, after_map(replay, thread, call, addr, length, prot) after
each successful mmap; uses_faults says whether the trace's Fault events are run.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

import mmucore

from ..constants import (PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, VM_EXEC, VM_READ,
                         VM_WRITE)
from ..errors import ConfigError

__all__ = ["AccessModel", "ACCESS_MODELS", "get_access_model", "page_accesses"]

ACCESS_MODELS = ("none", "touch-on-map", "touch-before-protect", "faults")


class AccessModel:
    """A named access model: the hooks the engine calls, and whether traced faults run."""

    def __init__(self, name: str, before: Optional[Callable] = None,
                 after_map: Optional[Callable] = None, uses_faults: bool = False,
                 max_pages: Optional[int] = None) -> None:
        self.name, self.before, self.after_map = name, before, after_map
        self.uses_faults, self.max_pages = uses_faults, max_pages

    def __repr__(self) -> str:
        return f"AccessModel({self.name!r})"


def page_accesses(start: int, length: int, kind: int, max_pages: Optional[int] = None):
    """(vas, kinds) numpy arrays touching each page of [start, start+length) once."""
    first = start & ~(PAGE_SIZE - 1)
    n = (start + length - first + PAGE_SIZE - 1) // PAGE_SIZE
    if max_pages is not None:
        n = min(n, max_pages)
    vas = np.arange(n, dtype=np.uint64) * np.uint64(PAGE_SIZE) + np.uint64(first)
    return vas, np.full(n, kind, dtype=np.uint8)


def _kind_of_prot(prot: int) -> Optional[int]:
    """The access a protection allows that touches hardest (write > read > fetch)."""
    if prot & PROT_WRITE:
        return mmucore.WRITE
    if prot & PROT_READ:
        return mmucore.READ
    if prot & PROT_EXEC:
        return mmucore.FETCH
    return None


def _touch_on_map(max_pages: Optional[int]) -> Callable:
    """The after_map hook of touch-on-map."""
    def after_map(replay: Any, thread: Any, call: Any, addr: int, length: int,
                  prot: int) -> None:
        """Touch the new mapping's pages once."""
        kind = _kind_of_prot(prot)
        if kind is None or length <= 0:
            return
        vas, kinds = page_accesses(addr, length, kind, max_pages)
        replay.access(thread, vas, kinds, call.line, call.pid, "touch-on-map")
    return after_map


def _touch_before_protect(max_pages: Optional[int]) -> Callable:
    """The before hook of touch-before-protect."""
    def before(replay: Any, thread: Any, call: Any) -> None:
        """Touch the pages an mprotect is about to change, as their VMAs allow."""
        if call.name not in ("mprotect", "pkey_mprotect") or call.errno is not None:
            return
        start, length = call.args[0], call.args[1]
        end = start + length
        parts_v, parts_k = [], []
        for vma in thread.mm.vmas.vmas_in(start, end):
            fl = vma.flags
            kind = (mmucore.WRITE if fl & VM_WRITE else mmucore.READ if fl & VM_READ
                    else mmucore.FETCH if fl & VM_EXEC else None)
            if kind is None:
                continue
            a, b = max(start, vma.start), min(end, vma.end)
            v, k = page_accesses(a, b - a, kind, max_pages)
            parts_v.append(v)
            parts_k.append(k)
        if parts_v:
            replay.access(thread, np.concatenate(parts_v), np.concatenate(parts_k),
                          call.line, call.pid, "touch-before-protect")
    return before


def get_access_model(model: Any, max_pages: Optional[int] = None) -> AccessModel:
    """The AccessModel named `model` (or model itself); ConfigError for an unknown name."""
    if isinstance(model, AccessModel):
        return model
    if model == "none":
        return AccessModel("none")
    if model == "touch-on-map":
        return AccessModel(model, after_map=_touch_on_map(max_pages), max_pages=max_pages)
    if model == "touch-before-protect":
        return AccessModel(model, before=_touch_before_protect(max_pages),
                           max_pages=max_pages)
    if model == "faults":
        return AccessModel(model, uses_faults=True)
    raise ConfigError(f"access model must be one of {ACCESS_MODELS}, got {model!r}",
                      field="access", allowed=ACCESS_MODELS)
