"""Versioned system prompts: history, validation, activation with rollback, diff and preview.

SQLAlchemy Core, so the same code writes `prompts.sqlite` in the data folder or a Postgres URL.
Versions are never edited or deleted: a change is a new version, and rolling back re-activates an
old one. The active version's `PromptTemplate.version` is its label, so every answer records it.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from core.answering.prompts import BUILTIN_PROMPT, REQUIRED_PLACEHOLDERS, PromptTemplate, build_messages
from core.errors import CQAError
from core.governance.sql import ensure_sqlite_folder, open_engine
from core.llm import ChatMessage
from core.schema import RetrievedPassage
from core.settings import Settings

MAX_SYSTEM_CHARS = 4000
MAX_USER_CHARS = 2000
BUILTIN_NAME = "Built-in"

_metadata = MetaData()
versions_table = Table(
    "prompt_versions", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(50), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("system", Text, nullable=False),
    Column("user_template", Text, nullable=False),
    Column("author", String(200), nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("active", Boolean, nullable=False),
)
# One row per activation; rollback marks the latest one undone and re-activates the one before.
activations_table = Table(
    "prompt_activations", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(50), nullable=False),
    Column("user", String(200), nullable=False),
    Column("activated_at", String(32), nullable=False),
    Column("undone_at", String(32)),
    Column("undone_by", String(200)),
)


class PromptStoreError(CQAError):
    """The prompt store cannot be read or written, or the request makes no sense (unknown version)."""


class PromptValidationError(PromptStoreError):
    """A new version was rejected; `problems` lists every reason, each readable on its own."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


class PromptVersion(BaseModel):
    id: int
    version: str = Field(description="Label recorded on answers, e.g. 'builtin-1' or 'v3'.")
    name: str
    system: str
    user_template: str = Field(description="Contains {passages} and {question}.")
    author: str
    created_at: str
    note: str = ""
    active: bool = False

    @property
    def template(self) -> PromptTemplate:
        return PromptTemplate(version=self.version, system=self.system, user=self.user_template)


class Activation(BaseModel):
    version: str
    user: str
    activated_at: str
    undone_at: str | None = None
    undone_by: str | None = None


def validate_prompt(system: str, user_template: str) -> list[str]:
    """Every reason the prompt cannot be saved (empty when it can)."""
    problems = []
    if not system.strip():
        problems.append("The system prompt is empty.")
    if len(system) > MAX_SYSTEM_CHARS:
        problems.append(f"The system prompt has {len(system):,} characters; the limit is {MAX_SYSTEM_CHARS:,}.")
    if len(user_template) > MAX_USER_CHARS:
        problems.append(f"The user template has {len(user_template):,} characters; the limit is {MAX_USER_CHARS:,}.")
    for placeholder in REQUIRED_PLACEHOLDERS:
        if placeholder not in user_template:
            problems.append(f"The user template must contain {placeholder}: it is where the "
                            f"{'numbered guideline passages' if placeholder == '{passages}' else 'question'} go.")
    return problems


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def prompt_store_url(settings: Settings) -> str:
    return f"sqlite:///{settings.data_dir / 'prompts.sqlite'}"


def prompt_store_for(settings: Settings) -> PromptStore:
    """The prompt store of this data folder, one per process (it holds the write lock)."""
    return _store_for_url(prompt_store_url(settings))


@cache
def _store_for_url(url: str) -> PromptStore:
    return PromptStore(url)


class PromptStore:
    """Thread-safe: one lock serialises writes in this process; SQLite's busy timeout covers others."""

    def __init__(self, url: str, busy_timeout_s: float = 5.0) -> None:
        self.url = url
        self._engine: Engine = open_engine(url, PromptStoreError, "prompt store", busy_timeout_s)
        self._lock = threading.Lock()
        self._ready = False

    def close(self) -> None:
        self._engine.dispose()

    # -- reading ---------------------------------------------------------------------------------
    def versions(self) -> list[PromptVersion]:
        """All versions, oldest first."""
        rows = self._read(select(versions_table).order_by(versions_table.c.id))
        return [PromptVersion.model_validate(r) for r in rows]

    def get(self, version: str) -> PromptVersion:
        rows = self._read(select(versions_table).where(versions_table.c.version == version))
        if not rows:
            raise PromptStoreError(f"There is no prompt version {version!r}.")
        return PromptVersion.model_validate(rows[0])

    def active_version(self) -> PromptVersion:
        rows = self._read(select(versions_table).where(versions_table.c.active.is_(True)))
        if not rows:
            raise PromptStoreError("No prompt version is active.")
        return PromptVersion.model_validate(rows[0])

    def active(self) -> PromptTemplate:
        """The prompt answers use now; its `version` is the label recorded on every answer."""
        return self.active_version().template

    def activations(self) -> list[Activation]:
        """Activation history, oldest first (rolled-back ones carry `undone_at`)."""
        rows = self._read(select(activations_table).order_by(activations_table.c.id))
        return [Activation.model_validate(r) for r in rows]

    def diff(self, a: str, b: str) -> str:
        """Unified diff of version `a` → `b` (system prompt and user template); empty if identical."""
        old, new = self.get(a), self.get(b)
        return "".join(difflib.unified_diff(_diffable(old), _diffable(new), fromfile=a, tofile=b))

    def preview(self, version: str, question: str, passages: list[RetrievedPassage]) -> list[ChatMessage]:
        """The messages the model would get. (The pipeline may drop the lowest passages to fit the context.)"""
        return build_messages(self.get(version).template, question, passages)

    # -- writing ---------------------------------------------------------------------------------
    def create(self, name: str, system: str, user_template: str, author: str, note: str = "") -> PromptVersion:
        """Store a new, inactive version labelled v1, v2, …; raises `PromptValidationError`."""
        problems = validate_prompt(system, user_template)
        if problems:
            raise PromptValidationError(problems)
        with self._write() as conn:
            numbered = conn.execute(
                select(func.count()).select_from(versions_table).where(versions_table.c.version.like("v%"))
            ).scalar_one()
            row: dict[str, Any] = {"version": f"v{numbered + 1}", "name": name.strip() or f"Version {numbered + 1}",
                   "system": system, "user_template": user_template, "author": author, "created_at": utc_now(),
                   "note": note.strip(), "active": False}
            key = conn.execute(insert(versions_table).values(**row)).inserted_primary_key
            assert key is not None
        return PromptVersion.model_validate({"id": int(key[0]), **row})

    def activate(self, version: str, user: str = "unknown") -> PromptVersion:
        """Make `version` the one answers use; recorded in the activation history."""
        with self._write() as conn:
            if self._row(conn, version) is None:
                raise PromptStoreError(f"There is no prompt version {version!r}.")
            self._set_active(conn, version)
            conn.execute(insert(activations_table).values(version=version, user=user, activated_at=utc_now()))
        return self.get(version)

    def rollback(self, user: str = "unknown") -> PromptVersion:
        """Undo the latest activation: the version active before it becomes active again."""
        a = activations_table
        with self._write() as conn:
            live = conn.execute(select(a.c.id, a.c.version).where(a.c.undone_at.is_(None)).order_by(a.c.id.desc())
                                .limit(2)).all()
            if len(live) < 2:
                raise PromptStoreError("There is no earlier active version to roll back to.")
            conn.execute(update(a).where(a.c.id == live[0].id).values(undone_at=utc_now(), undone_by=user))
            self._set_active(conn, live[1].version)
        return self.get(live[1].version)

    # -- plumbing --------------------------------------------------------------------------------
    @staticmethod
    def _row(conn: Connection, version: str) -> Any:
        return conn.execute(select(versions_table.c.id).where(versions_table.c.version == version)).first()

    @staticmethod
    def _set_active(conn: Connection, version: str) -> None:
        t = versions_table
        conn.execute(update(t).where(t.c.version != version).values(active=False))
        conn.execute(update(t).where(t.c.version == version).values(active=True))

    def _read(self, query: Any) -> list[dict[str, Any]]:
        try:
            self._prepare()
            with self._engine.connect() as conn:
                return [dict(r) for r in conn.execute(query).mappings().all()]
        except (SQLAlchemyError, OSError) as exc:
            raise PromptStoreError(f"The prompt store could not be read: {_reason(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """Lock + transaction; database errors become `PromptStoreError` with a readable reason."""
        self._prepare()
        try:
            with self._lock, self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise PromptStoreError(f"The prompt store could not be written: {_reason(exc)}") from exc

    def _prepare(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            ensure_sqlite_folder(self._engine)
            with self._engine.begin() as conn:
                _metadata.create_all(conn)
                if conn.execute(select(func.count()).select_from(versions_table)).scalar_one() == 0:
                    self._seed(conn)
            self._ready = True

    @staticmethod
    def _seed(conn: Connection) -> None:
        now = utc_now()
        conn.execute(insert(versions_table).values(
            version=BUILTIN_PROMPT.version, name=BUILTIN_NAME, system=BUILTIN_PROMPT.system,
            user_template=BUILTIN_PROMPT.user, author="system", created_at=now,
            note="Shipped with the app.", active=True,
        ))
        conn.execute(insert(activations_table).values(version=BUILTIN_PROMPT.version, user="system", activated_at=now))


def _diffable(v: PromptVersion) -> list[str]:
    text = f"SYSTEM PROMPT\n{v.system.rstrip()}\n\nUSER TEMPLATE\n{v.user_template.rstrip()}\n"
    return text.splitlines(keepends=True)


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]
