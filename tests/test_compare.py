"""Side-by-side comparison with FakeLLM: identical passages for both sides, the differences table, preferences."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.answering.pipeline import AnswerService, AskOptions
from core.answering.prompts import BUILTIN_PROMPT
from core.evaluation.compare import FixedPassages, compare, config_label
from core.governance.preferences import PreferenceError, PreferenceStore, preference_store_for
from core.llm import AdapterChoice, ChatMessage, FakeLLM, GenerationParams
from core.services import Services
from core.settings import Settings
from tests.conftest import GUIDELINE
from tests.helpers import LOOSE, TERSE, compare_reply

QUESTION = "What dose of adrenaline in anaphylaxis?"




def _service(svc: Services, llm: FakeLLM) -> AnswerService:
    svc.library.ingest_bytes(GUIDELINE, "anaphylaxis.md")
    params = GenerationParams(max_tokens=64, temperature=0.7, seed=7)
    return AnswerService(svc.retriever, llm, LOOSE, params)


def _user_message(messages: list[ChatMessage]) -> str:
    return next(m.content for m in messages if m.role == "user")


def test_both_sides_get_identical_passages_and_differences_are_listed(fake_services: Services) -> None:
    llm = FakeLLM(compare_reply)
    result = compare(_service(fake_services, llm), QUESTION, AskOptions(), AskOptions(prompt=TERSE))
    assert len(llm.calls) == 2
    (msgs_a, params_a, _), (msgs_b, params_b, _) = llm.calls
    assert msgs_a[0].content == BUILTIN_PROMPT.system and msgs_b[0].content == "Terse."
    # Same template, so the user messages must match exactly: same passages, same order.
    assert _user_message(msgs_a) == _user_message(msgs_b)
    assert [r.chunk_id for r in result.a.retrieved] == [r.chunk_id for r in result.b.retrieved]
    assert [p.chunk_id for p in result.passages][: len(result.a.retrieved)] == [r.chunk_id for r in result.a.retrieved]
    assert params_a.temperature == params_b.temperature == 0.0 and params_a.seed == params_b.seed == 7

    assert result.a.status == "answered" and result.a.prompt_version == "builtin-1"
    assert result.b.status == "refused" and result.b.prompt_version == "v1"
    table = {d.measure: d for d in result.differences}
    assert table["status"].a == "answered" and table["status"].b == "refused" and table["status"].differs
    assert table["refusal"].b == "no_evidence" and table["refusal"].a == "—"
    assert table["verified citations"].a == "1" and table["verified citations"].b == "0"
    assert table["grounded"].differs and table["text identical"].differs
    assert not table["escalation"].differs
    frame = result.differences_frame()
    assert list(frame.columns) == ["measure", "a", "b", "differs"] and len(frame) == len(result.differences)
    assert result.config_a == "prompt builtin-1 · no adapter" and result.config_b == "prompt v1 · no adapter"


def test_identical_configurations_give_identical_answers(fake_services: Services) -> None:
    llm = FakeLLM(compare_reply)
    result = compare(_service(fake_services, llm), QUESTION, AskOptions(), AskOptions())
    table = {d.measure: d for d in result.differences}
    assert result.a.text == result.b.text and not table["text identical"].differs
    assert all(not table[m].differs for m in ("status", "grounded", "verified citations", "prompt tokens"))


def test_retrieves_once_with_the_larger_top_k(fake_services: Services) -> None:
    service = _service(fake_services, FakeLLM(compare_reply))
    calls: list[int | None] = []
    real = fake_services.retriever.retrieve

    def counting(query: str, k: int | None = None, **kw: object) -> list:  # type: ignore[type-arg]
        calls.append(k)
        return real(query, k)

    fake_services.retriever.retrieve = counting  # type: ignore[method-assign]
    result = compare(service, QUESTION, AskOptions(top_k=2), AskOptions(top_k=4))
    assert calls == [4]
    assert len(result.a.retrieved) <= 2 and len(result.b.retrieved) <= 4


def test_fixed_passages_returns_the_top_k_prefix(fake_services: Services) -> None:
    fake_services.library.ingest_bytes(GUIDELINE, "anaphylaxis.md")
    passages = fake_services.retriever.retrieve(QUESTION, 3)
    fixed = FixedPassages(passages)
    assert fixed.retrieve("ignored", 1) == passages[:1] and fixed.retrieve("ignored") == passages


def test_config_label_names_adapter_and_top_k() -> None:
    opts = AskOptions(adapter=AdapterChoice(name="clinical", scale=0.5), top_k=4)
    assert config_label(opts) == "prompt builtin-1 · adapter clinical ×0.5 · top 4"


def test_preferences_are_stored_and_read_back(fake_services: Services, tmp_path: Path) -> None:
    result = compare(_service(fake_services, FakeLLM(compare_reply)), QUESTION, AskOptions(), AskOptions(prompt=TERSE))
    store = PreferenceStore(f"sqlite:///{tmp_path / 'p' / 'preferences.sqlite'}")
    pid = store.record(result, "A", " cites the dose ", user="dr.a")
    store.record(result, "tie", "", user="dr.b")
    frame = store.frame()
    assert list(frame["preferred"]) == ["A", "tie"] and frame["reason"][0] == "cites the dose"
    assert frame["config_b"][0] == "prompt v1 · no adapter" and frame["question"][0] == QUESTION
    assert store.comparison(pid).a.text == result.a.text
    with pytest.raises(ValueError, match="preferred must be"):
        store.record(result, "C", "", user="x")  # type: ignore[arg-type]
    with pytest.raises(PreferenceError, match="no preference 99"):
        store.comparison(99)


def test_preference_store_for_settings_is_in_the_data_folder(settings: Settings) -> None:
    store = preference_store_for(settings)
    assert store is preference_store_for(settings) and store.frame().empty
    assert (settings.data_dir / "preferences.sqlite").is_file()
