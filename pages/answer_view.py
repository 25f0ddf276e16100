"""Widgets that show one `Answer` in the chat: badges, sentences, sources, refusals, feedback."""

from __future__ import annotations

from collections.abc import Iterator

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.answering.pipeline import AnswerRun
from core.answering.presentation import (
    answer_html,
    highlight,
    highlight_spans,
    quotes_html,
    split_warnings,
    usage_caption,
)
from core.answers import Answer, Escalation
from core.governance.audit import FEEDBACK_REASONS, AuditWriteError
from pages.common import audit_log, current_user, services


def _original_button(doc_id: str, page: str, key: str) -> None:
    original = services().library.original_file(doc_id) if doc_id else None
    if original is not None:
        st.download_button(f"Open original ({original.name}{page})", original.read_bytes(),
                           file_name=original.name, key=key)


def render_sources(answer: Answer, key: str) -> None:
    lib = services().library
    with st.expander(f"Sources ({len(answer.citations)})", expanded=True):
        for c in answer.citations:
            page = f" · page {c.page}" if c.page else ""
            badge = ":green[verified]" if c.verified else ":orange[not verified]"
            st.markdown(f"**[{c.n}] {c.title}** · {c.section}{page} · {badge}")
            st.caption(f"{c.document} · version {c.version or '—'} · {c.issuer or 'issuer unknown'}")
            chunk = lib.passage(c.chunk_id)
            spans = [(q.char_start, q.char_end) for q in answer.quotes if q.chunk_id == c.chunk_id]
            if chunk and spans:  # the exact sentences quoted as the answer
                body = highlight_spans(chunk.text, spans)
            else:
                body = highlight(chunk.text if chunk else c.quote, c.quote)
            st.markdown(f"<div style='border-left:3px solid #0b5cad;padding-left:.6em'>{body}</div>",
                        unsafe_allow_html=True)
            _original_button(c.doc_id, page, f"{key}_src_{c.n}")


def render_nearest(answer: Answer, key: str) -> None:
    lib = services().library
    for i, r in enumerate(answer.nearest):
        page = f", page {r.page}" if r.page else ""
        with st.expander(f"{r.title} — {r.section}{page}"):
            chunk = lib.passage(r.chunk_id)
            st.markdown(chunk.text if chunk else "(passage no longer in the library)")
            _original_button(r.doc_id, page, f"{key}_near_{i}")


def render_escalation(escalation: Escalation) -> None:
    """The urgent-care text, then which layer of the screen raised it and on what words or values."""
    st.error(escalation.message, icon=":material/emergency:")
    if escalation.explanation:
        st.caption(f"Why: {escalation.explanation} ({escalation.layer} layer)")


def render_answer(answer: Answer, key: str) -> None:
    if answer.escalation:
        render_escalation(answer.escalation)
    if answer.refusal and answer.refusal.reason == "needs_clarification":
        st.info(answer.refusal.message, icon=":material/help:")
    elif answer.status == "refused" and answer.refusal:
        st.warning(answer.refusal.message, icon=":material/block:")
        if answer.nearest:
            st.markdown("**Closest guideline sections:**")
            render_nearest(answer, key)
    elif answer.status in ("answered", "escalated") and answer.quotes:
        render_quotes(answer)
        render_sources(answer, key)
    elif answer.status in ("answered", "escalated") and answer.sentences:
        if answer.grounded:
            st.success("Grounded: every sentence is supported by the passage it cites.", icon=":material/verified:")
        else:
            st.warning("Unverified: some statements are not supported by their cited passage. Read the sources.",
                       icon=":material/warning:")
        st.markdown(answer_html(answer), unsafe_allow_html=True)
        render_sources(answer, key)
    prominent, minor = split_warnings(answer)
    for w in prominent:
        st.warning(w, icon=":material/privacy_tip:")
    for w in minor:
        st.caption(f"⚠ {w}")
    st.caption(usage_caption(answer))


def render_quotes(answer: Answer) -> None:
    """The verified summary (if any) above the guideline sentences that answer, verbatim."""
    if answer.summary_shown:
        st.success("Summary verified against the cited passages.", icon=":material/verified:")
        st.markdown(answer_html(answer), unsafe_allow_html=True)
    st.markdown("**From your guidelines** (verbatim):")
    st.markdown(quotes_html(answer), unsafe_allow_html=True)


def show_quotes_first(run: AnswerRun, slot: DeltaGenerator) -> Iterator[str]:
    """Stream the model's draft, but show the quote-only answer in `slot` as soon as it exists (before
    the model writes a word): the clinician reads the guideline's sentences while the summary is drafted."""
    shown = False
    for piece in run:
        if run.evidence is not None and not shown:
            shown = True
            with slot.container():
                render_quotes(run.evidence)
                st.caption("Drafting a summary… (shown only if it verifies against the sources)")
        yield piece


def record_answer(answer: Answer) -> int | None:
    """Audit the answer; a failed write never blocks it (admins are told why)."""
    user, role = current_user()
    try:
        return audit_log().record(
            answer, user or "unknown", role or "unknown", st.session_state["chat_session_id"],
            store_raw=services().settings.audit.store_raw_questions,
        )
    except AuditWriteError as exc:
        st.session_state["chat_audit_error"] = str(exc)
        if role == "admin":
            st.warning(f"Audit log: {exc}", icon=":material/report:")
        return None


def feedback_widget(turn: dict[str, object], key: str) -> None:
    """Thumbs up/down, then an optional reason and comment, stored against the turn's audit record."""
    audit_id = turn.get("audit_id")
    if not isinstance(audit_id, int):
        return
    if turn.get("rated"):
        st.caption("Thank you: your feedback was recorded.")
        return
    thumbs = st.feedback("thumbs", key=f"{key}_thumbs")
    if thumbs is None:
        return
    with st.form(f"{key}_fb_form"):
        reason = st.selectbox("Reason (optional)", [None, *FEEDBACK_REASONS], key=f"{key}_fb_reason",
                              format_func=lambda r: "—" if r is None else str(r).replace("_", " "))
        comment = st.text_input("Comment (optional)", key=f"{key}_fb_comment")
        sent = st.form_submit_button("Send feedback")
    if sent:
        try:
            audit_log().add_feedback(audit_id, current_user()[0] or "unknown", 1 if thumbs == 1 else -1, reason, comment)
        except AuditWriteError as exc:
            st.error(f"Your feedback could not be saved: {exc}")
        else:
            turn["rated"] = True
            st.caption("Thank you: your feedback was recorded.")
