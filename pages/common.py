"""Shared UI pieces: the cached services, the signed-in user, and passage rendering."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.adapters.registry import AdapterRegistry
from core.answering.pipeline import AnswerService
from core.bootstrap import FirstStart, ensure_demo_users, first_start
from core.errors import CQAError
from core.governance.audit import AuditLog, audit_url
from core.governance.users import Role, UserStore
from core.llm import AdapterChoice, LLMBackend
from core.safety.triage import screen_stamp
from core.schema import RetrievedPassage
from core.services import Services, build_answer_service, build_services, start_cache_warmup
from core.settings import Settings


def _close(value: tuple[Services, FirstStart]) -> None:
    value[0].close()


@st.cache_resource(show_spinner="Opening the guideline library (first start indexes the demo corpus)…", on_release=_close)
def _services(data_dir: str) -> tuple[Services, FirstStart]:
    # Keyed by data folder so tests (and a second corpus) never share an instance by accident.
    services = build_services(Settings(data_dir=data_dir))
    started = first_start(services.settings, services.library)
    start_cache_warmup(services)
    return services, started


def services() -> Services:
    """The process-wide services; on failure shows the reason and stops the page."""
    try:
        return _services(str(Settings().data_dir))[0]
    except CQAError as exc:
        st.error(f"The guideline library is unavailable: {exc}")
        st.stop()
        raise  # unreachable: st.stop raises


@st.cache_resource(show_spinner="Loading the language model…", max_entries=8)
def _answer_service(data_dir: str, backend: str, ollama_model: str, rules_version: str) -> AnswerService:
    # Keyed by the rules' version so an admin's saved edit takes effect on the next question.
    settings = Settings()
    llm = None
    if backend == "ollama":
        from core.llm.ollama_backend import OllamaBackend

        llm = OllamaBackend(settings.llm.model_copy(update={"ollama_model": ollama_model}))
    return build_answer_service(services(), llm)


def answer_service(ollama_model: str | None = None) -> AnswerService:
    """The process-wide answer pipeline (one model in memory, shared behind its lock); with Ollama,
    one per model tag the user picks (a light client, no model is loaded here)."""
    settings = Settings()
    try:
        return _answer_service(
            str(settings.data_dir), settings.llm.backend, ollama_model or settings.llm.ollama_model,
            screen_stamp(settings),
        )
    except CQAError as exc:
        st.error(f"The language model is unavailable: {exc}")
        st.stop()
        raise


def _close_audit(log: AuditLog) -> None:
    log.close()


@st.cache_resource(on_release=_close_audit)
def _audit_log(url: str) -> AuditLog:
    # One per database, shared by every session, so `last_failure` reaches the analytics page.
    return AuditLog(url)


def audit_log() -> AuditLog:
    """The process-wide audit log of the configured data folder."""
    return _audit_log(audit_url(Settings()))


@st.cache_data(ttl=30, show_spinner=False)
def ollama_status(host: str, model: str) -> tuple[bool, str, list[str]]:
    """(ok, message, installed tags), asked at most every 30 s: an unreachable server must not make
    every rerun of the chat wait for a connection timeout."""
    from core.llm.ollama_backend import OllamaBackend

    llm = answer_service(model).llm
    health = llm.health()
    if not health.ok or not isinstance(llm, OllamaBackend):
        return health.ok, health.message, []
    try:
        return True, health.message, llm.list_models()
    except CQAError as exc:
        return False, str(exc), []


def user_store() -> UserStore:
    settings = Settings()
    ensure_demo_users(settings)
    return UserStore(settings.users_path, settings.auth.cookie_name, settings.auth.cookie_expiry_days)


def current_user() -> tuple[str | None, Role | None]:
    return st.session_state.get("auth_user"), st.session_state.get("auth_role")


def require_role(*roles: Role) -> None:
    """Defence in depth: navigation hides pages, and each page checks again."""
    _, role = current_user()
    if role not in roles:
        st.error("You do not have access to this page.")
        st.stop()


def show_passages(passages: list[RetrievedPassage], key: str) -> None:
    if not passages:
        st.info("No passages found in the searchable guidelines.")
        return
    lib = services().library
    for i, p in enumerate(passages, 1):
        page = f"page {p.page}" if p.page else "no pages"
        with st.container(border=True):
            st.markdown(f"**[{i}] {p.title}** · {p.section_label} · {page}")
            caption = f"{p.file_name} · version {p.version or '—'} · effective {p.effective_date or '—'} · {p.issuer or 'issuer unknown'}"
            if p.similarity is not None:
                caption += f" · similarity {p.similarity:.2f}"
            st.caption(caption)
            st.markdown(p.text)
            _download_original(lib.original_file(p.doc_id), f"{key}_dl_{i}_{p.chunk_id}", p.page)


def _download_original(path: Any, key: str, page: int | None) -> None:
    if path is None:
        return
    label = f"Download original ({path.name}{', see page ' + str(page) if page else ''})"
    st.download_button(label, data=path.read_bytes(), file_name=path.name, key=key)


NO_ADAPTER = "(none)"


def adapter_picker(settings: Settings, llm: LLMBackend) -> AdapterChoice | None:
    """Sidebar: an adapter from the registry and its strength for this session; None = base model.

    With Ollama the adapter becomes a derived model tag; if the server refuses to create it, its
    error is shown (once per adapter and session) and the base model answers.
    """
    registry = AdapterRegistry.for_settings(settings)
    options = [NO_ADAPTER, *registry.names()]
    preset = settings.llm.default_adapter if llm.info.backend == "embedded" else None
    name = st.selectbox("Adapter", options, index=options.index(preset) if preset in options else 0, key="chat_adapter",
                        help="A LoRA adapter changes how the model writes; admins manage them on the models page.")
    ollama = llm.info.backend == "ollama"
    scale = st.slider("Adapter scale", 0.0, 1.0, 1.0, 0.05, key="chat_adapter_scale", disabled=name == NO_ADAPTER or ollama,
                      help="0 = the base model, 1 = the adapter at full strength." + (
                          " Ollama applies adapters at full strength only." if ollama else ""))
    if name == NO_ADAPTER:
        return None
    try:
        adapter = registry.choice(name, 1.0 if ollama else scale)
    except CQAError as exc:  # deleted since the list was shown
        st.warning(str(exc))
        return None
    if ollama and not _ollama_adapter_tag(llm, adapter):
        return None
    return adapter


def _ollama_adapter_tag(llm: LLMBackend, adapter: AdapterChoice) -> str | None:
    from core.llm.ollama_backend import OllamaBackend

    if not isinstance(llm, OllamaBackend) or adapter.path is None:
        return None
    stat = adapter.path.stat()
    key = f"{llm.host}|{llm.model}|{adapter.path}|{stat.st_mtime_ns}|{stat.st_size}"
    refusals: dict[str, str] = st.session_state.setdefault("chat_adapter_refusals", {})
    if key not in refusals:
        try:
            with st.spinner(f"Preparing adapter {adapter.name!r} on Ollama…"):
                tag = llm.ensure_adapter_model(adapter)
        except CQAError as exc:
            refusals[key] = str(exc)
        else:
            st.caption(f"Adapter {adapter.name!r} runs as Ollama model **{tag}**.")
            return tag
    st.error(f"{refusals[key]} Answers use the base model; pick an existing model tag under “Ollama model” instead.")
    return None
