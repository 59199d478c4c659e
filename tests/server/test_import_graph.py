"""The server's modules import each other without a cycle.

The graph is built from the source with `ast`, over every module of `cloud_server`
(migrations included), and counts every import: at module level and inside functions
(an import deferred into a function is still a dependency; deferring it only hides a
cycle until the function runs). Imports under `if TYPE_CHECKING:` are ignored: they never
run, and annotations are strings (`from __future__ import annotations`).

Importing `a.b.c` also runs the packages `a` and `a.b`, so every module depends on its
parent packages too: a package `__init__` that re-exported its own submodules would show
up here as a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cloud_server

ROOT = Path(cloud_server.__file__).parent
PACKAGE = "cloud_server"


def _module_names() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, outside `if TYPE_CHECKING:` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the `else:` branch does run
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _with_parents(name: str, modules: dict[str, Path]) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules.keys()


def import_graph() -> dict[str, set[str]]:
    """Module -> the `cloud_server` modules it imports (directly)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = _with_parents(package, modules) - {name}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    targets |= _with_parents(alias.name, modules)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            targets |= _with_parents(source, modules)
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:  # `from pkg import submodule`
                    targets.add(f"{source}.{alias.name}")
        graph[name] = {t for t in targets if t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

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
            component: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle in {component}")  # a component always has one


def test_cloud_server_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "cloud_server.app" in graph
    assert "cloud_server.db.engine" in graph["cloud_server.app"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_cycles_through_deferred_imports() -> None:
    # The checker itself: a cycle closed by an import inside a function is found, one
    # closed only under TYPE_CHECKING is not.
    deferred = ast.parse("def f():\n    from .b import x\n")
    guarded = ast.parse("if TYPE_CHECKING:\n    from .b import x\nelse:\n    import os\n")
    assert [type(n).__name__ for n in _imports(deferred)] == ["ImportFrom"]
    assert [type(n).__name__ for n in _imports(guarded)] == ["Import"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
