"""The "Train a new adapter" section of the models page (UI only; core.adapters.jobs does the work)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.adapters.jobs import cancel_training, check_new_name, forget_job, list_jobs, start_training
from core.adapters.registry import NAME_PATTERN
from core.adapters.train import build_dataset_from
from core.errors import CQAError
from pages.common import services


def training_section(adapters_dir: Path) -> None:
    st.subheader("Train a new adapter")
    st.caption(
        "Builds instruction examples from the active guidelines (cited answers, refusals, urgent-care "
        "messages, clarifying questions; validation on documents the adapter never sees), trains a LoRA "
        "on the bundled model on this machine's CPU, converts it to GGUF and registers it with a model "
        "card comparing it with the base model. The app stays usable meanwhile; about 30 minutes."
    )
    with st.form("tr_form"):
        name = st.text_input("Adapter name", placeholder="e.g. cite-2026-12", key="tr_name")
        description = st.text_input("Description", key="tr_description")
        minutes = st.slider("Time budget (minutes of training)", 2, 60, 30, key="tr_minutes")
        evaluate = st.checkbox("Evaluate against the base model afterwards (adds a few minutes)", True, key="tr_eval")
        submitted = st.form_submit_button("Build dataset and train")
    if submitted:
        _start(adapters_dir, name.strip(), description.strip(), minutes, evaluate)
    _jobs(adapters_dir)


def _start(adapters_dir: Path, name: str, description: str, minutes: int, evaluate: bool) -> None:
    if not NAME_PATTERN.fullmatch(name):
        st.error("Give the adapter a name of 1-64 letters, digits, '.', '_' or '-'.")
        return
    svc = services()
    try:
        check_new_name(adapters_dir, name)
        with st.spinner("Building the dataset from the guideline library…"):
            dataset = build_dataset_from(svc)
        start_training(adapters_dir, name, dataset, description=description, time_budget_s=minutes * 60,
                       evaluate=evaluate, env={"CQA_DATA_DIR": str(svc.settings.data_dir)})
    except CQAError as exc:
        st.error(str(exc))
        return
    counts = ", ".join(f"{k} {v}" for k, v in dataset.report.counts.items())
    st.success(f"Training {name!r} started on {dataset.report.examples} examples ({counts}).")


@st.fragment(run_every=3)
def _jobs(adapters_dir: Path) -> None:
    for job in list_jobs(adapters_dir):
        with st.container(border=True):
            st.markdown(f"**{job.name}** · {job.phase} · {job.elapsed_s:.0f} s")
            if job.running:
                loss = f" · loss {job.loss:.3f}" if job.loss is not None else ""
                st.progress(job.fraction, text=f"{job.message}{loss}")
                if st.button("Cancel", key=f"tr_cancel_{job.name}"):
                    cancel_training(adapters_dir, job.name)
                    st.rerun()
                continue
            if job.phase == "done":
                st.success(f"{job.message} It is listed above; reload the page to see its model card.")
            elif job.phase == "cancelled":
                st.info(job.message)
            else:
                st.error(job.message or "The run failed.")
                with st.expander("Log"):
                    st.code(job.log_tail or "(empty)")
            if st.button("Remove from this list", key=f"tr_forget_{job.name}"):
                forget_job(adapters_dir, job.name)
                st.rerun()
