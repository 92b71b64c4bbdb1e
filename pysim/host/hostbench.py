"""`pysim hostbench`: measure this machine's mm paths with the C program hostbench.c.

The C source ships in the package; it is compiled on demand with the system compiler
($CC, else cc, gcc or clang) into a cache directory keyed by the source's hash, and run
once per scenario and repetition (`runs` processes of `reps` timed operations each).
Each CSV row is one cell (one timed operation of a scenario): the median cycles over
all its samples, the quartiles, and the lowest and highest per-process median.

When root can write tracefs, every scenario is run once more in count mode inside a
private tracefs instance (instances/pysim-hostbench-<pid>, removed afterwards even on
error): the C program turns tracing on only around each operation, and the driver
counts tlb:tlb_flush, ipi:ipi_send_cpu/ipi_send_cpumask (the IPIs a flush_tlb_multi sends) and
exceptions:page_fault_user per operation.

Placement: in a two-thread scenario the C program checks that its spinner was running
on CPU 1 through each operation (on a shared machine it often is not, and the kernel
then sends it no IPI); operations that fail the check are dropped from both the timed
samples and the counts, and the runs are retried (at most MAX_RETRIES more) until each
cell has at least half its samples; the CSV's `misplaced` column says how many were
dropped.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import ConfigError

SOURCE = "hostbench.c"
# the per-operation counts a traced run yields (the model's counterparts: host.model)
COUNT_COLUMNS = ("tlb_local", "tlb_local_full", "tlb_remote", "ipi", "faults")
COLUMNS = ("group", "scenario", "n", "threads", "write", "cell", "samples", "median",
           "q1", "q3", "run_min", "run_max") + COUNT_COLUMNS
# columns newer CSVs carry and older ones may lack (read as 0)
OPTIONAL_COLUMNS = ("misplaced",)
MAX_RETRIES = 10
MAX_PAGES = 1 << 20


@dataclass(frozen=True)
class Scenario:
    """One invocation of the C program: what it runs and which group it reports in."""

    group: str
    name: str
    n: int = 1
    threads: int = 1
    write: int = 0

    @property
    def key(self) -> Tuple[str, int, int, int]:
        """(scenario, n, threads, write): identifies the scenario in a CSV."""
        return (self.name, self.n, self.threads, self.write)

    def cells(self) -> Tuple[str, ...]:
        """The cells (timed operations) this scenario prints, in order."""
        if self.name in ("empty", "getppid", "mprotect_noop"):
            return (self.name,)
        if self.name.startswith("seed"):
            first = "prot_none" if self.name == "seed_none" else "prot_read"
            return (first, "prot_rw") + (("write",) if self.write else ())
        if self.name.startswith("fault_"):
            return ("fault",)
        if self.name.startswith(("munmap", "dontneed")):
            return (self.name.split("_")[0],)
        return ("prot_read", "prot_rw")


def scenarios(max_pages: int = MAX_PAGES) -> List[Scenario]:
    """Every hostbench scenario whose memory stays within max_pages 4K pages."""
    s: List[Scenario] = [Scenario("baseline", n) for n in ("empty", "getppid",
                                                           "mprotect_noop")]
    for t in (1, 2):
        s += [Scenario("seed", "seed", 1, t, 1), Scenario("seed", "seed", 1, t, 0),
              Scenario("seed", "seed_none", 1, t, 1), Scenario("seed", "seed_unpop", 1, t)]
    for n in (1, 4, 16, 33, 34, 64, 256, 1024, 4096, 16384, 65536, 262144, 1 << 20):
        s.append(Scenario("mprotect", "mprotect", n))
    s += [Scenario("mprotect", "mprotect", n, 2) for n in (16, 4096)]
    s += [Scenario("span", "span", n) for n in (2, 8, 33, 34, 64, 512, 4096)]
    s += [Scenario("kvma", "kvma", n) for n in (2, 4, 16, 64)]
    s += [Scenario("thp", "thp", 1), Scenario("thp", "thp", 1, 2), Scenario("thp", "fault_thp")]
    s += [Scenario("thp", z, n) for z in ("munmap_thp", "dontneed_thp") for n in (1, 4)]
    s += [Scenario("faults", f"fault_{k}", 1, t) for t in (1, 2) for k in ("anon", "zero", "cow")]
    for z in ("munmap", "dontneed"):
        s += [Scenario("zap", z, n) for n in (1, 16, 256, 4096, 9697, 65536, 262144)]
        s.append(Scenario("zap", z, 16, 2))
    return [x for x in s if pages_of(x) <= max_pages]


def pages_of(s: Scenario) -> int:
    """The 4K pages of memory a scenario populates."""
    return s.n * 512 if s.name in ("thp", "munmap_thp", "dontneed_thp") else s.n


def reps_for(s: Scenario, reps: int) -> int:
    """Timed operations per process: fewer for big ranges (each repopulates memory)."""
    if s.name.startswith(("munmap", "dontneed")):
        return max(3, min(reps, (1 << 21) // max(pages_of(s), 1)))
    return max(3, min(reps, (1 << 24) // max(pages_of(s), 1)))


# ---------------------------------------------------------------- building
def find_compiler() -> str:
    """The C compiler to use: $CC, else cc, gcc or clang on PATH; ConfigError if none."""
    env = os.environ.get("CC")
    candidates = [env] if env else ["cc", "gcc", "clang"]
    for c in candidates:
        path = shutil.which(c.split()[0]) if c else None
        if path:
            return path
    raise ConfigError(f"no C compiler found (tried {', '.join(candidates)}); install one "
                      f"or set CC", field="CC")


def source_text() -> str:
    """The C source shipped in the package."""
    return resources.files("pysim.host").joinpath(SOURCE).read_text()


def cache_dir() -> str:
    """Where compiled binaries live: $PYSIM_CACHE, else $XDG_CACHE_HOME/pysim."""
    base = os.environ.get("PYSIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pysim")
    return base


def build(compiler: Optional[str] = None, cache: Optional[str] = None) -> str:
    """Compile hostbench.c (once per source hash and compiler) and return the binary."""
    cc = compiler or find_compiler()
    text = source_text()
    digest = hashlib.sha256((text + cc).encode()).hexdigest()[:16]
    out_dir = os.path.join(cache or cache_dir(), f"hostbench-{digest}")
    binary = os.path.join(out_dir, "hostbench")
    if os.path.exists(binary):
        return binary
    os.makedirs(out_dir, exist_ok=True)
    src = os.path.join(out_dir, SOURCE)
    with open(src, "w") as f:
        f.write(text)
    tmp = f"{binary}.{os.getpid()}"
    proc = subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", tmp, src],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
        raise ConfigError(f"compiling {src} with {cc} failed: {first}", field="CC")
    os.replace(tmp, binary)
    return binary


# ---------------------------------------------------------------- the machine
def _read(path: str, default: str = "") -> str:
    """A file's stripped text, or default when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def machine_info() -> Dict[str, str]:
    """This machine as the CSV header describes it (CPU, kernel, features, THP, VM)."""
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^(?:model name|Model)\s*:\s*(.+)$", cpuinfo, re.M)
    flags_m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.M)
    flags = set(flags_m.group(1).split()) if flags_m else set()
    meltdown = _read("/sys/devices/system/cpu/vulnerabilities/meltdown", "unknown")
    thp = re.search(r"\[(\w+)\]", _read("/sys/kernel/mm/transparent_hugepage/enabled"))
    hyper = "none"
    if "hypervisor" in flags:
        vendor = _read("/sys/hypervisor/type") or _read("/sys/class/dmi/id/sys_vendor")
        hyper = vendor or "yes"
        if os.path.exists("/sys/devices/system/clocksource/clocksource0"):
            src = _read("/sys/devices/system/clocksource/clocksource0/available_clocksource")
            if "kvm-clock" in src:
                hyper = "KVM" if hyper in ("yes", "QEMU") else f"{hyper} (KVM)"
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cpus": str(os.cpu_count()),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "pcid": str("pcid" in flags).lower(),
        "invpcid": str("invpcid" in flags).lower(),
        "invlpgb": str("invlpgb" in flags).lower(),
        "pti": str(meltdown.startswith("Mitigation: PTI")).lower(),
        "meltdown": meltdown,
        "thp": thp.group(1) if thp else "unknown",
        "hypervisor": hyper,
    }


def tsc_ghz(binary: str) -> float:
    """The cycle counter's rate in GHz: the C program's 'empty' cells are too short, so
    time a sleep with the counter against the monotonic clock (a 100 ms window)."""
    t0, c0 = time.monotonic_ns(), _counter(binary)
    time.sleep(0.1)
    t1, c1 = time.monotonic_ns(), _counter(binary)
    return round((c1 - c0) / (t1 - t0), 3)


def _counter(binary: str) -> int:
    """One reading of the cycle counter, taken by the C program (scenario 'now')."""
    out = subprocess.run([binary, "now", "0", "1", "0", "0"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split()[1])


# ---------------------------------------------------------------- tracefs
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENTS = ("tlb/tlb_flush", "ipi/ipi_send_cpu", "ipi/ipi_send_cpumask",
          "exceptions/page_fault_user")


def tracefs_root() -> Optional[str]:
    """A tracefs mount with instances and the needed events, or None."""
    for root in TRACEFS:
        if os.path.isdir(os.path.join(root, "instances")) and all(
                os.path.isdir(os.path.join(root, "events", e)) for e in EVENTS):
            return root
    return None


def tracing_unavailable() -> Optional[str]:
    """Why counts cannot be taken here, or None when they can."""
    if os.geteuid() != 0:
        return "not root"
    if tracefs_root() is None:
        return ("tracefs with tlb:tlb_flush, ipi:* and exceptions:page_fault_user not "
                "mounted (mount -t tracefs nodev /sys/kernel/tracing)")
    return None


@contextlib.contextmanager
def trace_instance() -> Iterator[str]:
    """A private tracefs instance with the events on and tracing off; removed on exit."""
    root = tracefs_root()
    if root is None:
        raise ConfigError("tracefs is not available", field="tracefs")
    inst = os.path.join(root, "instances", f"pysim-hostbench-{os.getpid()}")
    os.mkdir(inst)
    try:
        def put(rel: str, value: str) -> None:
            with open(os.path.join(inst, rel), "w") as f:
                f.write(value)
        put("tracing_on", "0")
        put("buffer_size_kb", "4096")
        put("options/event-fork", "1")
        for e in EVENTS:
            put(f"events/{e}/enable", "1")
        yield inst
    finally:
        for _ in range(50):                  # rmdir fails while a reader holds it open
            try:
                os.rmdir(inst)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[\d+\].*?:\s+(?P<event>\w+):\s"
                   r"(?P<rest>.*)$")


def parse_counts(text: str, dropped: Optional[Dict[str, int]] = None
                 ) -> Dict[str, List[Dict[str, int]]]:
    """Per cell, one dict of event counts per marked operation of a tracefs dump;
    operations whose end marker says "misplaced" are left out (counted in `dropped`)."""
    out: Dict[str, List[Dict[str, int]]] = {}
    cur: Optional[Dict[str, int]] = None
    sending: set = set()                    # tasks inside flush_tlb_multi
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        ev, rest = m.group("event"), m.group("rest")
        if ev == "tracing_mark_write":
            kind, _, cell = rest.strip().partition(" ")
            if kind == "pysim-B":
                cur = dict.fromkeys(COUNT_COLUMNS, 0)
                out.setdefault(cell, []).append(cur)
            elif kind == "pysim-E":
                name, _, flag = cell.partition(" ")
                if flag.strip() == "misplaced" and cur is not None and out.get(name):
                    out[name].pop()
                    if dropped is not None:
                        dropped[name] = dropped.get(name, 0) + 1
                cur = None
            continue
        if cur is None:
            continue
        if ev == "tlb_flush":
            reason = re.search(r"\((\d)\)", rest)
            r = int(reason.group(1)) if reason else -1
            if r in (2, 3):                  # TLB_LOCAL_SHOOTDOWN, TLB_LOCAL_MM_SHOOTDOWN
                cur["tlb_local"] += 1
                if re.search(r"pages:\s*-1\b", rest):
                    cur["tlb_local_full"] += 1
                sending.discard(m.group("pid"))
            elif r == 1:                     # TLB_REMOTE_SHOOTDOWN
                cur["tlb_remote"] += 1
            elif r == 4:                     # TLB_REMOTE_SEND_IPI: flush_tlb_multi starts
                sending.add(m.group("pid"))
        elif ev in ("ipi_send_cpu", "ipi_send_cpumask"):
            # the flush's IPI: sent between flush_tlb_multi's trace and its local flush
            # (other function-call IPIs, e.g. draining per-CPU page lists, are not TLB's)
            if m.group("pid") in sending:
                cur["ipi"] += 1
        elif ev == "page_fault_user":
            cur["faults"] += 1
    return out


# ---------------------------------------------------------------- running
def run_timed(binary: str, s: Scenario, reps: int,
              dropped: Optional[Dict[str, int]] = None) -> Dict[str, List[int]]:
    """Run the scenario once; its samples per cell (misplaced ones counted in
    `dropped`, not returned)."""
    proc = subprocess.run([binary, s.name, str(s.n), str(s.threads), str(s.write),
                           str(reps)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"hostbench {s.name} {s.n}: {proc.stderr.strip() or 'failed'}",
                          field="scenario")
    out: Dict[str, List[int]] = {}
    for line in proc.stdout.splitlines():
        cell, value, *flag = line.split()
        out.setdefault(cell, [])
        if flag == ["misplaced"]:
            if dropped is not None:
                dropped[cell] = dropped.get(cell, 0) + 1
            continue
        out[cell].append(int(value))
    return out


def run_counted(binary: str, s: Scenario, inst: str, reps: int = 5,
                dropped: Optional[Dict[str, int]] = None) -> Dict[str, Dict[str, int]]:
    """Run the scenario in count mode in the instance; per cell, the median count of
    each event per well-placed operation (runs again, at most MAX_RETRIES times, while a
    cell has fewer than `reps` of them)."""
    per_op: Dict[str, List[Dict[str, int]]] = {}
    for _ in range(MAX_RETRIES + 1):
        for cell, ops in _count_once(binary, s, inst, reps, dropped).items():
            per_op.setdefault(cell, []).extend(ops)
        if all(len(per_op.get(c, ())) >= reps for c in s.cells()):
            break
    return {cell: {k: int(statistics.median(op[k] for op in ops)) for k in COUNT_COLUMNS}
            for cell, ops in per_op.items() if ops}


def _count_once(binary: str, s: Scenario, inst: str, reps: int,
                dropped: Optional[Dict[str, int]]) -> Dict[str, List[Dict[str, int]]]:
    """One count-mode run of the scenario: per cell, the counts of each well-placed
    operation."""
    with open(os.path.join(inst, "trace"), "w") as f:       # clear the buffer
        f.write("")
    with open(os.path.join(inst, "set_event_pid"), "w") as f:
        f.write(str(os.getpid()))       # event-fork: the child and its threads follow
    try:
        proc = subprocess.run([binary, s.name, str(s.n), str(s.threads), str(s.write),
                               str(reps), inst], capture_output=True, text=True)
    finally:
        with open(os.path.join(inst, "tracing_on"), "w") as f:
            f.write("0")
        with open(os.path.join(inst, "set_event_pid"), "w") as f:
            f.write("")
    if proc.returncode != 0:
        raise ConfigError(f"hostbench {s.name} {s.n} (counting): "
                          f"{proc.stderr.strip() or 'failed'}", field="scenario")
    with open(os.path.join(inst, "trace")) as f:
        return parse_counts(f.read(), dropped)


def _quartiles(xs: Sequence[float]) -> Tuple[float, float]:
    """The first and third quartiles (exclusive method; the sample itself if tiny)."""
    if len(xs) < 4:
        return float(min(xs)), float(max(xs))
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def hostbench(out: str, runs: int = 5, reps: int = 31, max_pages: int = MAX_PAGES,
              counts: Optional[bool] = None, only: Sequence[str] = (),
              compiler: Optional[str] = None,
              log: Callable[[str], None] = lambda s: None) -> Dict[str, str]:
    """Build and run every scenario, write the CSV at `out`; returns the header dict.

    counts None: trace when possible; True: fail when tracing is unavailable; False:
    never.  only: restrict to these groups or scenario names.
    """
    binary = build(compiler)
    why = tracing_unavailable()
    if counts and why:
        raise ConfigError(f"counts requested but {why}", field="counts")
    use_counts = counts is not False and why is None
    info = machine_info()
    info.update(tsc_ghz=str(tsc_ghz(binary)), runs=str(runs), reps=str(reps),
                counts="tracefs" if use_counts else f"none ({why or 'disabled'})",
                date=time.strftime("%Y-%m-%d %H:%M:%S %z"),
                source=f"pysim/host/{SOURCE} sha256:"
                       f"{hashlib.sha256(source_text().encode()).hexdigest()[:16]}")
    todo = [s for s in scenarios(max_pages)
            if not only or s.group in only or s.name in only]
    rows: List[Dict[str, object]] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_unwinds())
        inst = stack.enter_context(trace_instance()) if use_counts else None
        for i, s in enumerate(todo):
            log(f"[{i + 1}/{len(todo)}] {s.name} n={s.n} threads={s.threads} "
                f"write={s.write}")
            k = reps_for(s, reps)
            samples: Dict[str, List[int]] = {}
            medians: Dict[str, List[float]] = {}
            dropped: Dict[str, int] = {}
            for attempt in range(runs + MAX_RETRIES):
                if attempt >= runs and all(2 * len(samples.get(c, ())) >= runs * k
                                           for c in s.cells()):
                    break
                for cell, xs in run_timed(binary, s, k, dropped).items():
                    samples.setdefault(cell, []).extend(xs)
                    if xs:
                        medians.setdefault(cell, []).append(statistics.median(xs))
            cnt = run_counted(binary, s, inst, dropped=dropped) if inst else {}
            if dropped:
                log(f"  misplaced (dropped): {dropped}")
            for cell in s.cells():
                xs = samples.get(cell)
                if not xs:
                    raise ConfigError(f"hostbench {s.name} {s.n}: no well-placed sample "
                                      f"of {cell} (CPU 1 never free for the spinner)",
                                      field="scenario")
                q1, q3 = _quartiles(xs)
                row: Dict[str, object] = dict(
                    group=s.group, scenario=s.name, n=s.n, threads=s.threads,
                    write=s.write, cell=cell, samples=len(xs),
                    median=statistics.median(xs), q1=q1, q3=q3,
                    run_min=min(medians[cell]), run_max=max(medians[cell]),
                    misplaced=dropped.get(cell, 0))
                row.update({c: cnt.get(cell, {}).get(c, "") for c in COUNT_COLUMNS})
                rows.append(row)
    info["misplaced"] = (f"{sum(int(r['misplaced']) for r in rows)} two-thread operations "
                         f"dropped: the spinner was not running on CPU 1 through them")
    write_csv(out, info, rows)
    return info


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While running, SIGTERM raises SystemExit, so the tracefs instance is removed."""
    import signal
    try:
        old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    except ValueError:                      # not the main thread: leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def write_csv(path: str, info: Dict[str, str], rows: Sequence[Dict[str, object]]) -> None:
    """The CSV: '# key: value' header lines, then one row per cell."""
    with open(path, "w", newline="") as f:
        f.write("# pysim hostbench: cycles per operation on this machine (cycle counter "
                "ticks), medians over all samples\n")
        for k, v in info.items():
            f.write(f"# {k}: {v}\n")
        w = csv.DictWriter(f, fieldnames=COLUMNS + OPTIONAL_COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def main_log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)
