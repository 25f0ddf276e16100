"""The embedded llama.cpp backend on the bundled SmolLM2-135M (loaded once for the module)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import platform  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from core.adapters.gguf_write import write_lora_gguf  # noqa: E402
from core.errors import CQAError, LLMUnavailableError  # noqa: E402
from core.llm import AdapterChoice, ChatMessage, GenerationParams, build_llm  # noqa: E402
from core.llm.embedded import EmbeddedLlamaBackend  # noqa: E402
from core.settings import LLMSettings  # noqa: E402

pytestmark = pytest.mark.integration

SHORT = GenerationParams(max_tokens=24)
HEART_RATE = [
    ChatMessage(role="system", content="You are a concise clinical assistant."),
    ChatMessage(role="user", content="What is a normal adult resting heart rate? One sentence."),
]
CAPITAL = [ChatMessage(role="user", content="What is the capital of France?")]


@pytest.fixture(scope="module")
def embedded() -> EmbeddedLlamaBackend:
    return EmbeddedLlamaBackend(LLMSettings())


def test_streams_a_short_answer_with_stats(embedded: EmbeddedLlamaBackend) -> None:
    generation = embedded.generate(HEART_RATE, SHORT)

    deltas = list(generation)

    assert len(deltas) > 3
    assert "".join(deltas) == generation.text and generation.text.strip()
    stats = generation.stats
    assert stats.prompt_tokens == embedded.count_tokens(HEART_RATE)
    assert 0 < stats.completion_tokens <= SHORT.max_tokens + 1
    assert stats.ttft_s is not None and 0 < stats.ttft_s <= stats.total_s
    assert stats.finish_reason in ("stop", "length")


def test_count_tokens_equals_what_the_model_evaluates(embedded: EmbeddedLlamaBackend) -> None:
    counted = embedded.count_tokens(HEART_RATE)

    # With one token to generate, llama.cpp evaluates exactly the prompt and stops.
    embedded.complete(HEART_RATE, GenerationParams(max_tokens=1))

    assert embedded._engine.llm.n_tokens == counted
    raw = sum(len(embedded._engine.llm.tokenize(m.content.encode(), add_bos=False)) for m in HEART_RATE)
    assert counted > raw  # the chat template's turn markers and the answer prompt are included


def test_temperature_zero_is_deterministic_even_after_another_prompt(embedded: EmbeddedLlamaBackend) -> None:
    first = embedded.complete(CAPITAL, SHORT)
    embedded.complete(HEART_RATE, SHORT)

    assert embedded.complete(CAPITAL, SHORT) == first


def test_two_threads_generate_concurrently_and_correctly(embedded: EmbeddedLlamaBackend) -> None:
    expected = [embedded.complete(CAPITAL, SHORT), embedded.complete(HEART_RATE, SHORT)]
    start = threading.Barrier(2)

    def answer(messages: list[ChatMessage]) -> str:
        start.wait()
        return embedded.complete(messages, SHORT)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(answer, [CAPITAL, HEART_RATE]))

    assert results == expected


def test_closing_a_stream_early_releases_the_model(embedded: EmbeddedLlamaBackend) -> None:
    generation = embedded.generate(HEART_RATE, SHORT)
    first = next(generation)
    generation.close()

    assert generation.stats.completion_tokens >= 1 and generation.text == first
    done = threading.Event()
    threading.Thread(target=lambda: (embedded.complete(CAPITAL, GenerationParams(max_tokens=2)), done.set())).start()
    assert done.wait(timeout=30), "the model lock was not released"


def test_grammar_constrains_the_output(embedded: EmbeddedLlamaBackend) -> None:
    yes_no = GenerationParams(max_tokens=8, grammar='root ::= "yes" | "no"')

    answer = embedded.complete(CAPITAL, yes_no)

    assert answer in ("yes", "no")
    assert embedded.complete(CAPITAL, SHORT) not in ("yes", "no")  # without it the model talks freely
    with pytest.raises(CQAError, match="not valid GBNF"):
        embedded.complete(CAPITAL, GenerationParams(max_tokens=2, grammar="root ::= undefined_rule"))
    assert embedded.complete(CAPITAL, yes_no) == answer  # still usable, and the grammar is reused


def test_info_details_come_from_the_gguf(embedded: EmbeddedLlamaBackend) -> None:
    info = embedded.info

    assert info.backend == "embedded"
    assert info.name == "SmolLM2-135M-Instruct.Q4_1"
    assert info.context_window == 8192
    assert info.details["architecture"] == "llama"
    assert info.details["quantization"] == "Q4_1"
    assert info.details["vocab_size"] == "49152"
    assert info.details["context_length_trained"] == "8192"
    assert info.details["chat_template"] == "yes"
    assert int(info.details["parameters"].replace(",", "")) > 100_000_000
    assert embedded.health().ok


def test_model_is_loaded_once_per_process(embedded: EmbeddedLlamaBackend) -> None:
    again = build_llm(LLMSettings())

    assert isinstance(again, EmbeddedLlamaBackend)
    assert again._engine is embedded._engine


@pytest.mark.skipif(platform.machine().lower() not in {"x86_64", "amd64"}, reason="AMX workaround is x86 only")
def test_amx_workaround_is_applied(embedded: EmbeddedLlamaBackend) -> None:
    assert embedded._engine.llm.model_params.use_extra_bufts is False


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"

    with pytest.raises(LLMUnavailableError, match="absent.gguf.*does not exist"):
        EmbeddedLlamaBackend(LLMSettings(model_path=missing))


def test_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)

    with pytest.raises(LLMUnavailableError, match="corrupt.gguf.*could not be loaded"):
        EmbeddedLlamaBackend(LLMSettings(model_path=corrupt))


# -- LoRA adapters -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random rank-4 LoRA on every attention output of SmolLM2-135M: it visibly changes answers."""
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(30):
        tensors[f"blk.{layer}.attn_output.weight.lora_a"] = rng.normal(0, 0.5, (4, 576))
        tensors[f"blk.{layer}.attn_output.weight.lora_b"] = rng.normal(0, 0.5, (576, 4))
    return write_lora_gguf(tmp_path_factory.mktemp("lora") / "noisy.gguf", tensors, alpha=4.0)


def test_adapter_changes_the_answer_and_switching_back_restores_the_base(
    embedded: EmbeddedLlamaBackend, noisy_adapter: Path
) -> None:
    base = embedded.complete(CAPITAL, SHORT)

    adapted = embedded.complete(CAPITAL, SHORT, AdapterChoice(name="noisy", path=noisy_adapter))
    off = embedded.complete(CAPITAL, SHORT, AdapterChoice(name="noisy", path=noisy_adapter, scale=0))
    again = embedded.complete(CAPITAL, SHORT, AdapterChoice(name="noisy", path=noisy_adapter))
    after = embedded.complete(CAPITAL, SHORT)

    assert adapted != base
    assert again == adapted
    assert off == base and after == base


def test_unusable_adapters_raise_clear_errors(embedded: EmbeddedLlamaBackend, tmp_path: Path) -> None:
    with pytest.raises(CQAError, match="'ghost'.*does not exist"):
        embedded.complete(CAPITAL, SHORT, AdapterChoice(name="ghost", path=tmp_path / "ghost.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf")
    with pytest.raises(CQAError, match="'junk'.*could not be loaded"):
        embedded.complete(CAPITAL, SHORT, AdapterChoice(name="junk", path=junk))
    assert embedded.complete(CAPITAL, GenerationParams(max_tokens=2))  # still usable


def test_prompt_longer_than_the_context_window_is_refused_clearly(embedded: EmbeddedLlamaBackend) -> None:
    too_long = [ChatMessage(role="user", content="hypertension " * 9000)]

    with pytest.raises(CQAError, match=r"takes \d+ tokens, more than the 8192"):
        embedded.complete(too_long, SHORT)
