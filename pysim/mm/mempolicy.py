"""NUMA memory policies: mbind, set_mempolicy, get_mempolicy and
set_mempolicy_home_node (mm/mempolicy.c, Linux 6.x).

A policy is a value (MemPolicy); None is the default policy, as a NULL vm_policy is in
the kernel.  mbind gives a range of VMAs a policy with the VMA split and merge
vma_modify_policy() does (a policy is part of the merge rule: mpol_equal), so a program
that mbinds parts of its heap has the VMAs, and the later merges and flushes, that it
has on Linux.  set_mempolicy sets the task's own policy (the `mempolicy` attribute of
the task handed in); get_mempolicy reads either.

The machine's memory nodes are `mm.mems_allowed` (cpuset_current_mems_allowed and
N_MEMORY together, a bitmask; node 0 alone by default, as on a one-node machine), and
every page the model maps lives on node 0.  So MPOL_MF_STRICT fails with EIO exactly
where Linux's queue_folio_required() finds a page outside the caller's nodemask (with
an empty one, MPOL_LOCAL and MPOL_PREFERRED of no node, every page of the range), while
MPOL_MF_MOVE / MOVE_ALL move nothing: page migration, and the flushes it would take, is
not modelled.  The policy does not steer the page allocator either: it shapes VMAs and
answers get_mempolicy, nothing else.  A new thread starts with the default task policy
(clone's copy of its parent's is not modelled).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

import mmucore
from mmucore.stats import B_VMA, K_VMA_MERGE, K_VMA_SPLIT

from ..constants import (MAX_NUMNODES, MPOL_BIND, MPOL_DEFAULT, MPOL_F_ADDR,
                         MPOL_F_MEMS_ALLOWED, MPOL_F_MOF, MPOL_F_MORON, MPOL_F_NODE,
                         MPOL_F_NUMA_BALANCING, MPOL_F_RELATIVE_NODES, MPOL_F_STATIC_NODES,
                         MPOL_INTERLEAVE, MPOL_LOCAL, MPOL_MAX, MPOL_MF_MOVE,
                         MPOL_MF_MOVE_ALL, MPOL_MF_STRICT, MPOL_MF_VALID, MPOL_MODE_FLAGS,
                         MPOL_PREFERRED, MPOL_PREFERRED_MANY, MPOL_WEIGHTED_INTERLEAVE,
                         PAGE_SIZE, VM_IO, VM_PFNMAP, VM_READ)
from ..errors import SyscallError
from .args import page_range_end, syscall_ints
from .memory import populate

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

__all__ = ["MemPolicy", "do_mbind", "do_set_mempolicy", "do_get_mempolicy",
           "do_set_mempolicy_home_node", "get_nodes"]

_BITS_PER_LONG = 64
_NUMA_NO_NODE = -1


@dataclass(frozen=True)
class MemPolicy:
    """struct mempolicy: the mode, its flags (MPOL_F_* as the kernel keeps them), the
    nodes it applies to (a bitmask, after the cpuset), the nodemask the caller gave
    when MPOL_F_STATIC_NODES or MPOL_F_RELATIVE_NODES keeps it, and the home node
    (-1: NUMA_NO_NODE).  Equality is mpol_equal()'s."""

    mode: int
    flags: int = 0
    nodes: int = 0
    user_nodes: int = 0
    home_node: int = _NUMA_NO_NODE

    def __repr__(self) -> str:
        return (f"MemPolicy(mode {self.mode}, flags 0x{self.flags:x}, nodes 0x{self.nodes:x}"
                + (f", home {self.home_node}" if self.home_node >= 0 else "") + ")")


# ---------------------------------------------------------------- argument checks
def sanitize_mpol_flags(mode: int) -> tuple:
    """sanitize_mpol_flags() + validate_mpol_flags(): (mode, mode flags) of a mode
    argument, or EINVAL: a mode past MPOL_MAX, STATIC and RELATIVE together, NUMA
    balancing with a mode other than MPOL_BIND and MPOL_PREFERRED_MANY."""
    flags = mode & MPOL_MODE_FLAGS
    mode &= ~MPOL_MODE_FLAGS
    if not 0 <= mode < MPOL_MAX:
        raise SyscallError(errno.EINVAL, f"mempolicy: mode {mode} is unknown")
    if flags & MPOL_F_STATIC_NODES and flags & MPOL_F_RELATIVE_NODES:
        raise SyscallError(errno.EINVAL, "mempolicy: MPOL_F_STATIC_NODES and "
                                         "MPOL_F_RELATIVE_NODES together")
    if flags & MPOL_F_NUMA_BALANCING:
        if mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
            raise SyscallError(errno.EINVAL, "mempolicy: MPOL_F_NUMA_BALANCING needs "
                                             "MPOL_BIND or MPOL_PREFERRED_MANY")
        flags |= MPOL_F_MOF | MPOL_F_MORON
    return mode, flags


def get_nodes(nmask: Optional[int], maxnode: int) -> int:
    """get_nodes(): the nodemask the kernel reads from user memory, `nmask` the bits
    found there (None: a NULL pointer), `maxnode` the bit count the caller passed.  It
    reads maxnode - 1 bits (none for maxnode 1 or a NULL mask; maxnode 0 wraps to
    ULONG_MAX); EINVAL past PAGE_SIZE * 8 bits, or for a bit set at or above
    MAX_NUMNODES."""
    given = maxnode
    maxnode = (maxnode - 1) % (1 << 64)
    if maxnode == 0 or nmask is None:
        return 0
    if maxnode > PAGE_SIZE * 8:
        raise SyscallError(errno.EINVAL, f"mempolicy: maxnode {given} reads more than "
                                         f"{PAGE_SIZE * 8} bits")
    if maxnode > MAX_NUMNODES and nmask >> MAX_NUMNODES & ((1 << (maxnode - MAX_NUMNODES))
                                                           - 1):
        raise SyscallError(errno.EINVAL, f"mempolicy: a node at or above MAX_NUMNODES "
                                         f"({MAX_NUMNODES}) is set")
    return nmask & ((1 << min(maxnode, MAX_NUMNODES)) - 1)


def mpol_new(mode: int, flags: int, nodes: int) -> Optional[MemPolicy]:
    """mpol_new(): None for MPOL_DEFAULT (EINVAL with nodes); MPOL_PREFERRED of no node
    becomes MPOL_LOCAL (EINVAL with STATIC or RELATIVE); MPOL_LOCAL takes no nodes;
    every other mode needs some."""
    if mode == MPOL_DEFAULT:
        if nodes:
            raise SyscallError(errno.EINVAL, "mempolicy: MPOL_DEFAULT with nodes")
        return None
    if mode == MPOL_PREFERRED:
        if not nodes:
            if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
                raise SyscallError(errno.EINVAL, "mempolicy: MPOL_PREFERRED of no node "
                                                 "with STATIC or RELATIVE nodes")
            mode = MPOL_LOCAL
    elif mode == MPOL_LOCAL:
        if nodes or flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES):
            raise SyscallError(errno.EINVAL, "mempolicy: MPOL_LOCAL takes no nodes")
    elif not nodes:
        raise SyscallError(errno.EINVAL, f"mempolicy: mode {mode} needs nodes")
    return MemPolicy(mode, flags)


def _relative(nodes: int, allowed: int) -> int:
    """mpol_relative_nodemask(): fold nodes onto the weight of `allowed`, then map the
    i-th bit onto allowed's i-th node (nodes_fold, nodes_onto)."""
    rel = [n for n in range(allowed.bit_length()) if allowed >> n & 1]
    if not rel:
        return 0
    out = 0
    for n in range(nodes.bit_length()):
        if nodes >> n & 1:
            out |= 1 << rel[n % len(rel)]
    return out


def mpol_set_nodemask(pol: Optional[MemPolicy], nodes: int, allowed: int
                      ) -> Optional[MemPolicy]:
    """mpol_set_nodemask(): the nodes the policy gets (the caller's, within the memory
    nodes the task may use, or folded onto them with MPOL_F_RELATIVE_NODES), EINVAL
    when none is left; MPOL_PREFERRED keeps its first.  Default and local policies
    take none."""
    if pol is None or pol.mode == MPOL_LOCAL:
        return pol
    if pol.flags & MPOL_F_RELATIVE_NODES:
        eff = _relative(nodes, allowed)
    else:
        eff = nodes & allowed
    if not eff:
        raise SyscallError(errno.EINVAL, f"mempolicy: nodes 0x{nodes:x} hold no memory "
                                         f"node the task may use (0x{allowed:x})")
    if pol.mode == MPOL_PREFERRED:
        eff &= -eff                                 # first_node()
    user = nodes if pol.flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) else 0
    return replace(pol, nodes=eff, user_nodes=user)


def _policy_args(mode: int, nmask: Optional[int], maxnode: int) -> tuple:
    """kernel_mbind / kernel_set_mempolicy before the policy is made: (the bare mode,
    its flags, the caller's nodes), or EINVAL."""
    mode, mode_flags = sanitize_mpol_flags(mode)
    return mode, mode_flags, get_nodes(nmask, maxnode)


def _range_end(call: str, start: int, length: int) -> int:
    """The end of [start, start + PAGE_ALIGN(len)) (args.page_range_end), or EINVAL
    for a range that wraps."""
    end = page_range_end(start, length)
    if end is None:
        raise SyscallError(errno.EINVAL, f"{call}: the range wraps around")
    return end


# ---------------------------------------------------------------- mbind
def _pages_off_nodes(mm: "MM", start: int, end: int, nodes: int) -> bool:
    """queue_pages_range()'s strict test on this one-node model: a normal page (not the
    zero page or another special entry) present in [start, end), when node 0 is not in
    the caller's nodemask (queue_folio_required with MPOL_MF_INVERT)."""
    if nodes & 1:
        return False
    n = (end - start) // PAGE_SIZE
    ptes = np.asarray(mm.pt.read_range(start, n), dtype=np.uint64)
    present = (ptes & np.uint64(mmucore.PTE_P | mmucore.PTE_PROTNONE)) != 0
    special = (ptes & np.uint64(mmucore.PTE_SPECIAL)) != 0
    return bool(np.any(present & ~special))


def _queue_pages_range(mm: "MM", start: int, end: int, nodes: int, flags: int,
                       discontig_ok: bool) -> bool:
    """queue_pages_range() with MPOL_MF_WRLOCK: EFAULT for a hole at the head, middle
    or tail of the range (unless discontig_ok: the default policy) and always when no
    VMA meets it; returns whether some page would fail (nr_failed) the strict check."""
    vmas = mm.vmas.vmas_in(start, end)
    if not vmas:
        raise SyscallError(errno.EFAULT, f"mbind: [0x{start:x}, 0x{end:x}) is not mapped")
    if not discontig_ok:
        at = start
        for v in vmas:
            if v.start > at:
                raise SyscallError(errno.EFAULT, f"mbind: [0x{start:x}, 0x{end:x}) has a "
                                                 f"hole at 0x{at:x}")
            at = v.end
        if at < end:
            raise SyscallError(errno.EFAULT, f"mbind: [0x{start:x}, 0x{end:x}) has a hole "
                                             f"at 0x{at:x}")
    if not flags & (MPOL_MF_STRICT | MPOL_MF_MOVE | MPOL_MF_MOVE_ALL):
        return False
    failed = False
    for v in vmas:
        if v.flags & (VM_IO | VM_PFNMAP):           # not vma_migratable(): skipped
            continue
        if _pages_off_nodes(mm, max(v.start, start), min(v.end, end), nodes):
            failed = True
    return failed and not flags & (MPOL_MF_MOVE | MPOL_MF_MOVE_ALL)


def mbind_range(mm: "MM", cpu: "CPU", start: int, end: int,
                policy: Optional[MemPolicy]) -> None:
    """mbind_range() over every VMA of [start, end): vma_modify_policy() splits a VMA the
    range cuts and merges one that ends up like its neighbour (the splits and merges
    charged as mprotect's are); a split past max_map_count is ENOMEM with the VMAs
    before it already changed."""
    vmas = mm.vmas
    cost = cpu.cfg.cost
    for vma in vmas.vmas_in(start, end):
        if vma.policy == policy:
            continue
        s, e = max(vma.start, start), min(vma.end, end)
        prev = vma if s > vma.start else vmas.find_vma_prev(s)[1]
        count0 = vmas.map_count
        vmas.vma_modify_policy(vma, prev, s, e, policy)
        delta = vmas.map_count - count0
        if delta > 0:
            cpu.stats.count(K_VMA_SPLIT, delta)
            cpu.stats.charge(B_VMA, delta * cost.vma_split)
        elif delta < 0:
            cpu.stats.count(K_VMA_MERGE, -delta)
            cpu.stats.charge(B_VMA, -delta * cost.vma_merge)


def do_mbind(mm: "MM", cpu: "CPU", start: int, length: int, mode: int,
             nmask: Optional[int], maxnode: int, flags: int) -> int:
    """sys_mbind (kernel_mbind, do_mbind): 0, or SyscallError with the kernel's errno
    in its order: EINVAL for a bad mode, nodemask or flag, EPERM for MPOL_MF_MOVE_ALL
    without CAP_SYS_NICE (mm.privileged), EINVAL for an unaligned start or a range that
    wraps, EFAULT for a hole (any, unless the policy is the default), EIO when
    MPOL_MF_STRICT finds pages off the nodes; nmask is the nodemask's bits (None for
    NULL)."""
    start, length, mode, maxnode, flags = syscall_ints(
        "mbind", ("start", "len", "mode", "maxnode", "flags"), start, length, mode, maxnode,
        flags)
    if nmask is not None:
        nmask = syscall_ints("mbind", ("nmask",), nmask)[0] % (1 << (PAGE_SIZE * 8))
    start, length = start % (1 << 64), length % (1 << 64)      # unsigned longs
    mode, mode_flags, nodes = _policy_args(mode, nmask, maxnode)
    if flags & ~MPOL_MF_VALID:
        raise SyscallError(errno.EINVAL, f"mbind: unknown flags 0x{flags & ~MPOL_MF_VALID:x}")
    if flags & MPOL_MF_MOVE_ALL and not mm.privileged:
        raise SyscallError(errno.EPERM, "mbind: MPOL_MF_MOVE_ALL needs CAP_SYS_NICE")
    if start % PAGE_SIZE:
        raise SyscallError(errno.EINVAL, f"mbind: start 0x{start:x} is not page aligned")
    if mode == MPOL_DEFAULT:
        flags &= ~MPOL_MF_STRICT
    end = _range_end("mbind", start, length)
    if end == start:
        return 0
    policy = mpol_new(mode, mode_flags, nodes)
    policy = mpol_set_nodemask(policy, nodes, mm.mems_allowed)
    failed = _queue_pages_range(mm, start, end, nodes, flags, policy is None)
    mbind_range(mm, cpu, start, end, policy)
    if failed and flags & MPOL_MF_STRICT:
        raise SyscallError(errno.EIO, "mbind: MPOL_MF_STRICT: pages of the range are off "
                                      "the policy's nodes")
    return 0


# ---------------------------------------------------------------- the task's policy
def do_set_mempolicy(mm: "MM", cpu: "CPU", task: Any, mode: int, nmask: Optional[int],
                     maxnode: int) -> int:
    """sys_set_mempolicy: the task's policy (task.mempolicy; None for MPOL_DEFAULT), or
    EINVAL as mbind's checks of the mode and nodes give it."""
    mode, maxnode = syscall_ints("set_mempolicy", ("mode", "maxnode"), mode, maxnode)
    mode, mode_flags, nodes = _policy_args(mode, nmask, maxnode)
    policy = mpol_new(mode, mode_flags, nodes)
    task.mempolicy = mpol_set_nodemask(policy, nodes, mm.mems_allowed)
    task.il_prev = -1
    return 0


def _next_node_in(node: int, nodes: int) -> int:
    """next_node_in(): the first node of `nodes` after `node`, wrapping."""
    above = nodes >> (node + 1) << (node + 1)
    pick = above or nodes
    return (pick & -pick).bit_length() - 1


def do_get_mempolicy(mm: "MM", cpu: "CPU", task: Any, policy: Any, nmask: Any,
                     maxnode: int, addr: int, flags: int) -> int:
    """sys_get_mempolicy (kernel_get_mempolicy, do_get_mempolicy): 0 with the mode (or
    a node) put into policy[0] and the nodemask into nmask[0] when they are lists (the
    user buffers; None is NULL, any other value a pointer to memory the model does not
    hold), or EINVAL / EFAULT in the kernel's order.  With
    MPOL_F_NODE | MPOL_F_ADDR the page at addr is faulted in for reading, as
    lookup_node()'s get_user_pages does."""
    maxnode, addr, flags = syscall_ints("get_mempolicy", ("maxnode", "addr", "flags"),
                                        maxnode, addr, flags)
    nr_node_ids = mm.mems_allowed.bit_length()
    if nmask is not None and maxnode < nr_node_ids:
        raise SyscallError(errno.EINVAL, f"get_mempolicy: maxnode {maxnode} is below "
                                         f"nr_node_ids {nr_node_ids}")
    if flags & ~(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED):
        raise SyscallError(errno.EINVAL, f"get_mempolicy: unknown flags 0x{flags:x}")
    if flags & MPOL_F_MEMS_ALLOWED:
        if flags & (MPOL_F_NODE | MPOL_F_ADDR):
            raise SyscallError(errno.EINVAL, "get_mempolicy: MPOL_F_MEMS_ALLOWED with "
                                             "MPOL_F_NODE or MPOL_F_ADDR")
        return _put(policy, 0, nmask, mm.mems_allowed)
    pol: Optional[MemPolicy] = task.mempolicy
    if flags & MPOL_F_ADDR:
        vma = mm.vmas.vma_lookup(addr)
        if vma is None:
            raise SyscallError(errno.EFAULT, f"get_mempolicy: 0x{addr:x} is not mapped")
        pol = vma.policy                    # no fall back to the task's: MPOL_DEFAULT
    elif addr:
        raise SyscallError(errno.EINVAL, "get_mempolicy: an address without MPOL_F_ADDR")
    if flags & MPOL_F_NODE:
        if flags & MPOL_F_ADDR:
            value = _lookup_node(mm, cpu, addr)
        elif pol is not None and pol is task.mempolicy and pol.mode in (
                MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE):
            value = _next_node_in(getattr(task, "il_prev", -1), pol.nodes)
        else:
            raise SyscallError(errno.EINVAL, "get_mempolicy: MPOL_F_NODE needs MPOL_F_ADDR "
                                             "or an interleaving task policy")
    else:
        value = MPOL_DEFAULT if pol is None else pol.mode | (pol.flags & MPOL_MODE_FLAGS)
    nodes = 0
    if pol is not None:
        nodes = pol.user_nodes if pol.flags & (MPOL_F_STATIC_NODES
                                               | MPOL_F_RELATIVE_NODES) else pol.nodes
    return _put(policy, value, nmask, nodes)


def _lookup_node(mm: "MM", cpu: "CPU", addr: int) -> int:
    """lookup_node(): get_user_pages_fast() of the page for reading (EFAULT where GUP
    refuses: no VM_READ, VM_IO or VM_PFNMAP), then its node: 0, the model's only."""
    vma = mm.vmas.vma_lookup(addr)
    if vma is None or not vma.flags & VM_READ or vma.flags & (VM_IO | VM_PFNMAP):
        raise SyscallError(errno.EFAULT, f"get_mempolicy: 0x{addr:x} cannot be read")
    page = addr & ~(PAGE_SIZE - 1)
    populate(mm, cpu, page, page + PAGE_SIZE, write=False)
    return 0


def _put(policy: Any, value: int, nmask: Any, nodes: int) -> int:
    """put_user() of the mode and copy_nodes_to_user() of the nodes into the caller's
    buffers that are lists (anything else but None stands for memory the model does
    not hold); 0."""
    if isinstance(policy, list):
        policy[:] = [value]
    if isinstance(nmask, list):
        nmask[:] = [nodes]
    return 0


def do_set_mempolicy_home_node(mm: "MM", cpu: "CPU", start: int, length: int,
                               home_node: int, flags: int) -> int:
    """sys_set_mempolicy_home_node: the home node of every MPOL_BIND and
    MPOL_PREFERRED_MANY VMA policy in the range; EINVAL for an unaligned start, flags or
    an offline node, EOPNOTSUPP at a VMA of another policy (those before it keep the
    change), ENOENT when no VMA of the range has a policy."""
    start, length, home_node, flags = syscall_ints(
        "set_mempolicy_home_node", ("start", "len", "home_node", "flags"), start, length,
        home_node, flags)
    start, length = start % (1 << 64), length % (1 << 64)
    if start % PAGE_SIZE:
        raise SyscallError(errno.EINVAL, f"set_mempolicy_home_node: start 0x{start:x} is "
                                         f"not page aligned")
    if flags:
        raise SyscallError(errno.EINVAL, f"set_mempolicy_home_node: flags 0x{flags:x}")
    if not 0 <= home_node < MAX_NUMNODES or not mm.mems_allowed >> home_node & 1:
        raise SyscallError(errno.EINVAL, f"set_mempolicy_home_node: node {home_node} is "
                                         f"not online")
    end = _range_end("set_mempolicy_home_node", start, length)
    if end == start:
        return 0
    found = False
    for vma in mm.vmas.vmas_in(start, end):
        old = vma.policy
        if old is None:
            continue
        if old.mode not in (MPOL_BIND, MPOL_PREFERRED_MANY):
            raise SyscallError(errno.EOPNOTSUPP, f"set_mempolicy_home_node: {vma!r} has "
                                                 f"mode {old.mode}")
        mbind_range(mm, cpu, max(vma.start, start), min(vma.end, end),
                    replace(old, home_node=home_node))
        found = True
    if not found:
        raise SyscallError(errno.ENOENT, "set_mempolicy_home_node: no VMA of the range has "
                                         "a policy")
    return 0
