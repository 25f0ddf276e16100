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
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.embedding import cosine
from core.errors import StoreLockedError, StoreUnavailableError
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


class ChunkFilter(BaseModel):
    """Restricts a search. `doc_ids` is always set by the caller (the searchable documents)."""

    doc_ids: list[str]
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
    def delete_all_except(self, doc_ids: list[str]) -> int:
        """Remove chunks of documents not in `doc_ids` (recovery after a crash); returns count."""

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
            for key in [k for k, (c, _) in self._rows.items() if c.doc_id in doc_ids]:
                del self._rows[key]

    def delete_all_except(self, doc_ids: list[str]) -> int:
        with self._lock:
            gone = [k for k, (c, _) in self._rows.items() if c.doc_id not in doc_ids]
            for key in gone:
                del self._rows[key]
            return len(gone)

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
        by_id = {c.chunk_id: c for c, _ in rows}
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        return [SearchHit(chunk=by_id[cid], score=score) for cid, score in best]

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
        chunk.doc_id in where.doc_ids
        and (where.issuer is None or chunk.issuer == where.issuer)
        and (where.specialty is None or chunk.specialty == where.specialty)
    )


def _overlap(q_terms: Counter[str], text: str) -> float:
    terms = Counter(_TERM.findall(text.lower()))
    return sum(math.log1p(terms[t]) for t in q_terms if t in terms)


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
        batch_size: int = 64,
    ) -> None:
        self._uri = uri
        self._collection = collection
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
        if not uri.startswith(("http://", "https://", "tcp://", "unix:")):
            _check_not_held(uri)
        try:
            store = MilvusVectorStore(
                uri=uri,
                token=token,
                collection_name=collection_name,
                dim=dim,
                overwrite=overwrite,
                similarity_metric="COSINE",
                index_config={"index_type": "HNSW", "M": 16, "efConstruction": 200},
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
        from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

        nodes = []
        for chunk, vec in zip(chunks, vectors, strict=True):
            metadata = {f: getattr(chunk, f) for f in _META_FIELDS}
            metadata["section"] = json.dumps(chunk.section)
            metadata["passage"] = chunk.text
            node = TextNode(
                id_=chunk.chunk_id,
                text=index_text(chunk.title, chunk.section, chunk.text),
                metadata=metadata,
                embedding=vec,
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)},
            )
            nodes.append(node)
        with self._write_lock:
            self._store.add(nodes)

    def delete_documents(self, doc_ids: list[str]) -> None:
        if not doc_ids:
            return
        ids = ", ".join(_quote(d) for d in doc_ids)
        with self._write_lock:
            self.client.delete(self._collection, filter=f"doc_id in [{ids}]")

    def delete_all_except(self, doc_ids: list[str]) -> int:
        ids = ", ".join(_quote(d) for d in doc_ids)
        expr = f"doc_id not in [{ids}]" if doc_ids else 'doc_id != ""'
        with self._write_lock:
            stale = self.client.query(self._collection, filter=expr, output_fields=["id"], limit=16384)
            if stale:
                self.client.delete(self._collection, filter=expr)
        return len(stale)

    def search(self, query: str, vector: list[float], k: int, where: ChunkFilter) -> list[SearchHit]:
        from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode

        if not where.doc_ids:
            return []
        result = self._store.query(
            VectorStoreQuery(
                query_embedding=vector,
                query_str=query,
                similarity_top_k=k,
                mode=VectorStoreQueryMode.HYBRID,
            ),
            string_expr=self._filter_expr(where),
        )
        hits = []
        for node, score in zip(result.nodes, result.similarities, strict=True):
            hits.append(SearchHit(chunk=self._from_metadata(node.node_id, node.ref_doc_id, node.metadata), score=score))
        return hits

    @staticmethod
    def _filter_expr(where: ChunkFilter) -> str:
        parts = [f"doc_id in [{', '.join(_quote(d) for d in where.doc_ids)}]"]
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
        rows = self.client.query(
            self._collection, filter=f"doc_id == {_quote(doc_id)}", output_fields=["*"], limit=16384
        )
        chunks = [self._from_metadata(r["id"], r.get("doc_id"), _row_metadata(r)) for r in rows]
        return sorted(chunks, key=lambda c: c.chunk_id)

    def chunk(self, chunk_id: str) -> StoredChunk | None:
        rows = self.client.query(self._collection, filter=f"id == {_quote(chunk_id)}", output_fields=["*"], limit=1)
        return self._from_metadata(rows[0]["id"], rows[0].get("doc_id"), _row_metadata(rows[0])) if rows else None

    def count(self, doc_id: str | None = None) -> int:
        expr = f"doc_id == {_quote(doc_id)}" if doc_id else 'doc_id != ""'
        rows = self.client.query(self._collection, filter=expr, output_fields=["id"], limit=16384)
        return len(rows)

    def clear(self) -> None:
        with self._write_lock:
            self._store = self._open(**self._kwargs, overwrite=True)

    def close(self) -> None:
        try:
            self.client.close()
            if not self._uri.startswith(("http://", "https://", "tcp://", "unix:")):
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
