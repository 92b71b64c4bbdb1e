"""The hot-loop Python-interaction check (bench/check_annotate.py), reported in the summary."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_annotate  # noqa: E402


def test_annotate_hot_loops(report):
    ok, _report, offences, error_only, gil, summary = check_annotate.check()
    report("cython -a check of the hot loops", "tlb.pyx + pagetable.pyx",
           result="OK" if ok else "FAIL", offences=len(offences),
           error_path_notes=len(error_only), gil_boundary_notes=len(gil),
           mmu_gather_object_access_notes=summary["object_access"],
           c_functions_scanned=summary["functions_scanned"])
    for line in offences:
        print(line)
