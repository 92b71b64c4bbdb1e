"""The package's shape as DESIGN.md draws it: imports only go down (no circle, not even
through imports inside functions), kernel paths never reach up through a machine, and a
machine is freed by reference counting alone."""
import ast
import gc
import os
import weakref

import pytest

import pysim
from pysim import PROT_READ, PROT_WRITE

ROOT = os.path.dirname(pysim.__file__)


def _modules():
    """{dotted name: (path, is_package)} of every module under pysim/."""
    out = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                pkg = rel.endswith(".__init__")
                out[rel[:-len(".__init__")] if pkg else rel] = (path, pkg)
    return out


def _type_checking_nodes(tree):
    """Nodes inside `if TYPE_CHECKING:` blocks (imports for annotations only)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else getattr(t, "attr", None)
            if name == "TYPE_CHECKING":
                skip.update(id(n) for n in ast.walk(node))
    return skip


def _dynamic_import(node):
    """Whether node is a call importlib.import_module("...") or __import__("...") with a
    literal module name."""
    if not isinstance(node, ast.Call) or not node.args:
        return False
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    arg = node.args[0]
    return name in ("import_module", "__import__") and isinstance(arg, ast.Constant) \
        and isinstance(arg.value, str)


def _imports(mods):
    """{module: set of pysim modules it imports}, function-level imports included."""
    edges = {m: set() for m in mods}
    for mod, (path, pkg) in mods.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        skip = _type_checking_nodes(tree)
        base = mod.split(".") if pkg else mod.split(".")[:-1]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif _dynamic_import(node):
                # importlib.import_module("pysim.x") / __import__("pysim.x") is an import
                # too: hiding a circle behind one must not make the check pass
                names = [node.args[0].value]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base[:len(base) - node.level + 1]
                    target = ".".join(parent + ([node.module] if node.module else []))
                else:
                    target = node.module
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                # a package's __init__ re-exporting its own modules is its face, not a
                # dependency of theirs; a module importing its own package is the same
                if name and name != mod and not name.startswith(mod + ".") \
                        and not mod.startswith(name + "."):
                    edges[mod].add(name)
    return edges


def _cycle(edges):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_circle_in_pysim():
    edges = _imports(_modules())
    assert _cycle(edges) is None, " -> ".join(_cycle(edges))


def test_a_dynamic_import_counts_as_an_edge():
    """importlib.import_module with a literal name is seen by the import scan."""
    call = ast.parse('importlib.import_module("pysim.config.presets")').body[0].value
    assert _dynamic_import(call)
    assert not _dynamic_import(ast.parse("f(1)").body[0].value)


def test_the_cycle_finder_finds_a_circle():
    """The check above is not vacuous: a planted circle through a function-level import
    is found."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(edges) == ["a", "b", "c", "a"]
    mods = _modules()
    planted = _imports(mods)
    planted["pysim.mm.mprotect"].add("pysim.machine.machine")   # as `from ..machine import`
    assert _cycle(planted) is not None


@pytest.mark.parametrize("layer", ["mm", "arch", "config"])
def test_lower_layers_never_import_upper_ones(layer):
    """mm -> arch -> mmucore; config under everything: none of them imports machine,
    workloads, experiments, sweeps, report or cli."""
    upper = ("pysim.machine", "pysim.workloads", "pysim.experiments", "pysim.sweeps",
             "pysim.report", "pysim.cli")
    edges = _imports(_modules())
    for mod, deps in edges.items():
        if mod.startswith(f"pysim.{layer}"):
            bad = [d for d in deps if d.startswith(upper)]
            assert not bad, f"{mod} imports {bad}"


def test_kernel_paths_do_not_reach_up_through_a_machine():
    """Kernel paths are handed a CPU, an mm and a frozen config: no `.machine` in them."""
    for mod, (path, _) in _modules().items():
        if mod.startswith(("pysim.mm", "pysim.arch")) or mod == "pysim.checker":
            src = open(path, encoding="utf-8").read()
            assert ".machine" not in src, f"{mod} mentions .machine"


def test_a_dropped_machine_is_freed_without_the_cyclic_gc():
    gc.disable()
    try:
        m = pysim.Machine(cpus=2, profile="patched")
        proc = m.process()
        t0, t1 = proc.thread(cpu=0), proc.thread(cpu=1).busy()
        p = t0.mmap(8 * 4096, PROT_READ | PROT_WRITE)
        t0.write(p)
        t1.write(p)
        r = t0.mprotect(p, 8 * 4096, PROT_READ)
        refs = [weakref.ref(o) for o in (m, proc, proc.mm, t0, t1, m.cpus[0], m.arch)]
        del m, proc, t0, t1, r
        assert [ref() for ref in refs] == [None] * len(refs)
    finally:
        gc.enable()
