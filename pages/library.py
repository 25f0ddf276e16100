"""Admin: upload guidelines, manage versions, inspect chunks, test retrieval."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import CQAError
from core.library.parsing import SUPPORTED_SUFFIXES
from core.schema import DocumentMeta
from pages.common import require_role, services, show_passages

MAX_MESSAGES = 20  # per-file messages shown after an upload; the results table lists every file

require_role("admin")
svc = services()
lib = svc.library
st.title("Guideline library")
upload_tab, list_tab, chunks_tab, test_tab = st.tabs(["Upload", "Library", "Chunk inspector", "Retrieval test"])

with upload_tab:
    st.caption(
        f"Supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}; up to {svc.settings.ingest.max_file_mb:g} MB each. "
        "Metadata below overrides what the file declares (front matter, document properties)."
    )
    files = st.file_uploader("Guideline files", accept_multiple_files=True, key="lib_files")
    with st.form("lib_meta"):
        c1, c2, c3 = st.columns(3)
        title = c1.text_input("Title (only when uploading one file)", key="lib_title")
        issuer = c2.text_input("Issuer", key="lib_issuer")
        version = c3.text_input("Version", key="lib_version")
        c4, c5 = st.columns(2)
        effective = c4.text_input("Effective date (YYYY-MM-DD)", key="lib_effective")
        specialty = c5.text_input("Specialty", key="lib_specialty")
        go = st.form_submit_button("Ingest", type="primary")
    if go and not files:
        st.warning("Choose one or more files first.")
    if go and files:
        meta = DocumentMeta(
            title=title.strip() if len(files) == 1 and title.strip() else None,
            issuer=issuer.strip() or None, version=version.strip() or None,
            effective_date=effective.strip() or None, specialty=specialty.strip() or None,
        )
        bar = st.progress(0.0, text=f"Reading {len(files)} files…")
        results = lib.ingest_uploads(
            [(f.name, f.getvalue()) for f in files], meta,
            on_progress=lambda p: bar.progress(p.files_done / max(p.files_total, 1), text=p.line()),
        )
        shown = results if len(results) <= MAX_MESSAGES else [r for r in results if r.status == "failed"][:MAX_MESSAGES]
        if len(shown) < len(results):
            counts = {s: sum(r.status == s for r in results) for s in ("ingested", "duplicate", "failed")}
            st.info(f"{counts['ingested']:,} ingested, {counts['duplicate']:,} already in the library, "
                    f"{counts['failed']:,} failed; the table below lists every file.")
        for outcome in shown:
            {"ingested": st.success, "duplicate": st.info, "failed": st.error}[outcome.status](outcome.message)
        st.dataframe(
            pd.DataFrame([r.model_dump(include={"file_name", "status", "title", "chunks", "pages", "message"}) for r in results]),
            hide_index=True, key="lib_results",
        )

with list_tab:
    docs = lib.documents()
    if not docs:
        st.info("No documents yet. Upload guidelines on the Upload tab.")
    else:
        table = pd.DataFrame(
            [
                {"title": d.title, "issuer": d.issuer, "version": d.version, "status": d.status,
                 "chunks": d.chunks, "pages": d.pages, "effective": d.effective_date, "file": d.file_name,
                 "ingested at": d.ingested_at, "id": d.doc_id}
                for d in docs
            ]
        )
        st.dataframe(table, hide_index=True, key="lib_table")
        labels = {d.doc_id: f"{d.title} · v{d.version or '?'} · {d.status} · {d.file_name}" for d in docs}
        chosen = st.selectbox("Document", list(labels), format_func=labels.__getitem__, key="lib_doc")
        record = next(d for d in docs if d.doc_id == chosen)
        b1, b2, b3 = st.columns(3)
        try:
            if record.status == "active" and b1.button("Mark superseded", key="lib_supersede"):
                st.success(lib.mark_superseded(chosen))
                st.rerun()
            if record.status == "superseded" and b1.button("Make active again", key="lib_reactivate"):
                st.success(lib.reactivate(chosen))
                st.rerun()
            confirm = b2.checkbox("Confirm delete", key="lib_confirm_delete")
            if b2.button("Delete", key="lib_delete", disabled=not confirm):
                st.success(lib.delete(chosen))
                st.rerun()
            original = lib.original_file(chosen)
            if original is not None:
                b3.download_button("Download original", original.read_bytes(), file_name=original.name, key="lib_dl")
        except CQAError as exc:
            st.error(str(exc))
        st.divider()
        if st.button("Re-index all documents", key="lib_reindex", help="Re-chunk and re-embed every stored file."):
            bar = st.progress(0.0)
            try:
                outcomes = lib.reindex_all(lambda x, m: bar.progress(min(x, 1.0), text=m))
            except CQAError as exc:
                st.error(str(exc))
            else:
                failed = [o for o in outcomes if o.status == "failed"]
                (st.error if failed else st.success)(
                    f"Re-indexed {len(outcomes) - len(failed)} of {len(outcomes)} documents."
                    + "".join(f"\n- {o.message}" for o in failed)
                )

with chunks_tab:
    docs = lib.documents()
    if docs:
        names = {d.doc_id: f"{d.title} · {d.file_name} ({d.status})" for d in docs}
        doc_id = st.selectbox("Document", list(names), format_func=names.__getitem__, key="lib_chunk_doc")
        chunks = lib.chunks(doc_id)
        st.caption(f"{len(chunks)} passages")
        st.dataframe(
            pd.DataFrame(
                [{"#": c.chunk_id.rsplit("-", 1)[-1], "page": c.page, "section": " › ".join(c.section),
                  "kind": c.kind, "chars": f"{c.char_start}–{c.char_end}", "text": c.text} for c in chunks]
            ),
            hide_index=True, key="lib_chunks",
        )

with test_tab:
    with st.form("lib_retrieval"):
        query = st.text_input("Query", key="lib_query")
        k = st.slider("Passages", 1, 10, 5, key="lib_k")
        include_old = st.checkbox("Include superseded versions", key="lib_include_old")
        run = st.form_submit_button("Retrieve")
    if run and query.strip():
        try:
            show_passages(svc.retriever.retrieve(query, k, include_superseded=include_old), key="lib_test")
        except CQAError as exc:
            st.error(str(exc))
