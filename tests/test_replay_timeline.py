"""Replays on the timeline (pysim.replay.timed): each CPU's traced tasks as one timeline
program, units in trace order within an address space, a new space after the fork or
execve that made it; per-task simulated time beside traced time.  The sequential replay
stays the default."""
import json

import pytest

from pysim.cli import main as cli_main
from pysim.machine import Machine
from pysim.replay import load_trace, replay
from pysim.replay.engine import Replay
from pysim.replay.jsonl import parse_jsonl_lines
from pysim.replay.timed import TimedReplay, plan_units

from replay_helpers import DATA, TRACES


def _sys(name, args, result=0, pid=1, t=None):
    """One JSON-lines syscall event."""
    return json.dumps({"type": "syscall", "t": t, "pid": pid, "name": name, "args": args,
                       "result": result, "errno": None})


BASE = 0x7F0000000000
# a parent thread maps, clones a thread (CLONE_VM) that mprotects the parent's mapping,
# and forks a child (no CLONE_VM) that maps its own memory
THREADS = [
    _sys("mmap", [0, 1 << 20, 3, 0x22, -1, 0], BASE, pid=10, t=1.0),
    _sys("clone", [0x3D0F00], 11, pid=10, t=1.1),
    _sys("mmap", [0, 1 << 16, 3, 0x22, -1, 0], BASE - (1 << 16), pid=10, t=1.2),
    _sys("mprotect", [BASE, 4096, 1], 0, pid=11, t=1.3),
    _sys("clone", [0x1200011], 12, pid=10, t=1.4),
    _sys("mmap", [0, 8192, 3, 0x22, -1, 0], BASE - (1 << 24), pid=12, t=1.5),
    _sys("munmap", [BASE, 1 << 20], 0, pid=11, t=1.6),
]


def test_plan_units_keeps_space_order_and_creation():
    """A call waits for its address space's previous call; a forked child's first
    unit waits for the fork; a thread's units are in its process's order."""
    tr = parse_jsonl_lines(THREADS)
    units, space, dep = plan_units(tr.events)
    assert units == [(i, i + 1) for i in range(7)]
    assert space == [0, 0, 0, 0, 0, 1, 0]
    assert dep == [(), (0,), (1,), (2,), (3,), (4,), (4,)]


def test_plan_units_lets_fault_batches_overlap():
    """Fault batches of two threads between two calls wait for the first call only; the
    second call waits for both batches."""
    fault = lambda pid, t: json.dumps({"type": "fault", "t": t, "pid": pid,
                                       "addr": BASE + 64, "access": "write"})
    lines = THREADS[:2] + [fault(10, 1.11), fault(11, 1.12), fault(10, 1.13),
                           THREADS[2]]
    units, space, dep = plan_units(parse_jsonl_lines(lines).events)
    assert dep == [(), (0,), (1,), (1,), (1,), (1, 2, 3, 4)]


def test_timeline_replay_matches_and_keeps_causality():
    """Every call matches as in the sequential replay; a thread's first call starts
    after the clone that made it ended, and the forked child's after the fork."""
    tr = parse_jsonl_lines(THREADS)
    r = Replay(tr, Machine(cpus=3, checker="raise"), timeline=True)
    tm = TimedReplay(r)
    rec = tm.run()
    assert rec.statuses == replay(tr, cpus=3).records[0].statuses
    assert rec.statuses.get("match") == 5 and not rec.diverged()
    assert tm.first[11] >= tm.done[1] and tm.first[12] >= tm.done[4]
    assert {row["pid"]: row["cpu"] for row in rec.task_times} == {10: 0, 11: 1, 12: 2}
    assert rec.timeline.tasks and rec.timeline.seconds > 0


@pytest.mark.parametrize("name", TRACES)
@pytest.mark.parametrize("access", ["none", "faults"])
def test_committed_traces_replay_on_the_timeline(name, access):
    """The committed traces on the timeline: the same statuses as sequentially, no
    divergence, one time row per traced task with its traced wall time."""
    tr = load_trace(str(DATA / f"{name}.strace"))
    seq = replay(tr, access=access).records[0]
    res = replay(tr, access=access, timeline=True)
    rec = res.records[0]
    assert rec.statuses == seq.statuses and not rec.diverged()
    assert seq.timeline is None and seq.task_times is None
    assert sorted(row["pid"] for row in rec.task_times) == sorted(tr.pids)
    for row in rec.task_times:
        assert row["sim_busy_s"] >= 0 and row["sim_wait_s"] >= 0
        assert row["sim_span_s"] >= 0 and row["traced_s"] is not None
    assert rec.timeline.ops_per_sec > 0


def test_threads_overlap_on_the_timeline():
    """node's threads run at once: the replay's simulated length is less than the sum of
    its tasks' busy times."""
    tr = load_trace(str(DATA / "node_e.strace"))
    rec = replay(tr, access="faults", timeline=True).records[0]
    busy = sum(row["sim_busy_s"] for row in rec.task_times)
    assert len(rec.task_times) > 1 and rec.timeline.seconds < busy


def test_an_empty_trace_replays_on_the_timeline():
    """A trace with no events gives no records and no task times (no timeline runs)."""
    rec = Replay(parse_jsonl_lines([]), Machine(cpus=1), timeline=True).run()
    assert len(rec) == 0 and rec.task_times == [] and rec.timeline is None


def test_cli_replay_timeline_prints_task_times(capsys):
    """`pysim replay --timeline` prints the per-task table; --json carries it."""
    path = str(DATA / "sh_fork.strace")
    assert cli_main(["replay", "--timeline", path]) == 0
    out = capsys.readouterr().out
    assert "simulated; per task" in out and "sim_busy_s" in out and "traced_s" in out
    assert cli_main(["replay", "--timeline", "--json", path]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["runs"][0]["task_times"]) == 2 and doc["runs"][0]["timeline_seconds"] > 0
