"""The folder tree is the architecture: imports point one way (DESIGN.md §2) and form no cycle.

Walks every module of the package with ``ast`` — function-local imports included, since a cycle hidden
in a function is still a cycle; only ``if TYPE_CHECKING:`` blocks are left out, as they never run — and
fails on an arrow against the layout or on an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "carbonflow"

# part -> the parts it may import (besides itself); parts are the first folder under carbonflow/
ALLOWED: dict[str, set[str]] = {
    "engine": set(),
    "protocols": set(),
    "messages": set(),
    "delivery": {"messages"},
    "devices": {"protocols"},
    "sim": {"engine", "devices", "messages"},
    "collector": {"protocols", "messages", "delivery"},
    "center": {"engine", "messages", "delivery"},
}
WIRING = {"cli", "commands", "demo", "demo_cascade", "__init__"}  # only these wire parts together


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every carbonflow module ``path`` imports, at any depth of the file (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import mod" imports the submodule when one exists, else a name of pkg
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("carbonflow") and name != this:
                found.add(name)
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, known) for name, path in files.items()}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_import_follows_the_arrows_of_the_layout():
    backward = []
    for module, targets in sorted(import_graph().items()):
        source = part_of(module)
        if source in WIRING:
            continue
        assert source in ALLOWED, f"{module}: part {source!r} is not in the layout (DESIGN.md §2)"
        for target in sorted(targets):
            if (to := part_of(target)) != source and to not in ALLOWED[source]:
                backward.append(f"{module} -> {target}")
    assert not backward, "imports against the layout:\n" + "\n".join(backward)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the groups of modules that import each other in a ring."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return groups


def without_package_reexports(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its own submodules is not a dependency between parts."""
    files = {p for p in graph if (PACKAGE.parent / p.replace(".", "/") / "__init__.py").exists()}
    return {
        module: {t for t in targets if not (module in files and t.startswith(module + "."))}
        for module, targets in graph.items()
    }


def test_no_import_cycle_even_inside_functions():
    cycles = strongly_connected(without_package_reexports(import_graph()))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
