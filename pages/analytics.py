"""Admin analytics over the audit log: volume, outcomes, grounding, latency, feedback, library gaps."""

from __future__ import annotations

import math
from datetime import date

import streamlit as st

from core.governance.analytics import (
    citation_counts,
    compare_by,
    feedback_per_day,
    feedback_reasons,
    feedback_summary,
    headline,
    never_cited,
    per_day,
    refused_questions,
)
from core.governance.audit import AuditError, AuditFilters, to_bytes
from pages.common import audit_log, require_role, services


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0%}"


def _secs(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1f} s"


require_role("admin")
st.title("Analytics")
log = audit_log()
if log.last_failure:
    st.error(f"Last audit write failure (the answer was still shown): {log.last_failure}", icon=":material/report:")
try:
    everything = log.records()
    feedback = log.feedback_frame()
except AuditError as exc:
    st.error(str(exc))
    st.stop()
if everything.empty:
    st.info("No answers recorded yet. Every question asked on the Ask page is recorded here.")
    st.stop()

with st.sidebar:
    first = date.fromisoformat(everything["created_at"].iloc[0][:10])
    picked = st.date_input("Dates", value=(first, date.today()), key="an_dates")
    user = st.selectbox("User", ["(all)", *sorted(everything["user"].unique())], key="an_user")
    status = st.selectbox("Status", ["(all)", "answered", "refused", "escalated"], key="an_status")
days = list(picked) if isinstance(picked, tuple) else [picked]
since, until = (days[0], days[-1]) if days else (None, None)
filters = AuditFilters(since=since, until=until, user=None if user == "(all)" else user,
                       status=None if status == "(all)" else status)
frame = log.records(**filters)
feedback = log.feedback_frame(**filters)
if frame.empty:
    st.info("No answers match these filters.")
    st.stop()

h = headline(frame)
cols = st.columns(6)
cols[0].metric("Questions", f"{h['questions']:.0f}")
cols[1].metric("Answered", _pct(h["answered_rate"]))
cols[2].metric("Refused", _pct(h["refused_rate"]))
cols[3].metric("Escalated", _pct(h["escalated_rate"]))
cols[4].metric("Verified citations", _pct(h["grounded_rate"]), help="Answered questions whose every sentence is supported.")
cols[5].metric("Latency p50 / p95", f"{_secs(h['latency_p50_s'])} / {_secs(h['latency_p95_s'])}")

st.subheader("Questions per day")
st.bar_chart(per_day(frame, "status"))
st.subheader("Feedback")
if feedback.empty:
    st.caption("No feedback yet.")
else:
    votes = feedback_summary(feedback)
    st.caption(f"👍 {votes['up']} · 👎 {votes['down']}")
    st.bar_chart(feedback_per_day(feedback))
    st.dataframe(feedback_reasons(feedback))

st.subheader("Most frequent refused questions")
st.caption("Gaps in the library: questions refused, grouped by their normalised text.")
st.dataframe(refused_questions(frame, embed=services().embedder.embed), hide_index=True)

st.subheader("Documents")
active = [d.file_name for d in services().library.documents() if d.status == "active"]
left, right = st.columns(2)
left.markdown("**Most cited**")
left.dataframe(citation_counts(frame), hide_index=True)
right.markdown("**Never cited**")
right.dataframe({"document": never_cited(frame, active)})

st.subheader("Per prompt version and adapter")
st.dataframe(compare_by(frame, feedback, "prompt_version"), hide_index=True)
st.dataframe(compare_by(frame, feedback, "adapter_name"), hide_index=True)

st.subheader("Export")
stamp = f"{since or 'all'}_{until or 'all'}"
left, right = st.columns(2)
left.download_button("Download CSV", to_bytes(frame, "csv"), file_name=f"audit_{stamp}.csv", mime="text/csv", key="an_csv")
right.download_button("Download JSONL", to_bytes(frame, "jsonl"), file_name=f"audit_{stamp}.jsonl",
                      mime="application/jsonl", key="an_jsonl")
