"""The audit trail: one append-only record per answer, and clinicians' feedback on it.

SQLAlchemy Core, so the same code writes the default SQLite file in the data folder or a Postgres
URL. Questions are redacted with `core.safety.pii.redact` before they are stored unless the caller opts in
to `store_raw`. Writes raise `AuditWriteError` (never a raw database error) so the chat can show the
answer and tell admins the record was lost. The queries the analytics page shows are in `analytics.py`.
"""

from __future__ import annotations

import io
import json
import threading
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict, Unpack, get_args

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

from core.answers import Answer
from core.errors import CQAError
from core.governance.sql import ensure_sqlite_folder, is_sqlite, open_engine
from core.safety.pii import redact
from core.settings import Settings

FeedbackReason = Literal[
    "incorrect", "unsupported_citation", "should_have_refused", "should_not_have_refused", "missed_escalation", "other"
]
FEEDBACK_REASONS: tuple[str, ...] = get_args(FeedbackReason)
ExportFormat = Literal["csv", "jsonl"]
When = datetime | date | str | None


class AuditFilters(TypedDict, total=False):
    """The filters `records`, `feedback_frame` and `export` take, for callers that pass them along."""

    since: When
    until: When
    user: str | None
    status: str | None

_metadata = MetaData()
answers_table = Table(
    "answers", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False, index=True),
    Column("user", String(200), nullable=False, index=True),
    Column("role", String(50), nullable=False),
    Column("session_id", String(200), nullable=False),
    Column("question", Text, nullable=False),
    Column("question_redacted", Boolean, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("refusal_reason", String(50)),
    Column("escalation_rule", String(200)),
    Column("escalation_level", String(20)),
    Column("retrieved", Text, nullable=False),
    Column("citations", Text, nullable=False),
    Column("grounded", Boolean, nullable=False),
    Column("model", String(200), nullable=False),
    Column("backend", String(50), nullable=False),
    Column("adapter_name", String(200)),
    Column("adapter_scale", Float),
    Column("prompt_version", String(100), nullable=False),
    Column("rule_set_version", String(100), nullable=False),
    Column("retrieve_s", Float, nullable=False),
    Column("generate_s", Float, nullable=False),
    Column("total_s", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("answer_json", Text, nullable=False),
)
feedback_table = Table(
    "feedback", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("answer_id", Integer, ForeignKey("answers.id"), nullable=False, index=True),
    Column("created_at", String(32), nullable=False, index=True),
    Column("user", String(200), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("reason", String(50)),
    Column("comment", Text, nullable=False),
)
ANSWER_COLUMNS = [c.name for c in answers_table.columns]
FEEDBACK_COLUMNS = [c.name for c in feedback_table.columns]

# SQLite only: the database itself refuses to rewrite history, not just this module's API.
_SQLITE_APPEND_ONLY = [
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op.upper()} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    for table in ("answers", "feedback") for op in ("update", "delete")
]


class AuditError(CQAError):
    """The audit log cannot be read."""


class AuditWriteError(AuditError):
    """An audit or feedback record could not be stored. The answer itself is unaffected."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def audit_url(settings: Settings) -> str:
    return settings.audit.url or f"sqlite:///{settings.data_dir / 'audit.sqlite'}"


def audit_log_for(settings: Settings) -> AuditLog:
    """The audit log of this data folder (`audit.sqlite` beside the library)."""
    return AuditLog(audit_url(settings))


class AuditLog:
    """Append-only answers + feedback. Thread-safe: one lock serialises writes in this process,
    and SQLite's busy timeout covers other processes."""

    def __init__(self, url: str, busy_timeout_s: float = 5.0) -> None:
        self.url = url
        self._sqlite = is_sqlite(url)
        self._engine: Engine = open_engine(url, AuditError, "audit log", busy_timeout_s)
        self._lock = threading.Lock()
        self._ready = False
        self.last_failure: str | None = None  # for admins: the chat carries on when a write fails

    def close(self) -> None:
        self._engine.dispose()

    # -- writing ---------------------------------------------------------------------------------
    def record(self, answer: Answer, user: str, role: str, session_id: str, store_raw: bool = False) -> int:
        """Store one answer; returns its audit id (keep it with the turn for feedback)."""
        return self._insert(answers_table, answer_row(answer, user, role, session_id, store_raw))

    def add_feedback(
        self, answer_id: int, user: str, rating: int, reason: FeedbackReason | None = None, comment: str = ""
    ) -> int:
        if rating not in (1, -1):
            raise ValueError(f"rating must be +1 or -1, not {rating!r}")
        if reason is not None and reason not in FEEDBACK_REASONS:
            raise ValueError(f"unknown feedback reason {reason!r}")
        row = {"answer_id": answer_id, "created_at": utc_now(), "user": user, "rating": rating,
               "reason": reason, "comment": comment.strip()}
        return self._insert(feedback_table, row)

    def _insert(self, table: Table, row: dict[str, Any]) -> int:
        try:
            with self._lock, self._connect_for_write() as conn:
                self._ensure_schema(conn)
                result = conn.execute(insert(table).values(**row))
                key = result.inserted_primary_key
                assert key is not None
                return int(key[0])
        except (SQLAlchemyError, OSError) as exc:
            message = f"The {table.name} record could not be saved to the audit log: {_reason(exc)}"
            self.last_failure = f"{utc_now()[:19]} UTC: {message}"
            raise AuditWriteError(message) from exc

    def _connect_for_write(self) -> AbstractContextManager[Connection]:
        if not self._ready:
            ensure_sqlite_folder(self._engine)
        return self._engine.begin()

    def _ensure_schema(self, conn: Connection) -> None:
        if self._ready:
            return
        _metadata.create_all(conn)
        if self._sqlite:
            for ddl in _SQLITE_APPEND_ONLY:
                conn.execute(text(ddl))
        self._ready = True

    # -- reading ---------------------------------------------------------------------------------
    def records(self, since: When = None, until: When = None, user: str | None = None,
                status: str | None = None) -> pd.DataFrame:
        """Answers, oldest first. `since` is inclusive, `until` exclusive (a `date` includes that day)."""
        t = answers_table
        query = select(t).order_by(t.c.id)
        if since is not None:
            query = query.where(t.c.created_at >= _iso(since))
        if until is not None:
            query = query.where(t.c.created_at < _iso(until, end_of_day=True))
        if user:
            query = query.where(t.c.user == user)
        if status:
            query = query.where(t.c.status == status)
        return self._frame(query, ANSWER_COLUMNS)

    def feedback_frame(self, since: When = None, until: When = None, user: str | None = None,
                       status: str | None = None) -> pd.DataFrame:
        """Feedback rows with the rated answer's status, question and versions; `since`/`until`/`user`
        filter the feedback, `status` the answer."""
        f, a = feedback_table, answers_table
        extra = [a.c.status.label("answer_status"), a.c.question, a.c.prompt_version, a.c.adapter_name]
        query = select(f, *extra).join(a, a.c.id == f.c.answer_id).order_by(f.c.id)
        if since is not None:
            query = query.where(f.c.created_at >= _iso(since))
        if until is not None:
            query = query.where(f.c.created_at < _iso(until, end_of_day=True))
        if user:
            query = query.where(f.c.user == user)
        if status:
            query = query.where(a.c.status == status)
        return self._frame(query, [*FEEDBACK_COLUMNS, "answer_status", "question", "prompt_version", "adapter_name"])

    def _frame(self, query: Any, columns: list[str]) -> pd.DataFrame:
        try:
            if not self._ready:
                with self._lock, self._connect_for_write() as conn:
                    self._ensure_schema(conn)
            with self._engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except (SQLAlchemyError, OSError) as exc:
            raise AuditError(f"The audit log could not be read: {_reason(exc)}") from exc
        return pd.DataFrame([dict(r) for r in rows], columns=columns)

    # -- export ----------------------------------------------------------------------------------
    def export(self, path: str | Path, fmt: ExportFormat, **filters: Unpack[AuditFilters]) -> int:
        """Write the filtered answers to `path`; returns the number of records."""
        frame = self.records(**filters)
        Path(path).write_bytes(to_bytes(frame, fmt))
        return len(frame)


def to_bytes(frame: pd.DataFrame, fmt: ExportFormat) -> bytes:
    match fmt:
        case "csv":
            return str(frame.to_csv(index=False)).encode("utf-8")
        case "jsonl":
            buffer = io.StringIO()
            frame.to_json(buffer, orient="records", lines=True, force_ascii=False)
            return buffer.getvalue().encode("utf-8")


def answer_row(answer: Answer, user: str, role: str, session_id: str, store_raw: bool = False) -> dict[str, Any]:
    """The audit columns of one answer. The question (and its follow-up rewrite, which repeats it)
    is redacted everywhere it appears, including inside `answer_json`, unless `store_raw`."""
    clean = (lambda s: s) if store_raw else redact
    stored = answer.model_copy(update={
        "question": clean(answer.question), "standalone_question": clean(answer.standalone_question)})
    return {
        "created_at": utc_now(), "user": user, "role": role, "session_id": session_id,
        "question": stored.question, "question_redacted": not store_raw,
        "status": answer.status,
        "refusal_reason": answer.refusal.reason if answer.refusal else None,
        "escalation_rule": answer.escalation.rule if answer.escalation else None,
        "escalation_level": answer.escalation.level if answer.escalation else None,
        "retrieved": json.dumps([{"chunk_id": r.chunk_id, "document": r.document, "page": r.page, "score": r.score}
                                 for r in answer.retrieved]),
        "citations": json.dumps([{"chunk_id": c.chunk_id, "document": c.document, "page": c.page, "verified": c.verified}
                                 for c in answer.citations]),
        "grounded": answer.grounded, "model": answer.model, "backend": answer.backend,
        "adapter_name": answer.adapter.name if answer.adapter else None,
        "adapter_scale": answer.adapter.scale if answer.adapter else None,
        "prompt_version": answer.prompt_version, "rule_set_version": answer.rule_set_version,
        "retrieve_s": answer.timings.retrieve_s, "generate_s": answer.timings.generate_s,
        "total_s": answer.timings.total_s,
        "prompt_tokens": answer.tokens.prompt, "completion_tokens": answer.tokens.completion,
        "answer_json": stored.model_dump_json(),
    }


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _iso(when: datetime | date | str, end_of_day: bool = False) -> str:
    if isinstance(when, str):
        return when
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    day = when + timedelta(days=1) if end_of_day else when
    return datetime.combine(day, time(), tzinfo=UTC).isoformat(timespec="microseconds")
