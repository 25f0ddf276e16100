"""Milvus Lite past Milvus' 16,384-row query limit, and filters that carry no list of active documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.library.embedding import HashingEmbedder
from core.library.store import ChunkFilter, MilvusChunkStore, StoredChunk
from core.services import build_services
from core.settings import Settings
from tests.helpers import free_port, milvus_server

pytestmark = pytest.mark.integration

BIG = 16_400  # one document alone is past the 16,384 rows a plain Milvus query returns
SMALL = ("small-a", "small-b", "small-c")
WORDS = "dose blood pressure asthma sepsis lactate troponin stroke insulin glucose fever oxygen".split()


def _chunk(doc_id: str, i: int) -> StoredChunk:
    text = f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} {i}"
    return StoredChunk(chunk_id=f"{doc_id}-{i:05d}", doc_id=doc_id, title=doc_id, file_name=f"{doc_id}.md", text=text)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusChunkStore]:
    embedder = HashingEmbedder()
    # One flush at the end: this test is about sizes past 16,384, not about segments.
    store = MilvusChunkStore(str(tmp_path_factory.mktemp("scale") / "milvus.db"), "scale", embedder.dim, flush_rows=10**9)
    plan = [("big", BIG)] + [(d, 100) for d in SMALL]
    for doc_id, n in plan:
        for start in range(0, n, 4000):
            chunks = [_chunk(doc_id, i) for i in range(start, min(start + 4000, n))]
            store.add(chunks, embedder.embed([c.text for c in chunks]))
    store.flush()
    yield store
    store.close()


def test_counts_and_listings_past_16384_chunks(big_store: MilvusChunkStore) -> None:
    assert big_store.count() == BIG + 300
    assert big_store.count("big") == BIG
    assert big_store.document_ids() == {"big", *SMALL}
    chunks = big_store.chunks_of("small-b")
    assert [c.chunk_id for c in chunks] == [f"small-b-{i:05d}" for i in range(100)]
    last = big_store.chunk(f"big-{BIG - 1:05d}")
    assert last is not None and last.doc_id == "big" and last.text.endswith(str(BIG - 1))


def test_search_filters_by_exclusion_and_selection(big_store: MilvusChunkStore) -> None:
    vector = HashingEmbedder().embed(["sepsis lactate passage"])[0]
    everything = big_store.search("sepsis lactate passage", vector, 10, ChunkFilter())
    assert len(everything) == 10
    without_big = big_store.search("sepsis lactate passage", vector, 10, ChunkFilter(exclude_doc_ids=["big"]))
    assert without_big and {h.chunk.doc_id for h in without_big} <= set(SMALL)
    only_b = big_store.search("sepsis lactate passage", vector, 10, ChunkFilter(only_doc_ids=["small-b"]))
    assert only_b and {h.chunk.doc_id for h in only_b} == {"small-b"}


def test_deletes_past_16384_chunks(big_store: MilvusChunkStore) -> None:
    # Last in the module: it empties the big document.
    assert big_store.delete_all_except(["big", "small-a", "small-b"]) == 100
    big_store.delete_documents(["big"])
    assert big_store.count() == 200 and big_store.count("big") == 0
    assert big_store.document_ids() == {"small-a", "small-b"}


def _md(title: str, version: str, effective: str, body: str) -> bytes:
    return (
        f"---\ntitle: {title}\nissuer: Test Trust\nversion: '{version}'\neffective_date: {effective}\n---\n"
        f"# {title}\n\n## 1. Treatment\n\n{body}\n"
    ).encode()


def test_supersede_and_delete_are_honoured_without_an_id_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    original = MilvusChunkStore._filter_expr

    def spy(where: ChunkFilter) -> str:
        sent.append(original(where))
        return sent[-1]

    monkeypatch.setattr(MilvusChunkStore, "_filter_expr", staticmethod(spy))
    svc = build_services(Settings(data_dir=tmp_path / "var"), embedder=HashingEmbedder())
    try:
        lib = svc.library
        others = lib.ingest_uploads([(f"g{i}.md", _md(f"Topic {i}", "1", "2025-01-01", f"Zebra{i} care.")) for i in range(20)])
        old = lib.ingest_bytes(_md("Sepsis", "1", "2024-01-01", "Old advice about giraffes and lactate."), "sepsis-v1.md")
        new = lib.ingest_bytes(_md("Sepsis", "2", "2026-01-01", "New advice about lactate."), "sepsis-v2.md")
        assert new.superseded == [old.doc_id]
        found = {p.doc_id for p in svc.retriever.retrieve("giraffes lactate advice", k=30)}
        assert new.doc_id in found and old.doc_id not in found
        assert sent[-1] == f'doc_id not in ["{old.doc_id}"]'  # the 21 active documents are not named
        assert old.doc_id in {p.doc_id for p in svc.retriever.retrieve("giraffes", k=30, include_superseded=True)}
        assert sent[-1] == ""
        lib.delete(new.doc_id or "")
        lib.reactivate(old.doc_id or "")
        found = {p.doc_id for p in svc.retriever.retrieve("lactate advice", k=30)}
        assert old.doc_id in found and new.doc_id not in found and sent[-1] == ""
        assert svc.store.count() == sum(o.chunks for o in others) + old.chunks
    finally:
        svc.close()


def test_migration_copies_a_lite_library_into_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.cli import migrate_store
    from core.library import store

    monkeypatch.setattr(store, "_PAGE_ROWS", 7)  # the server is read page by page: several pages here
    embedder = HashingEmbedder()
    lite = tmp_path / "milvus.db"
    source = MilvusChunkStore(str(lite), "guidelines", embedder.dim)
    chunks = [_chunk(f"doc-{i % 4}", i) for i in range(30)]
    source.add(chunks, embedder.embed([c.text for c in chunks]))
    source.close()
    port = free_port()
    with milvus_server(tmp_path / "server", port):
        uri = f"http://127.0.0.1:{port}"
        assert migrate_store.main(["--from", str(lite), "--to", uri]) == 0
        assert migrate_store.main(["--from", str(lite), "--to", uri]) == 3  # refuses to copy twice
        target = MilvusChunkStore(uri, "guidelines", embedder.dim)
        try:
            assert target.count() == 30 and target.count("doc-1") == 8
            assert [c.chunk_id for c in target.chunks_of("doc-1")] == sorted(c.chunk_id for c in chunks if c.doc_id == "doc-1")
            vector = embedder.embed([chunks[9].text])[0]
            hits = target.search(chunks[9].text, vector, 3, ChunkFilter())
            assert hits[0].chunk == chunks[9]
        finally:
            target.close()
