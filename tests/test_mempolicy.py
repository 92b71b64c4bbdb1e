"""NUMA memory policies (pysim.mm.mempolicy): each rule against the mm/mempolicy.c
function that makes it, and the captured mempolicy trace (tests/data/mempolicy.c run as
nobody: every errno there is this machine's kernel's)."""
import errno
import os
import pathlib
import sys

import pytest

from pysim import replay
from pysim.constants import (MPOL_BIND, MPOL_DEFAULT, MPOL_F_ADDR, MPOL_F_MEMS_ALLOWED,
                             MPOL_F_NODE, MPOL_F_NUMA_BALANCING, MPOL_F_RELATIVE_NODES,
                             MPOL_F_STATIC_NODES, MPOL_INTERLEAVE, MPOL_LOCAL,
                             MPOL_MF_MOVE, MPOL_MF_MOVE_ALL, MPOL_MF_STRICT, MPOL_PREFERRED,
                             MPOL_PREFERRED_MANY, PROT_NONE, PROT_READ, PROT_WRITE)
from pysim.errors import SyscallError
from pysim.mm.mempolicy import MemPolicy, get_nodes

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from replay_helpers import DATA  # noqa: E402
from rigs import errno_of, written_thread  # noqa: E402

P = 4096


@pytest.fixture
def t():
    """A thread with 16 written pages of private anonymous memory at t.base."""
    return written_thread(16, cpus=2)


def _policies(th):
    return [(v.start - th.base, v.end - th.base, v.policy) for v in th.mm.vmas]


def test_mbind_splits_and_merges_vmas_by_policy(t):
    """mbind_range -> vma_modify_policy: a policy is part of the merge rule (mpol_equal),
    so mbind splits the VMA it cuts, joins a neighbour that has the same policy, and the
    default policy over the lot merges it back into one VMA."""
    b = t.base
    t.mbind(b, 4 * P, MPOL_PREFERRED)                   # no node: MPOL_LOCAL
    local = MemPolicy(MPOL_LOCAL)
    assert _policies(t) == [(0, 4 * P, local), (4 * P, 16 * P, None)]
    t.mbind(b + 4 * P, 4 * P, MPOL_LOCAL)
    assert _policies(t) == [(0, 8 * P, local), (8 * P, 16 * P, None)]
    t.mbind(b + 8 * P, 4 * P, MPOL_BIND, 0b11, 64)      # node 1 has no memory: {0}
    assert _policies(t)[1] == (8 * P, 12 * P, MemPolicy(MPOL_BIND, nodes=1))
    assert t.mm.vmas.map_count == 3
    # mprotect keeps the policy pieces apart: its merge needs equal policies too
    t.mprotect(b + 6 * P, 4 * P, PROT_READ)
    assert [(s // P, e // P) for s, e, _ in _policies(t)] == [(0, 6), (6, 8), (8, 10),
                                                              (10, 12), (12, 16)]
    t.mprotect(b + 6 * P, 4 * P, PROT_READ | PROT_WRITE)
    assert t.mm.vmas.map_count == 3
    t.mbind(b, 16 * P, MPOL_DEFAULT)
    assert _policies(t) == [(0, 16 * P, None)]


def test_mbind_checks_in_kernel_order(t):
    """kernel_mbind: sanitize_mpol_flags, get_nodes; do_mbind: the flags, MOVE_ALL's
    capability, the start, the empty range (before mpol_new looks at the nodes), then
    mpol_new and mpol_set_nodemask."""
    b = t.base
    assert errno_of(t.mbind, b, 0, 9, 1, 64) == errno.EINVAL           # mode past MPOL_MAX
    assert errno_of(t.mbind, b, P, MPOL_BIND | MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES,
                  1, 64) == errno.EINVAL
    assert errno_of(t.mbind, b, P, MPOL_INTERLEAVE | MPOL_F_NUMA_BALANCING, 1, 64) \
        == errno.EINVAL
    t.mbind(b, P, MPOL_PREFERRED_MANY | MPOL_F_NUMA_BALANCING, 1, 64)
    assert errno_of(t.mbind, b, P, MPOL_BIND, 1, 100_000) == errno.EINVAL  # > PAGE_SIZE*8
    assert errno_of(t.mbind, b, P, MPOL_BIND, 1, 0) == errno.EINVAL        # wraps to ~0
    assert errno_of(t.mbind, b, P, MPOL_BIND, 1 << 1280, 2048) == errno.EINVAL
    assert errno_of(t.mbind, b + 1, P, 7, 1, 64) == errno.EINVAL
    assert errno_of(t.mbind, b, P, MPOL_BIND, 1, 64, 8) == errno.EINVAL    # MPOL_MF_VALID
    assert errno_of(t.mbind, b, P, MPOL_BIND, 1, 64, MPOL_MF_MOVE_ALL) == errno.EPERM
    assert errno_of(t.mbind, b + 1, P, MPOL_BIND, 1, 64) == errno.EINVAL
    assert t.mbind(b, 0, MPOL_BIND, None, 0).value == 0                 # empty: no mpol_new
    for mode, nodes, maxnode in [(MPOL_BIND, None, 0), (MPOL_DEFAULT, 1, 64),
                                 (MPOL_LOCAL, 1, 64), (MPOL_BIND, 0b10, 64),
                                 (MPOL_PREFERRED | MPOL_F_STATIC_NODES, None, 0),
                                 (MPOL_BIND, 1, 1)]:               # maxnode 1: no bits
        assert errno_of(t.mbind, b, P, mode, nodes, maxnode) == errno.EINVAL
    t.mm.privileged = True
    t.mbind(b, P, MPOL_BIND, 1, 64, MPOL_MF_MOVE_ALL)


def test_get_nodes_reads_maxnode_minus_one_bits():
    """get_nodes(): --maxnode bits; bits at or above MAX_NUMNODES must be clear."""
    assert get_nodes(0b111, 2) == 0b1 and get_nodes(0b111, 1) == 0
    assert get_nodes(None, 64) == 0
    assert get_nodes(1 | 1 << 1023, 2048) == 1 | 1 << 1023
    with pytest.raises(SyscallError):
        get_nodes(1 << 1024, 2048)
    assert get_nodes(1 << 1024, 1025) == 0            # the bit is not read


def test_mbind_holes_are_efault_except_for_the_default_policy(t):
    """queue_pages_test_walk: a hole at the head, middle or tail is EFAULT, and nothing
    changed; MPOL_DEFAULT sets MPOL_MF_DISCONTIG_OK, but a range no VMA meets is EFAULT
    even then (queue_pages_range: !qp.first)."""
    b = t.base
    t.munmap(b + 8 * P, 2 * P)
    for s, n in [(b - 2 * P, 4 * P), (b + 6 * P, 4 * P), (b + 14 * P, 4 * P)]:
        assert errno_of(t.mbind, s, n, MPOL_BIND, 1, 64) == errno.EFAULT
    assert all(p is None for *_, p in _policies(t))
    assert errno_of(t.mbind, b + 4 * P, 8 * P, MPOL_LOCAL) == errno.EFAULT
    t.mbind(b + 4 * P, 4 * P, MPOL_LOCAL)
    t.mbind(b + 10 * P, 2 * P, MPOL_LOCAL)
    t.mbind(b + 4 * P, 8 * P, MPOL_DEFAULT)                    # across the hole
    assert all(p is None for *_, p in _policies(t))
    assert errno_of(t.mbind, b + 8 * P, 2 * P, MPOL_DEFAULT) == errno.EFAULT


def test_strict_fails_with_eio_where_pages_are_off_the_nodemask(t):
    """queue_folio_required() with MPOL_MF_INVERT: a normal page is off the policy when
    its node (0) is not in the caller's nodemask, so an empty one (local) fails every
    written page; zero-page entries are not folios; MPOL_MF_MOVE would migrate instead
    (not modelled: no EIO); the policy is applied before the EIO (do_mbind)."""
    b = t.base
    t.mbind(b, 16 * P, MPOL_PREFERRED, 1, 64, MPOL_MF_STRICT)
    t.mbind(b, 16 * P, MPOL_BIND, 0b11, 64, MPOL_MF_STRICT)
    assert errno_of(t.mbind, b, 4 * P, MPOL_LOCAL, None, 0, MPOL_MF_STRICT) == errno.EIO
    assert _policies(t)[0] == (0, 4 * P, MemPolicy(MPOL_LOCAL))
    t.mbind(b, 4 * P, MPOL_LOCAL, None, 0, MPOL_MF_STRICT | MPOL_MF_MOVE)
    fresh = t.mmap(4 * P, PROT_READ | PROT_WRITE)
    t.read(fresh)                                       # the zero page: no folio
    t.mbind(fresh, 4 * P, MPOL_LOCAL, None, 0, MPOL_MF_STRICT)
    t.mbind(b, 16 * P, MPOL_DEFAULT, None, 0, MPOL_MF_STRICT)   # DEFAULT drops STRICT


def test_get_mempolicy_of_the_task_and_of_an_address(t):
    """do_get_mempolicy(): the task's policy, or with MPOL_F_ADDR the VMA's (the default
    when it has none, never the task's); MPOL_F_NODE with an address faults the page in
    for reading (lookup_node's get_user_pages: EFAULT without VM_READ), without one it
    needs an interleaving task policy; MPOL_F_MEMS_ALLOWED alone gives the nodes."""
    b = t.base
    mode, nodes = [], []
    t.get_mempolicy(mode, nodes, 64)
    assert mode == [MPOL_DEFAULT] and nodes == [0]
    t.mbind(b, 4 * P, MPOL_BIND, 1, 64)
    t.set_mempolicy(MPOL_INTERLEAVE, 1, 64)
    t.get_mempolicy(mode, None, 0, b, MPOL_F_ADDR)
    assert mode == [MPOL_BIND]
    t.get_mempolicy(mode, None, 0, b + 8 * P, MPOL_F_ADDR)
    assert mode == [MPOL_DEFAULT]
    t.get_mempolicy(mode, None, 0, 0, MPOL_F_NODE)          # the next interleave node
    assert mode == [0]
    t.get_mempolicy(mode, nodes, 64, 0, MPOL_F_MEMS_ALLOWED)
    assert nodes == [1]
    ro = t.mmap(2 * P, PROT_READ)
    t.get_mempolicy(mode, None, 0, ro, MPOL_F_ADDR | MPOL_F_NODE)
    assert t.mm.pt.get(ro) != 0                             # GUP faulted it in
    none = t.mmap(2 * P, PROT_NONE)
    assert errno_of(t.get_mempolicy, mode, None, 0, none, MPOL_F_ADDR | MPOL_F_NODE) \
        == errno.EFAULT
    t.munmap(b + 12 * P, P)
    assert errno_of(t.get_mempolicy, mode, None, 0, b + 12 * P, MPOL_F_ADDR) == errno.EFAULT
    for args in [(mode, nodes, 0, 0, 0),                     # maxnode < nr_node_ids
                 (mode, None, 0, b, 0),                      # an address, no F_ADDR
                 (mode, nodes, 64, 0, MPOL_F_MEMS_ALLOWED | MPOL_F_NODE),
                 (mode, None, 0, 0, 8)]:
        assert errno_of(t.get_mempolicy, *args) == errno.EINVAL
    t.set_mempolicy(MPOL_DEFAULT)
    assert t.mempolicy is None
    assert errno_of(t.get_mempolicy, mode, None, 0, 0, MPOL_F_NODE) == errno.EINVAL


def test_set_mempolicy_takes_the_nodes_the_task_may_use(t):
    """kernel_set_mempolicy: mbind's mode and node checks; mpol_set_nodemask keeps the
    caller's nodes with STATIC (and folds them onto the memory nodes with RELATIVE)."""
    assert errno_of(t.set_mempolicy, MPOL_BIND, 0b10, 64) == errno.EINVAL
    t.set_mempolicy(MPOL_BIND | MPOL_F_STATIC_NODES, 0b11, 64)
    assert t.mempolicy == MemPolicy(MPOL_BIND, MPOL_F_STATIC_NODES, 1, 0b11)
    t.set_mempolicy(MPOL_BIND | MPOL_F_RELATIVE_NODES, 0b10, 64)   # folded onto node 0
    assert t.mempolicy.nodes == 1
    t.set_mempolicy(MPOL_PREFERRED, None, 0)
    assert t.mempolicy == MemPolicy(MPOL_LOCAL)


def test_set_mempolicy_home_node(t):
    """sys_set_mempolicy_home_node: EINVAL for the start, the flags and an offline node;
    ENOENT when no VMA of the range has a policy; EOPNOTSUPP at a policy other than
    MPOL_BIND / MPOL_PREFERRED_MANY; else the home node joins the policy (and the VMA
    split and merge with it)."""
    b = t.base
    assert errno_of(t.set_mempolicy_home_node, b, 4 * P, 0) == errno.ENOENT
    assert errno_of(t.set_mempolicy_home_node, b, 4 * P, 1) == errno.EINVAL
    assert errno_of(t.set_mempolicy_home_node, b, 4 * P, 0, 1) == errno.EINVAL
    assert errno_of(t.set_mempolicy_home_node, b + 1, 4 * P, 0) == errno.EINVAL
    t.mbind(b, 8 * P, MPOL_BIND, 1, 64)
    t.set_mempolicy_home_node(b, 4 * P, 0)
    assert [p.home_node for *_, p in _policies(t)[:2]] == [0, -1]
    t.mbind(b + 8 * P, 2 * P, MPOL_LOCAL)
    assert errno_of(t.set_mempolicy_home_node, b + 4 * P, 8 * P, 0) == errno.EOPNOTSUPP
    # changed before the error, and then like its lower neighbour: merged with it
    assert _policies(t)[0] == (0, 8 * P, MemPolicy(MPOL_BIND, nodes=1, home_node=0))


def test_policies_follow_mremap_and_fork(t):
    """copy_vma() and dup_mmap() duplicate the VMA policy (vma_dup_policy)."""
    b = t.base
    t.mbind(b, 16 * P, MPOL_BIND, 1, 64)
    moved = t.mremap(b, 16 * P, 32 * P, 1).value
    assert all(v.policy == MemPolicy(MPOL_BIND, nodes=1) for v in t.mm.vmas
               if moved <= v.start < moved + 32 * P)
    child = t.process.fork()
    assert [v.policy for v in child.mm.vmas] == [v.policy for v in t.mm.vmas]


def test_the_captured_mempolicy_trace_reproduces_everyerrno_of():
    """tests/data/mempolicy.c under strace as nobody (no CAP_SYS_NICE): every mbind,
    get/set_mempolicy and set_mempolicy_home_node result, EIO included once the traced
    page faults have put the pages in; without them only the strict calls on pages the
    model never saw written differ."""
    path = str(DATA / "mempolicy.strace")
    rec = replay(path, access="faults", checker="raise").records[0]
    assert rec.statuses.get("match", 0) >= 120 and not rec.diverged()
    assert rec.statuses.get("unsupported", 0) == 0
    rec = replay(path, access="none").records[0]
    assert sorted((d["call"], d["traced_errno"]) for d in rec.diverged()) == \
        [("mbind", "EIO"), ("mbind", "EIO")]


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"),
                    reason="needs root to run the program as nobody")
def test_mempolicy_trace_is_this_kernels(tmp_path):
    """Capture tests/data/mempolicy.c again on this machine and replay it: the rules
    hold against the kernel that runs the tests, not only the one that made the data."""
    import shutil
    import subprocess
    from pysim.replay.capture import capture
    cc = shutil.which("gcc")
    if cc is None or shutil.which("strace") is None:
        pytest.skip("needs gcc and strace")
    exe = tmp_path / "mpol"
    subprocess.run([cc, "-O0", "-o", str(exe), str(DATA / "mempolicy.c")], check=True)
    os.chmod(tmp_path, 0o755)
    out = tmp_path / "m.strace"
    capture(str(out), ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                       "--clear-groups", str(exe)])
    rec = replay(str(out), access="faults", checker="raise").records[0]
    assert rec.statuses.get("match", 0) >= 120 and not rec.diverged()
