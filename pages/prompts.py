"""Admin: system prompt versions — history, new version with validation, diff, activate, roll back, preview."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.answering.prompt_store import (
    MAX_SYSTEM_CHARS,
    MAX_USER_CHARS,
    PromptStoreError,
    PromptValidationError,
    prompt_store_for,
)
from core.settings import Settings
from pages.common import answer_service, current_user, require_role, services

require_role("admin")
st.title("System prompts")
st.caption("Every answer records the prompt version it used. Versions are never changed: edit by saving a new one.")
store = prompt_store_for(Settings())
user = current_user()[0] or "unknown"
st.session_state.setdefault("pr_message", None)

if st.session_state["pr_message"]:
    st.success(st.session_state["pr_message"])
    st.session_state["pr_message"] = None

versions = store.versions()
labels = [v.version for v in versions]
active = next(v for v in versions if v.active)
st.dataframe(
    pd.DataFrame([{"active": "✓" if v.active else "", "version": v.version, "name": v.name, "author": v.author,
                   "created": v.created_at[:19].replace("T", " "), "note": v.note} for v in versions]),
    hide_index=True,
)

left, right = st.columns([3, 1])
chosen = left.selectbox("Version", labels, index=labels.index(active.version), key="pr_pick")
if right.button("Activate", key="pr_activate", disabled=chosen == active.version):
    st.session_state["pr_message"] = f"Prompt {store.activate(chosen, user).version} is now active."
    st.rerun()
if right.button("Roll back", key="pr_rollback", help="Re-activate the version that was active before this one."):
    try:
        restored = store.rollback(user)
    except PromptStoreError as exc:
        st.error(str(exc))
    else:
        st.session_state["pr_message"] = f"Rolled back: prompt {restored.version} is active again."
        st.rerun()

new_tab, diff_tab, preview_tab = st.tabs(["New version", "Diff", "Preview"])
with new_tab, st.form("pr_new"):
    name = st.text_input("Name", key="pr_name")
    system = st.text_area(f"System prompt (≤ {MAX_SYSTEM_CHARS:,} characters)", active.system, height=220, key="pr_system")
    template = st.text_area(f"User template (≤ {MAX_USER_CHARS:,} characters; must contain {{passages}} and {{question}})",
                            active.user_template, height=120, key="pr_user")
    note = st.text_input("Note (why this change)", key="pr_note")
    saved = st.form_submit_button("Save version")
if saved:
    try:
        created = store.create(name, system, template, author=user, note=note)
    except PromptValidationError as exc:
        for problem in exc.problems:
            new_tab.error(problem)
    except PromptStoreError as exc:
        new_tab.error(str(exc))
    else:
        st.session_state["pr_message"] = f"Saved as {created.version} (not active yet)."
        st.rerun()

with diff_tab:
    a_col, b_col = st.columns(2)
    a = a_col.selectbox("From", labels, index=max(len(labels) - 2, 0), key="pr_diff_a")
    b = b_col.selectbox("To", labels, index=len(labels) - 1, key="pr_diff_b")
    diff = store.diff(a, b)
    if diff:
        st.code(diff, language="diff")
    else:
        st.info("The two versions are identical.")

with preview_tab:
    version = st.selectbox("Version", labels, index=labels.index(active.version), key="pr_preview_version")
    question = st.text_input("Sample question", "What dose of adrenaline is given in anaphylaxis?", key="pr_question")
    if st.button("Preview", key="pr_preview") and question.strip():
        svc = services()
        answer = svc.settings.answer
        found = svc.retriever.retrieve(question.strip(), answer.top_k)
        evidence, enough = answer_service().gate(found)
        passages = evidence[: answer.max_passages]
        if not enough or not passages:
            st.warning("No passage passes the similarity floor and the evidence threshold (the pipeline's evidence "
                       "gate): the model would not be asked; the answer is a refusal.")
        st.caption(f"{len(passages)} passage(s). The pipeline may leave out the lowest ones to fit the context window.")
        for message in store.preview(version, question, passages):
            st.markdown(f"**{message.role}**")
            st.code(message.content, language=None, wrap_lines=True)
