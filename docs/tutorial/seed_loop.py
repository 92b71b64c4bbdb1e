"""Tutorial, part 1: the cover letter's loop written by hand on a Machine.

    mprotect(p, 4096, PROT_READ); mprotect(p, 4096, PROT_READ|PROT_WRITE); *p = 0;

run on a page that is already written, with a second thread of the same process busy
on another CPU (so every flush must reach it by IPI), before and after the series.
"""
import pysim
from pysim import PROT_READ, PROT_WRITE

PAGE = 4096
STEPS = ("PROT_READ", "PROT_READ|PROT_WRITE", "write")


def loop(profile: str, threads: int = 2, iterations: int = 20) -> dict:
    """Mean cycles of each step of the loop, and the IPIs each step sent."""
    m = pysim.Machine(cpus=threads, preset="kvm-2022", profile=profile)
    proc = m.process()
    t0 = proc.thread(cpu=0)
    if threads == 2:
        proc.thread(cpu=1).busy()          # keeps the mm loaded, and not lazy, on CPU 1
    p = t0.mmap(PAGE, PROT_READ | PROT_WRITE)
    t0.write(p)                            # the page exists and is dirty
    m.keep_history = True                  # keep every OpResult, for m.trace()
    m.reset_counters()                     # count the loop only, not the set-up
    for _ in range(iterations):
        t0.mprotect(p, PAGE, PROT_READ)
        t0.mprotect(p, PAGE, PROT_READ | PROT_WRITE)
        t0.write(p)
    trace = m.trace()                      # one row per operation
    trace["step"] = [STEPS[i % 3] for i in range(len(trace))]
    return {"cycles": trace.groupby("step")["cycles"].mean().to_dict(),
            "ipis": trace.groupby("step")["ipi_sent"].sum().to_dict(),
            "counters": m.counters()}


if __name__ == "__main__":
    for profile in ("mmots", "patched"):
        res = loop(profile)
        cyc = ", ".join(f"{s} {res['cycles'][s]:,.0f}" for s in STEPS)
        print(f"{profile:8s} cycles per step: {cyc}; IPIs: {res['ipis']}")
