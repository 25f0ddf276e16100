"""GuidelineLibrary with fakes: dedup, supersede, delete, bad input, recovery."""

from __future__ import annotations

from pathlib import Path

from core.library.catalog import GuidelineRecord, utc_now
from core.library.store import StoredChunk
from core.schema import DocumentMeta
from core.services import Services


def _md(title: str, version: str, body: str, effective: str = "2025-01-01") -> bytes:
    return (
        f"---\ntitle: {title}\nissuer: Test Trust\nversion: '{version}'\neffective_date: {effective}\n"
        f"specialty: cardiology\n---\n# {title}\n\n## 1. Scope\n\n{body}\n\n## 2. Treatment\n\n"
        "Offer amlodipine 5 mg once daily as first-line treatment for adults over 55 years.\n"
    ).encode()


def test_ingest_then_search_finds_passage_with_section(fake_services: Services) -> None:
    out = fake_services.library.ingest_bytes(_md("Hypertension", "1", "Adults with raised blood pressure."), "htn.md")
    assert out.status == "ingested", out.message
    assert out.chunks >= 1 and out.doc_id
    hits = fake_services.retriever.retrieve("amlodipine first-line dose", k=3)
    assert hits and hits[0].title == "Hypertension"
    assert "amlodipine 5 mg" in hits[0].text
    assert hits[0].section[-1] == "2. Treatment"
    assert hits[0].issuer == "Test Trust" and hits[0].version == "1"


def test_same_file_twice_changes_nothing_and_says_so(fake_services: Services) -> None:
    data = _md("Hypertension", "1", "Adults.")
    first = fake_services.library.ingest_bytes(data, "htn.md")
    before = fake_services.store.count()
    second = fake_services.library.ingest_bytes(data, "copy-of-htn.md")
    assert second.status == "duplicate"
    assert "already in the library" in second.message
    assert second.doc_id == first.doc_id
    assert fake_services.store.count() == before
    assert len(fake_services.library.documents()) == 1


def test_new_version_supersedes_old_and_old_is_not_retrieved(fake_services: Services) -> None:
    lib = fake_services.library
    old = lib.ingest_bytes(_md("Hypertension", "1", "Old wording about zebrafish."), "htn-v1.md", )
    new = lib.ingest_bytes(_md("Hypertension", "2", "New wording about giraffes.", "2026-01-01"), "htn-v2.md")
    assert new.superseded == [old.doc_id]
    statuses = {d.doc_id: d.status for d in lib.documents()}
    assert statuses == {old.doc_id: "superseded", new.doc_id: "active"}
    hits = fake_services.retriever.retrieve("zebrafish wording", k=10)
    assert all(h.doc_id == new.doc_id for h in hits)
    with_old = fake_services.retriever.retrieve("zebrafish wording", k=10, include_superseded=True)
    assert any(h.doc_id == old.doc_id for h in with_old)


def test_older_version_uploaded_later_is_stored_as_superseded(fake_services: Services) -> None:
    lib = fake_services.library
    new = lib.ingest_bytes(_md("Asthma", "3", "Current.", "2026-01-01"), "asthma-v3.md")
    old = lib.ingest_bytes(_md("Asthma", "2", "Previous.", "2024-01-01"), "asthma-v2.md")
    assert old.superseded_by == new.doc_id
    assert "newer version" in old.message
    assert lib.catalog.get(new.doc_id).status == "active"  # type: ignore[union-attr]


def test_form_metadata_overrides_file(fake_services: Services) -> None:
    out = fake_services.library.ingest_bytes(
        _md("Hypertension", "1", "x"), "htn.md", DocumentMeta(issuer="Other Trust", version="9")
    )
    record = fake_services.library.catalog.get(out.doc_id or "")
    assert record is not None and record.issuer == "Other Trust" and record.version == "9"


def test_delete_and_mark_superseded(fake_services: Services) -> None:
    lib = fake_services.library
    out = lib.ingest_bytes(_md("Sepsis", "1", "Lactate above 2 mmol/L."), "sepsis.md")
    doc_id = out.doc_id or ""
    assert "superseded" in lib.mark_superseded(doc_id)
    assert fake_services.retriever.retrieve("lactate", k=5) == []
    lib.reactivate(doc_id)
    assert fake_services.retriever.retrieve("lactate", k=5)
    assert lib.original_file(doc_id) is not None
    first = lib.chunks(doc_id)[0]
    assert lib.passage(first.chunk_id) == first and lib.passage("nope") is None
    lib.delete(doc_id)
    assert lib.documents() == [] and fake_services.store.count() == 0
    assert lib.original_file(doc_id) is None


def test_bad_inputs_fail_cleanly_and_leave_library_untouched(fake_services: Services) -> None:
    lib = fake_services.library
    good = lib.ingest_bytes(_md("Hypertension", "1", "Adults."), "htn.md")
    count = fake_services.store.count()
    cases = {
        "empty.txt": (b"", "empty"),
        "tool.exe": (b"MZ\x00\x01", "unsupported_type"),
        "broken.pdf": (b"%PDF-1.4 garbage", "corrupt"),
        "notes.txt": ("caf\xe9 dose".encode("latin-1"), "not_utf8"),
        "fake.docx": (b"not a zip at all", "corrupt"),
    }
    for name, (data, problem) in cases.items():
        out = lib.ingest_bytes(data, name)
        assert out.status == "failed", name
        assert out.problem == problem, (name, out.problem, out.message)
        assert name in out.message
    assert [d.doc_id for d in lib.documents()] == [good.doc_id]
    assert fake_services.store.count() == count


def test_path_traversal_name_is_stored_inside_uploads(fake_services: Services) -> None:
    out = fake_services.library.ingest_bytes(_md("Asthma", "1", "Inhaler technique."), "../../evil.md")
    assert out.status == "ingested"
    stored = fake_services.library.original_file(out.doc_id or "")
    assert stored is not None
    assert stored.resolve().is_relative_to(fake_services.settings.uploads_dir.resolve())
    assert stored.name == "evil.md"


def test_recover_removes_half_ingested_document_and_orphans(fake_services: Services, tmp_path: Path) -> None:
    lib = fake_services.library
    good = lib.ingest_bytes(_md("Hypertension", "1", "Adults."), "htn.md")
    # Simulate a crash mid-ingestion: a row still `ingesting` with some chunks stored.
    lib.catalog.insert(
        GuidelineRecord(
            doc_id="deadbeefdeadbeef", content_hash="x" * 64, title="Half", file_name="half.md", format="markdown",
            stored_path=str(tmp_path / "half" / "half.md"), size_bytes=1, status="ingesting", ingested_at=utc_now(),
        )
    )
    half = StoredChunk(chunk_id="deadbeefdeadbeef-0000", doc_id="deadbeefdeadbeef", title="Half", file_name="half.md", text="half")
    orphan = StoredChunk(chunk_id="0000000000000000-0000", doc_id="0000000000000000", title="Orphan", file_name="o.md", text="o")
    vec = fake_services.embedder.embed(["x"])[0]
    fake_services.store.add([half, orphan], [vec, vec])
    report = lib.recover()
    assert report.removed_documents == ["deadbeefdeadbeef"]
    assert report.removed_orphan_chunks == 1
    assert [d.doc_id for d in lib.documents()] == [good.doc_id]
    assert fake_services.store.count() == good.chunks
