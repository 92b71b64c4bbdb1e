#!/usr/bin/env python
"""Check the mmucore hot loops for Python interaction (Cython's yellow lines).

    cd /work/main && python bench/check_annotate.py [-v]

Copies mmucore/*.pyx, *.pxd and __init__.py to a temp dir (nothing lands in the repo),
runs `cython -a` there on tlb.pyx, pagetable.pyx, tlbstate.pyx, fastfault.pyx, vma.pyx,
gather.pyx and mmu_gather.pyx with setup.py's directives, and then checks two things:

1. Cython's own per-line score (the yellow in the html; score = 5 x Py*_ C-API calls +
   2 x __Pyx_ helper calls + macro calls, as Cython.Compiler.Annotate computes it) for
   every source line of the hot functions: c_access, walk, array_find, array_fill
   (tlb.pyx), change_pte_range, change_huge_pmd, PageTable._fill (pagetable.pyx) and the
   `with nogil:` loops of access_stream and fastfault's access_stream_anon.
2. The generated C bodies of those functions and of every cdef function they call,
   transitively (the inline helpers from pte.pxd, gather.pxd, set_of, account, c_fill,
   raise_pf, ...), scanned for the same Python C-API call patterns.

Two kinds of yellow are reported as notes, not offences:
* "error path": an exception check after a C call with an `except?` value
  (PyErr_Occurred, reached only when the sentinel comes back) and the function's error
  epilogue (__Pyx_AddTraceback): a compare on the hot path, not a Python call;
* "GIL boundary": the PyEval_SaveThread / RestoreThread of a `with nogil:` statement,
  paid once per entry into the block (per call in access_stream, per 2 MiB PMD in
  _fill and _change).
Anything else (object calls, refcounting, conversions) is an offence.

3. The empty mmu_gather cycle (mmu_gather.pyx: tlb_gather_mmu ... tlb_finish_mmu with
   nothing recorded, the with-block's __enter__/__exit__, tlb_end_vma).  These functions
   work on pysim's Python CPU and mm by design: they read and write the attributes the
   Python code did (cpu.stats.acct, mm.tlb_flush_pending, mm.frames.lruvec.timed, ...).
   So for them exactly that interaction is allowed and reported as a note ("object
   access"): attribute reads and writes, their truth tests and int fast paths, the C
   conversion of cpu.gather_batch_reserve, reference counting and the try statements'
   exception bookkeeping.  Any call of a Python function or method, global or dict
   lookup, boxing or object creation is an offence.  Their slow paths (the own window's
   begin/close/abort, the flush itself, the timed LRU, the argument and double-finish
   errors) are separate cdef functions, reached only when needed, and not followed.

Prints OK (with the notes), or the offending lines; exits 1 on an offence.
"""
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# setup.py's compiler directives
DIRECTIVES = ["boundscheck=False", "wraparound=False", "initializedcheck=False",
              "cdivision=True", "embedsignature=True"]

# (pyx, function name, C name suffix) - the hot functions
TARGETS = [
    ("tlb.pyx", "c_access", "__pyx_f_7mmucore_3tlb_c_access"),
    ("tlb.pyx", "walk", "__pyx_f_7mmucore_3tlb_walk"),
    ("tlb.pyx", "array_find", "__pyx_f_7mmucore_3tlb_array_find"),
    ("tlb.pyx", "array_fill", "__pyx_f_7mmucore_3tlb_array_fill"),
    # arm64 (issue 11): the receiving side of a broadcast TLBI by VA, per stride
    ("tlb.pyx", "tlbi_va_loop", "__pyx_f_7mmucore_3tlb_tlbi_va_loop"),
    ("pagetable.pyx", "change_pte_range", "__pyx_f_7mmucore_9pagetable_change_pte_range"),
    ("pagetable.pyx", "change_huge_pmd", "__pyx_f_7mmucore_9pagetable_change_huge_pmd"),
    ("pagetable.pyx", "_fill", "__pyx_f_7mmucore_9pagetable_9PageTable__fill"),
    # not in the list: the PMD-level driver of change_pte_range / change_huge_pmd
    ("pagetable.pyx", "_change", "__pyx_f_7mmucore_9pagetable_9PageTable__change"),
    # the zap loop (issue 13): per PTE, with the gather's page batch
    ("pagetable.pyx", "zap_pte_range", "__pyx_f_7mmucore_9pagetable_zap_pte_range"),
    # the shootdown path (issue 9): per request and per target
    ("tlbstate.pyx", "flush_tlb_func", "__pyx_f_7mmucore_8tlbstate_flush_tlb_func"),
    ("tlbstate.pyx", "native_flush_tlb_multi",
     "__pyx_f_7mmucore_8tlbstate_native_flush_tlb_multi"),
    ("tlbstate.pyx", "flush_tlb_mm_range", "__pyx_f_7mmucore_8tlbstate_flush_tlb_mm_range"),
    ("tlbstate.pyx", "switch_mm_irqs_off", "__pyx_f_7mmucore_8tlbstate_switch_mm_irqs_off"),
    ("tlbstate.pyx", "return_to_user", "__pyx_f_7mmucore_8tlbstate_return_to_user"),
    # 6.14/6.15 mechanisms: target selection, trimming, INVLPGB/TLBSYNC, global ASIDs
    ("tlbstate.pyx", "should_flush_tlb", "__pyx_f_7mmucore_8tlbstate_should_flush_tlb"),
    ("tlbstate.pyx", "should_trim_cpumask", "__pyx_f_7mmucore_8tlbstate_should_trim_cpumask"),
    ("tlbstate.pyx", "cpumask_any_but", "__pyx_f_7mmucore_8tlbstate_cpumask_any_but"),
    ("tlbstate.pyx", "broadcast_tlb_flush", "__pyx_f_7mmucore_8tlbstate_broadcast_tlb_flush"),
    ("tlbstate.pyx", "finish_asid_transition", "__pyx_f_7mmucore_8tlbstate_finish_asid_transition"),
    ("tlbstate.pyx", "invlpgb_issue", "__pyx_f_7mmucore_8tlbstate_invlpgb_issue"),
    ("tlbstate.pyx", "invlpgb_apply", "__pyx_f_7mmucore_8tlbstate_invlpgb_apply"),
    ("tlbstate.pyx", "invlpgb_queue", "__pyx_f_7mmucore_8tlbstate_invlpgb_queue"),
    ("tlbstate.pyx", "tlbsync", "__pyx_f_7mmucore_8tlbstate_tlbsync"),
    ("tlbstate.pyx", "consider_global_asid", "__pyx_f_7mmucore_8tlbstate_consider_global_asid"),
    ("tlbstate.pyx", "mm_active_cpus_exceeds", "__pyx_f_7mmucore_8tlbstate_mm_active_cpus_exceeds"),
    ("tlbstate.pyx", "use_global_asid", "__pyx_f_7mmucore_8tlbstate_use_global_asid"),
    ("tlbstate.pyx", "allocate_global_asid", "__pyx_f_7mmucore_8tlbstate_allocate_global_asid"),
    ("tlbstate.pyx", "reset_global_asid_space", "__pyx_f_7mmucore_8tlbstate_reset_global_asid_space"),
    ("tlbstate.pyx", "choose_new_asid", "__pyx_f_7mmucore_8tlbstate_choose_new_asid"),
    # the syscall entry's jiffies (X86Flush.syscall_enter_from_user_mode)
    ("tlbstate.pyx", "_py_floordiv", "__pyx_f_7mmucore_8tlbstate__py_floordiv"),
    # Intel RAR (rar-rfc) and reclaim's batched unmap flush
    ("tlbstate.pyx", "handle_rar", "__pyx_f_7mmucore_8tlbstate_handle_rar"),
    ("tlbstate.pyx", "rar_set_payload", "__pyx_f_7mmucore_8tlbstate_rar_set_payload"),
    ("tlbstate.pyx", "rar_do_payload", "__pyx_f_7mmucore_8tlbstate_rar_do_payload"),
    ("tlbstate.pyx", "rar_service", "__pyx_f_7mmucore_8tlbstate_rar_service"),
    ("tlbstate.pyx", "smp_call_rar_many", "__pyx_f_7mmucore_8tlbstate_smp_call_rar_many"),
    ("tlbstate.pyx", "rar_mask_targets", "__pyx_f_7mmucore_8tlbstate_rar_mask_targets"),
    ("tlbstate.pyx", "rar_flush_tlb_multi", "__pyx_f_7mmucore_8tlbstate_rar_flush_tlb_multi"),
    ("tlbstate.pyx", "rar_tlb_flush", "__pyx_f_7mmucore_8tlbstate_rar_tlb_flush"),
    ("tlbstate.pyx", "rar_flush_global_asid", "__pyx_f_7mmucore_8tlbstate_rar_flush_global_asid"),
    ("tlbstate.pyx", "rar_flush_tlb_all", "__pyx_f_7mmucore_8tlbstate_rar_flush_tlb_all"),
    ("tlbstate.pyx", "ipi_flush_tlb_multi_mask", "__pyx_f_7mmucore_8tlbstate_ipi_flush_tlb_multi_mask"),
    ("tlbstate.pyx", "arch_tlbbatch_add_pending", "__pyx_f_7mmucore_8tlbstate_arch_tlbbatch_add_pending"),
    ("tlbstate.pyx", "arch_tlbbatch_flush", "__pyx_f_7mmucore_8tlbstate_arch_tlbbatch_flush"),
    ("tlb.pyx", "c_invlpgb_va", "__pyx_f_7mmucore_3tlb_c_invlpgb_va"),
    ("tlb.pyx", "c_invlpgb_pcid", "__pyx_f_7mmucore_3tlb_c_invlpgb_pcid"),
    # the timeline (issue 10): per IPI target and per contended write
    ("tlbstate.pyx", "handle_ipi", "__pyx_f_7mmucore_8tlbstate_handle_ipi"),
    ("tlbstate.pyx", "send_flush_ipis", "__pyx_f_7mmucore_8tlbstate_send_flush_ipis"),
    ("tlbstate.pyx", "cpu_now", "__pyx_f_7mmucore_8tlbstate_cpu_now"),
    ("calendar.pyx", "calendar_fit", "__pyx_f_7mmucore_8calendar_calendar_fit"),
    ("calendar.pyx", "line_write", "__pyx_f_7mmucore_8calendar_line_write"),
    ("calendar.pyx", "calendar_queued", "__pyx_f_7mmucore_8calendar_calendar_queued"),
    # the replay's fault loop (issue 12): the VMA search between two faults
    ("fastfault.pyx", "_find", "__pyx_f_7mmucore_9fastfault__find"),
    # VMAList's binary searches (find_vma and friends, split, merge, munmap), the
    # free-area walks of get_unmapped_area, and the merge rule's C tests
    ("vma.pyx", "_first_end_above", "__pyx_f_7mmucore_3vma__first_end_above"),
    ("vma.pyx", "_first_start_from", "__pyx_f_7mmucore_3vma__first_start_from"),
    ("vma.pyx", "_first_start_above", "__pyx_f_7mmucore_3vma__first_start_above"),
    ("vma.pyx", "_topdown", "__pyx_f_7mmucore_3vma_7VMAList__topdown"),
    ("vma.pyx", "_bottomup", "__pyx_f_7mmucore_3vma_7VMAList__bottomup"),
    ("vma.pyx", "_bad_range", "__pyx_f_7mmucore_3vma__bad_range"),
    ("vma.pyx", "_anon_vma_compatible", "__pyx_f_7mmucore_3vma__anon_vma_compatible"),
]
# the empty mmu_gather cycle (check 3): C bodies, and the body lines of the def wrappers
# (their `def` line carries the argument parsing and the module's init code)
PY_OBJECT_TARGETS = [
    ("mmu_gather.pyx", "c_tlb_gather_mmu", "__pyx_f_7mmucore_10mmu_gather_c_tlb_gather_mmu"),
    ("mmu_gather.pyx", "_window_active", "__pyx_f_7mmucore_10mmu_gather__window_active"),
    ("mmu_gather.pyx", "c_tlb_end_vma", "__pyx_f_7mmucore_10mmu_gather_c_tlb_end_vma"),
    ("mmu_gather.pyx", "c_tlb_flush_mmu_tlbonly",
     "__pyx_f_7mmucore_10mmu_gather_c_tlb_flush_mmu_tlbonly"),
    ("mmu_gather.pyx", "c_tlb_table_flush", "__pyx_f_7mmucore_10mmu_gather_c_tlb_table_flush"),
    ("mmu_gather.pyx", "c_tlb_flush_mmu", "__pyx_f_7mmucore_10mmu_gather_c_tlb_flush_mmu"),
    ("mmu_gather.pyx", "c_tlb_finish_mmu", "__pyx_f_7mmucore_10mmu_gather_c_tlb_finish_mmu"),
    ("gather.pyx", "gather_init", "__pyx_f_7mmucore_6gather_gather_init"),
]
PY_OBJECT_DEF_BODIES = [("mmu_gather.pyx", "tlb_gather_mmu"),
                        ("mmu_gather.pyx", "tlb_finish_mmu"),
                        ("mmu_gather.pyx", "tlb_end_vma"),
                        ("mmu_gather.pyx", "__enter__"), ("mmu_gather.pyx", "__exit__")]
# their slow paths, not followed (each called only when its case arises)
PY_OBJECT_SLOW = {
    "__pyx_f_7mmucore_10mmu_gather__bad_arguments",      # tlb_gather_mmu(thread, ...)
    "__pyx_f_7mmucore_10mmu_gather__open_own_window",    # outside an operation
    "__pyx_f_7mmucore_10mmu_gather__close_own_window",
    "__pyx_f_7mmucore_10mmu_gather__abort_own_window",   # an exception in the flush
    "__pyx_f_7mmucore_10mmu_gather__finished_twice",
    "__pyx_f_7mmucore_10mmu_gather_c_tlb_flush",         # something was recorded
    "__pyx_f_7mmucore_10mmu_gather__free_zapped",        # the LRU is timed
    "__pyx_f_7mmucore_6gather__bad_reserve",             # batch_reserve not 0 or 1
}
# what they may do: attribute access on the Python objects, truth tests and int fast
# paths on the values read, cpu.gather_batch_reserve's C conversion, reference counting,
# the try statements' exception bookkeeping
PY_OBJECT_ALLOWED = {
    "__Pyx_PyObject_GetAttrStr", "__Pyx_PyObject_SetAttrStr", "__Pyx_PyObject_IsTrue",
    "__Pyx_PyLong_AddObjC", "__Pyx_PyLong_SubtractObjC",
    "__Pyx_PyObject_CompareBoolGt_object_int", "__Pyx_PyLong_As_int",
    "__Pyx_INCREF", "__Pyx_DECREF", "__Pyx_XDECREF", "__Pyx_DECREF_SET",
    "__Pyx_XDECREF_SET", "__Pyx_ExceptionSave", "__Pyx_ExceptionReset",
    "__Pyx_ExceptionSwap", "__Pyx_GetException", "__Pyx_PyErr_ExceptionMatches",
    "__Pyx_ErrFetch", "__Pyx_ErrRestore", "__Pyx_ErrRestoreWithState", "__Pyx_Raise",
}
# the `with nogil:` access loops (each function's first nogil block)
NOGIL_LOOPS = [("tlb.pyx", "access_stream"), ("fastfault.pyx", "access_stream_anon")]
PYX_FILES = ("tlb.pyx", "pagetable.pyx", "tlbstate.pyx", "calendar.pyx", "fastfault.pyx",
             "vma.pyx", "gather.pyx", "mmu_gather.pyx")

# Cython.Compiler.Annotate's classification of calls in the generated C
API_RE = re.compile(
    r"(?P<refnanny>__Pyx_X?(?:GOT|GIVE)REF|__Pyx_RefNanny[A-Za-z]+)|"
    r"(?P<trace>__Pyx_Trace[A-Za-z]+)|"
    r"(?:"
    r"(?P<pyx_macro_api>__Pyx_[A-Z][A-Z_]+)|"
    r"(?P<pyx_c_api>(?:__Pyx_[A-Z][a-z_][A-Za-z_]*)|__pyx_convert_[A-Za-z_]*)|"
    r"(?P<py_macro_api>Py[A-Z][a-z]+_[A-Z][A-Z_]+)|"
    r"(?P<py_c_api>Py[A-Z][a-z]+_[A-Z][a-z][A-Za-z_]*)"
    r")(?=\()")
SCORED = ("py_c_api", "pyx_c_api", "py_macro_api", "pyx_macro_api")
WEIGHT = {"py_c_api": 5, "pyx_c_api": 2, "py_macro_api": 1, "pyx_macro_api": 1}
# error path only: exception check after an `except?` call, the error epilogue
ERROR_PATH = {"PyErr_Occurred", "__Pyx_ErrOccurredWithGIL", "__Pyx_AddTraceback",
              "__Pyx_PyGILState_Ensure", "__Pyx_PyGILState_Release", "PyGILState_Ensure",
              "PyGILState_Release", "__Pyx_WriteUnraisable"}
# the GIL release / re-acquire of a `with nogil:` statement (once per entry into the block)
GIL_BOUNDARY = {"PyEval_SaveThread", "PyEval_RestoreThread", "__Pyx_FastGIL_Remember",
                "__Pyx_FastGIL_Forget"}


def api_calls(c_code: str):
    """Scored Python-API calls in a piece of generated C, as [(kind, name)]."""
    out = []
    for m in API_RE.finditer(c_code):
        for kind in SCORED:
            if m.group(kind):
                out.append((kind, m.group(kind)))
    return out


# ------------------------------------------------------------------ source ranges
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def block_end(lines, start):
    """1-based last line of the block opened at 1-based line `start` (indent-based)."""
    ind = _indent(lines[start - 1])
    i = start                       # the header may continue over lines until ':'
    while not lines[i - 1].split("#")[0].rstrip().endswith(":") and i < len(lines):
        i += 1
    last = i
    for j in range(i + 1, len(lines) + 1):
        s = lines[j - 1]
        if not s.strip() or s.lstrip().startswith("#"):
            continue
        if _indent(s) <= ind:
            break
        last = j
    return last


def func_range(lines, name):
    pat = re.compile(r"^\s*(?:cdef|cpdef|def)\b[^(]*?\b" + re.escape(name) + r"\s*\(")
    for i, s in enumerate(lines, 1):
        if pat.match(s):
            return i, block_end(lines, i)
    raise LookupError(f"function {name} not found")


def nogil_range(lines, func):
    a, b = func_range(lines, func)
    for i in range(a, b + 1):
        if lines[i - 1].strip() == "with nogil:":
            return i, block_end(lines, i)
    raise LookupError(f"no `with nogil:` block in {func}")


# ------------------------------------------------------------------ html (check 1)
LINE_RE = re.compile(
    r'<pre class="cython line score-(\d+)"[^>]*>(?:\+|&#xA0;)<span class="[^"]*">(\d+)</span>:'
    r' ?(.*?)</pre>\s*(?:<pre class=\'cython code[^\']*\'>(.*?)</pre>)?', re.S)
TAG_RE = re.compile(r"<[^>]+>")


def html_lines(path):
    """{line: (score, source, c_code)} from a Cython annotation html."""
    text = open(path, encoding="utf-8").read()
    out = {}
    for m in LINE_RE.finditer(text):
        src = html.unescape(TAG_RE.sub("", m.group(3)))
        code = html.unescape(TAG_RE.sub("", m.group(4) or ""))
        out[int(m.group(2))] = (int(m.group(1)), src, code)
    return out


# ------------------------------------------------------------------ C bodies (check 2)
MARK_RE = re.compile(r'/\* "([^"]+)":(\d+)\n')


def c_functions(c_text):
    """{c_name: body} for every function *definition* named __pyx_f_* in the C file."""
    out = {}
    for m in re.finditer(r"^(?:static |CYTHON_INLINE |CYTHON_UNUSED )*[A-Za-z_][\w \*]*?"
                         r"\b(__pyx_f_\w+)\(([^;{]*?)\)\s*\{", c_text, re.M):
        name = m.group(1)
        i = m.end()
        depth = 1
        while depth and i < len(c_text):
            ch = c_text[i]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == '"':               # skip string literals
                i += 1
                while c_text[i] != '"':
                    i += 2 if c_text[i] == "\\" else 1
            elif c_text.startswith("/*", i):
                i = c_text.index("*/", i) + 1
            i += 1
        out.setdefault(name, c_text[m.start():i])
    return out


def body_offences(name, body):
    """[(pyx file, line, [calls])] for Python-API calls in a C body, by source marker."""
    found = []
    where = ("?", 0)
    for chunk in re.split(r"(/\* \"[^\"]+\":\d+\n)", body):
        m = MARK_RE.match(chunk)
        if m:
            where = (m.group(1), int(m.group(2)))
            continue
        code = re.sub(r"/\*.*?\*/", "", chunk, flags=re.S)
        calls = api_calls(code)
        if calls:
            found.append((where[0], where[1], calls))
    return found


def callees(body, known):
    return {n for n in re.findall(r"\b(__pyx_f_\w+)\s*\(", body) if n in known}


# ------------------------------------------------------------------ main
def annotate(tmp, root=ROOT):
    pkg = os.path.join(tmp, "mmucore")
    os.makedirs(pkg)
    src = os.path.join(root, "mmucore")
    for f in os.listdir(src):
        if f.endswith((".pyx", ".pxd")) or f == "__init__.py":
            shutil.copy(os.path.join(src, f), pkg)
    import numpy as np
    cmd = [sys.executable, "-m", "cython", "-a", "-3", "-I", tmp, "-I", np.get_include()]
    for d in DIRECTIVES:
        cmd += ["-X", d]
    cmd += [f"mmucore/{pyx}" for pyx in PYX_FILES]
    subprocess.run(cmd, cwd=tmp, check=True, capture_output=True, text=True)
    return pkg


def check(root=ROOT, verbose=False):
    """Run the check; returns (ok, report lines, summary dict)."""
    report = []
    offences = []          # (where, text)
    error_only = []
    gil = []
    with tempfile.TemporaryDirectory(prefix="mmucore-annotate-") as tmp:
        pkg = annotate(tmp, root)
        files = {}
        for pyx in PYX_FILES:
            lines = open(os.path.join(pkg, pyx), encoding="utf-8").read().split("\n")
            files[pyx] = (lines, html_lines(os.path.join(pkg, pyx[:-4] + ".html")),
                          open(os.path.join(pkg, pyx[:-4] + ".c"), encoding="utf-8").read())

        # check 1: Cython's scores on the source lines of the hot functions
        ranges = [(pyx, name, *func_range(files[pyx][0], name)) for pyx, name, _ in TARGETS]
        for pyx, fn in NOGIL_LOOPS:
            ranges.append((pyx, fn + " `with nogil` loop", *nogil_range(files[pyx][0], fn)))
        for pyx, name, a, b in ranges:
            ann = files[pyx][1]
            yellow = [(ln, *ann[ln]) for ln in range(a, b + 1) if ln in ann and ann[ln][0] > 0]
            report.append(f"{pyx}:{a}-{b} {name}: "
                          f"{'no yellow lines' if not yellow else f'{len(yellow)} yellow line(s)'}")
            for ln, score, src, code in yellow:
                names = sorted({n for _, n in api_calls(code)})
                line = f"  {pyx}:{ln} score {score} [{', '.join(names)}]: {src.strip()}"
                _classify(names, line, offences, error_only, gil)
                report.append(line)

        # check 2: the C bodies, transitively through the cdef functions they call
        funcs = {}
        for pyx in files:
            funcs.update(c_functions(files[pyx][2]))
        todo = [c for _, _, c in TARGETS]
        # the nogil loop's callees: the C code of its lines
        for pyx, fn in NOGIL_LOOPS:
            lines, ann, _ = files[pyx]
            a, b = nogil_range(lines, fn)
            loop_code = "\n".join(ann[ln][2] for ln in range(a, b + 1) if ln in ann)
            todo += sorted(callees(loop_code, funcs))
        seen = set()
        while todo:
            name = todo.pop()
            if name in seen or name not in funcs:
                continue
            seen.add(name)
            todo += sorted(callees(funcs[name], funcs) - seen)
        report.append(f"C bodies scanned (targets and their cdef callees): {len(seen)}")
        for name in sorted(seen):
            found = body_offences(name, funcs[name])
            if verbose:
                report.append(f"  {name}: {'clean' if not found else f'{len(found)} site(s)'}")
            for where, ln, calls in found:
                names = sorted({n for _, n in calls})
                line = f"  C {name} ({os.path.basename(where)}:{ln}): {', '.join(names)}"
                _classify(names, line, offences, error_only, gil)
                report.append(line)

        # check 3: the empty mmu_gather cycle, whose Python object access is by design
        obj_access = []
        py_ranges = [(pyx, name, *func_range(files[pyx][0], name))
                     for pyx, name, _ in PY_OBJECT_TARGETS]
        for pyx, name in PY_OBJECT_DEF_BODIES:
            a, b = func_range(files[pyx][0], name)
            py_ranges.append((pyx, name + " (def body)", a + 1, b))
        for pyx, name, a, b in py_ranges:
            ann = files[pyx][1]
            yellow = [(ln, *ann[ln]) for ln in range(a, b + 1) if ln in ann and ann[ln][0] > 0]
            report.append(f"{pyx}:{a}-{b} {name}: {len(yellow)} line(s) with object access")
            for ln, score, src, code in yellow:
                names = sorted({n for _, n in api_calls(code)})
                line = f"  {pyx}:{ln} score {score} [{', '.join(names)}]: {src.strip()}"
                _classify_object(names, line, offences, error_only, obj_access)
                report.append(line)
        todo = [c for _, _, c in PY_OBJECT_TARGETS]
        py_seen = set()
        while todo:
            name = todo.pop()
            if name in py_seen or name not in funcs or name in PY_OBJECT_SLOW:
                continue
            py_seen.add(name)
            todo += sorted(callees(funcs[name], funcs) - py_seen)
        report.append(f"C bodies of the empty mmu_gather cycle scanned: {len(py_seen)}")
        for name in sorted(py_seen):
            for where, ln, calls in body_offences(name, funcs[name]):
                names = sorted({n for _, n in calls})
                line = f"  C {name} ({os.path.basename(where)}:{ln}): {', '.join(names)}"
                _classify_object(names, line, offences, error_only, obj_access)
                report.append(line)
        seen |= py_seen

    ok = not offences
    summary = {"ok": ok, "offences": len(offences), "error_path_only": len(error_only),
               "gil_boundary": len(gil), "object_access": len(obj_access),
               "functions_scanned": len(seen)}
    return ok, report, offences, error_only, gil, summary


def _classify(names, line, offences, error_only, gil):
    names = set(names)
    if names <= ERROR_PATH:
        error_only.append(line)
    elif names <= GIL_BOUNDARY:
        gil.append(line)
    else:
        offences.append(line)


def _classify_object(names, line, offences, error_only, obj_access):
    """Check 3: error path, allowed object access, or an offence."""
    names = set(names)
    if names <= ERROR_PATH:
        error_only.append(line)
    elif names <= PY_OBJECT_ALLOWED | ERROR_PATH:
        obj_access.append(line)
    else:
        offences.append(line)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv
    ok, report, offences, error_only, gil, summary = check(verbose=verbose)
    if verbose:
        print("\n".join(report))
    if error_only:
        print(f"note, error path only ({len(error_only)}): exception checks after `except?` "
              f"calls and error epilogues, not Python calls on the hot path:")
        print("\n".join(error_only))
    if gil:
        print(f"note, GIL boundary ({len(gil)}): release/re-acquire once per entry into a "
              f"`with nogil:` block:")
        print("\n".join(gil))
    print(f"note, the empty mmu_gather cycle: {summary['object_access']} line(s) of "
          f"attribute access on the Python CPU and mm (by design; -v lists them)")
    if ok:
        print("OK: no Python interaction in the hot loops")
        return 0
    print(f"FAIL: {len(offences)} line(s) with Python interaction in the hot loops:")
    print("\n".join(offences))
    return 1


if __name__ == "__main__":
    sys.exit(main())
