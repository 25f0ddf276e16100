"""Side-by-side comparison: one question, retrieved once, answered by configurations A and B on the
identical passages (temperature 0, fixed seed). The user's preference between the two is kept by
`core.governance.preferences`.

A configuration (`CompareConfig`) is a prompt version, an optional LoRA adapter and scale, and a backend;
its text form is `prompt=v3,adapter=cqa-smollm2,scale=0.5,backend=ollama:llama3.2` (every key optional).
`python -m core.compare CASES.jsonl --a CONFIG --b CONFIG --out FILE` runs a whole evaluation set
(`core.evaluation.compare_batch`, CLI in `core.cli.compare`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.adapters.registry import AdapterRegistry, default_adapter, resolve_adapter
from core.answering.pipeline import AnswerService, AskOptions
from core.answering.prompt_store import PromptStore, PromptStoreError
from core.answering.prompts import PromptTemplate
from core.answering.retrieval import Retriever
from core.answering.vocabulary import Vocabulary
from core.answers import Answer, Comparison, Difference
from core.errors import CQAError
from core.llm import LLMBackend, build_llm
from core.schema import RetrievedPassage
from core.services import Services, build_answer_service
from core.settings import LLMSettings, Settings

BackendName = Literal["embedded", "ollama"]
CONFIG_KEYS = ("prompt", "adapter", "scale", "backend")
_NONE_WORDS = {"none", "off", "base", "no"}
BASE_MODEL = "none"


class CompareConfigError(CQAError):
    """A configuration string or one of its parts (prompt version, adapter) is not usable."""


class CompareConfig(BaseModel):
    """What one side of a comparison runs with; every field unset means the deployment's default."""

    model_config = ConfigDict(frozen=True)

    prompt: str | None = Field(default=None, description="Stored prompt version; None = the active one.")
    adapter: str | None = Field(
        default=None, description="Adapter name (adapter folders) or .gguf path; 'none' = the base model; None = the "
        "default adapter, as in the chat and core.ask (CQA_LLM__DEFAULT_ADAPTER with the embedded model).")
    scale: float = Field(default=1.0, ge=0.0, le=1.0, description="Adapter strength (with an adapter).")
    backend: BackendName | None = Field(default=None, description="None = the configured backend.")
    model: str | None = Field(default=None, description="Ollama model tag (backend 'ollama'); None = configured tag.")

    @classmethod
    def parse(cls, text: str) -> CompareConfig:
        """`prompt=3,adapter=NAME,scale=0.5,backend=embedded|ollama[:TAG]`; raises `CompareConfigError`."""
        values: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = (x.strip() for x in part.partition("="))
            if not sep or key.lower() not in CONFIG_KEYS:
                raise CompareConfigError(
                    f"{part!r} in configuration {text!r} is not key=value with a key among {', '.join(CONFIG_KEYS)}."
                )
            if key.lower() in values:
                raise CompareConfigError(f"{key!r} appears twice in configuration {text!r}.")
            if not value:
                raise CompareConfigError(f"{key!r} has no value in configuration {text!r}.")
            values[key.lower()] = value
        prompt = values.get("prompt")
        adapter = values.get("adapter")
        adapter = BASE_MODEL if adapter is not None and adapter.lower() in _NONE_WORDS else adapter
        if "scale" in values and adapter in (None, BASE_MODEL):
            raise CompareConfigError(f"scale needs an adapter in configuration {text!r}.")
        backend, model = _parse_backend(values.get("backend"), text)
        return cls(
            prompt=None if prompt is None or prompt.lower() == "active" else prompt, adapter=adapter,
            scale=_parse_scale(values.get("scale"), text), backend=backend, model=model,
        )

    def __str__(self) -> str:
        """The canonical text form (defaults left out), so `parse(str(c)) == c`."""
        parts = [f"prompt={self.prompt}"] if self.prompt else []
        if self.adapter == BASE_MODEL:
            parts.append(f"adapter={BASE_MODEL}")
        elif self.adapter:
            parts += [f"adapter={self.adapter}", f"scale={self.scale:g}"]
        if self.backend:
            parts.append(f"backend={self.backend}" + (f":{self.model}" if self.model else ""))
        return ",".join(parts)


def _parse_scale(value: str | None, text: str) -> float:
    if value is None:
        return 1.0
    try:
        scale = float(value)
    except ValueError:
        scale = -1.0
    if not 0.0 <= scale <= 1.0:
        raise CompareConfigError(f"scale must be a number between 0 and 1, not {value!r} (configuration {text!r}).")
    return scale


def _parse_backend(value: str | None, text: str) -> tuple[BackendName | None, str | None]:
    if value is None or value.lower() in {"configured", "default"}:
        return None, None
    name, _, model = value.partition(":")
    if name.lower() == "embedded" and not model:
        return "embedded", None
    if name.lower() == "ollama":
        return "ollama", model.strip() or None
    raise CompareConfigError(f"backend must be 'embedded', 'ollama' or 'ollama:TAG', not {value!r} (configuration {text!r}).")


def available_adapters(settings: Settings) -> list[str]:
    """Adapter names found in the adapter folders (`core.adapters.registry`)."""
    return sorted(AdapterRegistry.for_settings(settings).names())


def config_prompt(config: CompareConfig, prompts: PromptStore) -> PromptTemplate:
    """The prompt version a configuration names; `3` also finds `v3`."""
    if config.prompt is None:
        return prompts.active()
    labels = [config.prompt, f"v{config.prompt}"] if config.prompt.isdigit() else [config.prompt]
    for label in labels:
        try:
            return prompts.get(label).template
        except PromptStoreError:
            continue
    known = ", ".join(v.version for v in prompts.versions())
    raise CompareConfigError(f"There is no prompt version {config.prompt!r}; available: {known}.")


def config_options(config: CompareConfig, settings: Settings, prompts: PromptStore) -> AskOptions:
    """Prompt and adapter of a configuration; raises `CompareConfigError` for an unknown one."""
    try:
        if config.adapter is None:
            adapter = default_adapter(settings, config.scale, config.backend)
        elif config.adapter == BASE_MODEL:
            adapter = None
        else:
            adapter = resolve_adapter(config.adapter, config.scale, settings)
    except CQAError as exc:
        raise CompareConfigError(str(exc)) from exc
    return AskOptions(prompt=config_prompt(config, prompts), adapter=adapter)


def config_llm(config: CompareConfig, settings: LLMSettings) -> LLMBackend | None:
    """The model a configuration names, or None for the configured one. Building an Ollama backend
    contacts nothing; an unreachable server shows up as that side's `model_unavailable` refusal."""
    if uses_configured_backend(config, settings):
        return None
    update: dict[str, object] = {"backend": config.backend}
    if config.model:
        update["ollama_model"] = config.model
    return build_llm(settings.model_copy(update=update))


def uses_configured_backend(config: CompareConfig, settings: LLMSettings) -> bool:
    return config.backend is None or (config.backend == settings.backend and config.model in (None, settings.ollama_model))


def config_service(config: CompareConfig, services: Services, configured: AnswerService | None = None) -> AnswerService:
    """The answer pipeline on a configuration's backend (`configured` when it names the configured one)."""
    llm = config_llm(config, services.settings.llm)
    if llm is None and configured is not None:
        return configured
    return build_answer_service(services, llm)


@dataclass(frozen=True)
class Side:
    """One configuration made runnable: its backend's answer pipeline, its options and its label."""

    service: AnswerService
    options: AskOptions
    label: str


def build_side(config: CompareConfig, service: AnswerService, prompts: PromptStore, settings: Settings) -> Side:
    options = config_options(config, settings, prompts)
    return Side(service, options, side_label(options, service))


def side_label(options: AskOptions, service: AnswerService) -> str:
    info = service.llm.info
    return f"{config_label(options)} · {info.backend} {info.name}"


class FixedPassages(Retriever):
    """A retriever that returns passages fetched earlier, so both sides see exactly the same evidence."""

    def __init__(self, passages: list[RetrievedPassage], vocabulary: Vocabulary | None = None) -> None:
        self._passages = list(passages)
        self.vocabulary = vocabulary  # the sides score the question as the search read it

    def retrieve(self, query: str, k: int | None = None, **_filters: Any) -> list[RetrievedPassage]:
        return list(self._passages[:k] if k else self._passages)


def config_label(options: AskOptions) -> str:
    adapter = f"adapter {options.adapter.name} ×{options.adapter.scale:g}" if options.adapter else "no adapter"
    top_k = f" · top {options.top_k}" if options.top_k else ""
    return f"prompt {options.prompt.version} · {adapter}{top_k}"


def compare(service: AnswerService, question: str, a: AskOptions, b: AskOptions) -> Comparison:
    """Retrieve once, then answer with A and B in turn on those passages."""
    return compare_sides(question, Side(service, a, config_label(a)), Side(service, b, config_label(b)))


def compare_sides(question: str, a: Side, b: Side) -> Comparison:
    """Retrieve once (with A's retriever, the larger top_k), then answer with A and B on those passages,
    each on its own backend."""
    # The comparison reads the service's private parts rather than widen AnswerService's public API.
    k = max(side.options.top_k or side.service._settings.top_k for side in (a, b))
    t0 = time.perf_counter()
    passages = a.service._retriever.retrieve(question.strip(), k)
    retrieve_s = round(time.perf_counter() - t0, 3)
    answer_a = on_passages(a.service, passages).ask(question, None, a.options)
    answer_b = on_passages(b.service, passages).ask(question, None, b.options)
    return Comparison(
        question=question, config_a=a.label, config_b=b.label, passages=passages,
        retrieve_s=retrieve_s, a=answer_a, b=answer_b, differences=differences(answer_a, answer_b),
    )


def on_passages(service: AnswerService, passages: list[RetrievedPassage]) -> AnswerService:
    """A copy of `service` that answers from `passages` only, greedily (temperature 0, same seed).

    Without the Ollama fallback: a side whose server is unreachable must say so, not quietly become
    the embedded model and blur the comparison."""
    s = service
    return AnswerService(
        retriever=FixedPassages(passages, s._retriever.vocabulary), llm=s.llm, settings=s._settings,
        params=s._params.model_copy(update={"temperature": 0.0}),
        safety=s._safety, fallback=None, library_is_empty=s._library_is_empty, selector=s._selector,
    )


def differences(a: Answer, b: Answer) -> list[Difference]:
    rows: list[tuple[str, object, object]] = [
        ("status", a.status, b.status),
        ("refusal", a.refusal.reason if a.refusal else "—", b.refusal.reason if b.refusal else "—"),
        ("escalation", a.escalation.level if a.escalation else "—", b.escalation.level if b.escalation else "—"),
        ("grounded", a.grounded, b.grounded),
        ("summary shown (verified)", a.summary_shown, b.summary_shown),
        ("guideline sentences quoted", len(a.quotes), len(b.quotes)),
        ("verified citations", _verified(a), _verified(b)),
        ("format valid first time", a.format_valid, b.format_valid),
        ("prompt tokens", a.tokens.prompt, b.tokens.prompt),
        ("completion tokens", a.tokens.completion, b.tokens.completion),
        ("total seconds", f"{a.timings.total_s:.2f}", f"{b.timings.total_s:.2f}"),
    ]
    result = [Difference(measure=m, a=str(x), b=str(y), differs=x != y) for m, x, y in rows]
    same_text = a.text.strip() == b.text.strip()
    result.append(Difference(measure="text identical", a=str(same_text), b=str(same_text), differs=not same_text))
    return result


def _verified(answer: Answer) -> int:
    return sum(1 for c in answer.citations if c.verified)
