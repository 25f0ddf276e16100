"""Search the guideline library: passages with title, section and page."""

from __future__ import annotations

import streamlit as st

from core.errors import CQAError
from pages.common import require_role, services, show_passages

require_role("admin", "clinician")
svc = services()
st.title("Search guidelines")
if svc.library.is_empty():
    st.warning("The guideline library is empty. An admin can upload guidelines on the library page.")
    st.stop()

docs = [d for d in svc.library.documents() if d.status == "active"]
with st.form("search_form"):
    query = st.text_input("What are you looking for?", key="search_query")
    cols = st.columns(3)
    k = cols[0].slider("Passages", 1, 10, svc.settings.retrieval.top_k, key="search_k")
    issuer = cols[1].selectbox("Issuer", ["(any)", *sorted({d.issuer for d in docs if d.issuer})], key="search_issuer")
    specialty = cols[2].selectbox(
        "Specialty", ["(any)", *sorted({d.specialty for d in docs if d.specialty})], key="search_specialty"
    )
    submitted = st.form_submit_button("Search")
if submitted and query.strip():
    try:
        passages = svc.retriever.retrieve(
            query, k, issuer=None if issuer == "(any)" else issuer,
            specialty=None if specialty == "(any)" else specialty,
        )
    except CQAError as exc:
        st.error(str(exc))
    else:
        show_passages(passages, key="search")
