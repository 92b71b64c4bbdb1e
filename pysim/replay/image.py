"""The memory the kernel maps at exec, rebuilt from what a trace shows.

An strace starts after execve has mapped the program, ld.so, the stack and the vdso, so
the program's first calls (ld.so's RELRO mprotects, above all) act on VMAs no traced call
created.  For each address space (the first task's, and each successful execve's) this
module finds the ranges that successful calls use before any traced call mapped them,
and plans the mappings that explain them:

* when the executable named by execve (and the interpreter its PT_INTERP names) can be
  read as ELF here, its PT_LOAD segments, placed at the load bias that puts PT_GNU_RELRO
  on a referenced range (bias 0 for a non-PIE executable): file-backed private mappings
  with each segment's protection, plus the anonymous .bss tail;
* otherwise, or for a range no ELF explains, a private anonymous read-write mapping of
  exactly the referenced pages, labelled "stack" above the mmap area and "inferred"
  elsewhere (an strace does not show where the stack and the vdso are, so they exist
  only where the trace uses them);
* when the replay runs the trace's page faults, the pages faulted before any traced
  call mapped them count as used too (the stack's pages, the vdso and its data pages,
  the binaries' own pages): those outside the ELF segments become one "stack" mapping
  of the highest faulted pages (the stack is the top VMA, grown down to its lowest
  fault: its span reaches down at most RLIMIT_STACK and stops at a fetched page), and
  "inferred" mappings of the runs of faulted pages below, executable where a fetch
  faulted.  A fault the trace shows ending in SIGSEGV or SIGBUS, and one below
  mmap_min_addr, proves nothing and is left out.

Each planned region says what it is and why, and the replay reports them.
"""
from __future__ import annotations

import bisect
import os
import struct
from typing import Dict, List, Optional, Tuple

from ..constants import (DEFAULT_MMAP_MIN_ADDR, DEFAULT_RLIMIT_STACK, PAGE_SIZE,
                         PROT_EXEC, PROT_READ, PROT_WRITE)
from .parse_strace import CLONE_VM

__all__ = ["Region", "plan_images", "read_elf"]

_PF_X, _PF_W, _PF_R = 1, 2, 4
_PT_LOAD, _PT_INTERP, _PT_GNU_RELRO = 1, 3, 0x6474E552
_ET_EXEC = 2
_STACK_FLOOR = 0x7FF000000000       # above the default mmap area: the stack's zone

# calls whose success proves [addr, addr+len) was mapped, and where addr/len are (any
# madvise advice included: madvise_walk_vmas() returns -ENOMEM for a hole, whatever
# the advice)
_USES = {"mprotect": (0, 1), "pkey_mprotect": (0, 1), "madvise": (0, 1),
         "mlock": (0, 1), "mlock2": (0, 1), "munlock": (0, 1), "mseal": (0, 1),
         "mremap": (0, 1), "msync": (0, 1), "mincore": (0, 1)}


_PAGE_MASK = ~(PAGE_SIZE - 1)
_FORGOTTEN = object()               # plan_images' last task, when space_of changed
_EXECS = frozenset({"execve", "execveat"})
_CLONES = frozenset({"clone", "clone3", "fork", "vfork"})
_PLANNED = _EXECS | _CLONES | {"mmap", "brk"} | set(_USES)   # the calls plan_images reads


def _down(a: int) -> int:
    return a & ~(PAGE_SIZE - 1)


def _up(a: int) -> int:
    return (a + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class Region:
    """One planned exec-time mapping: [start, end), prot, the file (path, page offset)
    or None for anonymous memory, and what it is ("binary", "interpreter", "bss",
    "stack", "inferred")."""

    __slots__ = ("start", "end", "prot", "path", "pgoff", "what")

    def __init__(self, start: int, end: int, prot: int, path: Optional[str], pgoff: int,
                 what: str) -> None:
        self.start, self.end, self.prot = start, end, prot
        self.path, self.pgoff, self.what = path, pgoff, what

    def __repr__(self) -> str:
        src = f"{self.path}@{self.pgoff}" if self.path else "anon"
        return f"Region({self.what} 0x{self.start:x}-0x{self.end:x} prot {self.prot} {src})"


def read_elf(path: str) -> Optional[dict]:
    """{type, loads: [(vaddr, memsz, offset, filesz, prot)], relro: (vaddr, memsz) or
    None, interp: path or None} of a 64-bit little-endian ELF file, or None when path
    is not one (or cannot be read here)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            e_type = struct.unpack_from("<H", head, 16)[0]
            phoff = struct.unpack_from("<Q", head, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            out = {"type": e_type, "loads": [], "relro": None, "interp": None}
            for i in range(phnum):
                p_type, p_flags, p_off, p_vaddr, _, p_filesz, p_memsz, _ = \
                    struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
                prot = ((PROT_READ if p_flags & _PF_R else 0)
                        | (PROT_WRITE if p_flags & _PF_W else 0)
                        | (PROT_EXEC if p_flags & _PF_X else 0))
                if p_type == _PT_LOAD:
                    out["loads"].append((p_vaddr, p_memsz, p_off, p_filesz, prot))
                elif p_type == _PT_GNU_RELRO:
                    out["relro"] = (p_vaddr, p_memsz)
                elif p_type == _PT_INTERP:
                    f.seek(p_off)
                    out["interp"] = f.read(p_filesz).rstrip(b"\0").decode(errors="replace")
            return out if out["loads"] else None
    except (OSError, struct.error):
        return None


class _Cover:
    """Disjoint sorted page intervals some traced call mapped (a union; unmaps do not
    shrink it, since a later successful use shows the range was mapped again)."""

    def __init__(self, other: Optional["_Cover"] = None) -> None:
        self.starts: List[int] = list(other.starts) if other else []
        self.ends: List[int] = list(other.ends) if other else []
        # the last interval found covering a request: the union only grows, so it stays
        # covered, and a trace's calls mostly fall in the mapping the previous one used
        self.lo, self.hi = 0, 0

    def add(self, a: int, b: int) -> None:
        """Cover [a, b)."""
        a, b = a & _PAGE_MASK, (b + PAGE_SIZE - 1) & _PAGE_MASK     # _down(a), _up(b)
        if a >= b or self.lo <= a and b <= self.hi:
            return
        starts, ends = self.starts, self.ends
        i = bisect.bisect_left(ends, a)
        if i < len(starts) and starts[i] <= a and b <= ends[i]:
            self.lo, self.hi = starts[i], ends[i]
            return                      # already covered: the common case
        j = i
        while j < len(starts) and starts[j] <= b:
            a, b = min(a, starts[j]), max(b, ends[j])
            j += 1
        starts[i:j] = [a]
        ends[i:j] = [b]

    def holes(self, a: int, b: int) -> List[Tuple[int, int]]:
        """The parts of [a, b) not covered."""
        a, b = a & _PAGE_MASK, (b + PAGE_SIZE - 1) & _PAGE_MASK
        if self.lo <= a and b <= self.hi:
            return []                   # in the interval the last request found
        starts, ends = self.starts, self.ends
        i = bisect.bisect_right(ends, a)
        if i < len(starts) and starts[i] <= a and b <= ends[i]:
            self.lo, self.hi = starts[i], ends[i]
            return []                   # wholly covered: the common case
        out = []
        while a < b:
            if i >= len(starts) or starts[i] >= b:
                out.append((a, b))
                break
            if starts[i] > a:
                out.append((a, starts[i]))
            a = max(a, ends[i])
            i += 1
        return out


def _elf_regions(path: str, elf: dict, bias: int, what: str) -> List[Region]:
    """The mappings execve (or ld.so's loader in the kernel) makes for one ELF."""
    out = []
    for vaddr, memsz, off, filesz, prot in elf["loads"]:
        start = bias + _down(vaddr)
        file_end = _up(bias + vaddr + filesz)
        end = _up(bias + vaddr + memsz)
        if file_end > start:
            out.append(Region(start, file_end, prot, path, _down(off) // PAGE_SIZE, what))
        if end > file_end:
            out.append(Region(file_end, end, prot, None, 0, "bss"))
    return out


def _place(path: str, elf: dict, refs: List[Tuple[int, int]], what: str
           ) -> Optional[List[Region]]:
    """The ELF's regions at the bias that explains a referenced range, or None."""
    if elf["type"] == _ET_EXEC:
        return _elf_regions(path, elf, 0, what)
    relro = elf["relro"]
    if relro is None:
        return None
    for a, _ in refs:
        bias = a - _down(relro[0])
        if bias > 0 and bias % PAGE_SIZE == 0:
            return _elf_regions(path, elf, bias, what)
    return None


def _explain(exe: Optional[str], refs: List[Tuple[int, int]],
             frefs: Optional[Dict[int, int]] = None) -> Tuple[List[Region], List[str]]:
    """Regions covering the referenced ranges of one fresh address space (and the
    faulted pages frefs, page -> the access kinds' bits, 1 << kind), and notes."""
    regions: List[Region] = []
    notes: List[str] = []
    candidates = []
    if exe:
        elf = read_elf(exe)
        if elf is None:
            notes.append(f"{exe}: not readable as ELF here; its segments are inferred")
        else:
            candidates.append((exe, elf, "binary"))
            if elf["interp"]:
                ielf = read_elf(elf["interp"])
                if ielf is None:
                    notes.append(f"{elf['interp']}: not readable as ELF here")
                else:
                    candidates.append((elf["interp"], ielf, "interpreter"))
    left = list(refs)
    for path, elf, what in candidates:
        placed = _place(path, elf, left, what)
        if placed is None:
            continue
        lo, hi = min(r.start for r in placed), max(r.end for r in placed)
        inside = [(a, b) for a, b in left if lo <= a and b <= hi]
        if not inside and elf["type"] != _ET_EXEC:
            continue
        regions.extend(placed)
        left = [(a, b) for a, b in left if not (lo <= a and b <= hi)]
    for a, b in left:
        what = "stack" if a >= _STACK_FLOOR else "inferred"
        regions.append(Region(a, b, PROT_READ | PROT_WRITE, None, 0, what))
        notes.append(f"0x{a:x}-0x{b:x}: used before any traced call mapped it; mapped as "
                     f"{what} anonymous read-write memory")
    if frefs:
        for r in _fault_regions(frefs, regions):
            regions.append(r)
            x = "-executable" if r.prot & PROT_EXEC else ""
            notes.append(f"0x{r.start:x}-0x{r.end:x}: faulted before any traced call mapped "
                         f"it; mapped as {r.what} anonymous read-write{x} memory")
    return regions, notes


def _fault_regions(frefs: Dict[int, int], planned: List[Region]) -> List[Region]:
    """Regions for the faulted pages no planned region holds: the stack zone's as one
    span, the others as runs of adjacent pages (see the module docstring)."""
    spans = sorted((r.start, r.end) for r in planned)
    starts = [a for a, _ in spans]

    def held(page: int) -> bool:
        i = bisect.bisect_right(starts, page) - 1
        return i >= 0 and page < spans[i][1]
    pages = sorted(p for p in frefs if not held(p))
    out: List[Region] = []
    # the stack: the highest faulted page and those below it, down to the first
    # fetched page (a stack is not executable) or RLIMIT_STACK below the top; the
    # mmap area can start just above 0x7ff0... under ASLR, so no fixed floor says it
    stack: List[int] = []
    for p in reversed(pages):
        if frefs[p] & 4 or (stack and stack[0] - p >= DEFAULT_RLIMIT_STACK):
            break
        stack.append(p)
    stack.reverse()
    if stack:
        lo, hi = stack[0], stack[-1] + PAGE_SIZE
        # (a planned region inside the span is left alone: the span stops below it)
        i = bisect.bisect_right(starts, lo)
        if i < len(starts) and starts[i] < hi:
            hi = starts[i]
        out.append(Region(lo, hi, PROT_READ | PROT_WRITE, None, 0, "stack"))
    run: List[int] = []
    below = pages[:len(pages) - len(stack)]
    for p in below + [None]:
        if run and (p is None or p != run[-1] + PAGE_SIZE):
            fetched = any(frefs[q] & 4 for q in run)
            out.append(Region(run[0], run[-1] + PAGE_SIZE, PROT_READ | PROT_WRITE
                              | (PROT_EXEC if fetched else 0), None, 0, "inferred"))
            run = []
        if p is not None:
            run.append(p)
    return out


def _fault_ref(e, space_of: dict, cover: dict, frefs: dict, signalled: set,
               fresh) -> bool:
    """plan_images' step for one fault: its page is used before any traced call mapped
    it unless the calls' cover holds it.  True when the fault's task was new (a fresh
    space: space_of changed)."""
    page = e.va & _PAGE_MASK
    if page < DEFAULT_MMAP_MIN_ADDR or (e.pid, page) in signalled:
        return False
    s = space_of.get(e.pid)
    new = s is None
    if new:
        s = fresh(e.pid, 0, None)
    if cover[s].holes(page, page + PAGE_SIZE):
        # (not added to the cover: the calls' references are found as without faults,
        # so ld.so's RELRO mprotect still anchors the ELF after its writes faulted)
        f = frefs[s]
        f[page] = f.get(page, 0) | 1 << e.access
    return new


def plan_images(events: list, elf: bool = True, faults: bool = False,
                signals: list = ()) -> Tuple[Dict[Tuple[int, int], List[Region]], List[str]]:
    """{(pid, line): regions} for each fresh address space (line 0: the first task's,
    else the line of the successful execve), and notes on what was inferred; elf=False
    plans from the trace alone, without reading the executables' ELF headers; faults
    counts the pages the trace's faults used (when the replay runs them), except those
    of the fault signals `signals` (pysim.replay.events.Signal)."""
    space_of: Dict[int, int] = {}
    cover: Dict[int, _Cover] = {}
    refs: Dict[int, List[Tuple[int, int]]] = {}
    frefs: Dict[int, Dict[int, int]] = {}       # space -> {faulted page: 1 << kind, ...}
    signalled = {(g.pid, g.addr & _PAGE_MASK) for g in signals}
    key_of: Dict[int, Tuple[int, int, Optional[str]]] = {}
    brk0: Dict[int, int] = {}
    nxt = [0]

    def fresh(pid: int, line: int, exe: Optional[str], parent: Optional[int] = None) -> int:
        s = nxt[0]
        nxt[0] += 1
        cover[s] = _Cover(cover[parent]) if parent is not None else _Cover()
        refs[s] = []
        # a fork child faults on what it inherited: the image of the space it came from
        # (the exec image is planned once, for the space whose exec made it)
        frefs[s] = frefs[parent] if parent is not None else {}
        if parent is None:
            key_of[s] = (pid, line, exe)
        space_of[pid] = s
        return s

    # the space of the last event's task and its cover (a trace's calls come in runs of
    # one task); forgotten whenever space_of changes
    last_pid, s, c = _FORGOTTEN, 0, None
    for e in events:
        if e.kind != "call":
            if faults and e.kind == "fault":
                # most faults fall in the interval the task's last call found (inline)
                if e.pid == last_pid and c.lo <= e.va < c.hi:
                    continue
                if _fault_ref(e, space_of, cover, frefs, signalled, fresh):
                    last_pid = _FORGOTTEN
            continue
        pid = e.pid
        if pid != last_pid:
            s = space_of.get(pid)
            if s is None:
                s = fresh(pid, 0, None)
            c = cover[s]
            last_pid = pid
        name = e.name
        if name not in _PLANNED:
            continue                    # (munmap and the rest: nothing below applies)
        if name in _EXECS:
            if e.ok and e.result == 0:
                fresh(pid, e.line, e.args[0] if e.args else None)
                last_pid = _FORGOTTEN
            continue
        if e.errno is not None or not isinstance(e.result, int):
            continue
        if name in _CLONES:
            if e.result > 0:
                if e.args[0] & CLONE_VM:
                    space_of[e.result] = s
                else:
                    fresh(e.result, e.line, None, parent=s)
                last_pid = _FORGOTTEN
            continue
        if name == "mmap":
            a = e.result
            b = a + e.args[1]
            # _Cover.add's test of the interval the last request found, inline (most
            # calls of a trace fall in it); lo and hi are page-aligned, so comparing the
            # unrounded a and b decides the same as comparing _down(a) and _up(b)
            if not (c.lo <= a and b <= c.hi):
                c.add(a, b)
        elif name == "brk":
            if s not in brk0:
                brk0[s] = e.result
            c.add(brk0[s], e.result)
        elif name in _USES:
            a, n = e.args[0], e.args[1]
            # _Cover.holes's test of the last interval found, inline (unrounded, as
            # above): no holes there
            if n > 0 and not (c.lo <= a and a + n <= c.hi):
                h = c.holes(a, a + n)
                if h:                   # a covered range needs no add
                    refs[s].extend(h)
                    c.add(a, a + n)
            if name == "mremap" and isinstance(e.result, int):
                c.add(e.result, e.result + e.args[2])
    plans: Dict[Tuple[int, int], List[Region]] = {}
    notes: List[str] = []
    for s, (pid, line, exe) in key_of.items():
        if not refs[s] and not frefs[s] and (exe is None or not elf):
            continue
        if not elf:
            exe = None
        if exe and not os.path.isabs(exe):
            notes.append(f"line {line}: execve path {exe!r} is relative; read from the "
                         f"current directory")
        regions, why = _explain(exe, sorted(refs[s]), frefs[s])
        if regions:
            plans[(pid, line)] = regions
        notes.extend(f"pid {pid} image: {w}" for w in why)
    return plans, notes
