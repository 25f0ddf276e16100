"""The contract every language-model backend fulfils, and the streaming `Generation` it returns.

A backend implements one generation method (`_stream`) plus `info`, `count_tokens` and `health`;
timing, text accumulation and stats are written once here. Each call returns its own `Generation`,
so concurrent sessions never share per-request state.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from pydantic import BaseModel, Field

FinishReason = Literal["stop", "length"]


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationParams(BaseModel):
    max_tokens: int = Field(default=320, ge=1, description="Cap on generated tokens.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 = greedy, deterministic.")
    seed: int = Field(default=42, description="Sampling seed.")
    stop: list[str] = Field(default_factory=list, description="Extra stop sequences.")
    grammar: str | None = Field(
        default=None,
        description="A GBNF grammar (llama.cpp syntax, start rule 'root') the output must match. "
        "Honoured by the embedded backend only; Ollama ignores it (its equivalent is a JSON schema in `format`).",
    )


class AdapterChoice(BaseModel):
    """A LoRA adapter to apply for one request; `path=None` means the base model."""

    name: str
    path: Path | None = Field(default=None, description="GGUF LoRA file.")
    scale: float = Field(default=1.0, ge=0, le=1, description="Adapter strength; 0 = base model.")


class ModelInfo(BaseModel):
    backend: Literal["embedded", "ollama", "fake"]
    name: str
    context_window: int = Field(description="Tokens the backend accepts per request (prompt + answer).")
    details: dict[str, str] = Field(default_factory=dict, description="Display-only facts about the model.")


class Health(BaseModel):
    ok: bool
    message: str = Field(description="User-facing; names host and model on failure.")


class GenerationStats(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None = Field(
        description="Seconds from the first read to the first text delta, including any wait for a busy model; "
        "None if no text came."
    )
    total_s: float
    finish_reason: FinishReason | None = Field(
        default=None, description="'length' means the answer hit max_tokens; None if abandoned."
    )


@dataclass
class Usage:
    """Filled in by a backend while it streams; read by `Generation` when the stream ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None


class Generation(Iterator[str]):
    """One answer being generated: iterate for text deltas, then read `.text` and `.stats`.

    Closing it early (or dropping it) stops the backend and releases whatever it holds.
    """

    def __init__(self, deltas: Iterator[str], usage: Usage) -> None:
        self._deltas = deltas
        self._usage = usage
        self._parts: list[str] = []
        self._started: float | None = None
        self._ttft: float | None = None
        self._stats: GenerationStats | None = None

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        if self._stats is not None:
            raise StopIteration
        if self._started is None:
            self._started = time.perf_counter()
        try:
            delta = next(self._deltas)
        except StopIteration:
            self._finish()
            raise
        except BaseException:
            self.close()
            raise
        if self._ttft is None:
            self._ttft = time.perf_counter() - self._started
        self._parts.append(delta)
        return delta

    def __enter__(self) -> Generation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop generating (a no-op once finished)."""
        if self._stats is None:
            close = getattr(self._deltas, "close", None)
            if close is not None:
                close()
            self._finish()

    @property
    def text(self) -> str:
        """The text generated so far."""
        return "".join(self._parts)

    @property
    def done(self) -> bool:
        return self._stats is not None

    @property
    def stats(self) -> GenerationStats:
        if self._stats is None:
            raise RuntimeError("Generation stats are available only after the stream is exhausted or closed.")
        return self._stats

    def _finish(self) -> None:
        started = self._started if self._started is not None else time.perf_counter()
        self._stats = GenerationStats(
            prompt_tokens=self._usage.prompt_tokens,
            completion_tokens=self._usage.completion_tokens,
            ttft_s=self._ttft,
            total_s=time.perf_counter() - started,
            finish_reason=self._usage.finish_reason,
        )


class LLMBackend(ABC):
    """A chat model. Safe to share between threads; each call gets its own `Generation`."""

    @property
    @abstractmethod
    def info(self) -> ModelInfo: ...

    @abstractmethod
    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """Prompt tokens these messages take, including the chat template and generation prompt."""

    @abstractmethod
    def health(self) -> Health:
        """Whether the model can answer now; never raises."""

    @abstractmethod
    def _stream(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: AdapterChoice | None, usage: Usage
    ) -> Iterator[str]:
        """Yield text deltas and fill `usage`; raise `LLMUnavailableError` when the model cannot answer."""

    def close(self) -> None:
        """Release connections (for `st.cache_resource(on_release=...)`); a no-op by default."""
        return None

    def generate(
        self,
        messages: list[ChatMessage],
        params: GenerationParams | None = None,
        adapter: AdapterChoice | None = None,
    ) -> Generation:
        usage = Usage()
        return Generation(self._stream(messages, params or GenerationParams(), adapter, usage), usage)

    def stream(
        self,
        messages: list[ChatMessage],
        params: GenerationParams | None = None,
        adapter: AdapterChoice | None = None,
    ) -> Generation:
        """Alias of `generate` for callers that only want the deltas."""
        return self.generate(messages, params, adapter)

    def complete(
        self,
        messages: list[ChatMessage],
        params: GenerationParams | None = None,
        adapter: AdapterChoice | None = None,
    ) -> str:
        with self.generate(messages, params, adapter) as generation:
            for _ in generation:
                pass
            return generation.text
