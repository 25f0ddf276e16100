"""Chunk storage and hybrid search: Milvus (Lite or server) through LlamaIndex, plus an in-memory fake.

Both implement `ChunkStore`; the library and retrieval services never see which one they use.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.errors import StoreLockedError, StoreUnavailableError
from core.library.embedding import cosine
from core.schema import Chunk

_TERM = re.compile(r"[a-z0-9]+")


class StoredChunk(BaseModel):
    """A chunk as it comes back from the store, with its document's citation fields."""

    chunk_id: str
    doc_id: str
    title: str
    file_name: str
    issuer: str | None = None
    version: str | None = None
    specialty: str | None = None
    effective_date: str | None = None
    page: int | None = None
    section: list[str] = Field(default_factory=list)
    kind: str = "text"
    char_start: int = 0
    char_end: int = 0
    text: str


class SearchHit(BaseModel):
    chunk: StoredChunk
    score: float
    vector: list[float] | None = Field(default=None, description="The stored embedding, when the store returns it.")


class ChunkFilter(BaseModel):
    """Restricts a search without growing with the library (see `Catalog.search_filter`)."""

    exclude_doc_ids: list[str] = Field(
        default_factory=list, description="Documents not to search: versions being written, superseded ones."
    )
    only_doc_ids: list[str] | None = Field(default=None, description="A caller's own selection of documents.")
    issuer: str | None = None
    specialty: str | None = None


def index_text(title: str, section: list[str], text: str) -> str:
    """What BM25 and the dense embedding see: the passage with its title and headings."""
    heading = " › ".join([title, *section])
    return f"{heading}\n\n{text}"


def to_stored(chunk: Chunk, doc_meta: dict[str, Any]) -> StoredChunk:
    return StoredChunk(
        chunk_id=chunk.chunk_id,
        doc_id=chunk.doc_id,
        title=doc_meta["title"],
        file_name=doc_meta["file_name"],
        issuer=doc_meta.get("issuer"),
        version=doc_meta.get("version"),
        specialty=doc_meta.get("specialty"),
        effective_date=doc_meta.get("effective_date"),
        page=chunk.page,
        section=chunk.section,
        kind=chunk.kind,
        char_start=chunk.char_start,
        char_end=chunk.char_end,
        text=chunk.text,
    )


class ChunkStore(ABC):
    """Where chunks and their vectors live."""

    @abstractmethod
    def add(self, chunks: list[StoredChunk], vectors: list[list[float]]) -> None:
        """Store chunks (all of one document); raises on failure."""

    @abstractmethod
    def delete_documents(self, doc_ids: list[str]) -> None: ...

    @abstractmethod
    def document_ids(self) -> set[str]:
        """Every document that has chunks in the store (however many)."""

    def delete_all_except(self, doc_ids: list[str]) -> int:
        """Remove chunks of documents not in `doc_ids` (recovery after a crash); returns count."""
        stale = sorted(self.document_ids() - set(doc_ids))
        if not stale:
            return 0
        before = self.count()
        self.delete_documents(stale)
        return before - self.count()

    @abstractmethod
    def search(self, query: str, vector: list[float], k: int, where: ChunkFilter) -> list[SearchHit]:
        """Hybrid search (dense + BM25, fused); best first."""

    @abstractmethod
    def chunks_of(self, doc_id: str) -> list[StoredChunk]: ...

    @abstractmethod
    def chunk(self, chunk_id: str) -> StoredChunk | None:
        """One chunk by id (a citation's passage), or None if it is gone."""

    @abstractmethod
    def count(self, doc_id: str | None = None) -> int: ...

    @abstractmethod
    def clear(self) -> None: ...

    def flush(self) -> None:
        """Make freshly added chunks fast to search (Milvus Lite: seal them into indexed segments)."""
        return None

    def close(self) -> None:
        return None


class InMemoryStore(ChunkStore):
    """Cosine + term-overlap ranks fused with RRF; thread-safe. For unit tests and fakes."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[StoredChunk, list[float]]] = {}
        self._lock = threading.Lock()

    def add(self, chunks: list[StoredChunk], vectors: list[list[float]]) -> None:
        with self._lock:
            for chunk, vec in zip(chunks, vectors, strict=True):
                self._rows[chunk.chunk_id] = (chunk, vec)

    def delete_documents(self, doc_ids: list[str]) -> None:
        with self._lock:
            gone = set(doc_ids)
            for key in [k for k, (c, _) in self._rows.items() if c.doc_id in gone]:
                del self._rows[key]

    def document_ids(self) -> set[str]:
        with self._lock:
            return {c.doc_id for c, _ in self._rows.values()}

    def search(self, query: str, vector: list[float], k: int, where: ChunkFilter) -> list[SearchHit]:
        with self._lock:
            rows = [(c, v) for c, v in self._rows.values() if _matches(c, where)]
        q_terms = Counter(_TERM.findall(query.lower()))
        dense = sorted(rows, key=lambda r: -cosine(vector, r[1]))
        sparse = sorted(rows, key=lambda r: -_overlap(q_terms, index_text(r[0].title, r[0].section, r[0].text)))
        fused: dict[str, float] = {}
        for ranking in (dense[:k], sparse[:k]):
            for rank, (chunk, _) in enumerate(ranking):
                fused[chunk.chunk_id] = fused.get(chunk.chunk_id, 0.0) + 1.0 / (60 + rank + 1)
        by_id = {c.chunk_id: (c, v) for c, v in rows}
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        return [SearchHit(chunk=by_id[cid][0], score=score, vector=by_id[cid][1]) for cid, score in best]

    def chunks_of(self, doc_id: str) -> list[StoredChunk]:
        with self._lock:
            found = [c for c, _ in self._rows.values() if c.doc_id == doc_id]
        return sorted(found, key=lambda c: c.chunk_id)

    def chunk(self, chunk_id: str) -> StoredChunk | None:
        with self._lock:
            row = self._rows.get(chunk_id)
        return row[0] if row else None

    def count(self, doc_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for c, _ in self._rows.values() if doc_id is None or c.doc_id == doc_id)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


def _matches(chunk: StoredChunk, where: ChunkFilter) -> bool:
    return (
        chunk.doc_id not in where.exclude_doc_ids
        and (where.only_doc_ids is None or chunk.doc_id in where.only_doc_ids)
        and (where.issuer is None or chunk.issuer == where.issuer)
        and (where.specialty is None or chunk.specialty == where.specialty)
    )


def _overlap(q_terms: Counter[str], text: str) -> float:
    terms = Counter(_TERM.findall(text.lower()))
    return sum(math.log1p(terms[t]) for t in q_terms if t in terms)


_SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
_IDS_PER_DELETE = 1000
_PAGE_ROWS = 1000
# Everything a chunk needs except the vectors (which nothing reads back).
_ROW_FIELDS = ["id", "doc_id", "passage", "section", "title", "file_name", "issuer", "version",
               "specialty", "effective_date", "page", "kind", "char_start", "char_end"]

_META_FIELDS = (
    "title", "file_name", "issuer", "version", "specialty", "effective_date", "page", "kind", "char_start", "char_end",
)


def _quote(value: str) -> str:
    return json.dumps(value)


class MilvusChunkStore(ChunkStore):
    """Milvus Lite (a local folder) or a Milvus server, via LlamaIndex's MilvusVectorStore.

    Dense COSINE + Milvus' built-in BM25 on the same text, fused with RRF. Writes are serialized
    here; Milvus Lite additionally allows only one process per database folder.
    """

    def __init__(
        self,
        uri: str,
        collection: str,
        dim: int,
        token: str | None = None,
        ranker: str = "RRFRanker",
        batch_size: int = 1000,
        flush_rows: int = 500,
    ) -> None:
        self._uri = uri
        self._is_local = not uri.startswith(_SERVER_SCHEMES)
        self._collection = collection
        self._dim = dim
        self._ranker = ranker
        self._batch_size = batch_size
        self._flush_rows = flush_rows
        self._unflushed = 0
        self._write_lock = threading.Lock()
        self._kwargs: dict[str, Any] = dict(
            uri=uri, token=token or "", collection_name=collection, dim=dim, ranker=ranker, batch_size=batch_size
        )
        self._store = self._open(**self._kwargs)

    @staticmethod
    def _open(
        uri: str, token: str, collection_name: str, dim: int, ranker: str, batch_size: int, overwrite: bool = False
    ) -> Any:
        try:
            from llama_index.vector_stores.milvus import MilvusVectorStore
            from llama_index.vector_stores.milvus.utils import BM25BuiltInFunction
        except ImportError as exc:  # pragma: no cover - install problem
            raise StoreUnavailableError(
                "llama-index-vector-stores-milvus is not installed; run `make run` to create the environment."
            ) from exc
        if not uri.startswith(_SERVER_SCHEMES):
            _check_not_held(uri)
        try:
            store = MilvusVectorStore(
                uri=uri,
                token=token,
                collection_name=collection_name,
                dim=dim,
                overwrite=overwrite,
                similarity_metric="COSINE",
                index_config={"index_type": "HNSW", "M": 16, "efConstruction": 64},  # built per segment, and again on each merge
                search_config={"ef": 64},
                enable_sparse=True,
                sparse_embedding_function=BM25BuiltInFunction(
                    input_field_names="text", output_field_names="sparse_embedding"
                ),
                hybrid_ranker=ranker,
                batch_size=batch_size,
                consistency_level="Strong",
                use_async_client=False,
            )
            # A reopened collection starts "released" (see STACK.md); searching it would fail.
            store.client.load_collection(collection_name)
        except Exception as exc:
            raise _explain_open_failure(uri, exc) from exc
        return store

    @property
    def client(self) -> Any:
        return self._store.client

    def add(self, chunks: list[StoredChunk], vectors: list[list[float]]) -> None:
        """Rows in the schema LlamaIndex's `MilvusVectorStore` created (id, doc_id, text, embedding;
        metadata as dynamic fields), written directly: without its `_node_content` copy of every
        passage, rows are half the size and Milvus Lite reads them faster."""
        rows = []
        for chunk, vec in zip(chunks, vectors, strict=True):
            row: dict[str, Any] = {f: getattr(chunk, f) for f in _META_FIELDS}
            row.update(id=chunk.chunk_id, doc_id=chunk.doc_id, text=index_text(chunk.title, chunk.section, chunk.text),
                       embedding=vec, section=json.dumps(chunk.section), passage=chunk.text)
            rows.append(row)
        with self._write_lock:
            for start in range(0, len(rows), self._batch_size):
                self.client.insert(self._collection, rows[start : start + self._batch_size])
            self._unflushed += len(rows)
            if self._unflushed >= self._flush_rows:
                self._flush_locked()

    def delete_documents(self, doc_ids: list[str]) -> None:
        with self._write_lock:
            for start in range(0, len(doc_ids), _IDS_PER_DELETE):
                ids = ", ".join(_quote(d) for d in doc_ids[start : start + _IDS_PER_DELETE])
                self.client.delete(self._collection, filter=f"doc_id in [{ids}]")

    def document_ids(self) -> set[str]:
        return {row["doc_id"] for row in self._rows("", ["doc_id"])}

    def search(self, query: str, vector: list[float], k: int, where: ChunkFilter) -> list[SearchHit]:
        """The hybrid search LlamaIndex's `MilvusVectorStore` makes (dense COSINE/HNSW + BM25, fused),
        called directly so the hits keep their stored vectors (the retriever's cosine needs no re-embedding)."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        if where.only_doc_ids is not None and not where.only_doc_ids:
            return []
        expr = self._filter_expr(where)
        requests = [
            AnnSearchRequest(data=[vector], anns_field="embedding", param={"metric_type": "COSINE", "params": {"ef": 64}},
                             limit=k, expr=expr),
            AnnSearchRequest(data=[query], anns_field="sparse_embedding", param={"metric_type": "BM25"}, limit=k, expr=expr),
        ]
        ranker = RRFRanker(60) if self._ranker == "RRFRanker" else WeightedRanker(1.0, 1.0)
        result = self.client.hybrid_search(
            self._collection, requests, ranker=ranker, limit=k, output_fields=[*_ROW_FIELDS, "embedding"]
        )
        hits = []
        for hit in result[0] if result else []:
            row = hit["entity"]
            chunk = self._from_metadata(str(hit["id"]), row.get("doc_id"), _row_metadata(row))
            hits.append(SearchHit(chunk=chunk, score=hit["distance"], vector=[float(x) for x in row["embedding"]]))
        return hits

    @staticmethod
    def _filter_expr(where: ChunkFilter) -> str:
        """Milvus Lite evaluates an id list row by row, so only short lists are ever sent: the few
        documents left out, or a caller's own selection. The usual query has no filter at all."""
        parts = []
        if where.only_doc_ids is not None:
            parts.append(f"doc_id in [{', '.join(_quote(d) for d in where.only_doc_ids)}]")
        if where.exclude_doc_ids:
            parts.append(f"doc_id not in [{', '.join(_quote(d) for d in where.exclude_doc_ids)}]")
        if where.issuer:
            parts.append(f"issuer == {_quote(where.issuer)}")
        if where.specialty:
            parts.append(f"specialty == {_quote(where.specialty)}")
        return " and ".join(parts)

    @staticmethod
    def _from_metadata(chunk_id: str, doc_id: str | None, meta: dict[str, Any]) -> StoredChunk:
        return StoredChunk(
            chunk_id=chunk_id,
            doc_id=doc_id or "",
            title=meta.get("title") or "",
            file_name=meta.get("file_name") or "",
            issuer=meta.get("issuer"),
            version=meta.get("version"),
            specialty=meta.get("specialty"),
            effective_date=meta.get("effective_date"),
            page=meta.get("page"),
            section=json.loads(meta.get("section") or "[]"),
            kind=meta.get("kind") or "text",
            char_start=meta.get("char_start") or 0,
            char_end=meta.get("char_end") or 0,
            text=meta.get("passage") or "",
        )

    def chunks_of(self, doc_id: str) -> list[StoredChunk]:
        rows = self._rows(f"doc_id == {_quote(doc_id)}", _ROW_FIELDS)
        chunks = [self._from_metadata(r["id"], r.get("doc_id"), _row_metadata(r)) for r in rows]
        return sorted(chunks, key=lambda c: c.chunk_id)

    def chunk(self, chunk_id: str) -> StoredChunk | None:
        rows = self.client.query(self._collection, filter=f"id == {_quote(chunk_id)}", output_fields=_ROW_FIELDS, limit=1)
        return self._from_metadata(rows[0]["id"], rows[0].get("doc_id"), _row_metadata(rows[0])) if rows else None

    def count(self, doc_id: str | None = None) -> int:
        expr = f"doc_id == {_quote(doc_id)}" if doc_id else ""
        if expr and self._is_local:  # Lite answers count(*) with a filter by reading whole rows; ids are cheaper
            return sum(1 for _ in self._rows(expr, ["id"]))
        rows = self.client.query(self._collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _rows(self, expr: str, fields: list[str]) -> Iterator[dict[str, Any]]:
        """Every matching row. A Milvus server caps a plain query at 16,384 rows, so it is read page
        by page; Milvus Lite has no cap and re-scans the collection for every page, so it is read in one go."""
        if self._is_local:
            yield from self.client.query(self._collection, filter=expr or 'id != ""', output_fields=fields)
            return
        pages = self.client.query_iterator(self._collection, batch_size=_PAGE_ROWS, filter=expr, output_fields=fields)
        try:
            while page := pages.next():
                yield from page
        finally:
            pages.close()

    def flush(self) -> None:
        """Seal what was written (see `_flush_locked`), then one search builds the new segments'
        BM25 indexes now rather than in the first user's question."""
        with self._write_lock:
            self._flush_locked()
        self.warm_up()

    def _flush_locked(self) -> None:
        """Seal the rows written since the last flush into a segment. Milvus Lite keeps new rows in
        a memtable that every search scans in Python (about 0.2 ms a row, and it rebuilds a BM25
        index over them each time); a sealed segment gets an HNSW index (built in Milvus Lite's
        background thread) and a BM25 index cached after its first search."""
        self.client.flush(self._collection)
        self._unflushed = 0

    def warm_up(self) -> None:
        """One throwaway hybrid search: Milvus Lite builds each segment's BM25 index on first use."""
        if self._dim:
            self.search("warm up", [1.0] + [0.0] * (self._dim - 1), 1, ChunkFilter())

    def clear(self) -> None:
        with self._write_lock:
            self._store = self._open(**self._kwargs, overwrite=True)
            self._unflushed = 0

    def close(self) -> None:
        try:
            self.client.close()
            if self._is_local:
                _release_local(self._uri)
        except Exception:  # noqa: BLE001 - closing must never mask the real outcome
            pass


def _row_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """Query rows hold metadata either as top-level dynamic fields or inside `_node_content`."""
    meta = {k: row.get(k) for k in (*_META_FIELDS, "section", "passage")}
    if meta.get("passage") is None and row.get("_node_content"):
        meta.update(json.loads(row["_node_content"]).get("metadata", {}))
    return meta


def _held_by_this_process(db_path: str) -> bool:
    from milvus_lite.server_manager import server_manager_instance

    return os.path.abspath(db_path) in server_manager_instance._servers


def _release_local(db_path: str) -> None:
    """Stop this process's embedded Milvus Lite server so the folder's lock is freed on close."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(db_path)


def _check_not_held(db_path: str) -> None:
    """Milvus Lite allows one process per database folder and, when another holds it, fails with
    a bare "Open local milvus failed" after logging a traceback. Probe its lock file first so the
    user gets a precise message and no traceback."""
    lock_file = Path(db_path) / "LOCK"  # milvus_lite.db.LOCK_FILENAME
    if not lock_file.exists() or _held_by_this_process(db_path):
        return
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise StoreLockedError(
            f"The guideline database {db_path!r} is in use by another process (usually the running app). "
            "Stop that process, or run a Milvus server (`milvus-lite server`) and set CQA_MILVUS_URI so "
            "several processes can share it."
        ) from None
    finally:
        os.close(fd)


def _explain_open_failure(uri: str, exc: Exception) -> Exception:
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    # Milvus Lite reports a held database only as "Open local milvus failed" (no detail);
    # a missing folder says "not exists", so that case is told apart first.
    if "not exists" not in lowered and ("lock" in lowered or "open local milvus failed" in lowered):
        return StoreLockedError(
            f"The guideline database {uri!r} is in use by another process (usually the running app). "
            "Stop that process, or run a Milvus server (`milvus-lite server`) and set CQA_MILVUS_URI so "
            f"several processes can share it. ({text})"
        )
    if uri.startswith(("http://", "https://", "tcp://")):
        return StoreUnavailableError(f"Cannot reach the Milvus server at {uri!r}. Is it running? ({text})")
    return StoreUnavailableError(f"Cannot open the guideline database {uri!r}. ({text})")


def local_uri(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)
