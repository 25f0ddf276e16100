"""Configurations A/B, batch comparison over an evaluation set (FakeLLM), the CLI and the shipped set."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.answering.pipeline import AnswerService, AskOptions
from core.answering.prompt_store import PromptStore
from core.answering.prompts import BUILTIN_SYSTEM_PROMPT, BUILTIN_USER_TEMPLATE
from core.evaluation.cases import EvalCase, load_cases, parse_cases
from core.evaluation.compare import (
    CompareConfig,
    CompareConfigError,
    Side,
    available_adapters,
    build_side,
    compare_sides,
    config_llm,
    config_options,
    config_prompt,
)
from core.evaluation.compare_batch import EVAL_SET, BatchCase, cases_frame, run_batch, summary_frame, write_results
from core.library.embedding import HashingEmbedder
from core.library.store import InMemoryStore
from core.llm import FakeLLM
from core.llm.ollama_backend import OllamaBackend
from core.safety.rule_schema import BUNDLED_RULES_DIR
from core.safety.rules import RuleSet
from core.services import Services, build_services
from core.settings import LLMSettings, Settings
from tests.conftest import CORPUS, GUIDELINE, REPO
from tests.fake_ollama import FakeOllama
from tests.helpers import LOOSE, TERSE, compare_reply

CASES = [
    EvalCase.model_validate(c) for c in (
        {"id": "dose", "question": "What dose of adrenaline in anaphylaxis?", "expect": "answer",
         "sources": [{"file": "anaphylaxis.md"}]},
        {"id": "bread", "question": "What is the best recipe for sourdough bread?", "expect": "refuse"},
        {"id": "stridor", "question": "Throat swelling and stridor after a bee sting, what adrenaline dose?",
         "expect": "escalate", "sources": [{"file": "other.md"}]},
    )
]


# -- configuration strings ----------------------------------------------------------------------
def test_config_string_parses_every_key_and_round_trips() -> None:
    c = CompareConfig.parse("prompt=3, adapter=cqa-smollm2,scale=0.5,backend=ollama:llama3.2:1b")
    assert (c.prompt, c.adapter, c.scale, c.backend, c.model) == ("3", "cqa-smollm2", 0.5, "ollama", "llama3.2:1b")
    assert CompareConfig.parse(str(c)) == c
    assert str(c) == "prompt=3,adapter=cqa-smollm2,scale=0.5,backend=ollama:llama3.2:1b"


def test_config_string_defaults() -> None:
    assert CompareConfig.parse("") == CompareConfig() == CompareConfig.parse("prompt=active")
    assert CompareConfig.parse("adapter=none") == CompareConfig.parse("adapter=base") == CompareConfig(adapter="none")
    assert str(CompareConfig()) == "" and str(CompareConfig(adapter="none")) == "adapter=none"
    assert CompareConfig.parse("backend=embedded") == CompareConfig(backend="embedded")
    assert CompareConfig.parse("backend=ollama").model is None and CompareConfig.parse("backend=configured").backend is None
    assert CompareConfig.parse("adapter=x").scale == 1.0


@pytest.mark.parametrize(("text", "message"), [
    ("temperature=1", "not key=value with a key among prompt, adapter, scale, backend"),
    ("prompt", "not key=value"),
    ("prompt=1,prompt=2", "'prompt' appears twice"),
    ("adapter=", "'adapter' has no value"),
    ("adapter=x,scale=2", "between 0 and 1, not '2'"),
    ("adapter=x,scale=half", "between 0 and 1, not 'half'"),
    ("scale=0.5", "scale needs an adapter"),
    ("backend=gpt", "backend must be 'embedded', 'ollama' or 'ollama:TAG', not 'gpt'"),
    ("backend=embedded:big", "not 'embedded:big'"),
])
def test_bad_config_strings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CompareConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CompareConfig.parse(text)


def test_prompt_versions_resolve_by_label_or_number(tmp_path: Path) -> None:
    store = PromptStore(f"sqlite:///{tmp_path / 'prompts.sqlite'}")
    created = store.create("terse", BUILTIN_SYSTEM_PROMPT + "\nBe terse.", BUILTIN_USER_TEMPLATE, "test")
    assert config_prompt(CompareConfig(), store).version == "builtin-1"
    assert config_prompt(CompareConfig(prompt="1"), store).version == created.version == "v1"
    assert config_prompt(CompareConfig(prompt="v1"), store).version == "v1"
    with pytest.raises(CompareConfigError, match="no prompt version '7'; available: builtin-1, v1"):
        config_prompt(CompareConfig(prompt="7"), store)


def test_compare_eval_and_ask_default_to_the_same_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same question evaluated, compared and asked gets the same answer: unset means the default
    adapter everywhere (CQA_LLM__DEFAULT_ADAPTER with the embedded model); 'none' means the base model."""
    from core.adapters.registry import requested_adapter
    from core.cli.ask import cli_adapter

    monkeypatch.setenv("CQA_LLM__BACKEND", "embedded")
    settings = Settings()
    store = PromptStore(f"sqlite:///{settings.data_dir / 'prompts.sqlite'}")
    asked = cli_adapter(None, 1.0, settings)
    assert asked is not None and asked.name == settings.llm.default_adapter == "cqa-cite-v1"
    assert requested_adapter(None, 1.0, settings) == asked  # core.eval without --adapter
    assert config_options(CompareConfig(), settings, store).adapter == asked
    assert config_options(CompareConfig.parse("adapter=none"), settings, store).adapter is None
    assert config_options(CompareConfig(backend="ollama"), settings, store).adapter is None


def test_adapters_resolve_from_the_adapter_folders(settings: Settings) -> None:
    store = PromptStore(f"sqlite:///{settings.data_dir / 'prompts.sqlite'}")
    with pytest.raises(CompareConfigError, match="No adapter 'cite'; available: cqa-cite-v1"):
        config_options(CompareConfig(adapter="cite"), settings, store)
    (settings.data_dir / "adapters").mkdir(parents=True)
    (settings.data_dir / "adapters" / "cite.gguf").write_bytes(b"GGUF")
    assert "cite" in available_adapters(settings)
    options = config_options(CompareConfig(adapter="cite", scale=0.25), settings, store)
    assert options.adapter is not None and options.adapter.name == "cite" and options.adapter.scale == 0.25


def test_backend_choice_builds_ollama_only_when_asked() -> None:
    configured = LLMSettings(backend="fake")
    assert config_llm(CompareConfig(), configured) is None
    llm = config_llm(CompareConfig(backend="ollama", model="qwen:0.5b"), configured)
    assert isinstance(llm, OllamaBackend) and llm.model == "qwen:0.5b"
    assert config_llm(CompareConfig(backend="ollama"), LLMSettings(backend="ollama")) is None


# -- batch ----------------------------------------------------------------------------------------
def _sides(svc: Services, llm_b: FakeLLM | None = None) -> tuple[Side, Side]:
    svc.library.ingest_bytes(GUIDELINE, "anaphylaxis.md")
    llm = FakeLLM(compare_reply)
    service_a = AnswerService(svc.retriever, llm, LOOSE, svc_params(), safety=RuleSet.load(BUNDLED_RULES_DIR))
    service_b = AnswerService(svc.retriever, llm_b or llm, LOOSE, svc_params(), safety=RuleSet.load(BUNDLED_RULES_DIR))
    return Side(service_a, AskOptions(), "A-label"), Side(service_b, AskOptions(prompt=TERSE), "B-label")


def svc_params() -> Any:
    from core.llm import GenerationParams

    return GenerationParams(max_tokens=64, temperature=0.7, seed=7)


def _counting(svc: Services) -> list[str]:
    calls: list[str] = []
    real = svc.retriever.retrieve

    def counting(query: str, k: int | None = None, **kw: object) -> list:  # type: ignore[type-arg]
        calls.append(query)
        return real(query, k)

    svc.retriever.retrieve = counting  # type: ignore[method-assign]
    return calls


def test_batch_retrieves_once_per_case_and_summarises_each_side(fake_services: Services) -> None:
    a, b = _sides(fake_services)
    calls = _counting(fake_services)
    seen: list[tuple[int, int, str]] = []
    run = run_batch(CASES, a, b, progress=lambda done, total, item: seen.append((done, total, item.case.id)) and None)
    assert seen == [(1, 3, "dose"), (2, 3, "bread"), (3, 3, "stridor")]
    assert len(calls) == 3 and not run.cancelled and (run.config_a, run.config_b) == ("A-label", "B-label")
    dose = run.cases[0]
    assert dose.a.status == "answered" and dose.a.grounded and dose.b.status == "refused"
    assert [r.chunk_id for r in dose.a.retrieved] == [r.chunk_id for r in dose.b.retrieved]
    assert run.cases[2].a.status == run.cases[2].b.status == "escalated"

    summary = summary_frame(run)
    assert list(summary.columns) == ["A", "B"] and summary.index.name == "metric"
    s = summary.to_dict()
    assert s["A"]["n"] == 3 and s["A"]["verified_citation_rate"] == 1.0
    assert s["A"]["false_refusals"] == 0.0 and s["B"]["false_refusals"] == 1.0
    assert s["A"]["escalation_recall"] == s["B"]["escalation_recall"] == 1.0
    assert s["A"]["retrieval_hit_rate@k"] == s["B"]["retrieval_hit_rate@k"] == 0.5  # other.md is not in the library
    assert s["A"]["format_valid_rate"] == 1.0 and math.isnan(s["B"]["verified_citation_rate"])
    assert s["A"]["latency_p95_s"] >= s["A"]["latency_p50_s"] >= 0


def test_cases_frame_has_one_row_per_case_and_both_sides(fake_services: Services, tmp_path: Path) -> None:
    a, b = _sides(fake_services)
    run = run_batch(CASES, a, b)
    frame = cases_frame(run)
    assert list(frame["id"]) == ["dose", "bread", "stridor"]
    assert list(frame["retrieval_hit"]) == [True, None, False]
    assert list(frame["a_expected"]) == [True, True, True] and list(frame["b_expected"]) == [False, True, True]
    assert frame["a_verified_citations"][0] == 1 and frame["b_refusal"][0] == "no_evidence"
    write_results(run, tmp_path / "out" / "r.csv")
    assert (tmp_path / "out" / "r.csv").read_text().splitlines()[0].startswith("id,question,expect,sources")
    write_results(run, tmp_path / "r.jsonl")
    lines = [BatchCase.model_validate_json(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [x.case.id for x in lines] == ["dose", "bread", "stridor"] and lines[0].a.text == run.cases[0].a.text


def test_cancel_event_stops_before_the_next_case(fake_services: Services) -> None:
    a, b = _sides(fake_services)
    cancel = threading.Event()
    run = run_batch(CASES, a, b, progress=lambda done, total, item: cancel.set(), cancel=cancel)
    assert len(run.cases) == 1 and run.cancelled and run.total == 3
    assert summary_frame(run).loc["n", "A"] == 1


def test_progress_returning_false_stops_early(fake_services: Services) -> None:
    a, b = _sides(fake_services)
    llm = a.service.llm
    assert isinstance(llm, FakeLLM)
    run = run_batch(CASES, a, b, progress=lambda done, total, item: done < 2)
    assert [c.case.id for c in run.cases] == ["dose", "bread"] and run.cancelled
    assert len(llm.calls) == 2  # the dose question on A and B; the bread question never reached a model


def test_unreachable_ollama_fails_only_its_own_side(settings: Settings, free_closed_port: str) -> None:
    svc = build_services(Settings(ollama_host=free_closed_port), embedder=HashingEmbedder(), store=InMemoryStore())
    try:
        a, _ = _sides(svc)
        store = PromptStore(f"sqlite:///{settings.data_dir / 'prompts.sqlite'}")
        config = CompareConfig(backend="ollama", model="llama3.2:1b")
        llm = config_llm(config, svc.settings.llm)
        assert llm is not None
        b = build_side(config, AnswerService(svc.retriever, llm, LOOSE, svc_params()), store, svc.settings)
        assert b.label == "prompt builtin-1 · no adapter · ollama llama3.2:1b"
        result = compare_sides(CASES[0].question, a, b)
        assert result.a.status == "answered"
        assert result.b.refusal is not None and result.b.refusal.reason == "model_unavailable"
        assert free_closed_port.removeprefix("http://") in result.b.text
    finally:
        svc.close()


def test_embedded_and_ollama_sides_answer_on_the_same_passages(
    fake_services: Services, fake_ollama_server: Callable[..., FakeOllama], settings: Settings
) -> None:
    server = fake_ollama_server(backend=FakeLLM(compare_reply))
    a, _ = _sides(fake_services)
    config = CompareConfig.parse("backend=ollama:llama3.2:1b")
    llm = config_llm(config, LLMSettings(backend="fake", ollama_host=server.url))
    assert llm is not None
    store = PromptStore(f"sqlite:///{settings.data_dir / 'prompts.sqlite'}")
    b = build_side(config, AnswerService(fake_services.retriever, llm, LOOSE, svc_params()), store, settings)
    result = compare_sides(CASES[0].question, a, b)
    assert result.a.backend == "fake" and result.b.backend == "ollama"
    assert result.a.text == result.b.text and result.b.status == "answered"
    assert [r.chunk_id for r in result.a.retrieved] == [r.chunk_id for r in result.b.retrieved]


@pytest.fixture
def free_closed_port() -> str:
    from tests.browser import free_port

    return f"http://127.0.0.1:{free_port()}"


def test_uploaded_cases_with_a_bad_line_name_it() -> None:
    text = '{"id": "1", "question": "q", "expect": "answer"}\n{"id": "2", "question": "q"\n'
    with pytest.raises(ValueError, match="upload.jsonl line 2: Invalid JSON"):
        parse_cases(text, "upload.jsonl")
    with pytest.raises(ValueError, match="line 1: Input should be 'answer', 'refuse' or 'escalate'"):
        parse_cases('{"id": "1", "question": "q", "expect": "maybe"}', "x.jsonl")


# -- the CLI ----------------------------------------------------------------------------------------
def _cli(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQA_")}
    env.update(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", CQA_EMBEDDING__MODE="fake", CQA_LLM__BACKEND="fake",
               CQA_DATA_DIR=str(data_dir))
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _write_cases(path: Path) -> Path:
    path.write_text("".join(c.model_dump_json() + "\n" for c in CASES))
    return path


def test_cli_writes_per_case_results_and_prints_the_summary(tmp_path: Path) -> None:
    data = tmp_path / "var"
    assert _cli(["core.ingest", str(CORPUS / "anaphylaxis.md")], data).returncode == 0
    cases, out = _write_cases(tmp_path / "cases.jsonl"), tmp_path / "out" / "run.jsonl"
    done = _cli(["core.compare", str(cases), "--a", "prompt=builtin-1", "--b", "", "--out", str(out)], data)
    assert done.returncode == 0, done.stderr
    lines = [BatchCase.model_validate_json(line) for line in out.read_text().splitlines()]
    assert [x.case.id for x in lines] == ["dose", "bread", "stridor"]
    assert [x.a.status for x in lines] == [x.b.status for x in lines]
    assert "[3/3] stridor" in done.stderr
    table = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[3:]}
    assert table["n"] == ["3.000", "3.000"] and table["escalation_recall"] == ["1.000", "1.000"]
    assert "latency_p95_s" in table and done.stdout.startswith("A: prompt builtin-1 · no adapter · fake fake")

    csv = tmp_path / "run.csv"
    assert _cli(["core.compare", str(cases), "--out", str(csv)], data).returncode == 0
    assert list(pd.read_csv(csv)["id"]) == ["dose", "bread", "stridor"]


@pytest.mark.parametrize(("args", "message"), [
    (["--a", "adapter=nice"], "No adapter 'nice'; available: cqa-cite-v1."),
    (["--b", "prompt=v9"], "no prompt version 'v9'; available: builtin-1"),
    (["--a", "colour=red"], "'colour=red' in configuration 'colour=red' is not key=value"),
])
def test_cli_rejects_unknown_adapter_prompt_and_bad_config(tmp_path: Path, args: list[str], message: str) -> None:
    cases = _write_cases(tmp_path / "cases.jsonl")
    done = _cli(["core.compare", str(cases), *args, "--out", str(tmp_path / "r.jsonl")], tmp_path / "var")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_cli_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "q", "expect": "answer"}\n{"id": 2\n')
    for args, message in [
        ([str(bad), "--out", str(tmp_path / "r.jsonl")], "bad.jsonl line 2"),
        ([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r.jsonl")], "missing.jsonl"),
        ([str(bad), "--out", str(tmp_path / "r.txt")], "--out must end in .jsonl or .csv"),
    ]:
        done = _cli(["core.compare", *args], tmp_path / "var")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


# -- the shipped evaluation set ------------------------------------------------------------------
def test_shipped_evaluation_set_is_valid_and_covers_every_kind() -> None:
    assert EVAL_SET == REPO / "data" / "eval" / "cases.jsonl"
    cases = load_cases(EVAL_SET)
    assert len(cases) >= 100
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    counts = Counter(c.expect for c in cases)
    assert counts["answer"] >= 60 and counts["refuse"] >= 20 and counts["escalate"] >= 15, counts
    guidelines = {p.name for p in CORPUS.iterdir()}
    for case in cases:
        assert case.question.strip(), case.id
        assert all(s.file in guidelines for s in case.sources), f"{case.id}: unknown source file"
        if case.expect == "answer":
            assert case.sources, f"{case.id}: an answerable case names its source"
        if case.expect == "refuse":
            assert not case.sources, f"{case.id}: an unanswerable case has no source"
    raw = [json.loads(line) for line in EVAL_SET.read_text().splitlines()]
    assert all(set(r) <= {"id", "question", "expect", "sources", "facts"} for r in raw)


def test_shipped_red_flag_cases_match_the_escalation_rules() -> None:
    rules = RuleSet.load(BUNDLED_RULES_DIR)
    for case in load_cases(EVAL_SET):
        escalates = rules.check(case.question).escalation is not None
        assert escalates == (case.expect == "escalate"), f"{case.id}: {case.question!r}"


def test_interrupted_cli_writes_and_summarises_the_finished_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import core.evaluation.compare_batch as batch
    from core.cli.compare import main

    monkeypatch.setenv("CQA_EMBEDDING__MODE", "fake")
    monkeypatch.setenv("CQA_STORE__MODE", "memory")
    monkeypatch.setenv("CQA_LLM__BACKEND", "fake")
    real = batch.compare_case
    calls: list[str] = []

    def interrupted_on_the_second(case: EvalCase, a: Side, b: Side) -> BatchCase:
        calls.append(case.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(case, a, b)

    monkeypatch.setattr(batch, "compare_case", interrupted_on_the_second)
    out = tmp_path / "partial.jsonl"
    assert main([str(_write_cases(tmp_path / "cases.jsonl")), "--out", str(out)]) == 130
    assert [BatchCase.model_validate_json(line).case.id for line in out.read_text().splitlines()] == ["dose"]
    captured = capsys.readouterr()
    assert "interrupted after 1 of 3 cases" in captured.err
    assert any(line.split()[:3] == ["n", "1.000", "1.000"] for line in captured.out.splitlines())
