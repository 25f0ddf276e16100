"""The shape of `core/`: dependencies point one way (no import cycles, lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

CORE = REPO / "core"


def core_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every core module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules}


def import_cycles() -> list[list[str]]:
    modules = core_modules()
    graph = {name: imports_of(path, modules) - {name} for name, path in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


def test_core_has_no_import_cycles() -> None:
    """`python -m core.compare` once ran compare.py twice (compare ↔ compare_batch), and adapter training
    and its evaluation imported each other."""
    assert import_cycles() == []


def test_test_modules_do_not_import_each_other() -> None:
    """Shared helpers live in tests/helpers.py (or conftest and the plugins), not in another test module."""
    offenders = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.test_"):
                offenders.append(f"{path.name}: {node.module}")
    assert offenders == []
