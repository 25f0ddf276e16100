"""Compare two configurations side by side on the same retrieved passages, and record which is better."""

from __future__ import annotations

import streamlit as st

from core.answering.prompt_store import prompt_store_for
from core.answers import Comparison
from core.errors import CQAError
from core.evaluation.compare import compare_sides
from core.governance.preferences import PreferenceError, Preferred, preference_store_for
from core.settings import Settings
from pages.common import current_user, require_role
from pages.compare_batch import batch_mode
from pages.compare_sides import make_side, pick_configs, show_side

require_role("admin", "clinician")
st.title("Compare configurations")
st.caption("Retrieved once per question; A and B answer from the identical passages (temperature 0, fixed seed).")
settings = Settings()
prompts = prompt_store_for(settings)
st.session_state.setdefault("cmp_result", None)
st.session_state.setdefault("cmp_saved", False)

mode = st.radio("Mode", ["One question", "Evaluation set"], horizontal=True, key="cmp_mode")
config_a, config_b = pick_configs(settings, prompts)
if mode == "Evaluation set":
    batch_mode(settings, prompts, config_a, config_b)
    st.stop()

question = st.text_input("Question", key="cmp_question")
if st.button("Run", key="cmp_run", type="primary", disabled=not question.strip()):
    side_a, side_b = make_side(config_a, "A", settings, prompts), make_side(config_b, "B", settings, prompts)
    if side_a is not None and side_b is not None:
        try:
            with st.spinner("Answering with A, then B…"):
                result = compare_sides(question, side_a, side_b)
        except CQAError as exc:
            st.error(str(exc))
        else:
            st.session_state["cmp_result"] = result.model_dump(mode="json")
            st.session_state["cmp_saved"] = False

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
