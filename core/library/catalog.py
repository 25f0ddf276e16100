"""The guideline catalog: one SQLite row per document version, the source of truth for status.

Milvus holds the chunks; this table decides which documents are searchable. A document is
`active` only after all its chunks are stored, so a crash mid-ingestion leaves an `ingesting`
row that recovery removes together with its chunks.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.errors import StoreLockedError
from core.library.store import ChunkFilter
from core.schema import DocumentMeta, FileFormat

DocumentStatus = Literal["ingesting", "active", "superseded"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    issuer TEXT,
    version TEXT,
    effective_date TEXT,
    specialty TEXT,
    file_name TEXT NOT NULL,
    format TEXT NOT NULL,
    stored_path TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ingesting', 'active', 'superseded')),
    superseded_by TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    pages INTEGER,
    warnings TEXT NOT NULL DEFAULT '[]',
    ingested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_status ON documents (status);
CREATE INDEX IF NOT EXISTS documents_guideline ON documents (lower(title), lower(coalesce(issuer, '')));
"""


class GuidelineRecord(BaseModel):
    """A document version as listed in the library."""

    doc_id: str
    content_hash: str
    title: str
    issuer: str | None = None
    version: str | None = None
    effective_date: str | None = None
    specialty: str | None = None
    file_name: str
    format: FileFormat
    stored_path: str
    size_bytes: int
    status: DocumentStatus
    superseded_by: str | None = None
    chunks: int = 0
    pages: int | None = None
    warnings: list[str] = Field(default_factory=list)
    ingested_at: str

    @property
    def meta(self) -> DocumentMeta:
        return DocumentMeta(
            title=self.title,
            issuer=self.issuer,
            version=self.version,
            effective_date=self.effective_date,
            specialty=self.specialty,
        )


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Catalog:
    """Thread-safe access to the documents table."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.RLock()
        self._depth = 0  # nesting of `transaction()` in the thread that holds the lock
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.OperationalError as exc:
            raise StoreLockedError(
                f"The library catalog {str(path)!r} is locked or unreadable ({exc}). "
                "Another process may be writing to it; try again in a moment."
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction; a nested call joins the outer one (a bulk batch commits once)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreLockedError(
                    f"The library catalog {str(self._path)!r} is locked by another process ({exc})."
                ) from exc
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self._conn.execute("COMMIT")

    def insert(self, record: GuidelineRecord) -> None:
        self.insert_many([record])

    def insert_many(self, records: list[GuidelineRecord]) -> None:
        if not records:
            return
        rows = [{**r.model_dump(), "warnings": json.dumps(r.warnings)} for r in records]
        cols = ", ".join(rows[0])
        marks = ", ".join(f":{k}" for k in rows[0])
        with self.transaction() as conn:
            conn.executemany(f"INSERT INTO documents ({cols}) VALUES ({marks})", rows)

    def get(self, doc_id: str) -> GuidelineRecord | None:
        rows = self._select("WHERE doc_id = ?", (doc_id,))
        return rows[0] if rows else None

    def by_hash(self, content_hash: str) -> GuidelineRecord | None:
        rows = self._select("WHERE content_hash = ?", (content_hash,))
        return rows[0] if rows else None

    def records(self, status: DocumentStatus | None = None) -> list[GuidelineRecord]:
        if status is None:
            return self._select("ORDER BY title COLLATE NOCASE, ingested_at", ())
        return self._select("WHERE status = ? ORDER BY title COLLATE NOCASE", (status,))

    def active_ids(self, include_superseded: bool = False) -> list[str]:
        statuses = ("active", "superseded") if include_superseded else ("active",)
        marks = ",".join("?" for _ in statuses)
        with self._lock:
            rows = self._conn.execute(f"SELECT doc_id FROM documents WHERE status IN ({marks})", statuses)
            return [r["doc_id"] for r in rows]

    def search_filter(
        self,
        include_superseded: bool = False,
        doc_ids: list[str] | None = None,
        issuer: str | None = None,
        specialty: str | None = None,
    ) -> ChunkFilter | None:
        """What a search may see, or None when nothing is searchable.

        The common case names only the documents to leave out (versions being written and, unless
        asked for, superseded ones): a handful however large the library, so the store's filter
        does not grow with it. A caller's own `doc_ids` selection is sent as given (its searchable part).
        """
        statuses = ("active", "superseded") if include_superseded else ("active",)
        marks = ",".join("?" for _ in statuses)
        with self._lock:
            if doc_ids is not None:
                visible = self._ids_where(f"status IN ({marks})", statuses)
                only = [d for d in dict.fromkeys(doc_ids) if d in visible]
                return ChunkFilter(only_doc_ids=only, issuer=issuer, specialty=specialty) if only else None
            if self._conn.execute(f"SELECT 1 FROM documents WHERE status IN ({marks}) LIMIT 1", statuses).fetchone() is None:
                return None
            hidden = sorted(self._ids_where(f"status NOT IN ({marks})", statuses))
        return ChunkFilter(exclude_doc_ids=hidden, issuer=issuer, specialty=specialty)

    def _ids_where(self, where: str, params: tuple[str, ...]) -> set[str]:
        with self._lock:
            return {r["doc_id"] for r in self._conn.execute(f"SELECT doc_id FROM documents WHERE {where}", params)}

    def stored_chunks(self) -> int:
        """Chunks the store should hold for the finished documents (a cheap consistency check)."""
        with self._lock:
            row = self._conn.execute("SELECT coalesce(sum(chunks), 0) AS n FROM documents WHERE status != 'ingesting'").fetchone()
        return int(row["n"])

    def same_guideline(self, title: str, issuer: str | None, exclude: str) -> list[GuidelineRecord]:
        """Other active versions of the guideline with this title and issuer."""
        return self._select(
            "WHERE lower(title) = lower(?) AND lower(coalesce(issuer, '')) = lower(coalesce(?, '')) "
            "AND doc_id != ? AND status = 'active'",
            (title, issuer, exclude),
        )

    def set_status(
        self, doc_id: str, status: DocumentStatus, superseded_by: str | None = None, chunks: int | None = None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE documents SET status = ?, superseded_by = ?, chunks = coalesce(?, chunks) "
                "WHERE doc_id = ?",
                (status, superseded_by, chunks, doc_id),
            )

    def activate(self, doc_id: str, chunks: int, supersede: list[str], superseded_by: str | None) -> None:
        """Make a fully stored document searchable and retire older versions, in one transaction."""
        status = "superseded" if superseded_by else "active"
        with self.transaction() as conn:
            conn.execute(
                "UPDATE documents SET status = ?, superseded_by = ?, chunks = ? WHERE doc_id = ?",
                (status, superseded_by, chunks, doc_id),
            )
            for old in supersede:
                conn.execute(
                    "UPDATE documents SET status = 'superseded', superseded_by = ? WHERE doc_id = ?",
                    (doc_id, old),
                )

    def delete(self, doc_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))
            conn.execute("UPDATE documents SET superseded_by = NULL WHERE superseded_by = ?", (doc_id,))

    def _select(self, where: str, params: tuple[object, ...]) -> list[GuidelineRecord]:
        with self._lock:
            rows = self._conn.execute(f"SELECT * FROM documents {where}", params).fetchall()
        out = []
        for row in rows:
            data = dict(row)
            data["warnings"] = json.loads(data["warnings"] or "[]")
            out.append(GuidelineRecord(**data))
        return out

    def close(self) -> None:
        with self._lock:
            self._conn.close()
