"""The layers of ``planner`` (docs/architecture.md, "Layers"), enforced on the import graph.

The graph is built by grimp (import-linter's engine) from the source: every ``import`` counts, those
inside functions and under ``TYPE_CHECKING`` too, so a cycle cannot hide in a late import.

* No import cycle anywhere in ``planner``.
* Imports point down the layer map :data:`LAYERS` only (an import inside one layer is fine).
* Every module of ``planner`` is in a layer: a new top-level module is placed here consciously.
* The renderer layer (``planner/views/render``) imports no widget (Qt widgets and the VTK-Qt bridge are
  blocked while its modules import). The core (everything outside ``planner/views``) imports without
  Qt at all: ``tests/test_headless.py``.
* No ``importlib`` / ``__import__`` in ``planner``: modules are imported by name (no plug-in point is
  documented; add it to :data:`PLUGIN_POINTS` with its reason when there is one).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp

from tests.test_headless import QT_PACKAGES, ROOT, blocked_import_script

#: The layers, top to bottom: a module may import its own layer and the layers below it. A module
#: belongs to the layer of the longest prefix that names it (``planner.views.render`` is not
#: ``planner.views``); ``planner`` itself is the package's ``__init__`` (name and version).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("views and commands", ("planner.views", "planner.cli")),
    ("documents", ("planner.report", "planner.export", "planner.pacs_plan")),
    ("render", ("planner.views.render",)),
    ("display", ("planner.display", "planner.session")),
    ("logic", ("planner.trajectory", "planner.checks", "planner.safety", "planner.suggest", "planner.levels",
               "planner.modic", "planner.eligibility", "planner.fluoro", "planner.deidentify", "planner.demo")),
    ("plan model", ("planner.plan", "planner.document", "planner.settings", "planner.storage", "planner.review",
                    "planner.recent", "planner.autosave", "planner.relink")),
    ("imaging", ("planner.imaging",)),
    ("foundation", ("planner", "planner.events", "planner.logsafe", "planner.safefiles")),
)

#: Imports against the layers or in a cycle that are known and being removed, with who removes them
#: and when (each must still exist: a fixed one fails here until it is taken off the list).
PENDING: dict[tuple[str, str], str] = {}

#: Modules allowed to use importlib / __import__, with the documented plug-in point they implement.
PLUGIN_POINTS: dict[str, str] = {}

#: Dynamic imports known and being removed (each must still be there; see PENDING).
PENDING_DYNAMIC: dict[str, str] = {}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("planner", cache_dir=None)


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` (0 = top) of a module; -1 when no layer names it."""
    best, best_len = -1, -1
    for idx, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or (prefix != "planner" and module.startswith(prefix + "."))
            if named and len(prefix) > best_len:
                best, best_len = idx, len(prefix)
    return best


def _edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def _where(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    return "; ".join(f"line {d['line_number']}: {d['line_contents'].strip()}" for d in details)


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _problems() -> tuple[list[str], set[tuple[str, str]]]:
    graph = _graph()
    edges = _edges(graph)
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for comp in import_cycles(edges):
        members = set(comp)
        lines = [f"import cycle {' <-> '.join(comp)}:"]
        for a in comp:
            for b in sorted(edges[a] & members):
                if (a, b) in PENDING:
                    seen.add((a, b))
                    continue
                lines.append(f"  {a} -> {b} ({_where(graph, a, b)})")
        if len(lines) > 1:
            problems.append("\n".join(lines))
    for a in sorted(edges):
        la = layer_of(a)
        for b in sorted(edges[a]):
            lb = layer_of(b)
            if la < 0 or lb < 0 or lb >= la:
                continue
            if (a, b) in PENDING:
                seen.add((a, b))
                continue
            problems.append(f"{a} ({LAYERS[la][0]}) imports {b} ({LAYERS[lb][0]}), a layer above it: "
                            f"{_where(graph, a, b)}")
    return problems, seen


def test_layer_map_names_every_module():
    missing = sorted(m for m in _graph().modules if layer_of(m) < 0)
    assert not missing, ("modules in no layer (place each in LAYERS of tests/test_layers.py and in "
                         f"docs/architecture.md): {missing}")


def test_layer_map_is_what_the_test_assumes():
    """The map places the modules the issue names where it names them (a guard on the map itself)."""
    order = ["planner.views.main_window", "planner.report.pdf", "planner.views.render.overlays2d",
             "planner.session", "planner.checks", "planner.document", "planner.imaging.volume", "planner.events"]
    assert [layer_of(m) for m in order] == sorted(layer_of(m) for m in order)
    assert len({layer_of(m) for m in order}) == len(order)
    assert layer_of("planner") == layer_of("planner.logsafe") and layer_of("planner.plan") < layer_of("planner")


def test_no_import_cycle_and_no_import_against_the_layers():
    problems, _seen = _problems()
    assert not problems, "\n".join(problems)


def test_pending_exceptions_still_exist():
    _problems_found, seen = _problems()
    stale = sorted(set(PENDING) - seen)
    assert not stale, f"these imports are fixed: take them off PENDING in tests/test_layers.py: {stale}"


def test_cycle_finder_finds_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": set()}
    assert import_cycles(edges) == [["a", "b", "c"]]


def _render_modules() -> list[str]:
    return sorted(m for m in _graph().modules if layer_of(m) == 2)


def test_render_layer_imports_no_widget():
    mods = _render_modules()
    assert "planner.views.render.overlays2d" in mods and "planner.views.render.actors3d" in mods
    script = blocked_import_script(("PySide6.QtWidgets", "vtkmodules.qt", "PyQt5", "PyQt6", "PySide2"), mods)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_vtk_actor_builder_imports_without_qt():
    """The report's offscreen 3D picture builds its actors with the 3D view's builder: no Qt at all."""
    script = blocked_import_script(QT_PACKAGES, ["planner.views.render.actors3d", "planner.report.render3d"])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _dynamic_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "importlib" for a in node.names):
            found.append(f"line {node.lineno}: import importlib")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "importlib":
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append(f"line {node.lineno}: __import__")
    return found


def test_no_dynamic_imports():
    root = ROOT / "planner"
    found = []
    pending_seen = set()
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        hits = _dynamic_imports(path)
        if module in PLUGIN_POINTS or not hits:
            continue
        if module in PENDING_DYNAMIC:
            pending_seen.add(module)
            continue
        found += [f"{module} {hit}" for hit in hits]
    assert not found, "importlib / __import__ outside a documented plug-in point:\n" + "\n".join(found)
    stale = sorted(set(PENDING_DYNAMIC) - pending_seen)
    assert not stale, f"these modules no longer import dynamically: take them off PENDING_DYNAMIC: {stale}"


#: Who may compute the checks (planner.checks.evaluate_trajectory / evaluate_plan). Everything else reads
#: them from the session's results (planner.display.results.PlanResults), so one edit computes them once.
CHECKS_CALLERS: dict[str, str] = {
    "planner.checks": "defines them",
    "planner.display.results": "the session's results: the one place the plan's checks are computed",
    "planner.suggest": "checks candidate paths before one is in the plan",
}
#: Callers being moved to the results (each must still call; see PENDING).
PENDING_CHECKS_CALLERS: dict[str, str] = {}


def _checks_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = ("evaluate_trajectory", "evaluate_plan")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in names:
                found.append(f"line {node.lineno}: {name}()")
    return found


def test_only_the_results_compute_the_checks():
    found, pending_seen = [], set()
    for path in sorted((ROOT / "planner").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        hits = _checks_calls(path)
        if not hits or module in CHECKS_CALLERS:
            continue
        if module in PENDING_CHECKS_CALLERS:
            pending_seen.add(module)
            continue
        found += [f"{module} {hit}" for hit in hits]
    assert not found, "the checks are computed outside the session's results:\n" + "\n".join(found)
    stale = sorted(set(PENDING_CHECKS_CALLERS) - pending_seen)
    assert not stale, f"take these off PENDING_CHECKS_CALLERS in tests/test_layers.py: {stale}"


def test_dynamic_import_finder_finds_them(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import importlib.util\nfrom importlib import import_module\nx = __import__('os')\n")
    assert len(_dynamic_imports(src)) == 3
