"""AppTest: every chat answer is audited, rated from the chat, and counted on the analytics page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.governance.audit import audit_log_for
from core.settings import Settings
from tests.conftest import REPO

APP = str(REPO / "app.py")


@pytest.fixture(autouse=True)
def _fast_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_LLM__BACKEND", "fake")


def _login(user: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input(key="login_user").input(user)
    at.text_input(key="login_password").input(f"{user}-demo")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_answer_is_audited_rated_and_counted(settings: Settings) -> None:
    at = _login("admin")
    at.chat_input(key="chat_input").set_value("What IM adrenaline dose for Mr John Smith in anaphylaxis?").run()
    assert not at.exception, at.exception
    turn = at.session_state["chat_turns"][-1]
    records = audit_log_for(settings).records()
    assert list(records["id"]) == [turn["audit_id"]] and "John Smith" not in records.iloc[0]["question"]
    at.feedback[0].set_value(0).run()  # thumbs down
    at.selectbox(key="turn0_fb_reason").select("unsupported_citation")
    at.text_input(key="turn0_fb_comment").input("Dose not in the passage")
    at.button(key="FormSubmitter:turn0_fb_form-Send feedback").click().run()
    assert not at.exception, at.exception
    feedback = audit_log_for(settings).feedback_frame()
    assert list(feedback["answer_id"]) == [turn["audit_id"]] and feedback.iloc[0]["rating"] == -1
    assert feedback.iloc[0]["reason"] == "unsupported_citation"
    at.switch_page("pages/analytics.py").run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Questions"] == "1"


def test_audit_failure_never_blocks_the_answer(_isolated_data_dir: Path) -> None:
    (_isolated_data_dir / "audit.sqlite").mkdir(parents=True)  # a folder where the database should be
    at = _login("admin")
    at.chat_input(key="chat_input").set_value("What IM adrenaline dose in anaphylaxis?").run()
    assert not at.exception, at.exception
    assert at.session_state["chat_turns"][-1]["audit_id"] is None
    assert any("Audit log" in w.value for w in at.warning)
    at.switch_page("pages/analytics.py").run()
    assert any("Last audit write failure" in e.value for e in at.error)
