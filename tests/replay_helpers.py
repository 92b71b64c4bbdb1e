"""Shared by the replay tests: where the committed traces are, and which there are."""
import pathlib

DATA = pathlib.Path(__file__).resolve().parent / "data"
# captured on the development machine by `pysim capture` (see tests/data/README.md)
TRACES = ["c_malloc", "python_script", "node_e", "java_small", "sh_fork", "sh_pipe",
          "numpy_matmul", "msync_mincore"]
# a long multi-threaded trace (gzip-compressed, no faults): its own tests and benchmark
LONG_TRACE = DATA / "node_gc.strace.gz"
