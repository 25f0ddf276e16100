"""Compare two configurations side by side on the same retrieved passages, and record which is better."""

from __future__ import annotations

import streamlit as st

from core.answers import Answer
from core.compare import Comparison, PreferenceError, Preferred, compare, preference_store_for
from core.errors import CQAError
from core.pipeline import AskOptions
from core.prompt_store import prompt_store_for
from core.settings import Settings
from pages.common import answer_service, current_user, require_role

require_role("admin", "clinician")
st.title("Compare configurations")
st.caption("One question is retrieved once; A and B answer from the identical passages (temperature 0, fixed seed).")
settings = Settings()
prompts = prompt_store_for(settings)
st.session_state.setdefault("cmp_result", None)
st.session_state.setdefault("cmp_saved", False)

labels = [v.version for v in prompts.versions()]
active = prompts.active().version
col_a, col_b = st.columns(2)
version_a = col_a.selectbox("A: prompt version", labels, index=labels.index(active), key="cmp_a")
version_b = col_b.selectbox("B: prompt version", labels, index=len(labels) - 1, key="cmp_b")
st.caption("LoRA adapters are not available yet: both sides use the base model.")
question = st.text_input("Question", key="cmp_question")

if st.button("Run", key="cmp_run", type="primary", disabled=not question.strip()):
    options_a = AskOptions(prompt=prompts.get(version_a).template)
    options_b = AskOptions(prompt=prompts.get(version_b).template)
    try:
        with st.spinner("Answering with A, then B…"):
            result = compare(answer_service(), question, options_a, options_b)
    except CQAError as exc:
        st.error(str(exc))
    else:
        st.session_state["cmp_result"] = result.model_dump(mode="json")
        st.session_state["cmp_saved"] = False


def show_side(title: str, config: str, answer: Answer) -> None:
    st.subheader(title)
    st.caption(config)
    if answer.escalation:
        st.error(f"Escalated ({answer.escalation.level}): {answer.escalation.message}")
    if answer.status == "refused" and answer.refusal:
        st.warning(f"Refused ({answer.refusal.reason.replace('_', ' ')})")
    elif answer.grounded:
        st.success("Grounded: every sentence is supported by its cited passage.")
    else:
        st.warning("Not fully grounded.")
    st.markdown(answer.text)
    for c in answer.citations:
        badge = ":green[verified]" if c.verified else ":orange[not verified]"
        st.markdown(f"[{c.n}] {c.title} · {c.section} · {badge}")
    t = answer.tokens
    st.caption(f"{answer.timings.total_s:.2f} s · {t.prompt:,} prompt + {t.completion:,} completion tokens · "
               f"prompt {answer.prompt_version} · {answer.model} ({answer.backend})")


raw = st.session_state["cmp_result"]
if raw is not None:
    result = Comparison.model_validate(raw)
    st.caption(f"{len(result.passages)} passage(s) retrieved once in {result.retrieve_s:.2f} s for both sides.")
    left, right = st.columns(2)
    with left:
        show_side("A", result.config_a, result.a)
    with right:
        show_side("B", result.config_b, result.b)
    st.markdown("**Differences**")
    st.dataframe(result.differences_frame(), hide_index=True)
    if st.session_state["cmp_saved"]:
        st.success("Your preference was saved.")
    else:
        with st.form("cmp_pref"):
            choices: list[Preferred] = ["A", "B", "tie"]
            preferred = st.radio("Which is better?", choices, horizontal=True, key="cmp_preferred") or "tie"
            reason = st.text_area("Why?", key="cmp_reason")
            save = st.form_submit_button("Save preference")
        if save:
            try:
                preference_store_for(settings).record(result, preferred, reason, current_user()[0] or "unknown")
            except PreferenceError as exc:
                st.error(str(exc))
            else:
                st.session_state["cmp_saved"] = True
                st.success("Your preference was saved.")
