"""Tutorial, part 2: a kernel path of your own, written with the mmu_gather API.

write_protect() clears the RW bit of every present PTE in [addr, addr + length) -- what
the first half of mprotect(PROT_READ) or UFFDIO_WRITEPROTECT does -- recording each
changed entry in the gather, so that tlb_finish_mmu() makes one flush for the whole
range.  Machine.begin()/end() make it one operation: its cycles and events come back
as an OpResult and the safety checker runs after it, as after any syscall.
"""
import mmucore
import pysim
from pysim import PROT_READ, PROT_WRITE

PAGE = 4096


def write_protect(m: pysim.Machine, t: pysim.Thread, addr: int, length: int,
                  record: bool = True) -> pysim.OpResult:
    """Clear RW on the present PTEs of the range as one operation on t's CPU; with
    record=False the changes are not recorded in the gather (a bug: no flush)."""
    t.run()                                          # t's CPU runs t's mm
    cpu, mm = t.cpu, t.mm
    op = m.begin(cpu, "write_protect", mm)
    try:
        with pysim.tlb_gather_mmu(cpu, mm) as tlb:
            for vma in mm.vmas.vmas_in(addr, addr + length):
                pysim.tlb_start_vma(tlb, vma)
                for va in range(max(vma.start, addr), min(vma.end, addr + length), PAGE):
                    entry = mm.pt.get(va)[0]
                    if entry & mmucore.PTE_P and entry & mmucore.PTE_RW:
                        mm.pt.set_pte(va, entry & ~mmucore.PTE_RW)
                        if record:
                            pysim.tlb_flush_pte_range(tlb, va, PAGE)
                pysim.tlb_end_vma(tlb, vma)
        # leaving the with block ran tlb_finish_mmu(): one flush_tlb_mm_range()
    except BaseException:
        m.abort(op)
        raise
    return m.end(op)


def demo(profile: str = "patched") -> dict:
    """Write-protect 8 written pages with a second thread busy; then the buggy
    variant, which the checker catches."""
    m = pysim.Machine(cpus=2, profile=profile)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1)
    t1.busy()
    p = t0.mmap(8 * PAGE, PROT_READ | PROT_WRITE)
    for i in range(8):
        t0.write(p + i * PAGE)
        t1.write(p + i * PAGE)                       # both CPUs cache the pages
    r = write_protect(m, t0, p, 8 * PAGE)
    out = {"cycles": r.cycles, "flushes": r.events["flush_tlb_mm_range"],
           "ipis": r.events["ipi_sent"], "invlpg": r.events["invlpg"]}
    q = t0.mmap(PAGE, PROT_READ | PROT_WRITE)
    t0.write(q)
    try:
        write_protect(m, t0, q, PAGE, record=False)
    except pysim.SafetyViolation as e:
        out["caught"] = str(e)
    return out


if __name__ == "__main__":
    print(demo())
