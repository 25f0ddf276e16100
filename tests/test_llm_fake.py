from __future__ import annotations

import pytest

from core.errors import LLMUnavailableError
from core.llm import ChatMessage, FakeLLM, GenerationParams, build_llm, default_params
from core.settings import LLMSettings

QUESTION = [
    ChatMessage(role="system", content="Answer from the sources."),
    ChatMessage(role="user", content="What is the first-line drug?"),
]


def test_streams_reply_word_by_word_with_stats() -> None:
    llm = FakeLLM("Start with a thiazide diuretic.")
    generation = llm.generate(QUESTION)

    deltas = list(generation)

    assert deltas == ["Start", " with", " a", " thiazide", " diuretic."]
    assert generation.text == "Start with a thiazide diuretic."
    assert generation.stats.prompt_tokens == llm.count_tokens(QUESTION) == 9
    assert generation.stats.completion_tokens == 5
    assert generation.stats.finish_reason == "stop"
    assert generation.stats.ttft_s is not None and generation.stats.total_s >= generation.stats.ttft_s


def test_default_reply_echoes_the_last_user_message() -> None:
    assert FakeLLM().complete(QUESTION) == "What is the first-line drug?"


def test_reply_function_sees_the_messages_and_calls_are_recorded() -> None:
    llm = FakeLLM(lambda messages: f"{len(messages)} messages")

    assert llm.complete(QUESTION, GenerationParams(seed=7)) == "2 messages"
    assert llm.calls[0][0] == QUESTION
    assert llm.calls[0][1].seed == 7


def test_max_tokens_truncates_and_reports_length() -> None:
    generation = FakeLLM("one two three four").generate(QUESTION, GenerationParams(max_tokens=2))

    assert "".join(generation) == "one two"
    assert generation.stats.finish_reason == "length"


def test_stats_before_the_end_raise_and_closing_early_finishes() -> None:
    generation = FakeLLM("one two three").generate(QUESTION)

    assert next(generation) == "one"
    with pytest.raises(RuntimeError):
        _ = generation.stats
    generation.close()

    assert generation.done
    assert generation.stats.completion_tokens == 1
    assert generation.stats.finish_reason == "stop"
    assert list(generation) == []


def test_configured_error_is_raised_and_reported_by_health() -> None:
    llm = FakeLLM(error=LLMUnavailableError("Ollama at http://h:1 is not reachable (connection refused)."))

    with pytest.raises(LLMUnavailableError, match="not reachable"):
        llm.complete(QUESTION)
    assert not llm.health().ok
    assert "http://h:1" in llm.health().message


def test_build_llm_picks_fake_and_default_params_come_from_settings() -> None:
    settings = LLMSettings(backend="fake", max_answer_tokens=100, temperature=0.3, seed=9)

    llm = build_llm(settings)

    assert isinstance(llm, FakeLLM)
    assert llm.info.backend == "fake"
    assert default_params(settings) == GenerationParams(max_tokens=100, temperature=0.3, seed=9)
