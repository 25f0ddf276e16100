"""The audit log: records survive a restart, questions are redacted, writers do not lose records."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.answers import Answer
from core.errors import CQAError
from core.governance.analytics import feedback_per_day, feedback_reasons, feedback_summary, never_cited
from core.governance.audit import AuditError, AuditLog, AuditWriteError, audit_log_for
from core.settings import Settings
from tests.helpers import make_answer

IDENTIFYING = "Mr John Smith, DOB 12/03/1961, NHS number 943 476 5919: what IM adrenaline dose in anaphylaxis?"




@pytest.fixture
def log(settings: Settings) -> Iterator[AuditLog]:
    audit = audit_log_for(settings)
    yield audit
    audit.close()


def test_records_survive_a_restart(settings: Settings, log: AuditLog) -> None:
    ids = [log.record(make_answer(s), "alice", "clinician", "sess-1") for s in ("answered", "refused", "escalated")]
    log.close()
    reopened = audit_log_for(settings)
    frame = reopened.records()
    reopened.close()
    assert (settings.data_dir / "audit.sqlite").exists()
    assert list(frame["id"]) == ids
    assert list(frame["status"]) == ["answered", "refused", "escalated"]
    first, refused, escalated = frame.to_dict("records")
    assert first["user"] == "alice" and first["role"] == "clinician" and first["session_id"] == "sess-1"
    assert first["grounded"] and first["model"] == "fake" and first["prompt_version"] == "builtin-1"
    assert first["prompt_tokens"] == 300 and first["total_s"] == 1.0
    assert json.loads(first["retrieved"]) == [{"chunk_id": "anaphylaxis.md-c1", "document": "anaphylaxis.md", "page": 2, "score": 0.8}]
    assert json.loads(first["citations"])[0]["verified"] is True
    assert refused["refusal_reason"] == "no_evidence"
    assert escalated["escalation_rule"] == "anaphylaxis-signs" and escalated["escalation_level"] == "emergent"
    assert Answer.model_validate_json(first["answer_json"]).text == "Give adrenaline 0.5 mg IM [1]."
    datetime.fromisoformat(first["created_at"])  # UTC ISO


def test_questions_are_redacted_unless_raw_is_asked_for(log: AuditLog) -> None:
    redacted_id = log.record(make_answer(question=IDENTIFYING), "alice", "clinician", "s")
    raw_id = log.record(make_answer(question=IDENTIFYING), "alice", "clinician", "s", store_raw=True)
    frame = log.records().set_index("id")
    stored = frame.loc[redacted_id]
    for identifier in ("John Smith", "12/03/1961", "943 476 5919"):
        assert identifier not in stored["question"]
        assert identifier not in stored["answer_json"]  # question and standalone_question inside the JSON too
    assert "[NAME]" in stored["question"] and "[DOB]" in stored["question"] and "[NHS_NUMBER]" in stored["question"]
    assert "adrenaline dose" in stored["question"] and bool(stored["question_redacted"])
    raw = frame.loc[raw_id]
    assert raw["question"] == IDENTIFYING and not raw["question_redacted"]
    assert Answer.model_validate_json(raw["answer_json"]).question == IDENTIFYING


def test_concurrent_writers_lose_nothing(settings: Settings) -> None:
    log = audit_log_for(settings)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(25):
                log.record(make_answer(question=f"q {worker}-{i}"), f"user{worker}", "clinician", f"s{worker}")
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = log.records()
    log.close()
    assert not errors
    assert len(frame) == 200 and frame["id"].is_unique
    assert set(frame["question"]) == {f"q {w}-{i}" for w in range(8) for i in range(25)}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_round_trip(log: AuditLog, tmp_path: Path, fmt: str) -> None:
    for status in ("answered", "refused", "answered"):
        log.record(make_answer(status), "alice", "clinician", "s")
    log.record(make_answer("refused"), "bob", "admin", "s2")
    path = tmp_path / f"audit.{fmt}"
    assert log.export(path, fmt, user="alice", status="answered") == 2  # type: ignore[arg-type]
    back = pd.read_csv(path) if fmt == "csv" else pd.read_json(path, lines=True)
    expected = log.records(user="alice", status="answered")
    key = ["id", "user", "status", "question", "grounded", "total_s", "citations", "answer_json"]
    pd.testing.assert_frame_equal(back[key].reset_index(drop=True), expected[key].reset_index(drop=True),
                                  check_dtype=False)


def test_date_filters(log: AuditLog) -> None:
    log.record(make_answer(), "alice", "clinician", "s")
    today = datetime.now(UTC).date()
    assert len(log.records(since=today)) == 1 and len(log.records(until=today)) == 1
    assert log.records(since=today + timedelta(days=1)).empty
    assert log.records(until=today - timedelta(days=1)).empty
    assert len(log.records(since=datetime.now(UTC) - timedelta(hours=1))) == 1
    assert isinstance(today, date)


def test_feedback_is_linked_to_its_answer_and_filtered(log: AuditLog) -> None:
    answered = log.record(make_answer(), "alice", "clinician", "s")
    refused = log.record(make_answer("refused"), "bob", "clinician", "s")
    log.add_feedback(answered, "alice", 1)
    log.add_feedback(refused, "bob", -1, "should_not_have_refused", "  It is in section 3.  ")
    frame = log.feedback_frame()
    assert list(frame["answer_id"]) == [answered, refused]
    assert list(frame["answer_status"]) == ["answered", "refused"]
    bob = log.feedback_frame(user="bob")
    assert len(bob) == 1 and bob.iloc[0]["rating"] == -1 and bob.iloc[0]["reason"] == "should_not_have_refused"
    assert bob.iloc[0]["comment"] == "It is in section 3."
    assert list(log.feedback_frame(status="answered")["answer_id"]) == [answered]
    with pytest.raises(ValueError, match="rating"):
        log.add_feedback(answered, "alice", 5)
    with pytest.raises(ValueError, match="reason"):
        log.add_feedback(answered, "alice", -1, "boring")  # type: ignore[arg-type]
    with pytest.raises(AuditWriteError):
        log.add_feedback(9999, "alice", 1)  # no such answer


def test_history_cannot_be_rewritten(settings: Settings, log: AuditLog) -> None:
    log.record(make_answer(), "alice", "clinician", "s")
    with sqlite3.connect(settings.data_dir / "audit.sqlite") as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE answers SET status = 'refused'")


def test_unwritable_database_raises_audit_write_error(tmp_path: Path, log: AuditLog, settings: Settings) -> None:
    log.record(make_answer(), "alice", "clinician", "s")
    path = settings.data_dir / "audit.sqlite"
    read_only = AuditLog(f"sqlite:///file:{path}?mode=ro&uri=true")
    with pytest.raises(AuditWriteError, match="could not be saved"):
        read_only.record(make_answer(), "alice", "clinician", "s")
    assert read_only.last_failure and "readonly" in read_only.last_failure
    read_only.close()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(AuditWriteError) as caught:
        AuditLog(f"sqlite:///{blocker / 'audit.sqlite'}").record(make_answer(), "alice", "clinician", "s")
    assert isinstance(caught.value, CQAError)


def test_locked_database_raises_audit_write_error(settings: Settings, log: AuditLog) -> None:
    log.record(make_answer(), "alice", "clinician", "s")
    impatient = AuditLog(log.url, busy_timeout_s=0.1)
    impatient.records()  # schema checked before the lock is taken
    holder = sqlite3.connect(settings.data_dir / "audit.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(AuditWriteError, match="locked"):
            impatient.record(make_answer(), "alice", "clinician", "s")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        impatient.close()
    assert len(log.records()) == 1


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(AuditError, match="cannot be used"):
        AuditLog("nosuchdialect://x")


def test_refused_questions_are_grouped_by_meaning_with_an_embedder() -> None:
    import pandas as pd

    from core.governance.analytics import refused_questions
    from core.library.embedding import HashingEmbedder

    frame = pd.DataFrame({
        "id": [1, 2, 3, 4],
        "status": ["refused"] * 4,
        "question": ["methotrexate dose rheumatoid arthritis", "Methotrexate dose for rheumatoid arthritis?",
                     "rheumatoid arthritis methotrexate dose please", "lithium level monitoring bipolar"],
        "refusal_reason": ["no_evidence"] * 4,
        "created_at": ["2026-11-29T10:00:00+00:00"] * 4,
    })
    grouped = refused_questions(frame, embed=HashingEmbedder().embed)
    assert list(grouped["times"]) == [3, 1]
    plain = refused_questions(frame)
    assert len(plain) > len(grouped)  # by normalised text only, rewordings stay apart


def test_analytics_counts_come_from_core(log: AuditLog) -> None:
    """The analytics page displays these; it computes none of them itself."""
    answered = log.record(make_answer(document="sepsis.docx"), "alice", "clinician", "s")
    refused = log.record(make_answer("refused"), "bob", "clinician", "s")
    log.add_feedback(answered, "alice", 1)
    log.add_feedback(refused, "bob", -1, "should_not_have_refused")
    log.add_feedback(answered, "carol", 1)
    frame, feedback = log.records(), log.feedback_frame()
    assert never_cited(frame, ["sepsis.docx", "asthma.md", "copd.md", "asthma.md"]) == ["asthma.md", "copd.md"]
    assert feedback_summary(feedback) == {"up": 2, "down": 1}
    assert feedback_reasons(feedback).to_dict() == {"(none)": 2, "should_not_have_refused": 1}
    per_day = feedback_per_day(feedback)
    assert per_day.sum().to_dict() == {"down": 1, "up": 2} and len(per_day) == 1
