"""The syscall entry and exit in one C call each (X86Flush.syscall_enter_from_user_mode
and syscall_exit_to_user_mode) do what Arch's step-by-step defaults do."""
import random

import pysim
from pysim.arch import Arch
from pysim.results import OpResult


def _entered(m, th, step_by_step):
    """flush.jiffies and the open window's count after one syscall entry of th."""
    args = (th.cpu, th.mm.context, th.tid, m._syscall_cost, m._cycles_per_jiffy)
    if step_by_step:
        Arch.syscall_enter(m.arch, *args)
    else:
        m.arch.syscall_enter(*args)
    j, pid = m.arch.flush.jiffies, th.mm.context.pid
    r = m.arch.syscall_exit(th.cpu, True, OpResult, "x", 0, [])
    return j, pid, r.rows.tolist()


def test_jiffies_are_python_floor_division_of_the_clock():
    """Jiffies from the CPU clock equal int(now // cycles_per_jiffy) for any clock."""
    rnd = random.Random(5)
    for _ in range(300):
        m = pysim.Machine(cpus=1, checker=False)
        th = m.process().thread(cpu=0)
        th.run()
        th.cpu.tlbstate.t_off = rnd.choice([rnd.uniform(0, 1e13), rnd.randrange(10 ** 12)
                                            * m._cycles_per_jiffy, 0.0])
        m.arch.syscall_enter(th.cpu, th.mm.context, th.tid, 0.0, m._cycles_per_jiffy)
        want = int(th.cpu.tlbstate.now // m._cycles_per_jiffy)
        m.acct.abort()
        assert m.arch.flush.jiffies == want


def test_one_call_entry_and_exit_match_the_step_by_step_ones():
    """The rows, jiffies and pid of a syscall window are the same both ways."""
    out = []
    for step in (False, True):
        m = pysim.Machine(cpus=2, checker=False, profile="patched")
        th = m.process().thread(cpu=1)
        th.mmap(4096, 3)
        out.append(_entered(m, th, step))
    assert out[0] == out[1]
