"""The guideline library: ingest, list, supersede, delete and re-index documents.

Ingestion is serialized (one writer) and atomic: the catalog row is `ingesting` while chunks are
written and becomes `active` only after the last chunk is stored. Retrieval searches only active
documents, so a half-written document is never visible; `recover()` removes the leftovers.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.catalog import Catalog, GuidelineRecord, utc_now
from core.chunking import chunk_document
from core.embedding import Embedder
from core.errors import CQAError, IngestError
from core.locking import WriterLock
from core.parsing import parse_file, safe_file_name
from core.schema import DocumentMeta
from core.settings import IngestSettings
from core.store import ChunkStore, StoredChunk, index_text, to_stored

Progress = Callable[[float, str], None]
OutcomeStatus = Literal["ingested", "duplicate", "failed"]


class IngestOutcome(BaseModel):
    """What happened to one file; `message` is shown to the admin as is."""

    file_name: str
    status: OutcomeStatus
    message: str
    doc_id: str | None = None
    title: str | None = None
    chunks: int = 0
    pages: int | None = None
    problem: str | None = Field(default=None, description="Machine-readable reason for a failure.")
    superseded: list[str] = Field(default_factory=list, description="Older versions this one replaced.")
    superseded_by: str | None = Field(default=None, description="Set when a newer version already exists.")
    warnings: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class RecoveryReport(BaseModel):
    removed_documents: list[str] = Field(default_factory=list)
    removed_orphan_chunks: int = 0


def _noop(_fraction: float, _message: str) -> None:
    return None


class GuidelineLibrary:
    def __init__(
        self,
        catalog: Catalog,
        store: ChunkStore,
        embedder: Embedder,
        settings: IngestSettings,
        uploads_dir: Path,
        writer_lock: WriterLock,
        embed_batch: int = 32,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self._embedder = embedder
        self._settings = settings
        self._uploads = uploads_dir
        self._lock = writer_lock
        self._embed_batch = embed_batch

    # -- reading ---------------------------------------------------------------------------
    def documents(self) -> list[GuidelineRecord]:
        return self.catalog.records()

    def chunks(self, doc_id: str) -> list[StoredChunk]:
        return self.store.chunks_of(doc_id)

    def passage(self, chunk_id: str) -> StoredChunk | None:
        return self.store.chunk(chunk_id)

    def searchable_ids(self, include_superseded: bool = False) -> list[str]:
        return self.catalog.active_ids(include_superseded)

    def is_empty(self) -> bool:
        return not self.catalog.active_ids()

    def original_file(self, doc_id: str) -> Path | None:
        record = self.catalog.get(doc_id)
        if record is None:
            return None
        path = Path(record.stored_path)
        return path if path.exists() else None

    # -- writing ---------------------------------------------------------------------------
    def recover(self) -> RecoveryReport:
        """Remove documents left `ingesting` by a crash and chunks that belong to no document."""
        report = RecoveryReport()
        with self._lock.hold():
            for record in self.catalog.records("ingesting"):
                self.store.delete_documents([record.doc_id])
                self.catalog.delete(record.doc_id)
                shutil.rmtree(Path(record.stored_path).parent, ignore_errors=True)
                report.removed_documents.append(record.doc_id)
            known = [r.doc_id for r in self.catalog.records()]
            report.removed_orphan_chunks = self.store.delete_all_except(known)
        return report

    def ingest_file(self, path: Path, meta: DocumentMeta | None = None, progress: Progress = _noop) -> IngestOutcome:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return IngestOutcome(file_name=path.name, status="failed", problem="unreadable", message=f"Cannot read {str(path)!r}: {exc.strerror}.")
        return self.ingest_bytes(data, path.name, meta, progress)

    def ingest_bytes(
        self, data: bytes, file_name: str, meta: DocumentMeta | None = None, progress: Progress = _noop
    ) -> IngestOutcome:
        started = time.perf_counter()
        try:
            outcome = self._ingest(data, file_name, meta or DocumentMeta(), progress)
        except IngestError as exc:
            outcome = IngestOutcome(file_name=file_name, status="failed", problem=exc.problem, message=str(exc))
        except CQAError as exc:
            outcome = IngestOutcome(file_name=file_name, status="failed", problem="store", message=str(exc))
        outcome.seconds = round(time.perf_counter() - started, 3)
        progress(1.0, outcome.message)
        return outcome

    def _ingest(self, data: bytes, file_name: str, form_meta: DocumentMeta, progress: Progress) -> IngestOutcome:
        name = safe_file_name(file_name)
        progress(0.02, f"Reading {name}")
        parsed = parse_file(data, name, self._settings)
        content_hash = hashlib.sha256(data).hexdigest()
        doc_id = content_hash[:16]
        meta = parsed.meta.merged_with(form_meta)
        title = meta.title or Path(name).stem
        chunks = chunk_document(parsed, doc_id, self._settings)
        if not chunks:
            raise IngestError("no_text", f"{name!r} contains no text that can be indexed.")
        with self._lock.hold():
            existing = self.catalog.by_hash(content_hash)
            if existing is not None and existing.status != "ingesting":
                return IngestOutcome(
                    file_name=name, status="duplicate", doc_id=existing.doc_id, title=existing.title,
                    chunks=existing.chunks, pages=existing.pages,
                    message=f"{name!r} is already in the library as {existing.title!r} ({existing.status}); nothing changed.",
                )
            if existing is not None:  # leftover of a crashed run: start clean
                self.store.delete_documents([doc_id])
                self.catalog.delete(doc_id)
            stored_path = self._save_original(doc_id, name, data)
            record = GuidelineRecord(
                doc_id=doc_id, content_hash=content_hash, title=title, issuer=meta.issuer, version=meta.version,
                effective_date=meta.effective_date, specialty=meta.specialty, file_name=name, format=parsed.format,
                stored_path=str(stored_path), size_bytes=len(data), status="ingesting", chunks=0,
                pages=parsed.pages, warnings=parsed.warnings, ingested_at=utc_now(),
            )
            self.catalog.insert(record)
            try:
                self._store_chunks(record, chunks, progress)
            except Exception as exc:
                self._undo(record)
                raise CQAError(f"Storing {name!r} failed and nothing was added ({type(exc).__name__}: {exc}).") from exc
            older, newer = self._versions(record)
            self.catalog.activate(doc_id, len(chunks), supersede=[o.doc_id for o in older], superseded_by=newer)
        return self._success(record, len(chunks), older, newer)

    def _store_chunks(self, record: GuidelineRecord, chunks: list, progress: Progress) -> None:  # type: ignore[type-arg]
        doc_meta = record.model_dump()
        stored = [to_stored(c, doc_meta) for c in chunks]
        for start in range(0, len(stored), self._embed_batch):
            batch = stored[start : start + self._embed_batch]
            vectors = self._embedder.embed([index_text(c.title, c.section, c.text) for c in batch])
            self.store.add(batch, vectors)
            done = start + len(batch)
            progress(0.05 + 0.9 * done / len(stored), f"Indexed {done}/{len(stored)} passages of {record.file_name}")

    def _versions(self, record: GuidelineRecord) -> tuple[list[GuidelineRecord], str | None]:
        """Older active versions to retire, or the newer version that already supersedes this one."""
        others = self.catalog.same_guideline(record.title, record.issuer, exclude=record.doc_id)
        newer = [o for o in others if o.effective_date and record.effective_date and o.effective_date > record.effective_date]
        if newer:
            return [], newer[0].doc_id
        return others, None

    def _success(self, record: GuidelineRecord, n_chunks: int, older: list[GuidelineRecord], newer: str | None) -> IngestOutcome:
        message = f"Ingested {record.file_name!r} as {record.title!r}: {n_chunks} passages"
        if record.pages:
            message += f" from {record.pages} pages"
        message += "."
        if older:
            message += " It supersedes " + ", ".join(f"version {o.version or '?'} ({o.file_name})" for o in older) + "."
        if newer:
            message += " A newer version is already active, so this one is stored as superseded."
        if record.warnings:
            message += " Warnings: " + "; ".join(record.warnings)
        return IngestOutcome(
            file_name=record.file_name, status="ingested", doc_id=record.doc_id, title=record.title,
            chunks=n_chunks, pages=record.pages, superseded=[o.doc_id for o in older], superseded_by=newer,
            warnings=record.warnings, message=message,
        )

    def _save_original(self, doc_id: str, name: str, data: bytes) -> Path:
        folder = self._uploads / doc_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return path

    def _undo(self, record: GuidelineRecord) -> None:
        self.store.delete_documents([record.doc_id])
        self.catalog.delete(record.doc_id)
        shutil.rmtree(Path(record.stored_path).parent, ignore_errors=True)

    def delete(self, doc_id: str) -> str:
        with self._lock.hold():
            record = self._require(doc_id)
            self.store.delete_documents([doc_id])
            self.catalog.delete(doc_id)
            shutil.rmtree(Path(record.stored_path).parent, ignore_errors=True)
        return f"Deleted {record.title!r} ({record.file_name})."

    def mark_superseded(self, doc_id: str) -> str:
        with self._lock.hold():
            record = self._require(doc_id)
            self.catalog.set_status(doc_id, "superseded", superseded_by=None)
        return f"{record.title!r} ({record.file_name}) is now superseded and excluded from answers."

    def reactivate(self, doc_id: str) -> str:
        with self._lock.hold():
            record = self._require(doc_id)
            self.catalog.set_status(doc_id, "active", superseded_by=None)
        return f"{record.title!r} ({record.file_name}) is active again."

    def reindex_all(self, progress: Progress = _noop) -> list[IngestOutcome]:
        """Re-chunk and re-embed every stored original (after changing chunk settings)."""
        records = self.catalog.records()
        with self._lock.hold():
            self.store.clear()
            outcomes = []
            for i, record in enumerate(records):
                progress(i / max(len(records), 1), f"Re-indexing {record.file_name}")
                outcomes.append(self._reindex_one(record))
        progress(1.0, f"Re-indexed {len(records)} documents.")
        return outcomes

    def _reindex_one(self, record: GuidelineRecord) -> IngestOutcome:
        try:
            data = Path(record.stored_path).read_bytes()
            parsed = parse_file(data, record.file_name, self._settings)
            chunks = chunk_document(parsed, record.doc_id, self._settings)
            self._store_chunks(record, chunks, _noop)
        except (OSError, CQAError) as exc:
            return IngestOutcome(file_name=record.file_name, status="failed", doc_id=record.doc_id, problem="reindex", message=f"Re-indexing {record.file_name!r} failed: {exc}")
        self.catalog.set_status(record.doc_id, record.status, record.superseded_by, chunks=len(chunks))
        return IngestOutcome(file_name=record.file_name, status="ingested", doc_id=record.doc_id, title=record.title, chunks=len(chunks), message=f"Re-indexed {record.file_name!r}: {len(chunks)} passages.")

    def _require(self, doc_id: str) -> GuidelineRecord:
        record = self.catalog.get(doc_id)
        if record is None:
            raise CQAError(f"No document with id {doc_id!r} in the library.")
        return record
