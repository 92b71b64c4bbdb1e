"""The timeline: will-it-scale tlb_flush2 with many threads at once, and the whole
invlpgb-2025 reproduction.

    python -m pytest bench/bench_timeline.py -q

* A 72-thread tlb_flush2_threads point on the 72-CPU milan machine, 2,000 loops per
  thread (the issue's target: at most 60 s), under tip (v6.14: every DONTNEED sends 71
  IPIs) and INVLPGB (v6.15: broadcasts); seconds per point and requests per second.
* `pysim reproduce invlpgb-2025` with the stored fit: all 16 cells at the entry's 1,000
  loops per thread, in two worker processes (target: at most 5 minutes).

Benchmarks report; they never assert on speed.
"""
import pytest

from pysim.report import invlpgb_2025
from pysim.workloads import will_it_scale


@pytest.mark.parametrize("profile", ["v6.14", "v6.15"])
def test_tlb_flush2_72_threads(benchmark, report, profile):
    out = {}

    def point():
        out.update(will_it_scale.run("tlb_flush2", "threads", threads=72, cpus=72,
                                     iterations=2000, preset="milan", profile=profile,
                                     warmup_ms=2))

    benchmark.pedantic(point, rounds=1, iterations=1)
    st = benchmark.stats.stats
    loops = out["iterations"]
    report("timeline", f"tlb_flush2 72 threads x 2000 loops, {profile}", s=st.min,
           loops_per_s_wall=loops / st.min, simulated_loops_per_s=out["ops_per_sec"],
           ipis=out["ipi_sent"])


def test_reproduce_invlpgb_2025(benchmark, report):
    out = {}
    benchmark.pedantic(lambda: out.update(invlpgb_2025.run()), rounds=1, iterations=1)
    st = benchmark.stats.stats
    ok = all(r["within_25pct"] for r in out["ratios"])
    report("timeline", "pysim reproduce invlpgb-2025 (16 cells, 2 workers)", s=st.min,
           ratios_within_25pct=ok)
