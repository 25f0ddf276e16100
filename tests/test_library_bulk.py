"""Bulk ingestion with fakes: batching across files, order, duplicates, versions, interruption and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.library.catalog import GuidelineRecord, utc_now
from core.library.embedding import Embedder, HashingEmbedder
from core.library.ingestion import BulkProgress, IngestOutcome
from core.library.store import ChunkFilter, InMemoryStore
from core.services import Services, build_services
from core.settings import Settings


class CountingEmbedder(Embedder):
    """The hashing fake that counts its batch calls and can be told to stop on one of them (Ctrl-C)."""

    name = "counting-fake"

    def __init__(self, interrupt_on_call: int | None = None) -> None:
        self._inner = HashingEmbedder()
        self.dim = self._inner.dim
        self.calls: list[int] = []
        self._interrupt_on = interrupt_on_call

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if self._interrupt_on is not None and len(self.calls) == self._interrupt_on:
            raise KeyboardInterrupt
        return self._inner.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._inner.embed_query(text)


def _guideline(i: int, title: str | None = None, version: str = "1", effective: str = "2025-01-01") -> bytes:
    title = title or f"Guideline {i}"
    return (
        f"---\ntitle: {title}\nissuer: Test Trust\nversion: '{version}'\neffective_date: {effective}\n---\n"
        f"# {title}\n\n## 1. Treatment\n\nTopic {i}: offer drug{i} {i} mg once daily for condition{i}.\n"
    ).encode()


def _folder(tmp_path: Path, n: int) -> list[Path]:
    folder = tmp_path / "incoming"
    folder.mkdir()
    paths = []
    for i in range(n):
        path = folder / f"g{i:03d}.md"
        path.write_bytes(_guideline(i))
        paths.append(path)
    return paths


def _services(settings: Settings, embedder: Embedder, store: InMemoryStore, batch: int) -> Services:
    settings.ingest.embed_batch = batch
    return build_services(settings, embedder=embedder, store=store)


def test_many_files_share_one_embedding_call_and_keep_their_order(settings: Settings, tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    svc = _services(settings, embedder, InMemoryStore(), batch=256)
    paths = _folder(tmp_path, 40)
    seen: list[IngestOutcome] = []
    progress: list[BulkProgress] = []
    outcomes = svc.library.ingest_files(paths, on_outcome=seen.append, on_progress=progress.append)
    assert [o.file_name for o in outcomes] == [p.name for p in paths]
    assert {o.status for o in outcomes} == {"ingested"}
    assert embedder.calls == [40]  # one MiniLM call for the 40 one-passage files
    assert len(seen) == 40 and progress[-1].files_done == progress[-1].files_total == 40
    assert progress[-1].chunks_done == 40
    assert "40/40 files · 40 passages" in progress[-1].line()
    assert svc.store.count() == 40


def test_batches_are_cut_by_passage_count(settings: Settings, tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    svc = _services(settings, embedder, InMemoryStore(), batch=8)
    outcomes = svc.library.ingest_files(_folder(tmp_path, 20))
    assert {o.status for o in outcomes} == {"ingested"}
    assert embedder.calls == [8, 8, 4]


def test_bulk_run_reports_bad_files_duplicates_and_versions_like_single_uploads(settings: Settings) -> None:
    svc = _services(settings, CountingEmbedder(), InMemoryStore(), batch=256)
    v1 = _guideline(1, "Asthma", "1", "2024-01-01")
    files = [
        ("asthma-v1.md", v1),
        ("tool.exe", b"MZ\x00\x01"),
        ("copy.md", v1),
        ("asthma-v2.md", _guideline(2, "Asthma", "2", "2026-01-01")),
        ("empty.txt", b""),
    ]
    outcomes = svc.library.ingest_uploads(files)
    assert [o.status for o in outcomes] == ["ingested", "failed", "duplicate", "ingested", "failed"]
    assert outcomes[1].problem == "unsupported_type" and outcomes[4].problem == "empty"
    assert "same file as 'asthma-v1.md'" in outcomes[2].message
    assert outcomes[3].superseded == [outcomes[0].doc_id]
    statuses = {d.file_name: d.status for d in svc.library.documents()}
    assert statuses == {"asthma-v1.md": "superseded", "asthma-v2.md": "active"}


def test_interrupted_bulk_ingestion_resumes_without_duplicates_or_losses(settings: Settings, tmp_path: Path) -> None:
    store = InMemoryStore()  # outlives the "process", like the Milvus folder
    paths = _folder(tmp_path, 30)
    first = _services(settings, CountingEmbedder(interrupt_on_call=3), store, batch=8)
    done: list[IngestOutcome] = []
    with pytest.raises(KeyboardInterrupt):
        first.library.ingest_files(paths, on_outcome=done.append)
    assert len(done) == 16  # two batches of 8 were stored; the third was cut off and undone
    assert store.count() == 16
    first.close()
    # A crash (rather than Ctrl-C) leaves the cut-off batch `ingesting` with some chunks: recovery removes it.
    second = _services(settings, CountingEmbedder(), store, batch=8)
    second.catalog.insert(GuidelineRecord(
        doc_id="deadbeefdeadbeef", content_hash="f" * 64, title="Cut off", file_name="g099.md", format="markdown",
        stored_path=str(tmp_path / "x" / "g099.md"), size_bytes=1, status="ingesting", ingested_at=utc_now(),
    ))
    second.close()
    third = _services(settings, CountingEmbedder(), store, batch=8)
    assert third.recovery.removed_documents == ["deadbeefdeadbeef"]
    again = third.library.ingest_files(paths)
    assert [o.status for o in again].count("duplicate") == 16
    assert [o.status for o in again].count("ingested") == 14
    docs = third.library.documents()
    assert sorted(d.file_name for d in docs) == [p.name for p in paths]
    assert {d.status for d in docs} == {"active"}
    assert store.count() == 30 and store.document_ids() == {d.doc_id for d in docs}


def test_a_store_failure_undoes_the_whole_batch_and_names_every_file(settings: Settings, tmp_path: Path) -> None:
    class BrokenStore(InMemoryStore):
        def add(self, chunks, vectors):  # type: ignore[no-untyped-def]
            super().add(chunks[:1], vectors[:1])
            raise RuntimeError("disk full")

    svc = _services(settings, CountingEmbedder(), BrokenStore(), batch=256)
    outcomes = svc.library.ingest_files(_folder(tmp_path, 3))
    assert [o.status for o in outcomes] == ["failed"] * 3
    assert all("nothing was added" in o.message and "disk full" in o.message for o in outcomes)
    assert svc.library.documents() == [] and svc.store.count() == 0


def test_search_filter_names_only_the_documents_left_out(settings: Settings, tmp_path: Path) -> None:
    svc = _services(settings, CountingEmbedder(), InMemoryStore(), batch=256)
    svc.library.ingest_files(_folder(tmp_path, 50))
    old = svc.library.ingest_bytes(_guideline(100, "Sepsis", "1", "2024-01-01"), "sepsis-v1.md")
    new = svc.library.ingest_bytes(_guideline(101, "Sepsis", "2", "2026-01-01"), "sepsis-v2.md")
    where = svc.catalog.search_filter()
    assert where == ChunkFilter(exclude_doc_ids=[old.doc_id])  # 51 active documents, none of them named
    assert svc.catalog.search_filter(include_superseded=True) == ChunkFilter()
    assert svc.catalog.search_filter(doc_ids=[old.doc_id, "missing"]) is None
    assert svc.catalog.search_filter(doc_ids=[new.doc_id, old.doc_id], issuer="Test Trust") == ChunkFilter(
        only_doc_ids=[new.doc_id], issuer="Test Trust"
    )
    hits = svc.retriever.retrieve("drug100 condition100", k=50)
    assert hits and old.doc_id not in {h.doc_id for h in hits}
    svc.library.delete(new.doc_id or "")
    assert new.doc_id not in {h.doc_id for h in svc.retriever.retrieve("drug101 condition101", k=60)}


def test_recovery_skips_the_orphan_scan_when_counts_agree(settings: Settings, tmp_path: Path) -> None:
    class ScanCountingStore(InMemoryStore):
        scans = 0

        def document_ids(self) -> set[str]:
            ScanCountingStore.scans += 1
            return super().document_ids()

    store = ScanCountingStore()
    svc = _services(settings, CountingEmbedder(), store, batch=256)
    svc.library.ingest_files(_folder(tmp_path, 5))
    assert svc.library.recover().removed_orphan_chunks == 0 and ScanCountingStore.scans == 0
    orphan = svc.store.chunks_of(svc.library.documents()[0].doc_id)[0].model_copy(update={"chunk_id": "x-0000", "doc_id": "x"})
    store.add([orphan], [HashingEmbedder().embed(["x"])[0]])
    assert svc.library.recover().removed_orphan_chunks == 1 and ScanCountingStore.scans == 1


def test_cli_reports_progress_and_a_second_run_adds_only_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import ingest

    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_INGEST__EMBED_BATCH", "4")
    paths = _folder(tmp_path, 10)
    folder = paths[0].parent
    paths[5].unlink()  # "not yet copied" when the first run starts
    assert ingest.main([str(folder)]) == 0
    out, err = capsys.readouterr()
    reports = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in reports] == ["ingested"] * 9
    assert "9/9 files · 9 passages" in err and "passages/s" in err
    paths[5].write_bytes(_guideline(5))
    assert ingest.main([str(folder), "--quiet-duplicates"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["file_name"] for line in out.splitlines()] == ["g005.md"]
    assert "10/10 files" in err
