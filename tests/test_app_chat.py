"""AppTest for the chat page: a real cited answer from the embedded model, refusals, errors as messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import CORPUS, REPO
from tests.helpers import quote_first_passage

APP = str(REPO / "app.py")


def _login_clinician() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.text_input(key="login_user").input("clinician")
    at.text_input(key="login_password").input("clinician-demo")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def small_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anaphylaxis.md", corpus)
    monkeypatch.setenv("CQA_GUIDELINES_DIR", str(corpus))
    return corpus


@pytest.mark.integration
def test_real_model_answer_is_shown_only_after_checking(small_corpus: Path) -> None:
    at = _login_clinician()
    assert any("Decision support only" in i.value for i in at.info)
    at.chat_input(key="chat_input").set_value("What dose of adrenaline is given IM in anaphylaxis?").run()
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.markdown)
    captions = " ".join(c.value for c in at.caption)
    answer = at.session_state["chat_turns"][-1]["answer"]
    assert "tokens" in captions and "prompt builtin-1" in captions  # model / prompt / token usage under the answer
    # Evidence first: the guideline's own dose sentence is the answer, whatever the 135M model writes.
    assert answer["status"] == "answered" and answer["quotes"], answer
    assert answer["citations"] and "Sources" in " ".join(e.label for e in at.expander)
    assert "From your guidelines" in shown and "0.5 mg" in shown and "3.1 Adrenaline" in shown
    if not answer["summary_shown"] and answer["summary"]:
        assert answer["summary"] not in shown  # an unverified summary is never shown


def test_off_topic_question_is_refused_with_nearest_sections(small_corpus: Path, fast_backends: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_THRESHOLD", "0.99")
    at = _login_clinician()
    at.chat_input(key="chat_input").set_value("Starting dose of methotrexate for rheumatoid arthritis?").run()
    assert not at.exception, at.exception
    assert any("not covered by your organisation's guidelines" in w.value for w in at.warning)
    assert any("Closest guideline sections" in m.value for m in at.markdown)


def test_unreachable_ollama_is_a_message_not_a_traceback(small_corpus: Path, fast_backends: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_LLM__BACKEND", "ollama")
    monkeypatch.setenv("CQA_OLLAMA_HOST", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("CQA_LLM__ALLOW_FALLBACK", "false")
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_THRESHOLD", "0.0")
    at = _login_clinician()
    at.chat_input(key="chat_input").set_value("What dose of adrenaline in anaphylaxis?").run()
    assert not at.exception, at.exception
    warnings = " ".join(w.value for w in at.warning)
    assert "127.0.0.1:9" in warnings


def test_ollama_models_come_from_the_server_and_can_be_switched(
    small_corpus: Path, monkeypatch: pytest.MonkeyPatch, fake_ollama_server: object
) -> None:
    from collections.abc import Callable

    from core.llm import FakeLLM
    from tests.fake_ollama import FakeOllama

    assert callable(fake_ollama_server)
    start: Callable[..., FakeOllama] = fake_ollama_server
    server = start(backend=FakeLLM(quote_first_passage), models=("llama3.2:1b", "qwen2.5:0.5b"))
    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_LLM__BACKEND", "ollama")
    monkeypatch.setenv("CQA_OLLAMA_HOST", server.url)
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_THRESHOLD", "0.0")
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_FIRST", "false")  # the model must be asked whatever the quotes say
    at = _login_clinician()
    picker = at.selectbox(key="chat_ollama_model")
    assert picker.options == ["llama3.2:1b", "qwen2.5:0.5b"]
    picker.select("qwen2.5:0.5b").run()
    at.chat_input(key="chat_input").set_value("adrenaline dose anaphylaxis").run()
    assert not at.exception, at.exception
    answer = at.session_state["chat_turns"][-1]["answer"]
    assert answer["model"] == "qwen2.5:0.5b" and answer["backend"] == "ollama"
    assert server.requests_to("/api/chat")[-1].body["model"] == "qwen2.5:0.5b"


def test_red_flag_message_shows_the_urgent_care_text_first(small_corpus: Path, fast_backends: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_THRESHOLD", "0.99")  # retrieval finds nothing usable
    at = _login_clinician()
    at.chat_input(key="chat_input").set_value(
        "My patient has crushing central chest pain radiating to his jaw and he is sweating"
    ).run()
    assert not at.exception, at.exception
    answer = at.session_state["chat_turns"][-1]["answer"]
    assert answer["status"] == "escalated" and answer["escalation"]["level"] == "emergent"
    assert at.error and "999" in at.error[0].value
    assert answer["rule_set_version"] != "none"
    why = [c.value for c in at.caption if c.value.startswith("Why:")]
    assert why and "rules layer" in why[0] and "chest pain" in why[0].lower()  # which words triggered it


def test_patient_identifiers_are_warned_about(small_corpus: Path, fast_backends: None, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _login_clinician()
    at.chat_input(key="chat_input").set_value("Mrs Jane Patel DOB 12/03/1956 NHS 943 476 5919: adrenaline dose?").run()
    assert not at.exception, at.exception
    assert any("patient identifiers" in w.value for w in at.warning)
