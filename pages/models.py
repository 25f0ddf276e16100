"""Admin: every model the app can answer with, and the LoRA adapters (inspect, upload, delete)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.adapters.models_info import ModelRow, adapter_table, local_model, model_table, ollama_models
from core.adapters.registry import AdapterRegistry
from core.errors import CQAError
from core.settings import Settings
from pages.adapter_training import training_section
from pages.common import require_role

require_role("admin")
settings = Settings()


@st.cache_data(ttl=30, show_spinner="Asking Ollama for its models…")
def _ollama_rows(host: str, backend: str, model: str) -> tuple[list[ModelRow], str | None]:
    # Asked at most every 30 s: an unreachable server must not delay every rerun of this page.
    llm = settings.llm.model_copy(update={"ollama_host": host, "backend": backend, "ollama_model": model})
    try:
        return ollama_models(llm), None
    except CQAError as exc:
        return [], str(exc)


def _flash(kind: str, message: str) -> None:
    st.session_state["md_flash"] = (kind, message)
    st.rerun()


st.title("Models and adapters")
st.subheader("Models")
rows: list[ModelRow] = []
try:
    rows.append(local_model(settings.llm))
except CQAError as exc:
    st.warning(f"Local model: {exc}")
ollama_rows, ollama_problem = _ollama_rows(settings.llm.ollama_host, settings.llm.backend, settings.llm.ollama_model)
rows += ollama_rows
if ollama_problem:
    note = f"{ollama_problem} No Ollama models are listed."
    if settings.llm.backend == "ollama":
        st.warning(note, icon=":material/cloud_off:")
    else:
        st.caption(f"Optional Ollama server: {note}")
if rows:
    st.dataframe(model_table(rows), hide_index=True, key="md_models")
for row in rows:
    if row.problem:
        st.caption(f"{row.name}: {row.problem}")
    if row.chat_template:
        with st.expander(f"Chat template: {row.name}"):
            st.code(row.chat_template, language="jinja2")

# -- Adapters (kept last: a "Train a new adapter" section is to follow it) --------------------------
st.subheader("LoRA adapters")
registry = AdapterRegistry.for_settings(settings)
st.caption(
    f"Uploaded adapters live in {registry.upload_folder}; adapters shipped in the repo's data/adapters are "
    "read-only. Every upload is checked against the base model file (architecture and tensor shapes). "
    "Clinicians pick an adapter and its strength in the chat sidebar."
)
if "md_flash" in st.session_state:
    kind, message = st.session_state.pop("md_flash")
    (st.success if kind == "success" else st.error)(message)
records = registry.list()
if records:
    st.dataframe(adapter_table(records), hide_index=True, key="md_adapters")
else:
    st.info("No adapters yet: upload a GGUF LoRA adapter below.")
for record in records:
    with st.expander(f"{record.name}: model card"):
        if record.problem:
            st.warning(record.problem)
        st.caption(f"sha256 {record.sha256} · {record.targets} adapted tensors · {record.path}")
        if isinstance(record.card.get("evaluation"), dict):
            st.markdown("**Evaluation**")
            st.json(record.card["evaluation"])
        if record.card:
            st.json(record.card, expanded=False)
        else:
            st.caption("No model card.")
        if not record.shipped:
            confirm = st.checkbox("Confirm delete", key=f"md_confirm_{record.name}")
            if st.button("Delete", key=f"md_delete_{record.name}", disabled=not confirm):
                try:
                    registry.delete(record.name)
                except CQAError as exc:
                    _flash("error", str(exc))
                else:
                    _flash("success", f"Deleted adapter {record.name!r}.")

st.markdown("**Upload an adapter**")
upload = st.file_uploader("GGUF LoRA adapter", type=["gguf"], key="md_file")
name = st.text_input("Name", key="md_name", placeholder="defaults to the file name",
                     help="1-64 letters, digits, '.', '_' or '-'.")
description = st.text_area("Description", key="md_description", placeholder="What it was trained for")
if st.button("Upload adapter", key="md_upload"):
    if upload is None:
        st.error("Choose a .gguf adapter file first.")
    else:
        chosen = name.strip() or Path(upload.name).stem
        try:
            added = registry.add(upload.getvalue(), chosen, description)
        except CQAError as exc:
            st.error(f"{upload.name} was not added: {exc}")
        else:
            _flash("success", f"Added adapter {added.name!r} (rank {added.rank}, alpha {added.alpha}).")

training_section(registry.upload_folder)
