"""Compare page, batch mode: A and B over an evaluation set, a few cases per script run.

Each run compares cases for about `CHUNK_S` seconds, stores them in the session and reruns, so the
Cancel button is read between chunks: a cancelled batch stops after the case in progress, and what is
finished stays (summary, charts, drill-down, CSV).
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from core.answering.prompt_store import PromptStore
from core.evaluation.cases import EvalCase, load_cases, parse_cases
from core.evaluation.compare import CompareConfig
from core.evaluation.compare_batch import (
    EVAL_SET,
    LATENCY_METRICS,
    RATE_METRICS,
    BatchCase,
    BatchRun,
    cases_frame,
    run_batch,
    summary_frame,
)
from core.settings import Settings
from pages.compare_sides import make_side, show_side

STATE = "cmpb_state"
CHUNK_S = 1.0
SHIPPED, UPLOAD = "shipped", "upload"
TABLE_COLUMNS = ["id", "expect", "retrieval_hit", "a_status", "a_expected", "a_grounded", "a_total_s",
                 "b_status", "b_expected", "b_grounded", "b_total_s", "question"]


def batch_mode(settings: Settings, prompts: PromptStore, config_a: CompareConfig, config_b: CompareConfig) -> None:
    st.session_state.setdefault(STATE, None)
    state: dict[str, Any] | None = st.session_state[STATE]
    running = state is not None and state["status"] == "running"
    cases = _pick_cases()
    st.button("Run A and B on every case", key="cmpb_run", type="primary", disabled=not cases or running,
              on_click=_start, args=(cases or [], config_a, config_b))
    if state is None:
        return
    if state["status"] == "running":
        _advance(state, settings, prompts)
    else:
        _show_results(state)


def _pick_cases() -> list[EvalCase] | None:
    source = st.radio("Evaluation set", [SHIPPED, UPLOAD], horizontal=True, key="cmpb_source",
                      format_func=lambda s: f"shipped ({EVAL_SET.name})" if s == SHIPPED else "upload a JSONL file")
    try:
        if source == SHIPPED:
            cases = load_cases(EVAL_SET)
        else:
            upload = st.file_uploader("Cases (JSONL: id, question, expect, sources)", type=["jsonl"], key="cmpb_file")
            if upload is None:
                return None
            cases = parse_cases(upload.getvalue().decode("utf-8"), upload.name)
    except UnicodeDecodeError:
        st.error("The file is not UTF-8 text; save it as UTF-8 JSONL.")
        return None
    except (OSError, ValueError) as exc:
        st.error(str(exc))
        return None
    if not cases:
        st.error("The file holds no cases.")
        return None
    counts = {e: sum(c.expect == e for c in cases) for e in ("answer", "refuse", "escalate")}
    st.caption(f"{len(cases)} cases: " + ", ".join(f"{n} {e}" for e, n in counts.items()))
    return cases


def _start(cases: list[EvalCase], config_a: CompareConfig, config_b: CompareConfig) -> None:
    st.session_state[STATE] = {
        "status": "running", "configs": [str(config_a), str(config_b)],
        "cases": [c.model_dump(mode="json") for c in cases], "run": None,
    }


def _cancel() -> None:
    st.session_state[STATE]["status"] = "cancelled"


def _advance(state: dict[str, Any], settings: Settings, prompts: PromptStore) -> None:
    a, b = (make_side(CompareConfig.parse(c), name, settings, prompts) for c, name in zip(state["configs"], "AB", strict=True))
    if a is None or b is None:
        state["status"] = "failed"
        return
    cases = [EvalCase.model_validate(c) for c in state["cases"]]
    run = BatchRun.model_validate(state["run"]) if state["run"] else BatchRun(config_a=a.label, config_b=b.label, total=len(cases))
    done = len(run.cases)
    st.progress(done / len(cases), text=f"{done} of {len(cases)} cases compared…")
    st.button("Cancel", key="cmpb_cancel", on_click=_cancel)
    started = time.monotonic()

    def keep_going(_done: int, _total: int, item: BatchCase) -> bool:
        run.cases.append(item)
        return time.monotonic() - started < CHUNK_S

    run_batch(cases[done:], a, b, progress=keep_going)
    state["run"] = run.model_dump(mode="json")
    if len(run.cases) >= len(cases):
        state["status"] = "done"
    st.rerun()


def _show_results(state: dict[str, Any]) -> None:
    if state["run"] is None:
        if state["status"] == "cancelled":
            st.info("Cancelled before the first case finished.")
        return
    run = BatchRun.model_validate(state["run"])
    if run.cancelled:
        st.warning(f"Cancelled after {len(run.cases)} of {run.total} cases; the summary covers those.")
    else:
        st.success(f"Compared A and B on {run.total} cases.")
    st.caption(f"A: {run.config_a}  \nB: {run.config_b}")
    summary = summary_frame(run)
    st.dataframe(summary)
    left, right = st.columns(2)
    left.bar_chart(summary.loc[RATE_METRICS].dropna(), stack=False, horizontal=True, y_label="rate (0-1)")
    right.bar_chart(summary.loc[LATENCY_METRICS], stack=False, y_label="seconds")
    frame = cases_frame(run)
    st.dataframe(frame[TABLE_COLUMNS], hide_index=True)
    st.download_button("Download per-case CSV", frame.to_csv(index=False).encode("utf-8"),
                       file_name="comparison.csv", mime="text/csv", key="cmpb_csv")
    by_id = {item.case.id: item for item in run.cases}
    picked = st.selectbox("Case", list(by_id), key="cmpb_case",
                          format_func=lambda i: f"{i} · {by_id[i].case.expect} · {by_id[i].case.question[:80]}")
    if picked is not None:
        item = by_id[picked]
        st.markdown(f"**{item.case.question}** (expected: {item.case.expect})")
        col_a, col_b = st.columns(2)
        with col_a:
            show_side("A", run.config_a, item.a)
        with col_b:
            show_side("B", run.config_b, item.b)
