"""Admin: read, edit, validate and test the safety rules, then save them to the data folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from core.errors import CQAError
from core.safety.emergency_classifier import EmergencyClassifier, retrain
from core.safety.rule_files import rules_dir, save_rule_file
from core.safety.rule_loading import read_sources
from core.safety.rule_schema import RuleError
from core.safety.rules import RuleSet
from core.safety.safety_set import SAFETY_CASES, load_cases
from core.safety.triage import classifier_path
from core.safety.vitals import DEFAULT_VITALS_PATH
from pages.common import require_role, services

require_role("admin")
settings = services().settings
folder = rules_dir(settings)
st.title("Safety rules")
st.caption(f"Rules read from `{folder}`. Saving writes to `{settings.data_dir / 'rules'}` and keeps a backup.")

sources = read_sources(folder)
current: RuleSet | None
try:
    current = RuleSet.from_sources(sources)
except RuleError as exc:
    current = None
    st.error(f"The saved rules do not load:\n\n{exc}")
if current is not None:
    st.caption(f"Rule set version `{current.version}` · {len(current.rules)} rules")
    st.dataframe(
        pd.DataFrame([
            {"id": r.id, "kind": r.kind, "level/reason": r.level or r.reason or "", "patterns": r.n_patterns,
             "examples": len(r.examples.match) + len(r.examples.no_match), "description": r.description}
            for r in current.rules
        ]),
        hide_index=True, key="rules_table",
    )

names = {Path(k).name: k for k in sources}
chosen = st.selectbox("Rule file", list(names), key="rules_file")
text = st.text_area("YAML", value=sources[names[chosen]], height=480, key=f"rules_text_{chosen}")
digest = hashlib.sha256(f"{chosen}\n{text}".encode()).hexdigest()
edited = {**sources, names[chosen]: text}

c1, c2, c3 = st.columns(3)
validate = c1.button("Validate", key="rules_validate")
run_tests = c2.button("Run tests", key="rules_run")
if validate or run_tests:
    try:
        candidate = RuleSet.from_sources(edited)
    except RuleError as exc:
        st.session_state.pop("rules_valid", None)
        for problem in exc.problems:
            st.error(problem)
    else:
        st.session_state["rules_valid"] = digest
        st.success(f"Valid: {len(candidate.rules)} rules, version `{candidate.version}` (not saved yet).")
        if run_tests:
            report = candidate.evaluate(load_cases(SAFETY_CASES))
            examples = candidate.run_examples()
            metrics = report.metrics()
            failed = sum(not e.passed for e in examples)
            st.markdown(
                f"**Rule examples:** {len(examples) - failed}/{len(examples)} pass · **Safety set:** "
                f"{sum(r.passed for r in report.results)}/{len(report.results)} pass · missed emergent "
                f"{int(metrics['missed_emergent'])} · over-escalation on controls {metrics['over_escalation_controls']:.0%}"
                f" · false refusals {metrics['false_refusal_answerable']:.0%}"
            )
            st.dataframe(pd.DataFrame(report.by_class()), hide_index=True, key="rules_summary")
            rows = [r.model_dump(include={"id", "cls", "expect", "got", "passed", "message"}) for r in examples + report.results]
            st.dataframe(pd.DataFrame(rows).sort_values("passed"), hide_index=True, key="rules_results")

if c3.button("Save", key="rules_save", type="primary", disabled=st.session_state.get("rules_valid") != digest):
    try:
        path = save_rule_file(settings, chosen, text)
    except RuleError as exc:
        st.error(str(exc))
    else:
        st.success(f"Saved {path}. New answers use it once the answer service reloads the rules.")

st.divider()
st.subheader("The other layers of the emergency screen")
st.caption("Every message passes the rules above, then the vital-signs thresholds, then the learned classifier; "
           "the first layer that escalates is shown with the words or values that triggered it (docs/safety.md).")
with st.expander("Vital-signs thresholds (data/triage/vitals.yaml, read-only here; sources in docs/vitals.md)"):
    st.code(DEFAULT_VITALS_PATH.read_text(encoding="utf-8"), language="yaml")
model_file = classifier_path(settings)
try:
    classifier = EmergencyClassifier.load(model_file)
except CQAError as exc:
    st.error(str(exc))
else:
    with st.expander(f"Learned classifier `{classifier.version}` (`{model_file.name}`)", expanded=False):
        report = classifier.report
        screen = report.get("cross_validated_screen", {})
        st.markdown(
            f"Trained on **{report.get('examples')}** messages ({report.get('emergencies')} emergencies, "
            f"{report.get('non_urgent')} non-urgent) over **{report.get('categories')}** categories. Escalates at "
            f"probability ≥ **{classifier.threshold}** ("
            + (f"a single sentence of a longer message ≥ {classifier.sentence_threshold}" if classifier.sentence_threshold <= 1
               else "the sentences of a longer message are not scored on their own")
            + "); never on a message that reads as a guideline question. "
            f"Cross-validated, the whole screen: recall {screen.get('recall')}, over-escalation {screen.get('over_escalation')}."
        )
        per_category = report.get("per_category")
        if isinstance(per_category, dict):
            st.dataframe(pd.DataFrame([{"category": k, **v} for k, v in per_category.items()]), hide_index=True,
                         key="rules_classifier_categories")
    if st.button("Retrain the classifier from the corpus and these rules' examples", key="rules_retrain"):
        with st.spinner("Embedding the training messages and fitting the classifier (about a minute)…"):
            try:
                trained = retrain(services().embedder, folder, out=settings.data_dir / "triage" / "classifier.json")
            except (CQAError, RuleError, OSError) as exc:
                st.error(f"Retraining failed: {exc}")
            else:
                cv = trained.report.get("cross_validated_screen", {})
                st.success(f"Retrained `{trained.version}`: threshold {trained.threshold}, cross-validated recall "
                           f"{cv.get('recall')}, over-escalation {cv.get('over_escalation')}. New questions use it.")
