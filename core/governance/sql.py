"""Opening the app's SQL stores (audit log, prompt versions, preferences) the same way.

SQLite (the default, a file in the data folder) gets WAL, a busy timeout and foreign keys on every
connection; any other SQLAlchemy URL (e.g. PostgreSQL) gets pre-ping so a dropped server connection
is replaced rather than failing a request.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from core.errors import CQAError


def _sqlite_pragmas(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_engine(url: str, error: type[CQAError], what: str, busy_timeout_s: float = 5.0) -> Engine:
    """An engine for `url`; a URL that cannot be used raises `error` naming `what` (e.g. "audit log")."""
    try:
        engine = create_engine(url, pool_pre_ping=not is_sqlite(url))
    except (SQLAlchemyError, ImportError) as exc:
        raise error(f"The {what} URL {url!r} cannot be used: {exc}") from exc
    if is_sqlite(url):
        event.listen(engine, "connect", partial(_sqlite_pragmas, int(busy_timeout_s * 1000)))
    return engine


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def ensure_sqlite_folder(engine: Engine) -> None:
    """Create the folder of a SQLite file before the first write (no-op for other databases)."""
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
