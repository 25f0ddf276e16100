"""Clinician chat: cited answers from the guideline library, verified before they are shown."""

from __future__ import annotations

import html
import re
import uuid

import streamlit as st

from core.answers import Answer
from core.audit import FEEDBACK_REASONS, AuditWriteError
from core.errors import CQAError
from core.pipeline import AskOptions, Turn
from core.prompt_store import prompt_store_for
from pages.common import answer_service, audit_log, current_user, require_role, services

require_role("admin", "clinician")
st.title("Ask the guidelines")
st.info(
    "Decision support only, not a medical device. Answers come from your organisation's guidelines; "
    "check the cited section before acting. In an emergency, follow your local emergency procedures.",
    icon=":material/info:",
)
svc = services()
answers = answer_service(st.session_state.get("chat_ollama_model"))
with st.sidebar:
    info = answers.llm.info
    if info.backend == "ollama":
        from core.llm.ollama_backend import OllamaBackend

        health = answers.llm.health()
        if not health.ok:
            st.warning(health.message)
        elif isinstance(answers.llm, OllamaBackend):
            tags = answers.llm.list_models()
            if tags:
                current = st.session_state.get("chat_ollama_model", info.name)
                st.selectbox("Ollama model", tags, index=tags.index(current) if current in tags else 0,
                             key="chat_ollama_model")
    st.caption(f"Model: **{info.name}** ({info.backend}, {info.context_window:,}-token context)")
    prompts = prompt_store_for(svc.settings)
    prompt_choice = st.selectbox("Prompt version", ["(active)", *[v.version for v in prompts.versions()]],
                                 key="chat_prompt_version", help="Admins set the active version; pick another to try it.")
st.session_state.setdefault("chat_turns", [])
turns: list[dict[str, object]] = st.session_state["chat_turns"]
st.session_state.setdefault("chat_session_id", uuid.uuid4().hex)
if current_user()[1] == "admin" and st.session_state.get("chat_audit_error"):
    st.warning(f"Audit log: {st.session_state['chat_audit_error']}", icon=":material/report:")
_MARK = re.compile(r"\s*\[(?:source|passage)?\s*\d+(?:\s*[,–-]\s*\d+)*\]", re.IGNORECASE)


def render_sentences(answer: Answer) -> None:
    parts = []
    for s in answer.sentences:
        marks = "".join(f"<sup>[{n}]</sup>" for n in s.citations)
        text = html.escape(_MARK.sub("", s.text).strip())
        if s.supported:
            parts.append(f"{text} {marks}")
        else:
            why = html.escape("; ".join(s.problems) or "not supported by the cited passage")
            parts.append(f"<span style='background:#fff3cd' title='{why}'>⚠ {text} {marks} <em>(unverified: {why})</em></span>")
    st.markdown(" ".join(parts) if parts else html.escape(answer.text), unsafe_allow_html=True)


def highlight(passage: str, quote: str) -> str:
    body = html.escape(passage)
    q = html.escape(quote.strip())
    return body.replace(q, f"<mark>{q}</mark>") if q and q in body else body


def render_sources(answer: Answer, key: str) -> None:
    lib = svc.library
    with st.expander(f"Sources ({len(answer.citations)})", expanded=True):
        for c in answer.citations:
            page = f" · page {c.page}" if c.page else ""
            badge = ":green[verified]" if c.verified else ":orange[not verified]"
            st.markdown(f"**[{c.n}] {c.title}** · {c.section}{page} · {badge}")
            st.caption(f"{c.document} · version {c.version or '—'} · {c.issuer or 'issuer unknown'}")
            chunk = next((x for x in lib.chunks(c.doc_id) if x.chunk_id == c.chunk_id), None)
            passage = chunk.text if chunk else c.quote
            st.markdown(f"<div style='border-left:3px solid #0b5cad;padding-left:.6em'>{highlight(passage, c.quote)}</div>",
                        unsafe_allow_html=True)
            original = lib.original_file(c.doc_id)
            if original is not None:
                st.download_button(f"Open original ({original.name}{page})", original.read_bytes(),
                                   file_name=original.name, key=f"{key}_src_{c.n}")


def render_nearest(answer: Answer, key: str) -> None:
    lib = svc.library
    for i, r in enumerate(answer.nearest):
        page = f", page {r.page}" if r.page else ""
        with st.expander(f"{r.title} — {r.section}{page}"):
            chunk = next((x for x in lib.chunks(r.doc_id) if x.chunk_id == r.chunk_id), None) if r.doc_id else None
            st.markdown(chunk.text if chunk else "(passage no longer in the library)")
            original = lib.original_file(r.doc_id) if r.doc_id else None
            if original is not None:
                st.download_button(f"Open original ({original.name}{page})", original.read_bytes(),
                                   file_name=original.name, key=f"{key}_near_{i}")


def render_answer(answer: Answer, key: str) -> None:
    if answer.escalation:
        st.error(answer.escalation.message, icon=":material/emergency:")
    if answer.refusal and answer.refusal.reason == "needs_clarification":
        st.info(answer.refusal.message, icon=":material/help:")
    elif answer.status == "refused" and answer.refusal:
        st.warning(answer.refusal.message, icon=":material/block:")
        if answer.nearest:
            st.markdown("**Closest guideline sections:**")
            render_nearest(answer, key)
    elif answer.status in ("answered", "escalated") and answer.sentences:
        if answer.grounded:
            st.success("Grounded: every sentence is supported by the passage it cites.", icon=":material/verified:")
        else:
            st.warning("Unverified: some statements are not supported by their cited passage. Read the sources.",
                       icon=":material/warning:")
        render_sentences(answer)
        render_sources(answer, key)
    for w in answer.warnings:
        if "patient identifiers" in w:
            st.warning(w, icon=":material/privacy_tip:")
        else:
            st.caption(f"⚠ {w}")
    t = answer.tokens
    adapter = f"{answer.adapter.name} ×{answer.adapter.scale:g}" if answer.adapter else "no adapter"
    st.caption(
        f"{answer.model} ({answer.backend}) · {adapter} · prompt {answer.prompt_version} · rules {answer.rule_set_version} · "
        f"{t.prompt + t.completion:,} / {t.context_window:,} tokens · {answer.timings.total_s:.1f} s"
    )


def record_answer(answer: Answer) -> int | None:
    """Audit the answer; a failed write never blocks it (admins are told why)."""
    user, role = current_user()
    try:
        return audit_log().record(
            answer, user or "unknown", role or "unknown", st.session_state["chat_session_id"],
            store_raw=svc.settings.audit.store_raw_questions,
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


for i, past in enumerate(turns):
    with st.chat_message("user"):
        st.markdown(str(past["question"]))
    with st.chat_message("assistant"):
        if past.get("answer"):
            render_answer(Answer.model_validate(past["answer"]), key=f"turn{i}")
            feedback_widget(past, key=f"turn{i}")
        elif past.get("error"):
            st.error(str(past["error"]))
        else:
            st.caption("Not answered: a new question was sent before this one finished. Ask it again.")

if svc.library.is_empty():
    st.warning("The guideline library is empty. An admin can upload guidelines on the library page.")
question = st.chat_input("Ask a question about your guidelines", key="chat_input")
if question:
    history = [Turn(question=str(t["question"]), answer=str(Answer.model_validate(t["answer"]).text))
               for t in turns if t.get("answer")]
    # Kept before answering: a new question sent while this one runs interrupts it, and the clinician
    # must still see what they asked.
    turn: dict[str, object] = {"question": question, "answer": None}
    turns.append(turn)
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        early = st.empty()
        decision = answers.screen(question)
        if decision.escalation:  # urgent-care text first, before any retrieval or generation
            early.error(decision.escalation.message, icon=":material/emergency:")
        try:
            prompt = prompts.active() if prompt_choice == "(active)" else prompts.get(prompt_choice).template
            run = answers.run(question, history, AskOptions(prompt=prompt))
            preview = st.empty()
            with preview.container():
                st.caption("Drafting from the guidelines… (checked against the sources before it is shown)")
                st.write_stream(run)
            preview.empty()
            answer = run.result()
        except CQAError as exc:
            st.error(str(exc))
            turn["error"] = str(exc)
        else:
            early.empty()  # render_answer shows the escalation again, in its place at the top
            render_answer(answer, key=f"turn{len(turns) - 1}")
            turn.update(answer=answer.model_dump(mode="json"), audit_id=record_answer(answer))
            feedback_widget(turn, key=f"turn{len(turns) - 1}")
