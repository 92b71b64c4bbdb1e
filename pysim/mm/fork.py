"""A process's mm from birth to death: fork's dup_mmap (kernel/fork.c), the exec image
(fs/exec.c, fs/binfmt_elf.c) and exit_mmap (mm/mmap.c).

fork copies every VMA but VM_DONTCOPY ones, without their lock flags; the entries of
private VMAs that hold anonymous pages are copied (vma_needs_copy(); others refault),
old and, for shared mappings, clean; a writable entry of a copy-on-write mapping is
write-protected in the parent and in the child (copy_present_pte()); VM_WIPEONFORK
VMAs start empty.  The parent's flush is dup_mmap's flush_tlb_mm(oldmm), a full one.
Anonymous frames now mapped by both are counted in Frames.shared, so the first write in
either copies and the last one reuses.  Simplifications: a THP of a private mapping is
split in the parent first (the kernel shares it and splits on the write fault), and a
page's share count drops only on a COW copy or an mm's teardown, not on munmap (a later
write then copies where Linux would reuse: more work, never a shared writable page).

exit_mmap tears an mm down with one fullmm gather: every VMA's entries zapped, every
page table freed, one flush of the whole mm at the end (or where the batch fills).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional

import numpy as np

import mmucore

from ..constants import (PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, TASK_SIZE,
                         TLB_FLUSH_ALL, VM_ACCOUNT, VM_DONTCOPY, VM_DONTDUMP, VM_DONTEXPAND,
                         VM_GROWSDOWN, VM_HUGETLB, VM_IO, VM_LOCKED_MASK, VM_MAYEXEC,
                         VM_MAYREAD, VM_MAYWRITE, VM_PFNMAP, VM_READ, VM_SHARED,
                         VM_SOFTDIRTY, VM_WIPEONFORK, VM_WRITE)
from .memory import free_pgtables, unmap_page_range
from .mm import File
from .mmu_gather import tlb_gather_mmu
from .vma import VMA, calc_vm_prot_bits

if TYPE_CHECKING:                                   # pragma: no cover
    from ..arch import CPU
    from .mm import MM

P, RW, A, D = mmucore.PTE_P, mmucore.PTE_RW, mmucore.PTE_A, mmucore.PTE_D
_PRESENT = np.uint64(mmucore.PTE_P | mmucore.PTE_PROTNONE)


def is_cow_mapping(flags: int) -> bool:
    """is_cow_mapping(): private and possibly writable."""
    return flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE


def _has_anon_pages(mm: "MM", vma: VMA) -> bool:
    """The model's vma->anon_vma test: does a private VMA map an anonymous frame (the
    zero page does not count: a read fault maps it without an anon_vma)?"""
    if vma.shared:
        return False
    for base in range(vma.start, vma.end, 1 << 30):
        n = min(1 << 18, (vma.end - base) // PAGE_SIZE)
        e = mm.pt.read_range(base, n)
        pfn = (e & np.uint64(mmucore.PTE_PFN_MASK)) >> np.uint64(12)
        anon = (e & _PRESENT != 0) & (pfn < mmucore.FILE_PFN_BASE) & \
            (pfn != mm.frames.zero_pfn)
        if np.any(anon):
            return True
    return False


def dup_mmap(parent: "MM", child: "MM", cpu: "CPU") -> None:
    """dup_mmap(): the child's VMAs and entries from the parent's, then the parent's
    flush_tlb_mm() (a full flush, page tables counted as freed)."""
    frames = parent.frames
    anon_vmas: dict = {}
    for v in parent.vmas:
        if v.flags & VM_DONTCOPY:
            continue
        flags = v.flags & ~VM_LOCKED_MASK
        wipe = bool(v.flags & VM_WIPEONFORK)
        av = None
        if v.anon_vma is not None and not wipe:
            av = anon_vmas.setdefault(id(v.anon_vma), object())
        nv = VMA(v.start, v.end, flags, v.anon, v.shared, v.pgoff, v.file, av, v.name,
                 v.page_prot, policy=v.policy)     # vma_dup_policy()
        nv.page_prot = child.vmas.page_prot_fn(nv)
        child.vmas.insert(nv)
        if parent.guard_pages:
            child.guard_pages.update(a for a in parent.guard_pages if v.start <= a < v.end)
        if wipe or v.flags & VM_HUGETLB and v.shared or not _has_anon_pages(parent, v):
            continue
        copy_page_range(parent, child, v, cpu)
    child.start_brk, child.brk = parent.start_brk, parent.brk
    child.pkey_allocation_map = parent.pkey_allocation_map
    child.privileged = parent.privileged
    child.rlimit_stack, child.rlimit_memlock = parent.rlimit_stack, parent.rlimit_memlock
    if frames.shared:
        parent.cow_shared = child.cow_shared = True
    cpu.arch.flush_tlb_mm_range(cpu, parent, 0, TLB_FLUSH_ALL, PAGE_SHIFT, True)


def copy_page_range(parent: "MM", child: "MM", vma: VMA, cpu: "CPU") -> None:
    """copy_page_range() over one VMA: copy_present_pte() per entry (huge PMDs of a
    private mapping split first; hugetlb ones copied whole, write-protected)."""
    pt, cpt, frames = parent.pt, child.pt, parent.frames
    cow = is_cow_mapping(vma.flags)
    h = vma.start & ~(PMD_SIZE - 1)
    while h < vma.end:
        if pt.upper_entries(h)[2] != 0:
            entry, shift = pt.get(max(h, vma.start))
            if shift == 21:
                if vma.flags & VM_HUGETLB:
                    if cow and entry & RW:
                        entry &= ~RW
                        pt.set_pmd(h, entry)
                    if cow:
                        pfn = mmucore.pmd_pfn(entry)
                        frames.shared[pfn] = frames.shared.get(pfn, 1) + 1
                    cpt.set_pmd(h, entry & ~A)
                    h += PMD_SIZE
                    continue
                pt.split_huge_pmd(h)
        h += PMD_SIZE
    for base in range(vma.start, vma.end, 1 << 30):
        cnt = min(1 << 18, (vma.end - base) // PAGE_SIZE)
        entries = pt.read_range(base, cnt)
        idx = np.nonzero(entries & _PRESENT)[0]
        for i in idx.tolist():
            va = base + i * PAGE_SIZE
            e = int(entries[i])
            if e & mmucore.PTE_PSE and pt.get(va)[1] == 21:
                continue                      # a hugetlb PMD, copied above
            ce = e & ~A
            if vma.shared:
                ce &= ~D
            if cow:
                if e & RW:
                    pt.set_pte(va, e & ~RW)
                    ce &= ~RW
                pfn = mmucore.pte_pfn(e)
                if frames.is_anon(pfn):
                    frames.shared[pfn] = frames.shared.get(pfn, 1) + 1
            cpt.set_pte(va, ce)


def exit_mmap(mm: "MM", cpu: "CPU") -> None:
    """exit_mmap(): one fullmm gather over the whole mm: unmap_vmas(), free_pgtables(),
    tlb_finish_mmu() (x86: flush_tlb_mm_range(0, TLB_FLUSH_ALL)); the VMAs go.  Shared
    anonymous frames lose this mm's mapping."""
    frames = mm.frames
    vmas = mm.vmas.vmas()
    if frames.shared:
        for v in vmas:
            for base in range(v.start, v.end, 1 << 30):
                cnt = min(1 << 18, (v.end - base) // PAGE_SIZE)
                e = mm.pt.read_range(base, cnt)
                pfns = (e[(e & _PRESENT) != 0] & np.uint64(mmucore.PTE_PFN_MASK)) >> \
                    np.uint64(12)
                for pfn in np.unique(pfns).tolist():
                    if pfn in frames.shared:
                        frames.unshare(pfn)
    if vmas:
        mm.vmas.remove_range(0, TASK_SIZE)
    with tlb_gather_mmu(cpu, mm, fullmm=True) as tlb:
        for v in vmas:
            unmap_page_range(tlb, v.start, v.end)
        free_pgtables(tlb, 0, TASK_SIZE)
    mm.guard_pages.clear()
    mm.dead = True


# ------------------------------------------------------------------------ exec images
@dataclass
class Segment:
    """One mapping an exec sets up: [start, start + length) with PROT_* bits, backed
    by `file` at page offset `pgoff` (None: anonymous, like bss), and extra vm_flags."""
    start: int
    length: int
    prot: int
    file: Optional[File] = None
    pgoff: int = 0
    extra_flags: int = 0
    name: Optional[str] = None


@dataclass
class ExecImage:
    """What execve maps: the binary's and the interpreter's segments, the vdso and vvar,
    the stack (a VM_GROWSDOWN VMA ending at stack_top), and where the heap starts.
    `default_image()` is a typical x86-64 PIE dynamically linked program."""
    segments: List[Segment] = field(default_factory=list)
    start_brk: int = 0
    stack_top: int = 0x7FFFFFFFF000
    stack_size: int = 33 * PAGE_SIZE          # setup_arg_pages(): 128 KiB + the first page


def default_image() -> ExecImage:
    """A PIE binary at 0x555555554000 (r, rx, r, rw segments, one bss page), ld.so
    below the vdso, vvar (VM_IO|VM_PFNMAP), and the stack at the top of user space:
    the layout an x86-64 process has without ASLR (setarch -R)."""
    R, RX, RW_ = PROT_READ, PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE
    exe, ld = File("/usr/bin/program", writable=False), File("/lib64/ld-linux-x86-64.so.2",
                                                              writable=False)
    seg = [Segment(0x555555554000, 0x1000, R, exe, 0), Segment(0x555555555000, 0x1000, RX, exe, 1),
           Segment(0x555555556000, 0x1000, R, exe, 2), Segment(0x555555557000, 0x1000, R, exe, 3),
           Segment(0x555555558000, 0x1000, RW_, exe, 4),
           Segment(0x7FFFF7FBD000, 0x4000, R, None, 0, VM_IO | VM_PFNMAP | VM_DONTDUMP
                   | VM_DONTEXPAND, "[vvar]"),
           Segment(0x7FFFF7FC1000, 0x2000, RX, None, 0, VM_DONTEXPAND, "[vdso]"),
           Segment(0x7FFFF7FC3000, 0x1000, R, ld, 0), Segment(0x7FFFF7FC4000, 0x25000, RX, ld, 1),
           Segment(0x7FFFF7FE9000, 0xA000, R, ld, 0x26), Segment(0x7FFFF7FF4000, 0x2000, R, ld, 0x30),
           Segment(0x7FFFF7FF6000, 0x2000, RW_, ld, 0x32)]
    return ExecImage(seg, start_brk=0x555555559000)


def map_image(mm: "MM", image: ExecImage) -> None:
    """Build the new mm's VMAs from an exec image (binfmt_elf's elf_map() calls, the
    special mappings and setup_arg_pages()); nothing is faulted in."""
    for s in image.segments:
        end = s.start + -(-s.length // PAGE_SIZE) * PAGE_SIZE
        flags = (calc_vm_prot_bits(s.prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
                 | VM_SOFTDIRTY | s.extra_flags)
        if s.file is None and s.prot & PROT_WRITE:
            flags |= VM_ACCOUNT
        v = VMA(s.start, end, flags, anon=s.file is None, shared=False, file=s.file,
                pgoff=s.pgoff if s.file is not None else s.start >> 12, name=s.name)
        v.page_prot = mm.vmas.page_prot_fn(v)
        mm.vmas.insert_merging(v)
    top = image.stack_top
    st = VMA(top - image.stack_size, top, VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE
             | VM_MAYEXEC | VM_GROWSDOWN | VM_ACCOUNT | VM_SOFTDIRTY, name="[stack]")
    st.page_prot = mm.vmas.page_prot_fn(st)
    mm.vmas.insert(st)
    if image.start_brk:
        mm.start_brk = mm.brk = image.start_brk
