"""The house's layer rules, checked over the AST of every module (docs/architecture.md, "Layers").

Each top-level package may import only the packages below it; Beam stays out of the pure layers; and no module
reaches a module that reaches it back (an import cycle), counting imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Package -> the project packages its modules may import (itself included). Lower layers first.
ALLOWED = {
    "schemas": {"schemas"},
    "storage": {"storage"},
    "domains": {"schemas", "domains"},
    "annotators": {"schemas", "domains", "annotators"},
    "engines": {"schemas", "storage", "engines"},
    "prm": {"schemas", "domains", "annotators", "prm"},
    "transforms": {"schemas", "storage", "domains", "annotators", "engines", "transforms"},
    "pipelines": {"schemas", "storage", "domains", "annotators", "engines", "transforms", "pipelines"},
    "commands": {
        "schemas",
        "storage",
        "domains",
        "annotators",
        "engines",
        "transforms",
        "pipelines",
        "prm",
        "commands",
    },
}
PROJECT = set(ALLOWED) | {"models", "bench", "tests", "run"}
# Pure layers: they know nothing of Beam (docs/design.md §7), so they run and test as plain functions.
NO_BEAM = ("schemas", "domains", "annotators", "prm")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")) if (REPO / package).is_dir() else []:
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, those inside functions included (not those under
    `if TYPE_CHECKING:`, which never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from pkg import module` imports the module itself.
            found.extend(
                (node.lineno, f"{node.module}.{a.name}") for a in node.names if f"{node.module}.{a.name}" in MODULES
            )
    return found


def test_the_packages_are_found():
    assert {"schemas.tables", "annotators.labelling", "transforms.search", "pipelines.synthesize"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_the_layers_below(module):
    package = module.split(".")[0]
    wrong = [
        f"line {line}: {name}"
        for line, name in _imports(MODULES[module])
        if name.split(".")[0] in PROJECT
        and name.split(".")[0] not in ALLOWED[package]
        or package in NO_BEAM
        and name.split(".")[0] == "apache_beam"
    ]
    assert not wrong, f"{module} ({package}) may import only {sorted(ALLOWED[package])}, no Beam if pure: {wrong}"


def test_no_import_cycle():
    graph = {m: {n for _, n in _imports(p) if n in MODULES and n != m} for m, p in MODULES.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
