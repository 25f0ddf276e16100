"""Real MiniLM embeddings + real Milvus Lite: the demo corpus, reopening, locking, crash safety, server URI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.bootstrap import corpus_files
from core.library.embedding import Embedder
from core.services import Services, build_services
from core.settings import Settings
from tests.conftest import CORPUS, REPO
from tests.helpers import free_port, milvus_server

pytestmark = pytest.mark.integration
QUESTIONS = REPO / "tests" / "data" / "demo_questions.jsonl"


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQA_")}
    env.update(CQA_DATA_DIR=str(data_dir), OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", **extra)
    return env


@pytest.fixture(scope="module")
def corpus_services(tmp_path_factory: pytest.TempPathFactory, minilm: Embedder) -> Iterator[Services]:
    data = tmp_path_factory.mktemp("corpus") / "var"
    svc = build_services(Settings(data_dir=data), embedder=minilm)
    outcomes = svc.library.ingest_files(corpus_files(CORPUS))  # sealed at the end, as first start does
    failed = [o.message for o in outcomes if o.status == "failed"]
    assert not failed, failed
    yield svc
    svc.close()


def _questions(expect: str) -> list[dict[str, object]]:
    return [q for q in map(json.loads, QUESTIONS.read_text().splitlines()) if q["expect"] == expect]


def test_every_demo_document_is_indexed_with_metadata(corpus_services: Services) -> None:
    docs = corpus_services.library.documents()
    assert len(docs) >= 12
    formats = {d.format for d in docs}
    assert {"pdf", "docx", "html", "markdown", "text"} <= formats
    for d in docs:
        assert d.status == "active" and d.chunks > 0, d
        assert d.issuer and d.version and d.effective_date, f"{d.file_name} lacks metadata"
    assert all(d.pages and d.pages >= 3 for d in docs if d.format == "pdf")


def test_demo_questions_retrieve_the_right_document_and_page(corpus_services: Services) -> None:
    hits_doc = hits_page = total = 0
    misses = []
    for q in _questions("answer"):
        source = q["sources"][0]  # type: ignore[index]
        passages = corpus_services.retriever.retrieve(str(q["question"]), k=5)
        total += 1
        doc_hit = [p for p in passages if p.file_name == source["file"]]
        hits_doc += bool(doc_hit)
        if source.get("page") is None or any(p.page == source["page"] for p in doc_hit):
            hits_page += bool(doc_hit)
        else:
            misses.append((q["id"], "page", [p.page for p in doc_hit]))
        if not doc_hit:
            misses.append((q["id"], "doc", [p.file_name for p in passages]))
    assert total >= 30
    assert hits_doc / total >= 0.9, misses
    assert hits_page / total >= 0.8, misses


def test_passages_carry_page_and_section(corpus_services: Services) -> None:
    passages = corpus_services.retriever.retrieve("troponin referral chest pain", k=5)
    pdf = [p for p in passages if p.file_name.endswith(".pdf")]
    assert pdf and all(p.page for p in pdf)
    assert all(p.section for p in passages)
    assert all(p.score_kind == "rrf" and p.similarity is not None for p in passages)
    # Every passage carries its document's metadata for citation.
    assert all(p.issuer and p.version and p.effective_date and p.specialty for p in passages)
    chunks = corpus_services.library.chunks(passages[0].doc_id)
    assert all(c.char_end > c.char_start for c in chunks)


def test_filters_by_specialty_and_document(corpus_services: Services) -> None:
    docs = corpus_services.library.documents()
    target = docs[0]
    only = corpus_services.retriever.retrieve("treatment", k=5, doc_ids=[target.doc_id])
    assert only and {p.doc_id for p in only} == {target.doc_id}
    if target.specialty:
        by_spec = corpus_services.retriever.retrieve("treatment", k=5, specialty=target.specialty)
        specialties = {d.doc_id: d.specialty for d in docs}
        assert by_spec and all(specialties[p.doc_id] == target.specialty for p in by_spec)


def test_reopen_loads_collection_and_searches(tmp_path: Path, minilm: Embedder) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    svc = build_services(settings, embedder=minilm)
    out = svc.library.ingest_file(CORPUS / "hypertension.md")
    assert out.status == "ingested", out.message
    svc.close()
    again = build_services(Settings(data_dir=tmp_path / "var"), embedder=minilm)
    try:
        assert again.retriever.retrieve("blood pressure target", k=3)
        assert again.store.count(out.doc_id) == out.chunks
        chunks = again.library.chunks(out.doc_id or "")
        assert len(chunks) == out.chunks
        assert again.library.passage(chunks[1].chunk_id) == chunks[1]
        assert again.library.passage("missing-0000") is None
    finally:
        again.close()


def test_second_process_gets_a_clear_message_while_db_is_held(tmp_path: Path, minilm: Embedder) -> None:
    data = tmp_path / "var"
    svc = build_services(Settings(data_dir=data), embedder=minilm)
    try:
        svc.library.ingest_file(CORPUS / "hypertension.md")
        proc = subprocess.run(
            [sys.executable, "-m", "core.retrieve", "blood pressure", "--json"],
            cwd=REPO, env=_env(data), capture_output=True, text=True, timeout=300,
        )
    finally:
        svc.close()
    assert proc.returncode == 3, proc.stderr
    assert "in use by another process" in proc.stderr
    assert "Traceback" not in proc.stderr


def _big_markdown(path: Path, sections: int = 120) -> None:
    parts = ["---\ntitle: Big test guideline\nissuer: Test\n---\n"]
    for i in range(sections):
        parts.append(f"## {i}. Section {i}\n\n" + " ".join(f"Sentence {i}.{j} about topic {i * j}." for j in range(40)) + "\n")
    path.write_text("\n".join(parts), encoding="utf-8")


def test_ingestion_killed_halfway_leaves_no_partial_document(tmp_path: Path, minilm: Embedder) -> None:
    data = tmp_path / "var"
    big = tmp_path / "big.md"
    _big_markdown(big)
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.ingest", str(big)], cwd=REPO,
        env=_env(data, CQA_INGEST__EMBED_BATCH="2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    catalog = data / "library.sqlite"
    deadline = time.monotonic() + 240
    seen_ingesting = False
    while time.monotonic() < deadline and proc.poll() is None:
        if catalog.exists():
            with sqlite3.connect(catalog, timeout=1) as conn:
                try:
                    rows = conn.execute("SELECT status FROM documents").fetchall()
                except sqlite3.OperationalError:
                    rows = []
            if rows and rows[0][0] == "ingesting":
                seen_ingesting = True
                time.sleep(1.0)  # let a few batches land in Milvus
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen_ingesting, "ingestion finished or never started before it could be killed"
    svc = build_services(Settings(data_dir=data), embedder=minilm)
    try:
        assert len(svc.recovery.removed_documents) == 1
        assert svc.library.documents() == []
        assert svc.store.count() == 0
        assert svc.retriever.retrieve("Sentence about topic", k=5) == []
        again = svc.library.ingest_file(big)
        assert again.status == "ingested", again.message
    finally:
        svc.close()






def test_milvus_server_uri_path(tmp_path: Path, minilm: Embedder) -> None:
    port = free_port()
    with milvus_server(tmp_path / "milvus-server", port):
        uri = f"http://127.0.0.1:{port}"
        settings = Settings(data_dir=tmp_path / "var", milvus_uri=uri)
        assert settings.store.milvus_uri == uri
        svc = build_services(settings, embedder=minilm)
        try:
            out = svc.library.ingest_file(CORPUS / "hypertension.md")
            assert out.status == "ingested", out.message
            passages = svc.retriever.retrieve("blood pressure treatment", k=3)
            assert passages and passages[0].doc_id == out.doc_id
            # A second process can use the same server at the same time.
            proc = subprocess.run(
                [sys.executable, "-m", "core.retrieve", "blood pressure treatment", "--json"], cwd=REPO,
                env=_env(tmp_path / "var", CQA_MILVUS_URI=uri), capture_output=True, text=True, timeout=300,
            )
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout)[0]["doc_id"] == out.doc_id
        finally:
            svc.close()


def test_unreachable_milvus_server_is_a_clear_error(tmp_path: Path, minilm: Embedder) -> None:
    from core.errors import StoreUnavailableError

    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailableError, match="Cannot reach the Milvus server"):
        build_services(Settings(data_dir=tmp_path / "var", milvus_uri=uri), embedder=minilm)
