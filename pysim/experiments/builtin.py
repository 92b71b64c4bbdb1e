"""The built-in experiments: mprotect_range (one big mprotect on a machine of busy, lazy
and idle CPUs) and mprotect_loop (the cover letter's loop), with the parameter checks
and the profile-field / preset-cost overrides they share."""
from __future__ import annotations

import inspect
import time
from typing import Any, Dict, Literal, Mapping, Tuple, Union

from ..errors import ConfigError
from .registry import COST_PREFIX, experiment, figures_of

__all__ = ["mprotect_range", "mprotect_loop", "will_it_scale", "split_overrides"]

_BIG_BASE = 0x100000000000       # 16 TiB, 2 MiB aligned, far from the default mmap area
_PMD_PAGES = 512


def _resolve_roles(cpus: int, busy: Any, lazy: Any) -> Tuple[int, int]:
    """busy / lazy as counts among the cpus - 1 CPUs besides the initiator ("rest" = all
    those not otherwise assigned)."""
    others = cpus - 1
    if busy == "rest" and lazy == "rest":
        raise ConfigError("busy and lazy cannot both be 'rest'", field="lazy")
    if busy == "rest":
        busy = others - lazy
    if lazy == "rest":
        lazy = others - busy
    return busy, lazy


_ROLE_KEYS = ("pages", "vmas", "cpus", "busy", "lazy", "thp_fraction", "profile", "preset",
              "seed")
_LOOP_KEYS = ("threads", "write", "pages", "iterations", "profile", "preset", "checker",
              "seed")


def split_overrides(overrides: Mapping[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Extra experiment parameters as (profile field overrides, preset cost overrides):
    tlb_single_page_flush_ceiling=64, pti=True, cost_invlpg=150, ... (ConfigError
    otherwise).  Costs carry the cost_ prefix: their names (invlpg, ...) are also
    event counters, which are figures."""
    from ..config import COST_KEYS, FEATURES, PROFILE_FIELDS
    fields = PROFILE_FIELDS + tuple(FEATURES)
    prof: Dict[str, Any] = {}
    costs: Dict[str, Any] = {}
    for key, value in overrides.items():
        if key in fields:
            prof[key] = value
        elif key.startswith(COST_PREFIX) and key[len(COST_PREFIX):] in COST_KEYS:
            costs[key[len(COST_PREFIX):]] = value
        else:
            raise ConfigError(f"parameter {key!r} unknown: not a parameter of the experiment, "
                              f"a profile field ({', '.join(fields)}) or a preset cost "
                              f"named {COST_PREFIX}<key> (keys: {', '.join(COST_KEYS)})",
                              field=key, allowed=fields + tuple(COST_PREFIX + k
                                                                for k in COST_KEYS))
    return prof, costs


def _check_overrides(p: Dict[str, Any], own: Tuple[str, ...], preset_default: str) -> None:
    from ..config import get_preset, resolve
    prof, costs = split_overrides({k: v for k, v in p.items() if k not in own})
    resolve(p.get("profile", "patched"), get_preset(p.get("preset", preset_default), **costs),
            **prof)


def _check_mprotect_range(p: Dict[str, Any]) -> None:
    cpus, pages, vmas = p.get("cpus", 1), p["pages"], p.get("vmas", 1)
    if pages < 1:
        raise ConfigError(f"pages must be >= 1, got {pages}", field="pages")
    if pages > 1 << 27:
        raise ConfigError(f"pages must be <= {1 << 27} (512 GiB), got {pages}",
                          field="pages")
    if not 1 <= cpus <= 4096:
        raise ConfigError(f"cpus must be 1..4096, got {cpus}", field="cpus")
    if not 1 <= vmas <= pages:
        raise ConfigError(f"vmas must be 1..pages ({pages}), got {vmas}", field="vmas")
    frac = p.get("thp_fraction", 0.0)
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(f"thp_fraction must be in [0, 1], got {frac}",
                          field="thp_fraction")
    for key in ("busy", "lazy"):
        v = p.get(key, 0)
        if v != "rest" and (isinstance(v, str) or v < 0):
            raise ConfigError(f"{key} must be a count >= 0 or 'rest', got {v!r}", field=key)
    busy, lazy = _resolve_roles(cpus, p.get("busy", 0), p.get("lazy", 0))
    if busy < 0 or lazy < 0 or busy + lazy > cpus - 1:
        raise ConfigError(f"busy ({p.get('busy', 0)}) + lazy ({p.get('lazy', 0)}) must be "
                          f"at most cpus - 1 = {cpus - 1} (CPU 0 runs the mprotect)",
                          field="busy" if p.get("busy", 0) else "lazy")
    _check_overrides(p, _ROLE_KEYS, "skylake")


def _layout(pages: int, vmas: int, thp_fraction: float) -> list:
    """[(start_page, end_page, huge)] pieces of the range: the THP part first (whole 2 MiB
    regions), then 4K pages; VMA boundaries split equally, rounded to 2 MiB in the THP
    part so that every THP stays whole."""
    n_thp = int(thp_fraction * pages) // _PMD_PAGES
    thp_end = n_thp * _PMD_PAGES
    cuts = {0, pages, thp_end}
    for i in range(1, vmas):
        c = (pages * i) // vmas
        if c < thp_end:
            c = (c // _PMD_PAGES) * _PMD_PAGES
        cuts.add(c)
    cuts_sorted = sorted(cuts)
    return [(a, b, a < thp_end) for a, b in zip(cuts_sorted, cuts_sorted[1:]) if b > a]


@experiment("mprotect_range", check=_check_mprotect_range)
def mprotect_range(pages: int, vmas: int = 1, cpus: int = 1,
                   busy: Union[int, Literal["rest"]] = 0,
                   lazy: Union[int, Literal["rest"]] = 0,
                   thp_fraction: float = 0.0, profile: str = "patched",
                   preset: str = "skylake", seed: int = 0,
                   **overrides: Any) -> Dict[str, Any]:
    """One mprotect(PROT_READ) over `pages` populated anonymous pages in `vmas` VMAs.

    CPU 0 runs the process's main thread, which maps the range (MAP_FIXED pieces with
    alternating RW / RWX so neighbours do not merge; the first `thp_fraction` of the
    range as 2 MiB THPs), populates it with writes (MAP_POPULATE) and times one
    mprotect(PROT_READ) over all of it.  Of the other CPUs, `busy` run a busy thread of
    the same process, `lazy` ran one that went to sleep (lazy TLB), and the rest run a
    thread of another process; "rest" means all the CPUs not otherwise assigned.
    Any other parameter overrides a profile field (tlb_single_page_flush_ceiling, pti,
    pcid, ...) or, prefixed cost_, a preset cost (cost_invlpg, cost_ipi_send, ...).  Returns the call's cycles (initiator; all CPUs), its breakdown, every event count,
    the VMA and THP counts and the wall time of the call.
    """
    import mmucore

    from ..constants import (MAP_ANONYMOUS, MAP_FIXED, MAP_POPULATE, MAP_PRIVATE, PAGE_SIZE,
                            PROT_EXEC, PROT_READ, PROT_WRITE)
    from ..machine import BREAKDOWN, KERNEL_COUNTERS, Machine

    t_start = time.perf_counter()
    busy, lazy = _resolve_roles(cpus, busy, lazy)
    from ..config import get_preset
    prof_over, costs = split_overrides(overrides)
    m = Machine(cpus=cpus, preset=get_preset(preset, **costs), profile=profile,
                checker=False, seed=seed, **prof_over)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    others = proc.thread                                 # same process
    cpu = 1
    for _ in range(busy):
        others(cpu=cpu).busy()
        cpu += 1
    for _ in range(lazy):
        others(cpu=cpu).sleep()
        cpu += 1
    if cpu < cpus:
        idle = m.process()
        for c in range(cpu, cpus):
            idle.thread(cpu=c)
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE
    n_thp = 0
    pieces = _layout(pages, vmas, thp_fraction)
    for i, (a, b, huge) in enumerate(pieces):
        prot = PROT_READ | PROT_WRITE | (PROT_EXEC if i % 2 else 0)
        t0.mmap((b - a) * PAGE_SIZE, prot, flags, addr=_BIG_BASE + a * PAGE_SIZE, huge=huge)
        if huge:
            n_thp += (b - a) // _PMD_PAGES
    vmas_before = m.mms[0].vmas.map_count
    t_call = time.perf_counter()
    r = t0.mprotect(_BIG_BASE, pages * PAGE_SIZE, PROT_READ)
    t_end = time.perf_counter()
    out: Dict[str, Any] = {
        "cycles": float(r.cycles),
        "cycles_all_cpus": float(sum(r.cpu_cycles.values())),
        "cycles_remote": float(sum(v for c, v in r.cpu_cycles.items() if c != r.cpu)),
    }
    for cat in BREAKDOWN:
        out[f"cycles_{cat}"] = float(r.breakdown.get(cat, 0.0))
    for name in KERNEL_COUNTERS + tuple(mmucore.COUNTER_NAMES):
        out[name] = int(r.events.get(name, 0))
    for name, v in sorted(r.events.items()):             # anything else the model adds
        out.setdefault(name, int(v))
    out.update(nr_vmas_mapped=len(pieces), nr_vmas_before=vmas_before,
               nr_vmas_after=m.mms[0].vmas.map_count, nr_thp=n_thp, busy_cpus=busy,
               lazy_cpus=lazy, wall_mprotect_s=t_end - t_call, wall_point_s=t_end - t_start)
    return out


def _check_mprotect_loop(p: Dict[str, Any]) -> None:
    if p.get("threads", 1) not in (1, 2):
        raise ConfigError(f"threads must be 1 or 2, got {p.get('threads')!r}",
                          field="threads")
    for key, lo in (("pages", 1), ("iterations", 1)):
        if p.get(key, lo) < lo:
            raise ConfigError(f"{key} must be >= {lo}, got {p.get(key)!r}", field=key)
    _check_overrides(p, _LOOP_KEYS, "kvm-2022")


@experiment("mprotect_loop", check=_check_mprotect_loop)
def mprotect_loop(threads: int = 1, write: bool = True, pages: int = 1,
                  iterations: int = 50, profile: str = "patched",
                  preset: str = "kvm-2022", checker: bool = False,
                  seed: int = 0, **overrides: Any) -> Dict[str, Any]:
    """The cover letter's loop, mprotect(PROT_READ); mprotect(PROT_READ|PROT_WRITE);
    [*p = 0], via pysim.workloads.mprotect_loop: cycles per step and events per
    iteration, one column each (prot_read_cycles, prot_rw_ipi_sent, ...).  Other
    parameters override profile fields or preset costs, as for mprotect_range."""
    from ..config import get_preset
    from ..workloads import mprotect_loop as loop       # lazy: the workload is optional

    prof_over, costs = split_overrides(overrides)
    kw: Dict[str, Any] = dict(threads=threads, write=write, pages=pages,
                              iterations=iterations, profile=profile,
                              preset=get_preset(preset, **costs) if costs else preset,
                              **prof_over)
    accepted = inspect.signature(loop).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    for key, value in (("seed", seed), ("checker", checker)):
        if key in accepted or takes_any:
            kw[key] = value
    t0 = time.perf_counter()
    res = loop(**kw)
    wall = time.perf_counter() - t0
    out = figures_of(res)
    for key in _LOOP_KEYS + tuple(overrides):
        out.pop(key, None)                               # parameters are columns already
    out["wall_point_s"] = wall
    return out


_WIS_KEYS = ("test", "mode", "threads", "iterations", "cpus", "profile", "preset",
             "checker", "seed")


def _check_will_it_scale(p: Dict[str, Any]) -> None:
    from ..workloads.will_it_scale import MODES, TESTS
    if p.get("test", "tlb_flush2") not in TESTS:
        raise ConfigError(f"test must be one of {', '.join(TESTS)}, got {p.get('test')!r}",
                          field="test", allowed=TESTS)
    if p.get("mode", "threads") not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {p.get('mode')!r}",
                          field="mode", allowed=MODES)
    for key in ("threads", "iterations"):
        if p.get(key, 1) < 1:
            raise ConfigError(f"{key} must be >= 1, got {p.get(key)!r}", field=key)
    if p.get("threads", 4) > 4096:
        raise ConfigError(f"threads must be <= 4096, got {p['threads']}", field="threads")
    cpus = p.get("cpus", 0)
    if cpus and cpus < p.get("threads", 4):
        raise ConfigError(f"cpus ({cpus}) must be 0 (as many as threads) or at least "
                          f"threads ({p.get('threads', 4)})", field="cpus")
    _check_overrides(p, _WIS_KEYS, "zen3")


@experiment("will_it_scale", check=_check_will_it_scale)
def will_it_scale(test: Literal["tlb_flush1", "tlb_flush2", "tlb_flush3"] = "tlb_flush2",
                  mode: Literal["threads", "processes"] = "threads", threads: int = 4,
                  iterations: int = 2000, cpus: int = 0, profile: str = "v6.2",
                  preset: str = "zen3", checker: bool = False, seed: int = 0,
                  **overrides: Any) -> Dict[str, Any]:
    """will-it-scale's tlb_flush1/2/3 on the timeline (pysim.workloads.will_it_scale):
    `threads` tasks (a sweep axis), each pinned to its own CPU, `iterations` each;
    ops_per_sec (the harness's total), per_thread_ops, each CPU-time category summed
    over the tasks' CPUs, and the flush counters.  cpus=0: one CPU per task.  Other
    parameters override profile fields or preset costs (cost_<key>)."""
    from ..config import get_preset
    from ..workloads import will_it_scale as wis

    prof_over, costs = split_overrides(overrides)
    t0 = time.perf_counter()
    out = wis.run(test, mode, threads=threads, iterations=iterations,
                  cpus=cpus or None, preset=get_preset(preset, **costs), profile=profile,
                  checker=checker, seed=seed, **prof_over)
    out["wall_point_s"] = time.perf_counter() - t0
    return out
