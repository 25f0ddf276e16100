"""AppTest: the chat sidebar's adapter picker and scale slider reach the answer and its caption;
with Ollama an adapter becomes a derived model tag, and a refusal is shown with the way out."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from streamlit.testing.v1 import AppTest

from core.adapters.gguf_info import read_gguf
from core.adapters.gguf_write import random_lora
from core.adapters.registry import AdapterRegistry
from core.llm.embedded import bundled_model_path
from core.settings import Settings
from tests.conftest import CORPUS, REPO, run_page_as

if TYPE_CHECKING:
    from tests.fake_ollama import FakeOllama

PAGE = REPO / "pages" / "chat.py"
QUESTION = "What dose of adrenaline is given IM in anaphylaxis?"
StartServer = Callable[..., "FakeOllama"]


@pytest.fixture(autouse=True)
def small_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anaphylaxis.md", corpus)
    monkeypatch.setenv("CQA_GUIDELINES_DIR", str(corpus))
    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_THRESHOLD", "0.0")
    return corpus


@pytest.fixture
def cite_adapter(tmp_path: Path) -> str:
    base = bundled_model_path()
    assert base is not None
    lora = random_lora(tmp_path / "lora.gguf", read_gguf(base), weights=("attn_q",), rank=2)
    AdapterRegistry.for_settings(Settings()).add(lora, "cite-v1", "Citation format")
    return "cite-v1"


def _ask(at: AppTest) -> dict[str, object]:
    at.chat_input(key="chat_input").set_value(QUESTION).run()
    assert not at.exception, at.exception
    answer: dict[str, object] = at.session_state["chat_turns"][-1]["answer"]
    return answer


def test_adapter_and_scale_are_used_and_shown_under_the_answer(fast_backends: None, cite_adapter: str) -> None:
    at = run_page_as(PAGE, "clinician")
    picker = at.selectbox(key="chat_adapter")
    assert picker.options[0] == "(none)" and "cite-v1" in picker.options and picker.value == "(none)"
    assert at.slider(key="chat_adapter_scale").value == 1.0

    picker.select("cite-v1").run()
    at.slider(key="chat_adapter_scale").set_value(0.45).run()
    answer = _ask(at)

    assert answer["adapter"] == {"name": "cite-v1", "scale": 0.45}
    assert any("cite-v1 ×0.45" in c.value for c in at.caption)


def test_without_an_adapter_the_caption_says_so(fast_backends: None, cite_adapter: str) -> None:
    at = run_page_as(PAGE, "clinician")
    answer = _ask(at)

    assert answer["adapter"] is None
    assert any("no adapter" in c.value for c in at.caption)


def _ollama(monkeypatch: pytest.MonkeyPatch, server: FakeOllama) -> None:
    monkeypatch.setenv("CQA_LLM__BACKEND", "ollama")
    monkeypatch.setenv("CQA_OLLAMA_HOST", server.url)


def test_ollama_bakes_the_adapter_into_a_derived_tag(
    monkeypatch: pytest.MonkeyPatch, fake_ollama_server: StartServer, cite_adapter: str
) -> None:
    server = fake_ollama_server()
    _ollama(monkeypatch, server)
    # The model must be asked: with the hashing embedder the shipped evidence scorers' choice of quotes is
    # arbitrary (they are calibrated on MiniLM), so the model writes the answer here.
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_FIRST", "false")
    at = run_page_as(PAGE, "clinician")
    assert at.slider(key="chat_adapter_scale").disabled  # Ollama: full strength only

    at.selectbox(key="chat_adapter").select("cite-v1").run()
    answer = _ask(at)

    assert not at.error, [e.value for e in at.error]
    tag = server.requests_to("/api/create")[-1].body["model"]
    assert tag.startswith("llama3.2-cite-v1:")
    assert any(f"runs as Ollama model **{tag}**" in c.value for c in at.caption)
    assert server.requests_to("/api/chat")[-1].body["model"] == tag
    assert answer["adapter"] == {"name": "cite-v1", "scale": 1.0}


def test_ollama_refusing_adapters_shows_its_error_and_the_tag_picker(
    monkeypatch: pytest.MonkeyPatch, fake_ollama_server: StartServer, cite_adapter: str
) -> None:
    server = fake_ollama_server(models=("llama3.2:1b", "qwen2.5:0.5b"), refuse_adapters="adapters are not supported")
    _ollama(monkeypatch, server)
    at = run_page_as(PAGE, "clinician")

    at.selectbox(key="chat_adapter").select("cite-v1").run()

    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "adapters are not supported" in errors and "pick an existing model tag" in errors
    assert at.selectbox(key="chat_ollama_model").options == ["llama3.2:1b", "qwen2.5:0.5b"]
    creates = len(server.requests_to("/api/create"))
    answer = _ask(at)  # answered by the base model; the refusal is remembered, not retried
    assert answer["adapter"] is None and answer["model"] == "llama3.2:1b"
    assert len(server.requests_to("/api/create")) == creates


def test_the_embedded_model_preselects_the_shipped_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQA_LLM__BACKEND", "embedded")
    at = run_page_as(PAGE, "clinician")
    assert not at.exception, at.exception
    assert at.selectbox(key="chat_adapter").value == "cqa-cite-v1"  # CQA_LLM__DEFAULT_ADAPTER
