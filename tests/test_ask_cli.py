"""`python -m core.ask` end to end: the Answer JSON contract, over the Ollama API and with Ollama down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.answers import Answer
from core.llm import FakeLLM
from tests.conftest import CORPUS, REPO
from tests.fake_ollama import FakeOllama
from tests.helpers import quote_first_passage

pytestmark = pytest.mark.integration
CONTRACT = {"status", "text", "citations", "refusal", "escalation", "retrieved", "model", "adapter", "prompt_version", "timings"}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CQA_")}
    full.update(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the anaphylaxis guideline ingested by `core.ingest` (real MiniLM), once for the module."""
    data = tmp_path_factory.mktemp("ingested") / "var"
    done = _run(["core.ingest", str(CORPUS / "anaphylaxis.md")], {"CQA_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    return data


@pytest.fixture
def library_env(tmp_path: Path, ingested: Path) -> dict[str, str]:
    """A copy of that folder for one test (each writes its own audit log)."""
    shutil.copytree(ingested, tmp_path / "var")
    return {"CQA_DATA_DIR": str(tmp_path / "var")}


def test_ask_over_ollama_prints_the_answer_contract(
    library_env: dict[str, str], fake_ollama_server: Callable[..., FakeOllama]
) -> None:
    server = fake_ollama_server(backend=FakeLLM(quote_first_passage))
    env = {**library_env, "CQA_OLLAMA_HOST": server.url}
    done = _run(["core.ask", "What IM adrenaline dose is given in anaphylaxis?", "--json", "--backend", "ollama"], env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert CONTRACT <= set(data)
    answer = Answer.model_validate(data)
    assert answer.status == "answered" and answer.backend == "ollama" and answer.grounded
    cite = answer.citations[0]
    assert {"n", "document", "title", "page", "section", "chunk_id", "quote", "verified"} <= set(data["citations"][0])
    assert cite.document == "anaphylaxis.md" and cite.verified
    assert set(data["timings"]) >= {"retrieve_s", "generate_s", "total_s"}
    chats = server.requests_to("/api/chat")
    assert chats and chats[0].body["options"]["num_ctx"] == 8192


def test_ask_with_ollama_down_says_so_without_traceback(library_env: dict[str, str]) -> None:
    env = {**library_env, "CQA_OLLAMA_HOST": "http://127.0.0.1:9", "CQA_LLM__ALLOW_FALLBACK": "false"}
    question = "What IM adrenaline dose is given in anaphylaxis?"
    # Evidence first: the guideline's sentences still answer; the unreachable server is a footnote.
    done = _run(["core.ask", question, "--backend", "ollama"], env)
    assert done.returncode == 0, done.stderr
    assert "[answered]" in done.stdout and "0.5 mg" in done.stdout and "127.0.0.1:9" in done.stdout
    assert "Traceback" not in done.stderr
    # Model-written answers only: nothing can be answered, and it says why.
    done = _run(["core.ask", question, "--backend", "ollama"], {**env, "CQA_ANSWER__EVIDENCE_FIRST": "false"})
    assert done.returncode == 0, done.stderr
    assert "[refused]" in done.stdout and "127.0.0.1:9" in done.stdout
    assert "Traceback" not in done.stderr


def test_default_adapter_applies_to_the_embedded_model_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.cli.ask import cli_adapter
    from core.errors import CQAError
    from core.settings import Settings

    monkeypatch.setenv("CQA_LLM__BACKEND", "embedded")
    settings = Settings()
    chosen = cli_adapter(None, 0.5, settings)
    assert chosen is not None and chosen.name == "cqa-cite-v1" and chosen.scale == 0.5
    assert cli_adapter("none", 1.0, settings) is None
    with pytest.raises(CQAError, match="No adapter 'ghost'"):
        cli_adapter("ghost", 1.0, settings)
    assert cli_adapter(None, 1.0, settings.model_copy(update={"llm": settings.llm.model_copy(
        update={"backend": "ollama"})})) is None
    assert cli_adapter(None, 1.0, settings.model_copy(update={"llm": settings.llm.model_copy(
        update={"default_adapter": "deleted-one"})})) is None
