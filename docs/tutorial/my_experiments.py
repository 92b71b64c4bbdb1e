"""Tutorial, part 3: a custom experiment, to sweep from Python or the command line.

    pysim --import docs/tutorial/my_experiments.py list experiments
    pysim --import docs/tutorial/my_experiments.py sweep docs/tutorial/munmap.toml \\
        -o munmap.parquet
"""
import pysim
from pysim import (MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE)
from pysim.experiments import experiment

PAGE = 4096


@experiment("munmap_range")
def munmap_range(pages: int, ceiling: int = 33, cpus: int = 2, profile: str = "patched",
                 preset: str = "skylake", seed: int = 0) -> dict:
    """munmap of the first `pages` of pages + 1 written pages (the page table stays),
    while the other CPUs run a busy thread of the same process, under a kernel whose
    tlb_single_page_flush_ceiling is `ceiling`: its cycles, flushes and IPIs."""
    m = pysim.Machine(cpus=cpus, preset=preset, profile=profile, checker=False,
                      seed=seed, tlb_single_page_flush_ceiling=ceiling)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    for cpu in range(1, cpus):
        proc.thread(cpu=cpu).busy()
    p = t0.mmap((pages + 1) * PAGE, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)        # written up front
    r = t0.munmap(p, pages * PAGE)
    return {"cycles": r.cycles,
            "page_flushes": r.events["nr_tlb_local_flush_one"],
            "full_flushes": r.events["nr_tlb_local_flush_all"],
            "ipis": r.events["ipi_sent"]}
