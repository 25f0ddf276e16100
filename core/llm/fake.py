"""`FakeLLM`: a deterministic backend for unit tests, swapped in wherever an `LLMBackend` is expected."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator

from core.errors import CQAError
from core.llm.base import AdapterChoice, ChatMessage, GenerationParams, Health, LLMBackend, ModelInfo, Usage

Responder = Callable[[list[ChatMessage]], str]

_WORD = re.compile(r"\s*\S+")


def echo_last_user_message(messages: list[ChatMessage]) -> str:
    """The default reply: what the user last said, so tests can see what reached the model."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def split_words(text: str) -> list[str]:
    """Deltas as FakeLLM streams them: each word with the whitespace before it."""
    return _WORD.findall(text)


class FakeLLM(LLMBackend):
    """Answers with a fixed reply or `reply(messages)`, streamed word by word; one word = one token.

    `error` makes every generation raise it (e.g. `LLMUnavailableError`) to test failure paths.
    Every request is recorded in `calls` as (messages, params, adapter).
    """

    def __init__(
        self,
        reply: str | Responder = echo_last_user_message,
        *,
        name: str = "fake",
        context_window: int = 8192,
        error: CQAError | None = None,
    ) -> None:
        self._reply: Responder = (lambda _messages: reply) if isinstance(reply, str) else reply
        self._name = name
        self._context_window = context_window
        self._error = error
        self._lock = threading.Lock()
        self.calls: list[tuple[list[ChatMessage], GenerationParams, AdapterChoice | None]] = []

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(backend="fake", name=self._name, context_window=self._context_window)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(split_words(m.content)) for m in messages)

    def health(self) -> Health:
        if self._error is not None:
            return Health(ok=False, message=str(self._error))
        return Health(ok=True, message=f"Fake model {self._name!r} is ready.")

    def _stream(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: AdapterChoice | None, usage: Usage
    ) -> Iterator[str]:
        with self._lock:
            self.calls.append((list(messages), params, adapter))
        if self._error is not None:
            raise self._error
        words = split_words(self._reply(messages))
        usage.prompt_tokens = self.count_tokens(messages)
        usage.finish_reason = "length" if len(words) > params.max_tokens else "stop"
        for word in words[: params.max_tokens]:
            usage.completion_tokens += 1
            yield word
