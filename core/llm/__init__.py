"""Language-model backends behind one small interface (`LLMBackend`), picked from `LLMSettings`.

Backends are imported lazily: importing this package loads neither llama.cpp nor the Ollama client.
"""

from __future__ import annotations

from core.llm.base import (
    AdapterChoice,
    ChatMessage,
    Generation,
    GenerationParams,
    GenerationStats,
    Health,
    LLMBackend,
    ModelInfo,
    Usage,
)
from core.llm.fake import FakeLLM
from core.settings import LLMSettings

__all__ = [
    "AdapterChoice",
    "ChatMessage",
    "FakeLLM",
    "Generation",
    "GenerationParams",
    "GenerationStats",
    "Health",
    "LLMBackend",
    "ModelInfo",
    "Usage",
    "build_llm",
    "default_params",
]


def build_llm(settings: LLMSettings) -> LLMBackend:
    """The backend `settings.backend` names. Raises `LLMUnavailableError` if the embedded model cannot load.

    Building an Ollama backend contacts nothing; call `health()` to check the server and model.
    """
    match settings.backend:
        case "embedded":
            try:
                from core.llm.embedded import EmbeddedLlamaBackend
            except ImportError as exc:
                raise ImportError("The embedded backend needs `pip install llama-cpp-python==0.3.36`.") from exc
            return EmbeddedLlamaBackend(settings)
        case "ollama":
            try:
                from core.llm.ollama_backend import OllamaBackend
            except ImportError as exc:
                raise ImportError("The Ollama backend needs `pip install ollama==0.6.3`.") from exc
            return OllamaBackend(settings)
        case "fake":
            return FakeLLM()


def default_params(settings: LLMSettings) -> GenerationParams:
    """Generation parameters from settings (answer cap, temperature, seed)."""
    return GenerationParams(max_tokens=settings.max_answer_tokens, temperature=settings.temperature, seed=settings.seed)
