"""The shape of `core/`: dependencies point one way (no import cycles, lazy imports included), any import
order works, and core never imports streamlit."""

from __future__ import annotations

import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

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


IMPORT_ALL = """
import random, sys, importlib
names = sys.argv[2:]
random.Random(int(sys.argv[1])).shuffle(names)
for name in names:
    importlib.import_module(name)
assert "streamlit" not in sys.modules, "core imported streamlit"
print(len(names))
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_core_module_imports_in_any_order_without_streamlit(seed: int) -> None:
    """A fresh interpreter per order: a circular import would raise ImportError for some order."""
    names = sorted(core_modules())
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, str(seed), *names], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(len(names))


def test_core_never_imports_streamlit() -> None:
    """core/ is the service layer the pages call; the UI library stays in app.py and pages/."""
    modules = core_modules()
    offenders = [name for name, path in modules.items()
                 if any(m == "streamlit" or m.startswith("streamlit.") for m in _all_imports(path))]
    assert offenders == []


def _all_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def documented_commands() -> set[str]:
    """Every `python -m core...` module named in README.md, docs/ and the Makefile."""
    found: set[str] = set()
    for path in [REPO / "README.md", REPO / "Makefile", *sorted((REPO / "docs").glob("*.md"))]:
        found.update(re.findall(r"python3? -m (core(?:\.[a-z_]+)+)", path.read_text(encoding="utf-8")))
    return found


class _Exec(Exception):
    pass


def test_every_documented_command_runs_a_main_in_core_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands live in core/cli/. A documented `python -m core.NAME` is a two-line alias that imports its
    main; `core.adapters.train` / `.evaluate` sit in a package core/cli imports (importing back would be a
    cycle, and would run the file twice), so they re-exec the interpreter on their core/cli command."""
    modules = core_modules()
    commands = documented_commands()
    assert {"core.ask", "core.adapters.train", "core.adapters.evaluate", "core.emergency_classifier"} <= commands

    def execv(path: str, argv: list[str]) -> None:
        raise _Exec(argv)

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setattr(sys, "argv", ["x", "--help"])
    for command in sorted(commands):
        assert command in modules, f"{command} is documented but does not exist"
        source = modules[command].read_text(encoding="utf-8")
        assert 'if __name__ == "__main__":' in source, f"{command} runs nothing"
        if command.startswith("core.cli."):
            continue
        imported = {node.module for node in ast.walk(ast.parse(source))
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core.cli.")
                    and [a.name for a in node.names] == ["main"]}
        if command.count(".") == 1:
            assert len(imported) == 1 and imported <= set(modules), f"{command} is not an alias of a core/cli main"
            continue
        monkeypatch.delitem(sys.modules, command, raising=False)  # runpy warns about an imported module
        with pytest.raises(_Exec) as run:
            runpy.run_module(command, run_name="__main__")
        argv = run.value.args[0]
        assert argv[:2] == [sys.executable, "-m"] and argv[3:] == ["--help"], argv
        assert argv[2].startswith("core.cli.") and argv[2] in modules, argv
