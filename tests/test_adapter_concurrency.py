"""Concurrent sessions with different adapters on one embedded model each get their own configuration."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from core.adapters.gguf_info import read_gguf  # noqa: E402
from core.adapters.gguf_write import random_lora  # noqa: E402
from core.llm import AdapterChoice, ChatMessage, GenerationParams  # noqa: E402
from core.llm.embedded import EmbeddedLlamaBackend, resolve_model_path  # noqa: E402
from core.settings import LLMSettings  # noqa: E402

pytestmark = pytest.mark.integration

SHORT = GenerationParams(max_tokens=16)
CAPITAL = [ChatMessage(role="user", content="What is the capital of France?")]
ROUNDS = 3


@pytest.fixture(scope="module")
def embedded() -> EmbeddedLlamaBackend:
    return EmbeddedLlamaBackend(LLMSettings())


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[AdapterChoice, AdapterChoice]:
    """Two random adapters on different weights: each visibly changes the answer, differently."""
    base = read_gguf(resolve_model_path(LLMSettings()))
    folder = tmp_path_factory.mktemp("adapters")
    a = random_lora(folder / "a.gguf", base, weights=("attn_output",), seed=1)
    b = random_lora(folder / "b.gguf", base, weights=("attn_q", "attn_v"), seed=2)
    return AdapterChoice(name="a", path=a), AdapterChoice(name="b", path=b)


def test_threads_with_different_adapters_get_what_they_would_get_alone(
    embedded: EmbeddedLlamaBackend, adapters: tuple[AdapterChoice, AdapterChoice]
) -> None:
    a, b = adapters
    half_b = b.model_copy(update={"scale": 0.5})
    configs: list[AdapterChoice | None] = [a, b, half_b, None]
    alone = [embedded.complete(CAPITAL, SHORT, config) for config in configs]
    assert len(set(alone)) == len(alone), alone  # every configuration answers differently
    start = threading.Barrier(len(configs))

    def session(config: AdapterChoice | None) -> list[str]:
        start.wait()
        return [embedded.complete(CAPITAL, SHORT, config) for _ in range(ROUNDS)]

    with ThreadPoolExecutor(max_workers=len(configs)) as pool:
        results = list(pool.map(session, configs))

    for expected, got in zip(alone, results, strict=True):
        assert got == [expected] * ROUNDS
    assert len(embedded._engine.adapters) >= 2  # each file loaded once, then switched per request


def test_a_stream_keeps_its_adapter_while_another_session_waits(
    embedded: EmbeddedLlamaBackend, adapters: tuple[AdapterChoice, AdapterChoice]
) -> None:
    a, b = adapters
    expected_a = embedded.complete(CAPITAL, SHORT, a)
    expected_b = embedded.complete(CAPITAL, SHORT, b)
    generation = embedded.generate(CAPITAL, SHORT, a)
    first = next(generation)  # session A holds the model mid-answer
    other: list[str] = []
    waiting = threading.Thread(target=lambda: other.append(embedded.complete(CAPITAL, SHORT, b)))
    waiting.start()

    rest = "".join(generation)
    waiting.join(timeout=120)

    assert first + rest == expected_a
    assert other == [expected_b]


def test_adapter_files_are_valid_registry_adapters(adapters: tuple[AdapterChoice, AdapterChoice], tmp_path: Path) -> None:
    from core.adapters.registry import AdapterRegistry

    registry = AdapterRegistry([tmp_path], base_model=resolve_model_path(LLMSettings()))
    for adapter in adapters:
        assert adapter.path is not None
        assert registry.validate(adapter.path).rank == 4
