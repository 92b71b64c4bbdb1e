"""A short demo of the MMU core: populate, access, mprotect-style change, INVLPG."""
import numpy as np

import mmucore


def main() -> None:
    pt = mmucore.PageTable()
    va, npages = 0x7F0000000000, 4096
    pt.map(va, npages, flags=mmucore.PTE_RW | mmucore.PTE_US | mmucore.PTE_NX)
    tlb = mmucore.TLB(mmucore.geometry("skylake"))
    rng = np.random.default_rng(1)
    vas = va + rng.integers(0, npages, 200_000, dtype=np.uint64) * np.uint64(4096)
    kinds = rng.integers(0, 2, vas.size, dtype=np.uint8)
    res = mmucore.access_stream(pt, tlb, vas, kinds)
    print(f"{res.accesses} accesses: {res.l1_hits} L1 hits, {res.stlb_hits} STLB hits, "
          f"{res.walks} walks, {res.faults} faults")
    gather = mmucore.Gather()
    pages, changed, flagged, *_ = pt.change_range(va, npages, mmucore.PAGE_READONLY,
                                                    mmucore.CP_RECORD_NEEDED, gather)
    print(f"mprotect(PROT_READ) over {npages} pages: {pages} present, {flagged} need a flush,"
          f" gather {gather}")
    print(f"stale TLB entries before the flush: {len(tlb.check(pt))}")
    tlb.flush_pcid()
    print(f"after a full flush: {len(tlb.check(pt))}")
    res = mmucore.access_stream(pt, tlb, vas, kinds)
    print(f"next write faults at access #{res.stopped_at}: "
          f"{mmucore.FAULT_NAMES[res.fault_class]} at 0x{res.fault_va:x}")


if __name__ == "__main__":
    main()
