"""The audit log and the prompt store on a real PostgreSQL server (same code as on SQLite)."""

from __future__ import annotations

import threading

import pytest

from core.answering.prompt_store import PromptStore
from core.answering.prompts import BUILTIN_SYSTEM_PROMPT, BUILTIN_USER_TEMPLATE
from core.governance.audit import AuditLog
from tests.helpers import make_answer

pytestmark = pytest.mark.integration


def test_audit_log_on_postgres(postgres_url: str) -> None:
    log = AuditLog(postgres_url)
    answer_id = log.record(make_answer(question="Mrs Jane Patel DOB 12/03/1956: adrenaline dose?"), "alice", "clinician", "s1")
    log.add_feedback(answer_id, "alice", -1, "incorrect", "wrong dose")

    def write(n: int) -> None:
        for _ in range(10):
            log.record(make_answer(), f"user{n}", "clinician", f"s{n}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = AuditLog(postgres_url)  # a restart
    frame = again.records()
    assert len(frame) >= 41
    first = frame[frame["id"] == answer_id].iloc[0]
    assert "Patel" not in first["question"] and "1956" not in first["question"]
    feedback = again.feedback_frame()
    assert list(feedback["rating"]) == [-1] and list(feedback["reason"]) == ["incorrect"]


def test_prompt_store_on_postgres(postgres_url: str) -> None:
    store = PromptStore(postgres_url)
    assert store.active().version == "builtin-1"
    created = store.create("terse", BUILTIN_SYSTEM_PROMPT + "\nBe terse.", BUILTIN_USER_TEMPLATE, "admin")
    store.activate(created.version, "admin")
    assert PromptStore(postgres_url).active().version == created.version
    store.rollback("admin")
    assert PromptStore(postgres_url).active().version == "builtin-1"
