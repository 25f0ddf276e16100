"""Shared fixtures. Every test gets its own data folder: no test touches ./var."""

from __future__ import annotations

import os
import socket

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from core.library.embedding import Embedder, HashingEmbedder  # noqa: E402
from core.library.store import InMemoryStore  # noqa: E402
from core.services import Services, build_services  # noqa: E402
from core.settings import Settings  # noqa: E402

pytest.register_assert_rewrite("tests.helpers")
pytest_plugins = ["tests.fake_ollama", "tests.browser", "tests.postgres"]

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "data" / "guidelines"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "var"
    monkeypatch.setenv("CQA_DATA_DIR", str(data))
    for name in ("CQA_MILVUS_URI", "CQA_STORE__MILVUS_URI", "CQA_LLM__BACKEND", "CQA_OLLAMA_HOST"):
        monkeypatch.delenv(name, raising=False)
    return data


@pytest.fixture
def settings(_isolated_data_dir: Path) -> Settings:
    return Settings()


@pytest.fixture
def fake_services(settings: Settings) -> Iterator[Services]:
    """Library services on the hashing embedder and the in-memory store (fast, no models)."""
    svc = build_services(settings, embedder=HashingEmbedder(), store=InMemoryStore())
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    from core.library.embedding import MiniLMEmbedder

    return MiniLMEmbedder()


@pytest.fixture(scope="session")
def test_output() -> Path:
    out = REPO / "test-output"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture
def fast_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """For UI tests: hashing embedder, in-memory store, fake LLM (the real ones have their own tests)."""
    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_LLM__BACKEND", "fake")


@pytest.fixture
def closed_port_url() -> str:
    """A local URL nothing listens on (an unreachable Ollama)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_page_as(page: Path, role: str = "admin") -> AppTest:
    """Run one page directly with a signed-in user of `role` (bypassing the login form)."""
    at = AppTest.from_file(str(page), default_timeout=120)
    at.session_state["auth_user"] = role
    at.session_state["auth_role"] = role
    return at.run()


# A one-section-per-claim anaphylaxis guideline shared by the pipeline tests (Markdown with front matter).
GUIDELINE = b"""---
title: Anaphylaxis in adults
issuer: Test Trust
version: "4"
---
# Anaphylaxis in adults

## 3. Treatment

Give adrenaline 0.5 mg intramuscularly into the anterolateral thigh. Repeat the adrenaline dose after 5 minutes if there is no improvement.

## 4. Observation

Observe patients for at least 6 hours after symptoms resolve before discharge.
"""
