"""Clinician chat: cited answers from the guideline library, verified before they are shown."""

from __future__ import annotations

import uuid

import streamlit as st

from core.answering.pipeline import AskOptions
from core.answering.presentation import history
from core.answering.prompt_store import prompt_store_for
from core.answers import Answer
from core.errors import CQAError
from pages.answer_view import feedback_widget, record_answer, render_answer, render_escalation, show_quotes_first
from pages.common import adapter_picker, answer_service, current_user, ollama_status, require_role, services

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
        ok, message, tags = ollama_status(svc.settings.llm.ollama_host, info.name)
        if not ok:
            st.warning(message)
        elif tags:
            current = st.session_state.get("chat_ollama_model", info.name)
            st.selectbox("Ollama model", tags, index=tags.index(current) if current in tags else 0,
                         key="chat_ollama_model")
    st.caption(f"Model: **{info.name}** ({info.backend}, {info.context_window:,}-token context)")
    prompts = prompt_store_for(svc.settings)
    prompt_choice = st.selectbox("Prompt version", ["(active)", *[v.version for v in prompts.versions()]],
                                 key="chat_prompt_version", help="Admins set the active version; pick another to try it.")
    adapter = adapter_picker(svc.settings, answers.llm)
st.session_state.setdefault("chat_turns", [])
turns: list[dict[str, object]] = st.session_state["chat_turns"]
st.session_state.setdefault("chat_session_id", uuid.uuid4().hex)
if current_user()[1] == "admin" and st.session_state.get("chat_audit_error"):
    st.warning(f"Audit log: {st.session_state['chat_audit_error']}", icon=":material/report:")


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
    earlier = history(turns)
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
            with early.container():
                render_escalation(decision.escalation)
        try:
            prompt = prompts.active() if prompt_choice == "(active)" else prompts.get(prompt_choice).template
            run = answers.run(question, earlier, AskOptions(prompt=prompt, adapter=adapter), screened=decision)
            quotes, preview = st.empty(), st.empty()
            with preview.container():
                st.caption("Searching the guidelines…")
                st.write_stream(show_quotes_first(run, quotes))
            preview.empty()
            answer = run.result()
            quotes.empty()
        except CQAError as exc:
            st.error(str(exc))
            turn["error"] = str(exc)
        else:
            early.empty()  # render_answer shows the escalation again, in its place at the top
            render_answer(answer, key=f"turn{len(turns) - 1}")
            turn.update(answer=answer.model_dump(mode="json"), audit_id=record_answer(answer))
            feedback_widget(turn, key=f"turn{len(turns) - 1}")
