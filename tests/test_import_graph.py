"""Imports flow one way: no cycle among the package's modules, and no import from a stage into a later one.

The graph is read from the source (ast), so the test imports nothing. An edge A -> B is any
``import``/``from ... import`` of B in A, at module level *or inside a function*: a lazy import
that climbs back up is a loop all the same, only deferred. Not edges: imports under
``if TYPE_CHECKING:`` (they never run), and the implicit import of a package's ``__init__`` when
one of its submodules is imported (every submodule would otherwise loop with its package).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import pytest

import ast
from pathlib import Path

PACKAGE = "memunlearn"
SOURCE = Path(__file__).resolve().parents[1] / "src"

# Edges a test may not see yet, each with why. The method files still take ``register_method``
# from the package ``__init__`` that imports them (being moved to ``methods/registry.py``);
# test_known_exceptions_are_still_needed fails once an edge is gone, so the list only shrinks.
KNOWN_EDGES = {
    (f"{PACKAGE}.methods.{name}", f"{PACKAGE}.methods")
    for name in ("conv_transpose", "del_method", "finetune", "l1_sparse", "neggrad", "neggrad_plus",
                 "noise_injection", "random_label", "retrain", "salun", "scrub", "small_grad_reinit", "ssd",
                 "stop_when_done", "uniform_contrastive")
}


# The package's stages in the order data flows through them (the layout in the README's terms);
# a module may import its own layer and the layers below. The longest matching prefix wins.
# benchmarks/call_walk.py counts the calls that climb these layers at run time.
LAYERS = [
    ("memunlearn", 0), ("memunlearn.io", 0), ("memunlearn.errors", 0), ("memunlearn.registry", 0),
    ("memunlearn.params", 0),
    ("memunlearn.data", 1),
    ("memunlearn.models", 2), ("memunlearn.training", 2), ("memunlearn.checkpoints", 2),
    ("memunlearn.forget", 3), ("memunlearn.backdoor", 3),
    ("memunlearn.memorization", 4), ("memunlearn.localization", 4),
    ("memunlearn.methods", 5), ("memunlearn.rum", 5),
    ("memunlearn.evaluation", 6), ("memunlearn.privacy", 6),
    ("memunlearn.experiment", 7), ("memunlearn.tuning", 7),
    ("memunlearn.report", 8),
    ("memunlearn.cli", 9), ("memunlearn.__main__", 9),
]


def layer(module: str) -> int:
    """The stage of a package module (see LAYERS)."""
    prefixes = [(prefix, rank) for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return max(prefixes, key=lambda entry: len(entry[0]))[1]


def package_modules(root: Path | None = None, package: str = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) under ``root`` (default: the source tree)."""
    root = SOURCE if root is None else root
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, modules: dict[str, tuple[Path, bool]]) -> dict[str, int]:
    """The package modules ``module`` imports (anywhere but under TYPE_CHECKING) -> first line."""
    path, is_package = modules[module]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target != module:
            found.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.orelse:
                    visit(statement)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child.lineno)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[:len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    add(sub if sub in modules else target, child.lineno)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    modules = package_modules()
    return {module: imports_of(module, modules) for module in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_cycle_finder_finds_a_lazy_loop_and_ignores_type_checking(tmp_path):
    """The checker itself: a function-level import back up is a loop; a TYPE_CHECKING one is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from .high import g\n    return g\n")
    (package / "high.py").write_text("from . import low\n")
    (package / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import g\n")
    (package / "user.py").write_text("from pkg.typed import x\n")
    modules = package_modules(tmp_path, "pkg")
    graph = {m: set(imports_of(m, modules)) for m in modules}
    assert graph["pkg.high"] == {"pkg.low"} and graph["pkg.low"] == {"pkg.high"}
    assert graph["pkg.typed"] == set() and graph["pkg.user"] == {"pkg.typed"}
    assert cycles(graph) == [["pkg.high", "pkg.low"]]


@pytest.mark.xfail(strict=True, reason="known, issue 19: this round's merges added auditing.py and limits.py "
                   "without a layer, upward imports and experiment/report cycles; strict, so it fails once fixed")
def test_no_import_cycles():
    graph = import_graph()
    pruned = {module: {t for t in targets if (module, t) not in KNOWN_EDGES} for module, targets in graph.items()}
    loops = cycles(pruned)
    detail = [
        " ; ".join(f"{a} -> {b} (line {graph[a][b]})" for a in loop for b in sorted(pruned[a]) if b in loop)
        for loop in loops
    ]
    assert not loops, "import cycles (move the shared piece down into a lower module):\n" + "\n".join(detail)


def test_known_exceptions_are_still_needed():
    graph = import_graph()
    gone = sorted(edge for edge in KNOWN_EDGES if edge[1] not in graph.get(edge[0], {}))
    assert not gone, f"these imports are gone; delete them from KNOWN_EDGES: {gone}"


@pytest.mark.xfail(strict=True, reason="known, issue 19: this round's merges added auditing.py and limits.py "
                   "without a layer, upward imports and experiment/report cycles; strict, so it fails once fixed")
def test_every_module_has_a_layer():
    """A new top-level module gets its stage in LAYERS (else it would fall into the base layer unseen)."""
    unplaced = [m for m in package_modules() if m.count(".") >= 1 and layer(m) == 0
                and m.split(".")[1] not in ("io", "errors", "registry", "params", "__init__")]
    assert not unplaced, f"give these modules a layer in LAYERS: {unplaced}"


@pytest.mark.xfail(strict=True, reason="known, issue 19: this round's merges added auditing.py and limits.py "
                   "without a layer, upward imports and experiment/report cycles; strict, so it fails once fixed")
def test_no_import_climbs_a_layer():
    """A stage imports only its own and earlier stages (a lazy import inside a function included)."""
    graph = import_graph()
    climbs = [f"{a} ({layer(a)}) -> {b} ({layer(b)}), line {line}"
              for a, targets in sorted(graph.items()) for b, line in sorted(targets.items()) if layer(b) > layer(a)]
    assert not climbs, "imports into a later stage (move the shared piece down):\n" + "\n".join(climbs)
