"""Side-by-side comparison: one question, retrieved once, answered by configurations A and B on the
identical passages (temperature 0, fixed seed), plus the user's recorded preference.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.exc import SQLAlchemyError

from core.answers import Answer
from core.audit import utc_now
from core.errors import CQAError
from core.pipeline import AnswerService, AskOptions
from core.retrieval import Retriever
from core.schema import RetrievedPassage
from core.settings import Settings
from core.sql import ensure_sqlite_folder, open_engine

Preferred = Literal["A", "B", "tie"]


class FixedPassages(Retriever):
    """A retriever that returns passages fetched earlier, so both sides see exactly the same evidence."""

    def __init__(self, passages: list[RetrievedPassage]) -> None:
        self._passages = list(passages)

    def retrieve(self, query: str, k: int | None = None, **_filters: Any) -> list[RetrievedPassage]:
        return list(self._passages[:k] if k else self._passages)


class Difference(BaseModel):
    measure: str
    a: str
    b: str
    differs: bool


class Comparison(BaseModel):
    question: str
    config_a: str = Field(description="e.g. 'prompt v2 · no adapter'.")
    config_b: str
    passages: list[RetrievedPassage] = Field(description="Retrieved once; both sides were given these.")
    retrieve_s: float
    a: Answer
    b: Answer
    differences: list[Difference]

    def differences_frame(self) -> pd.DataFrame:
        return pd.DataFrame([d.model_dump() for d in self.differences], columns=["measure", "a", "b", "differs"])


def config_label(options: AskOptions) -> str:
    adapter = f"adapter {options.adapter.name} ×{options.adapter.scale:g}" if options.adapter else "no adapter"
    top_k = f" · top {options.top_k}" if options.top_k else ""
    return f"prompt {options.prompt.version} · {adapter}{top_k}"


def compare(service: AnswerService, question: str, a: AskOptions, b: AskOptions) -> Comparison:
    """Retrieve once, then answer with A and B in turn on those passages."""
    # The comparison reads the service's private parts rather than widen AnswerService's public API.
    settings = service._settings
    k = max(opts.top_k or settings.top_k for opts in (a, b))
    t0 = time.perf_counter()
    passages = service._retriever.retrieve(question.strip(), k)
    retrieve_s = round(time.perf_counter() - t0, 3)
    fixed = on_passages(service, passages)
    answer_a, answer_b = fixed.ask(question, None, a), fixed.ask(question, None, b)
    return Comparison(
        question=question, config_a=config_label(a), config_b=config_label(b), passages=passages,
        retrieve_s=retrieve_s, a=answer_a, b=answer_b, differences=differences(answer_a, answer_b),
    )


def on_passages(service: AnswerService, passages: list[RetrievedPassage]) -> AnswerService:
    """A copy of `service` that answers from `passages` only, greedily (temperature 0, same seed)."""
    s = service
    return AnswerService(
        retriever=FixedPassages(passages), llm=s.llm, settings=s._settings,
        params=s._params.model_copy(update={"temperature": 0.0}),
        safety=s._safety, fallback=s._fallback, library_is_empty=s._library_is_empty,
    )


def differences(a: Answer, b: Answer) -> list[Difference]:
    rows: list[tuple[str, object, object]] = [
        ("status", a.status, b.status),
        ("refusal", a.refusal.reason if a.refusal else "—", b.refusal.reason if b.refusal else "—"),
        ("escalation", a.escalation.level if a.escalation else "—", b.escalation.level if b.escalation else "—"),
        ("grounded", a.grounded, b.grounded),
        ("verified citations", _verified(a), _verified(b)),
        ("format valid first time", a.format_valid, b.format_valid),
        ("prompt tokens", a.tokens.prompt, b.tokens.prompt),
        ("completion tokens", a.tokens.completion, b.tokens.completion),
        ("total seconds", f"{a.timings.total_s:.2f}", f"{b.timings.total_s:.2f}"),
    ]
    result = [Difference(measure=m, a=str(x), b=str(y), differs=x != y) for m, x, y in rows]
    same_text = a.text.strip() == b.text.strip()
    result.append(Difference(measure="text identical", a=str(same_text), b=str(same_text), differs=not same_text))
    return result


def _verified(answer: Answer) -> int:
    return sum(1 for c in answer.citations if c.verified)


# -- preferences --------------------------------------------------------------------------------
_metadata = MetaData()
preferences_table = Table(
    "preferences", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(32), nullable=False, index=True),
    Column("user", String(200), nullable=False),
    Column("question", Text, nullable=False),
    Column("config_a", Text, nullable=False),
    Column("config_b", Text, nullable=False),
    Column("preferred", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("comparison_json", Text, nullable=False),
)
PREFERENCE_COLUMNS = [c.name for c in preferences_table.columns if c.name != "comparison_json"]


class PreferenceError(CQAError):
    """A preference could not be stored or read."""


def preference_store_for(settings: Settings) -> PreferenceStore:
    """The preference store of this data folder (`preferences.sqlite`), one per process."""
    return _preferences_for_url(f"sqlite:///{settings.data_dir / 'preferences.sqlite'}")


@cache
def _preferences_for_url(url: str) -> PreferenceStore:
    return PreferenceStore(url)


class PreferenceStore:
    """Which of two answers a user preferred and why. Thread-safe writes (one lock per process)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine = open_engine(url, PreferenceError, "preference store")
        self._lock = threading.Lock()
        self._ready = False

    def close(self) -> None:
        self._engine.dispose()

    def record(self, comparison: Comparison, preferred: Preferred, reason: str, user: str) -> int:
        if preferred not in ("A", "B", "tie"):
            raise ValueError(f"preferred must be 'A', 'B' or 'tie', not {preferred!r}")
        row = {
            "created_at": utc_now(), "user": user, "question": comparison.question, "config_a": comparison.config_a,
            "config_b": comparison.config_b, "preferred": preferred, "reason": reason.strip(),
            "comparison_json": comparison.model_dump_json(),
        }
        with self._connection(write=True) as conn:
            key = conn.execute(insert(preferences_table).values(**row)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def frame(self) -> pd.DataFrame:
        """All preferences, oldest first (without the stored comparisons)."""
        t = preferences_table
        with self._connection(write=False) as conn:
            rows = conn.execute(select(*[t.c[n] for n in PREFERENCE_COLUMNS]).order_by(t.c.id)).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=PREFERENCE_COLUMNS)

    def comparison(self, preference_id: int) -> Comparison:
        t = preferences_table
        with self._connection(write=False) as conn:
            raw = conn.execute(select(t.c.comparison_json).where(t.c.id == preference_id)).scalar_one_or_none()
        if raw is None:
            raise PreferenceError(f"There is no preference {preference_id!r}.")
        return Comparison.model_validate(json.loads(raw))

    @contextmanager
    def _connection(self, write: bool) -> Iterator[Connection]:
        try:
            with self._lock:
                if not self._ready:
                    ensure_sqlite_folder(self._engine)
                    with self._engine.begin() as conn:
                        _metadata.create_all(conn)
                    self._ready = True
                if write:
                    with self._engine.begin() as conn:
                        yield conn
                        return
            with self._engine.connect() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise PreferenceError(f"The preference store could not be used: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
