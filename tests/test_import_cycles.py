"""No import cycles between paretune's modules, counting the imports inside functions too.

A cycle broken only by a function-level import still means two modules that cannot be
understood, tested or moved apart; the layout in README.md ("Layout") is a layering. Imports under
``if TYPE_CHECKING:`` are left out (they never run), and so is a module's import of its own
package (which Python runs first anyway)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("search", "spaces", "trainers", "kernels", "dashboard")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["paretune", *parts])


def modules() -> dict[str, Path]:
    return {module_name(p): p for d in PACKAGES for p in sorted((ROOT / d).rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The paretune modules ``path`` imports anywhere in it (TYPE_CHECKING blocks aside)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                out.add(module)
                out.update(f"{module}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in known and m != name and not name.startswith(m + ".")}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_walker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_one_that_imports_it_back():
    known = modules()
    graph = {name: imported(name, path, set(known)) for name, path in known.items()}
    assert sum(len(v) for v in graph.values()) > 200  # the walker sees the imports
    assert cycles(graph) == []


def test_the_dashboard_reads_the_store_through_store_read_only():
    """The dashboard imports ``paretune.search.store.read`` and ``paretune.spaces``, nothing else
    of ``paretune.search``: a store migration that the read API follows cannot leave a dashboard
    query behind, and the dashboard's front is the CLI's."""
    known = set(modules())
    allowed = {"paretune.search", "paretune.search.store", "paretune.search.store.read"}
    leaks = {
        name: sorted(m for m in imported(name, path, known) if m.startswith("paretune.search"))
        for name, path in modules().items()
        if name.startswith("paretune.dashboard")
    }
    leaks = {name: found for name, found in leaks.items() if set(found) - allowed}
    assert leaks == {}
