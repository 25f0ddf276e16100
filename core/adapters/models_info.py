"""Facts about every model the app can answer with: the local GGUF (read from its header) and the
tags an Ollama server has installed (from /api/tags and /api/show), in one row shape for display."""

from __future__ import annotations

from typing import Any, Literal

import httpx
import ollama
from pydantic import BaseModel, Field

from core.adapters.gguf_info import model_facts
from core.adapters.registry import AdapterRecord
from core.errors import LLMUnavailableError
from core.llm.ollama_backend import _describe_transport_error
from core.settings import LLMSettings

OLLAMA_TIMEOUT_S = 5.0


class ModelRow(BaseModel):
    source: Literal["local GGUF", "Ollama"]
    name: str
    architecture: str | None = None
    parameters: int | None = None
    parameter_label: str | None = Field(default=None, description="Ollama's rounded size, e.g. '1.2B'.")
    quantization: str | None = None
    vocab_size: int | None = None
    context_length: int | None = Field(default=None, description="Context the model was trained for.")
    size_bytes: int | None = None
    chat_template: str | None = None
    in_use: bool = Field(default=False, description="The model the configured backend answers with.")
    problem: str | None = Field(default=None, description="Why some facts are missing.")


def local_model(settings: LLMSettings) -> ModelRow:
    """The embedded backend's GGUF (bundled SmolLM2 unless `model_path` is set)."""
    # Imported here: it loads llama.cpp, which reading a header does not need.
    from core.llm.embedded import resolve_model_path

    facts = model_facts(resolve_model_path(settings))
    return ModelRow(
        source="local GGUF", name=facts.path.stem, architecture=facts.architecture, parameters=facts.parameters,
        quantization=facts.quantization, vocab_size=facts.vocab_size, context_length=facts.context_length,
        size_bytes=facts.size_bytes, chat_template=facts.chat_template, in_use=settings.backend == "embedded",
    )


def ollama_models(settings: LLMSettings, client: ollama.Client | None = None) -> list[ModelRow]:
    """Every tag on `settings.ollama_host`; `LLMUnavailableError` naming the host if it cannot be listed.
    A tag whose /api/show fails keeps what /api/tags said, with the error as its `problem`."""
    host = settings.ollama_host.rstrip("/")
    try:
        client = client or ollama.Client(host=host, timeout=httpx.Timeout(OLLAMA_TIMEOUT_S, connect=2.0))
        listed = client.list().models
    except ollama.ResponseError as exc:
        raise LLMUnavailableError(f"Ollama at {host} returned an error: {exc.error}") from exc
    except ValueError as exc:
        raise LLMUnavailableError(f"The server at {host} did not answer like Ollama ({type(exc).__name__}).") from exc
    except (httpx.HTTPError, ConnectionError) as exc:
        raise LLMUnavailableError(f"Ollama at {host} is not reachable ({_describe_transport_error(exc)}).") from exc
    rows = []
    for entry in listed:
        if not entry.model:
            continue
        details = entry.details
        row = ModelRow(
            source="Ollama", name=entry.model, architecture=details.family if details else None,
            parameter_label=details.parameter_size if details else None,
            quantization=details.quantization_level if details else None, size_bytes=entry.size,
            in_use=settings.backend == "ollama" and _same_tag(entry.model, settings.ollama_model),
        )
        try:
            _add_show_facts(row, client.show(entry.model))
        except (ollama.ResponseError, ValueError, httpx.HTTPError, ConnectionError) as exc:
            row.problem = f"/api/show failed: {getattr(exc, 'error', None) or _describe_transport_error(exc)}"
        rows.append(row)
    return rows


def _same_tag(a: str, b: str) -> bool:
    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(a) == full(b)


def _add_show_facts(row: ModelRow, shown: ollama.ShowResponse) -> None:
    info: dict[str, Any] = dict(shown.modelinfo or {})
    architecture = info.get("general.architecture") or row.architecture
    row.architecture = str(architecture) if architecture else None
    if isinstance(info.get("general.parameter_count"), int):
        row.parameters = info["general.parameter_count"]
    for field, key in (("context_length", "context_length"), ("vocab_size", "vocab_size")):
        value = info.get(f"{architecture}.{key}")
        if isinstance(value, int):
            setattr(row, field, value)
    if row.vocab_size is None and isinstance(info.get("tokenizer.ggml.tokens"), list):
        row.vocab_size = len(info["tokenizer.ggml.tokens"])
    row.chat_template = shown.template or None


def human_size(size: int | None) -> str:
    if size is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size} B"


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "—"


def model_table(rows: list[ModelRow]) -> list[dict[str, str]]:
    """Display rows for the models table (the chat template goes in an expander, not here)."""
    return [
        {
            "model": row.name + (" (in use)" if row.in_use else ""),
            "source": row.source,
            "architecture": row.architecture or "—",
            "parameters": _count(row.parameters) if row.parameters is not None else (row.parameter_label or "—"),
            "quantization": row.quantization or "—",
            "vocabulary": _count(row.vocab_size),
            "context window": _count(row.context_length),
            "file size": human_size(row.size_bytes),
            "chat template": "yes" if row.chat_template else ("—" if row.problem else "no"),
        }
        for row in rows
    ]


def adapter_table(records: list[AdapterRecord]) -> list[dict[str, str]]:
    """Display rows for the adapter list."""
    return [
        {
            "adapter": r.name,
            "base": r.base_model or r.architecture or "—",
            "rank": _count(r.rank),
            "alpha": f"{r.alpha:g}" if r.alpha is not None else "—",
            "size": human_size(r.size_bytes),
            "sha256": r.sha256[:12],
            "origin": "shipped" if r.shipped else "uploaded",
            "description": r.description or ("⚠ " + r.problem if r.problem else ""),
        }
        for r in records
    ]
