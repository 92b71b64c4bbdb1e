"""Pickling for sweep workers: a 1M-page page table, and a whole machine mid-run
(2 CPUs, a process with 1M populated pages, TLBs warm).

    python -m pytest bench/bench_pickle.py -q

Benchmarks report; they never assert on speed.
"""
import pickle

import mmucore
import pysim
from pysim.constants import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE

PAGES = 1 << 20


def test_pickle_page_table(benchmark, report):
    pt = mmucore.PageTable()
    pt.map(1 << 40, PAGES)
    blob = benchmark.pedantic(lambda: pickle.loads(pickle.dumps(pt)) and pickle.dumps(pt),
                              rounds=5, iterations=1, warmup_rounds=1)
    st = benchmark.stats.stats
    report("pickle round trip", "PageTable 1M pages", ms_best=st.min * 1e3,
           mib=len(blob) / 2 ** 20)


def test_pickle_machine(benchmark, report):
    m = pysim.Machine(cpus=2, checker=False)
    proc = m.process()
    t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1).busy()
    p = t0.mmap(PAGES * 4096, pysim.PROT_READ | pysim.PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)
    t0.write(p)
    t1.write(p + 4096)

    def trip():
        blob = pickle.dumps((m, t0, t1))
        pickle.loads(blob)
        return blob

    blob = benchmark.pedantic(trip, rounds=5, iterations=1, warmup_rounds=1)
    st = benchmark.stats.stats
    report("pickle round trip", "Machine, 2 CPUs, 1M populated pages",
           ms_best=st.min * 1e3, mib=len(blob) / 2 ** 20)
