"""Compare page helpers: pick configuration A and B, make them runnable, show one side's answer."""

from __future__ import annotations

import streamlit as st

from core.answering.pipeline import AnswerService
from core.answering.prompt_store import PromptStore
from core.answers import Answer
from core.errors import CQAError
from core.evaluation.compare import (
    BASE_MODEL,
    CompareConfig,
    Side,
    available_adapters,
    build_side,
    config_service,
    uses_configured_backend,
)
from core.safety.triage import screen_stamp
from core.settings import Settings
from pages.common import answer_service, services

NO_ADAPTER = "none (base model)"
BACKENDS = ["configured", "embedded", "ollama"]


def pick_configs(settings: Settings, prompts: PromptStore) -> tuple[CompareConfig, CompareConfig]:
    labels = [v.version for v in prompts.versions()]
    active = labels.index(prompts.active().version)
    adapters = [NO_ADAPTER, *available_adapters(settings)]
    col_a, col_b = st.columns(2)
    with col_a:
        config_a = _pick("A", "cmp_a", labels, active, adapters, settings)
    with col_b:
        config_b = _pick("B", "cmp_b", labels, len(labels) - 1, adapters, settings)
    if len(adapters) == 1:
        st.caption("No LoRA adapter is installed yet (data/adapters or the data folder's adapters/): both sides use the base model.")
    return config_a, config_b


def _pick(side: str, key: str, labels: list[str], index: int, adapters: list[str], settings: Settings) -> CompareConfig:
    prompt = st.selectbox(f"{side}: prompt version", labels, index=index, key=key)
    adapter = st.selectbox(f"{side}: adapter", adapters, key=f"{key}_adapter")
    scale = st.slider(f"{side}: adapter scale", 0.0, 1.0, 1.0, 0.05, key=f"{key}_scale", disabled=adapter == NO_ADAPTER)
    backend = st.selectbox(f"{side}: backend", BACKENDS, key=f"{key}_backend",
                           format_func=lambda b: f"configured ({settings.llm.backend})" if b == "configured" else b)
    model = None
    if backend == "ollama":
        model = st.text_input(f"{side}: Ollama model", settings.llm.ollama_model, key=f"{key}_model").strip() or None
    config = CompareConfig(
        prompt=prompt, adapter=BASE_MODEL if adapter == NO_ADAPTER else adapter, scale=scale,
        backend=None if backend == "configured" else backend, model=model,  # type: ignore[arg-type]
    )
    st.caption(f"`{config}`" if str(config) else "defaults")
    return config


@st.cache_resource(show_spinner="Loading the language model…", max_entries=8)
def _backend_service(data_dir: str, backend: str, model: str | None, stamp: str) -> AnswerService:
    # One per backend and model tag (and rules version, as in pages.common); the embedded model itself
    # is loaded once per process whichever service holds it.
    return config_service(CompareConfig(backend=backend, model=model), services())  # type: ignore[arg-type]


def make_side(config: CompareConfig, name: str, settings: Settings, prompts: PromptStore) -> Side | None:
    """The runnable side, or None after showing why it cannot run (unknown adapter or prompt, no model)."""
    try:
        if uses_configured_backend(config, settings.llm):
            service = answer_service()
        else:
            service = _backend_service(str(settings.data_dir), str(config.backend), config.model, screen_stamp(settings))
        return build_side(config, service, prompts, settings)
    except CQAError as exc:
        st.error(f"{name}: {exc}")
        return None


def show_side(title: str, config: str, answer: Answer) -> None:
    st.subheader(title)
    st.caption(config)
    if answer.escalation:
        st.error(f"Escalated ({answer.escalation.level}): {answer.escalation.message}")
        if answer.escalation.explanation:
            st.caption(f"Why: {answer.escalation.explanation} ({answer.escalation.layer} layer)")
    if answer.status == "refused" and answer.refusal and answer.refusal.reason == "model_unavailable":
        st.error(f"This side's model could not answer: {answer.refusal.message}")
        return
    if answer.summary_error:  # the quotes still answer; the model, which is what is compared, did not
        st.error(f"This side's model could not answer: {answer.summary_error}")
    if answer.status == "refused" and answer.refusal:
        st.warning(f"Refused ({answer.refusal.reason.replace('_', ' ')})")
    elif answer.quotes:
        if answer.summary_shown:
            st.success("Summary verified: shown above the guideline sentences.")
        else:
            st.warning("Summary not shown (it did not verify): the guideline sentences alone answer.")
            if answer.summary:
                with st.expander("Unverified model summary (for comparing configurations, never shown as an answer)"):
                    st.caption(answer.summary)
    elif answer.grounded:
        st.success("Grounded: every sentence is supported by its cited passage.")
    else:
        st.warning("Not fully grounded.")
    st.markdown(answer.text)
    for c in answer.citations:
        badge = ":green[verified]" if c.verified else ":orange[not verified]"
        st.markdown(f"[{c.n}] {c.title} · {c.section} · {badge}")
    t = answer.tokens
    adapter = f" · adapter {answer.adapter.name} ×{answer.adapter.scale:g}" if answer.adapter else ""
    st.caption(f"{answer.timings.total_s:.2f} s · {t.prompt:,} prompt + {t.completion:,} completion tokens · "
               f"prompt {answer.prompt_version}{adapter} · {answer.model} ({answer.backend})")
