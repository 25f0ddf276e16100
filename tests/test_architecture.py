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
import importlib, random, sys, traceback
seeds, names = [int(s) for s in sys.argv[1].split(",")], sys.argv[2:]
for n, seed in enumerate(seeds):
    if n:  # a fresh core/ (the libraries it uses stay loaded: they never import core)
        for key in [k for k in sys.modules if k == "core" or k.startswith("core.")]:
            del sys.modules[key]
    order = sorted(names)
    random.Random(seed).shuffle(order)
    for name in order:
        try:
            importlib.import_module(name)
        except Exception:
            sys.exit(f"order {seed} (the sorted names shuffled), importing {name}:\\n{traceback.format_exc()}")
assert "streamlit" not in sys.modules, "core imported streamlit"
print(len(seeds) * len(names))
"""
ORDERS = (0, 1, 2, 3, 4, 5)


def test_every_core_module_imports_in_any_order_without_streamlit() -> None:
    """Every core module imported in several random orders, each order into a fresh `core` (the first in a fresh
    interpreter, the others after deleting every core.* entry of `sys.modules`): a circular import raises
    ImportError for some order. One interpreter for all orders: a new one per order cost seconds each."""
    names = sorted(core_modules())
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL, ",".join(map(str, ORDERS)), *names], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stderr or done.stdout)[-3000:]
    assert done.stdout.strip() == str(len(ORDERS) * len(names))


# Packages (and the top-level modules of core/) from the bottom up, as in docs/architecture.md: a module imports
# its own package and lower layers only, never one beside or above its own.
LAYERS: list[set[str]] = [
    {"core", "core.settings", "core.errors", "core.schema", "core.answers", "core.learning"},
    {"core.library", "core.llm"},
    {"core.safety"},
    {"core.governance"},
    {"core.answering"},
    {"core.services"},
    {"core.adapters", "core.bootstrap"},
    {"core.evaluation"},
    {"core.cli"},
    {"core.ask", "core.compare", "core.emergency_classifier", "core.eval", "core.first_start", "core.ingest",
     "core.migrate_store", "core.retrieve", "core.users"},  # aliases of core/cli commands
]


def layer_of(module: str) -> tuple[int, str]:
    """(layer, package) of a core module: its package is the first two parts of its name; the base modules
    are one package (answers.py uses schema.py)."""
    package = ".".join(module.split(".")[:2])
    for rank, members in enumerate(LAYERS):
        if package in members:
            return rank, "core (base)" if rank == 0 else package
    raise AssertionError(f"{package} is in no layer of tests/test_architecture.py LAYERS (docs/architecture.md)")


def test_the_layers_keep_the_edges_that_once_pointed_back() -> None:
    """The emergency classifier once imported the evidence scorer (safety → answering), and the adapters' model
    card evaluation ran the batch comparison (adapters → evaluation)."""
    assert layer_of("core.safety.x")[0] < layer_of("core.answering.x")[0]
    assert layer_of("core.adapters.x")[0] < layer_of("core.evaluation.x")[0]


def test_imports_point_down_the_layers() -> None:
    modules = core_modules()
    backward = []
    for name, path in modules.items():
        rank, package = layer_of(name)
        for target in sorted(imports_of(path, modules)):
            other_rank, other = layer_of(target)
            if other != package and other_rank >= rank:
                backward.append(f"{name} → {target}")
    assert backward == []


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
