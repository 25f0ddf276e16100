"""Opening the SQL stores: SQLite gets WAL, a busy timeout and foreign keys; a bad URL is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from core.errors import CQAError
from core.governance.sql import ensure_sqlite_folder, is_sqlite, open_engine


class StoreError(CQAError):
    pass


def test_sqlite_connections_get_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'deep' / 'x.sqlite'}", StoreError, "test store", busy_timeout_s=2.5)
    ensure_sqlite_folder(engine)
    assert (tmp_path / "deep").is_dir()
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 2500
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_url_kinds() -> None:
    assert is_sqlite("sqlite:///x.db") and is_sqlite("sqlite+pysqlite:///:memory:")
    assert not is_sqlite("postgresql+psycopg://u@h/db")
    memory = open_engine("sqlite:///:memory:", StoreError, "test store")
    ensure_sqlite_folder(memory)  # nothing to create
    memory.dispose()


def test_an_unusable_url_names_the_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"The audit log URL 'nosuchdb://x' cannot be used"):
        open_engine("nosuchdb://x", StoreError, "audit log")
