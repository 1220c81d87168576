"""No import cycles: between the package's modules, nor between its subpackages (read with ``ast``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import cf_lightning

PACKAGE = Path(cf_lightning.__file__).resolve().parent
NAME = PACKAGE.name


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement names (``from a import b``: ``a.b`` if a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module.split(".")
        if node.level:  # relative: from the module's package
            is_package = MODULES[module].name == "__init__.py"
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]
    found = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        # A module importing its own package's __init__ (or the top package) is not an edge worth a cycle.
        if name and name != module and name != NAME and not module.startswith(name + "."):
            found.append(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Every import (module level or inside a function) of every module, as module -> imported modules."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[module].update(_imported(module, node))
    return graph


def by_subpackage(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with each module counted as its first-level subpackage (``cf_lightning.data``)."""

    def top(module: str) -> str:
        return ".".join(module.split(".")[:2])

    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        collapsed.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
    return collapsed


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more nodes (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert by_subpackage({"p.x.one": {"p.y.two"}, "p.y.two": {"p.x.three"}, "p.x.three": set()}) == {
        "p.x": {"p.y"},
        "p.y": {"p.x"},
    }


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    assert importlib.import_module(module).__name__ == module


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_subpackages():
    assert cycles(by_subpackage(import_graph())) == []


def test_no_cycle_this_branch_removed_comes_back():
    """The cycles of issue 24 this branch broke: models <-> inference, a model importing the train command."""
    graph = import_graph()
    assert "cf_lightning.inference" not in by_subpackage(graph)["cf_lightning.models"]
    assert not any(target.startswith("cf_lightning.train") for target in graph["cf_lightning.models.rating.blend"])
    assert not any(group for group in cycles(graph) if any(m.startswith("cf_lightning.models") for m in group))
