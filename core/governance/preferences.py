"""The preference store: which of two compared answers a user preferred and why, with the whole
comparison (`core.answers.Comparison`), in `<data dir>/preferences.sqlite` (or any SQLAlchemy URL)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Literal

import pandas as pd
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.exc import SQLAlchemyError

from core.answers import Comparison
from core.errors import CQAError
from core.governance.audit import utc_now
from core.governance.sql import ensure_sqlite_folder, open_engine
from core.settings import Settings

Preferred = Literal["A", "B", "tie"]

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
