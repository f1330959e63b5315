"""The package layout keeps its promises: no import cycle, stages import only the stages before them, the feature
library stands alone, and the top of ``stockcast/`` stays small.

Imports are read from the source (every ``import`` statement, at module level or inside a function, type-checking
imports included), so a dependency hidden in a function body counts as much as one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stockcast", "features", "bentos")
STAGES = ("core", "data", "train", "serve", "deploy", "operate")
"""``stockcast``'s stage packages, lowest first: each may import only itself and the stages before it."""
MAX_TOP_LEVEL_MODULES = 8


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name."""
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))}


def imported_names(path: Path) -> Iterator[str]:
    """The dotted names a module imports, as written (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (a package's name stands for its ``__init__``)."""
    known = modules()
    return {
        name: {target for target in imported_names(path) if target in known} - {name} for name, path in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def stage_of(module: str) -> int | None:
    """The position of a ``stockcast`` module's stage in ``STAGES`` (None outside the stage packages)."""
    parts = module.split(".")
    if parts[0] != "stockcast" or len(parts) < 2 or parts[1] not in STAGES:
        return None
    return STAGES.index(parts[1])


def test_the_graph_is_read_from_every_module() -> None:
    graph = import_graph()
    assert {"stockcast.core.registry", "stockcast.serve.bundle", "features.build", "bentos.service"} <= set(graph)
    assert "stockcast.serve.bundle" in graph["bentos.service"]
    assert "stockcast.core.registry" in graph["stockcast.serve.bundle"]


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_a_stage_imports_only_the_stages_before_it() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if (stage := stage_of(module)) is not None
        for target in targets
        if (other := stage_of(target)) is not None and other > stage
    )
    assert upward == []


def test_the_feature_library_imports_nothing_of_stockcast_and_nothing_imports_the_service() -> None:
    graph = import_graph()
    assert (
        sorted(
            f"{module} imports {target}"
            for module, targets in graph.items()
            if module.startswith("features")
            for target in targets
            if not target.startswith("features")
        )
        == []
    )
    outside = {module: targets for module, targets in graph.items() if not module.startswith("bentos")}
    assert sorted(module for module, targets in outside.items() if any(t.startswith("bentos") for t in targets)) == []


def test_the_top_of_stockcast_holds_the_stage_packages_and_few_modules() -> None:
    top = REPO_ROOT / "stockcast"
    packages = sorted(path.name for path in top.iterdir() if (path / "__init__.py").is_file())
    top_modules = sorted(path.name for path in top.glob("*.py") if path.name != "__init__.py")
    assert packages == sorted(STAGES)
    assert len(top_modules) <= MAX_TOP_LEVEL_MODULES, top_modules
