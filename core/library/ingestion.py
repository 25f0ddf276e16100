"""The guideline library: ingest, list, supersede, delete and re-index documents.

Ingestion is serialized (one writer) and atomic: the catalog row is `ingesting` while chunks are
written and becomes `active` only after the last chunk is stored. Retrieval leaves out every document
that is not active, so a half-written document is never visible; `recover()` removes the leftovers.

Files are parsed one at a time and embedded and stored in batches of a few hundred passages across
files (one encoder call, one insert); a batch's documents become searchable in one transaction.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.errors import CQAError, IngestError
from core.library.catalog import Catalog, GuidelineRecord, utc_now
from core.library.chunking import chunk_document
from core.library.embedding import Embedder
from core.library.locking import WriterLock
from core.library.parsing import parse_file, safe_file_name
from core.library.store import ChunkStore, StoredChunk, index_text, to_stored
from core.schema import Chunk, DocumentMeta
from core.settings import IngestSettings

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
    flush_seconds: float = Field(default=0.0, description="Start-up flush and index warm-up of the store.")


class BulkProgress(BaseModel):
    """How far a run over many files is; `line()` is what the CLI and the admin page show."""

    files_done: int
    files_total: int
    chunks_done: int
    seconds: float

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        if not self.files_done or self.seconds <= 0:
            return None
        return self.seconds / self.files_done * (self.files_total - self.files_done)

    def line(self) -> str:
        left = self.seconds_left
        eta = "estimating time left" if left is None else f"about {_duration(left)} left"
        return (
            f"{self.files_done:,}/{self.files_total:,} files · {self.chunks_done:,} passages · "
            f"{self.chunks_per_s:.1f} passages/s · {eta}"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


OnOutcome = Callable[[IngestOutcome], None]
OnBulkProgress = Callable[[BulkProgress], None]
# A file to ingest: its name and either its bytes or why it could not be read.
Source = tuple[str, "bytes | IngestOutcome"]


@dataclass
class _Prepared:
    """A parsed and chunked file waiting in a batch for its embeddings."""

    record: GuidelineRecord
    chunks: list[Chunk]
    data: bytes
    started: float


def _noop(_fraction: float, _message: str) -> None:
    return None


def _ignore(_item: object) -> None:
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
        embed_batch: int = 256,
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
        return self.catalog.search_filter() is None

    def original_file(self, doc_id: str) -> Path | None:
        record = self.catalog.get(doc_id)
        if record is None:
            return None
        path = Path(record.stored_path)
        return path if path.exists() else None

    # -- writing ---------------------------------------------------------------------------
    def recover(self) -> RecoveryReport:
        """Remove documents left `ingesting` by a crash and chunks that belong to no document, then
        get the store ready to search (start-up). The full scan for orphan chunks runs only when the
        store holds a different number of chunks than the catalog expects."""
        report = RecoveryReport()
        with self._lock.hold():
            leftovers = self.catalog.records("ingesting")
            self.store.delete_documents([r.doc_id for r in leftovers])
            for record in leftovers:
                self.catalog.delete(record.doc_id)
                shutil.rmtree(Path(record.stored_path).parent, ignore_errors=True)
                report.removed_documents.append(record.doc_id)
            if self.store.count() != self.catalog.stored_chunks():
                known = [r.doc_id for r in self.catalog.records()]
                report.removed_orphan_chunks = self.store.delete_all_except(known)
            started = time.perf_counter()
            self.store.flush()
            report.flush_seconds = round(time.perf_counter() - started, 3)
        return report

    def ingest_file(self, path: Path, meta: DocumentMeta | None = None, progress: Progress = _noop) -> IngestOutcome:
        return self._ingest_sources([_read(path)], 1, meta, progress)[0]

    def ingest_bytes(
        self, data: bytes, file_name: str, meta: DocumentMeta | None = None, progress: Progress = _noop
    ) -> IngestOutcome:
        return self._ingest_sources([(file_name, data)], 1, meta, progress)[0]

    def ingest_files(
        self, paths: list[Path], meta: DocumentMeta | None = None,
        on_outcome: OnOutcome = _ignore, on_progress: OnBulkProgress = _ignore,
    ) -> list[IngestOutcome]:
        """Many files, embedded and stored a few hundred passages at a time across files.

        Each batch becomes searchable at once when it is stored. Interrupted, it can simply be run
        again: files already in the library are reported as duplicates and skipped, and a batch
        cut off mid-write is removed by the next start's recovery."""
        outcomes = self._ingest_sources((_read(p) for p in paths), len(paths), meta, _noop, on_outcome, on_progress)
        self._seal(outcomes)
        return outcomes

    def ingest_uploads(
        self, files: list[tuple[str, bytes]], meta: DocumentMeta | None = None,
        on_outcome: OnOutcome = _ignore, on_progress: OnBulkProgress = _ignore,
    ) -> list[IngestOutcome]:
        """`ingest_files` for uploaded (name, bytes) pairs."""
        outcomes = self._ingest_sources(iter(files), len(files), meta, _noop, on_outcome, on_progress)
        self._seal(outcomes)
        return outcomes

    def _seal(self, outcomes: list[IngestOutcome]) -> None:
        """After a run over many files, make what it added fast to search (see `ChunkStore.flush`)."""
        if any(o.status == "ingested" for o in outcomes):
            with self._lock.hold():
                self.store.flush()

    def _ingest_sources(
        self, sources: Iterable[Source], total: int, meta: DocumentMeta | None, progress: Progress,
        on_outcome: OnOutcome = _ignore, on_progress: OnBulkProgress = _ignore,
    ) -> list[IngestOutcome]:
        """Outcomes in the order of `sources`; `on_outcome` hears each as soon as it is known."""
        form_meta = meta or DocumentMeta()
        started = time.perf_counter()
        outcomes: dict[int, IngestOutcome] = {}
        pending: list[_Prepared] = []
        pending_at: list[int] = []
        chunks_done = 0

        def emit(at: list[int], batch: list[IngestOutcome]) -> None:
            nonlocal chunks_done
            for i, outcome in zip(at, batch, strict=True):
                outcomes[i] = outcome
                chunks_done += outcome.chunks if outcome.status == "ingested" else 0
                progress(1.0, outcome.message)
                on_outcome(outcome)
            on_progress(BulkProgress(files_done=len(outcomes), files_total=max(total, len(outcomes)),
                                     chunks_done=chunks_done, seconds=time.perf_counter() - started))

        for i, (name, data) in enumerate(sources):
            prepared = data if isinstance(data, IngestOutcome) else self._prepare(data, name, form_meta, pending, progress)
            if isinstance(prepared, IngestOutcome):
                emit([i], [prepared])
                continue
            pending.append(prepared)
            pending_at.append(i)
            if sum(len(p.chunks) for p in pending) >= self._embed_batch:
                emit(pending_at, self._commit(pending, progress))
                pending, pending_at = [], []
        if pending:
            emit(pending_at, self._commit(pending, progress))
        return [outcomes[i] for i in sorted(outcomes)]

    def _prepare(
        self, data: bytes, file_name: str, form_meta: DocumentMeta, pending: list[_Prepared], progress: Progress
    ) -> _Prepared | IngestOutcome:
        """Parse and chunk one file (no lock held), or say why it is not added."""
        started = time.perf_counter()
        try:
            name = safe_file_name(file_name)
            content_hash = hashlib.sha256(data).hexdigest()
            existing = self.catalog.by_hash(content_hash)
            if existing is not None and existing.status != "ingesting":
                return _duplicate(name, existing)
            twin = next((p for p in pending if p.record.content_hash == content_hash), None)
            if twin is not None:
                return IngestOutcome(
                    file_name=name, status="duplicate", doc_id=twin.record.doc_id, title=twin.record.title,
                    message=f"{name!r} is the same file as {twin.record.file_name!r} in this upload; it is added once.",
                )
            progress(0.02, f"Reading {name}")
            parsed = parse_file(data, name, self._settings)
            doc_id = content_hash[:16]
            meta = parsed.meta.merged_with(form_meta)
            chunks = chunk_document(parsed, doc_id, self._settings)
            if not chunks:
                raise IngestError("no_text", f"{name!r} contains no text that can be indexed.")
        except IngestError as exc:
            return IngestOutcome(file_name=file_name, status="failed", problem=exc.problem, message=str(exc),
                                 seconds=round(time.perf_counter() - started, 3))
        except CQAError as exc:
            return IngestOutcome(file_name=file_name, status="failed", problem="store", message=str(exc))
        record = GuidelineRecord(
            doc_id=doc_id, content_hash=content_hash, title=meta.title or Path(name).stem, issuer=meta.issuer,
            version=meta.version, effective_date=meta.effective_date, specialty=meta.specialty, file_name=name,
            format=parsed.format, stored_path=str(self._uploads / doc_id / name), size_bytes=len(data),
            status="ingesting", chunks=0, pages=parsed.pages, warnings=parsed.warnings, ingested_at=utc_now(),
        )
        return _Prepared(record=record, chunks=chunks, data=data, started=started)

    def _commit(self, batch: list[_Prepared], progress: Progress) -> list[IngestOutcome]:
        """Store a batch: catalog rows `ingesting`, one embedding pass, inserts, then all made
        searchable in one transaction. A failure removes the whole batch and reports every file.
        Returns one outcome per file, in the batch's order."""
        done: dict[int, IngestOutcome] = {}
        try:
            with self._lock.hold():
                fresh: dict[int, _Prepared] = {}
                for i, p in enumerate(batch):
                    existing = self.catalog.by_hash(p.record.content_hash)
                    if existing is not None and existing.status != "ingesting":  # added meanwhile by another process
                        done[i] = _duplicate(p.record.file_name, existing)
                        continue
                    if existing is not None:  # leftover of a crashed run: start clean
                        self._undo([existing])
                    fresh[i] = p
                for p in fresh.values():
                    self._save_original(p.record, p.data)
                self.catalog.insert_many([p.record for p in fresh.values()])
                failure: Exception | None = None
                try:
                    self._embed_and_store(list(fresh.values()), progress)
                except BaseException as exc:
                    self._undo([p.record for p in fresh.values()])
                    if not isinstance(exc, Exception):
                        raise
                    failure = exc
                else:
                    with self.catalog.transaction():
                        for i, p in fresh.items():
                            older, newer = self._versions(p.record)
                            self.catalog.activate(p.record.doc_id, len(p.chunks), supersede=[o.doc_id for o in older], superseded_by=newer)
                            done[i] = self._success(p, older, newer)
                for i, p in enumerate(batch):
                    if i not in done and failure is not None:
                        done[i] = _store_failure(p, failure)
        except CQAError as exc:  # e.g. the writer lock could not be had: nothing of this batch was written
            for i, p in enumerate(batch):
                done.setdefault(i, IngestOutcome(file_name=p.record.file_name, status="failed", problem="store", message=str(exc)))
        return [done[i] for i in range(len(batch))]

    def _embed_and_store(self, batch: list[_Prepared], progress: Progress) -> None:
        if not batch:
            return
        stored = [to_stored(c, p.record.model_dump()) for p in batch for c in p.chunks]
        label = batch[0].record.file_name if len(batch) == 1 else f"{len(batch)} files"
        for start in range(0, len(stored), self._embed_batch):
            part = stored[start : start + self._embed_batch]
            self.store.add(part, self._embed_sorted([index_text(c.title, c.section, c.text) for c in part]))
            done = start + len(part)
            progress(0.05 + 0.9 * done / len(stored), f"Indexed {done}/{len(stored)} passages of {label}")

    def _embed_sorted(self, texts: list[str]) -> list[list[float]]:
        """Embed in order of length: the encoder pads each of its mini-batches to its longest text,
        so neighbours of similar length waste no work (a third of the time on mixed passages)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = self._embedder.embed([texts[i] for i in order])
        out: list[list[float]] = [[] for _ in texts]
        for i, vec in zip(order, vectors, strict=True):
            out[i] = vec
        return out

    def _versions(self, record: GuidelineRecord) -> tuple[list[GuidelineRecord], str | None]:
        """Older active versions to retire, or the newer version that already supersedes this one."""
        others = self.catalog.same_guideline(record.title, record.issuer, exclude=record.doc_id)
        newer = [o for o in others if o.effective_date and record.effective_date and o.effective_date > record.effective_date]
        if newer:
            return [], newer[0].doc_id
        return others, None

    def _success(self, prepared: _Prepared, older: list[GuidelineRecord], newer: str | None) -> IngestOutcome:
        record, n_chunks = prepared.record, len(prepared.chunks)
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
            warnings=record.warnings, message=message, seconds=round(time.perf_counter() - prepared.started, 3),
        )

    def _save_original(self, record: GuidelineRecord, data: bytes) -> None:
        path = Path(record.stored_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def _undo(self, records: list[GuidelineRecord]) -> None:
        self.store.delete_documents([r.doc_id for r in records])
        for record in records:
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
        """Re-chunk and re-embed every stored original (after changing chunk settings), in batches."""
        records = self.catalog.records()
        outcomes: list[IngestOutcome] = []
        with self._lock.hold():
            self.store.clear()
            batch: list[_Prepared] = []
            for i, record in enumerate(records):
                progress(i / max(len(records), 1), f"Re-indexing {record.file_name}")
                prepared = self._rechunk(record)
                if isinstance(prepared, IngestOutcome):
                    outcomes.append(prepared)
                    continue
                batch.append(prepared)
                if sum(len(p.chunks) for p in batch) >= self._embed_batch:
                    outcomes += self._restore(batch)
                    batch = []
            outcomes += self._restore(batch)
            self.store.flush()
        progress(1.0, f"Re-indexed {len(records)} documents.")
        return outcomes

    def _rechunk(self, record: GuidelineRecord) -> _Prepared | IngestOutcome:
        try:
            data = Path(record.stored_path).read_bytes()
            parsed = parse_file(data, record.file_name, self._settings)
            chunks = chunk_document(parsed, record.doc_id, self._settings)
        except (OSError, CQAError) as exc:
            return IngestOutcome(file_name=record.file_name, status="failed", doc_id=record.doc_id, problem="reindex", message=f"Re-indexing {record.file_name!r} failed: {exc}")
        return _Prepared(record=record, chunks=chunks, data=b"", started=time.perf_counter())

    def _restore(self, batch: list[_Prepared]) -> list[IngestOutcome]:
        if not batch:
            return []
        try:
            self._embed_and_store(batch, _noop)
        except CQAError as exc:
            return [IngestOutcome(file_name=p.record.file_name, status="failed", doc_id=p.record.doc_id, problem="reindex", message=f"Re-indexing {p.record.file_name!r} failed: {exc}") for p in batch]
        outcomes = []
        with self.catalog.transaction():
            for p in batch:
                self.catalog.set_status(p.record.doc_id, p.record.status, p.record.superseded_by, chunks=len(p.chunks))
                outcomes.append(IngestOutcome(file_name=p.record.file_name, status="ingested", doc_id=p.record.doc_id, title=p.record.title, chunks=len(p.chunks), message=f"Re-indexed {p.record.file_name!r}: {len(p.chunks)} passages."))
        return outcomes

    def _require(self, doc_id: str) -> GuidelineRecord:
        record = self.catalog.get(doc_id)
        if record is None:
            raise CQAError(f"No document with id {doc_id!r} in the library.")
        return record


def _read(path: Path) -> Source:
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        return path.name, IngestOutcome(
            file_name=path.name, status="failed", problem="unreadable", message=f"Cannot read {str(path)!r}: {exc.strerror}."
        )


def _duplicate(name: str, existing: GuidelineRecord) -> IngestOutcome:
    return IngestOutcome(
        file_name=name, status="duplicate", doc_id=existing.doc_id, title=existing.title,
        chunks=existing.chunks, pages=existing.pages,
        message=f"{name!r} is already in the library as {existing.title!r} ({existing.status}); nothing changed.",
    )


def _store_failure(prepared: _Prepared, exc: Exception) -> IngestOutcome:
    name = prepared.record.file_name
    return IngestOutcome(
        file_name=name, status="failed", problem="store",
        message=f"Storing {name!r} failed and nothing was added ({type(exc).__name__}: {exc}).",
    )
