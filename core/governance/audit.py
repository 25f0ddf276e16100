"""The audit trail: one append-only record per answer, and clinicians' feedback on it.

SQLAlchemy Core, so the same code writes the default SQLite file in the data folder or a Postgres
URL. Questions are redacted with `core.pii.redact` before they are stored unless the caller opts in
to `store_raw`. Writes raise `AuditWriteError` (never a raw database error) so the chat can show the
answer and tell admins the record was lost.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from collections.abc import Callable
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


# -- summaries for the analytics page ------------------------------------------------------------
_NOT_WORD = re.compile(r"[^\w\[\]]+")


def normalise_question(question: str) -> str:
    """Case, punctuation and spacing do not make a different question."""
    return _NOT_WORD.sub(" ", question.lower()).strip()


def headline(frame: pd.DataFrame) -> dict[str, float]:
    """Status rates, grounded rate of answered questions, latency p50/p95 (NaN when undefined)."""
    n = len(frame)
    answered = frame[frame["status"] == "answered"]
    status = frame["status"].value_counts()
    return {
        "questions": float(n),
        **{f"{s}_rate": float(status.get(s, 0)) / n if n else math.nan for s in ("answered", "refused", "escalated")},
        "grounded_rate": float(answered["grounded"].astype(bool).mean()) if len(answered) else math.nan,
        "latency_p50_s": float(frame["total_s"].quantile(0.5)) if n else math.nan,
        "latency_p95_s": float(frame["total_s"].quantile(0.95)) if n else math.nan,
    }


def per_day(frame: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Rows per UTC day (index), one column per value of `by` (or a single `count`)."""
    day = frame["created_at"].str.slice(0, 10).rename("day")
    if by is None:
        return frame.groupby(day).size().to_frame("count")
    return frame.groupby([day, frame[by]]).size().unstack(fill_value=0)


def similarity_groups(texts: list[str], embed: Callable[[list[str]], list[list[float]]], threshold: float = 0.75) -> list[int]:
    """Greedy grouping: each text joins the first earlier group whose lead it resembles (cosine of
    unit vectors >= threshold), else starts a group. Returns a group index per text."""
    vectors = embed(texts) if texts else []
    leads: list[list[float]] = []
    groups: list[int] = []
    for vec in vectors:
        best = next((i for i, lead in enumerate(leads) if sum(a * b for a, b in zip(vec, lead, strict=True)) >= threshold), None)
        if best is None:
            leads.append(vec)
            best = len(leads) - 1
        groups.append(best)
    return groups


def refused_questions(
    frame: pd.DataFrame, top: int = 20, embed: Callable[[list[str]], list[list[float]]] | None = None
) -> pd.DataFrame:
    """The most frequent refused questions: the library's gaps. With `embed`, questions worded
    differently but meaning the same ("methotrexate dose RA" / "starting methotrexate for rheumatoid
    arthritis") are grouped by embedding similarity; otherwise by normalised text."""
    refused = frame[frame["status"] == "refused"]
    if embed is not None and not refused.empty:
        keys = similarity_groups([normalise_question(q) for q in refused["question"]], embed)
        grouped = refused.assign(normalised=keys).groupby("normalised")
    else:
        grouped = refused.assign(normalised=refused["question"].map(normalise_question)).groupby("normalised")
    table = grouped.agg(times=("id", "size"), example=("question", "first"), reason=("refusal_reason", "first"),
                        last_asked=("created_at", "max"))
    return table.sort_values(["times", "last_asked"], ascending=False).head(top).reset_index(drop=True)


def citation_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """How often each document was cited, and how often verified."""
    cites = [c for raw in frame["citations"] for c in json.loads(raw)]
    if not cites:
        return pd.DataFrame(columns=["document", "cited", "verified"])
    table = pd.DataFrame(cites).groupby("document").agg(cited=("chunk_id", "size"), verified=("verified", "sum"))
    return table.sort_values("cited", ascending=False).reset_index()


def never_cited(frame: pd.DataFrame, documents: list[str]) -> list[str]:
    """The documents (file names, e.g. the active ones) that no recorded answer cited, sorted."""
    cited = set(citation_counts(frame)["document"])
    return sorted(d for d in set(documents) if d not in cited)


def feedback_summary(feedback: pd.DataFrame) -> dict[str, int]:
    """Thumbs up and down."""
    return {"up": int((feedback["rating"] > 0).sum()), "down": int((feedback["rating"] < 0).sum())}


def feedback_per_day(feedback: pd.DataFrame) -> pd.DataFrame:
    """Ratings per UTC day, columns `up` and `down`."""
    return per_day(feedback.assign(rating=feedback["rating"].map({1: "up", -1: "down"})), "rating")


def feedback_reasons(feedback: pd.DataFrame) -> pd.Series:
    """How often each reason was given ("(none)" when the user gave none), most frequent first."""
    return feedback["reason"].fillna("(none)").value_counts().rename("times")


def compare_by(frame: pd.DataFrame, feedback: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per value of `column` (e.g. prompt_version, adapter_name): volume, outcomes, latency, ratings."""
    answered = frame["status"] == "answered"
    keyed = frame.assign(**{column: frame[column].fillna("(none)"),
                            "grounded_answer": frame["grounded"].astype(float).where(answered)})
    table = keyed.groupby(column).agg(
        questions=("id", "size"),
        answered_rate=("status", lambda s: (s == "answered").mean()),
        refused_rate=("status", lambda s: (s == "refused").mean()),
        grounded_rate=("grounded_answer", "mean"),
        latency_p50_s=("total_s", "median"),
        latency_p95_s=("total_s", lambda s: s.quantile(0.95)),
    )
    if len(feedback):
        ratings = feedback.assign(**{column: feedback[column].fillna("(none)")}).groupby(column)["rating"]
        table["thumbs_up"] = ratings.apply(lambda r: int((r > 0).sum()))
        table["thumbs_down"] = ratings.apply(lambda r: int((r < 0).sum()))
    return table.fillna({"thumbs_up": 0, "thumbs_down": 0}).reset_index()
