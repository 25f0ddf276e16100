"""The evaluation runner: the metric arithmetic on hand-made results, then the CLI end to end."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.answers import Answer
from core.evaluation.cases import load_cases, retrieval_hit, summarise
from tests.conftest import CORPUS, REPO


def result(expect: str, status: str, *, grounded: bool = False, total_s: float = 1.0,
           sources: list[dict[str, Any]] | None = None, retrieved: tuple[tuple[str, int | None], ...] = ()) -> dict[str, Any]:
    return {"id": "x", "expect": expect, "status": status, "grounded": grounded, "timings": {"total_s": total_s},
            "sources": sources or [], "retrieved": [{"document": d, "page": p} for d, p in retrieved]}


def test_summarise_counts_each_ratio_against_its_own_denominator() -> None:
    results = [
        result("answer", "answered", grounded=True, total_s=1.0, sources=[{"file": "a.md", "page": None}], retrieved=(("a.md", 3),)),
        result("answer", "answered", grounded=False, total_s=2.0, sources=[{"file": "b.pdf", "page": 4}], retrieved=(("b.pdf", 5),)),
        result("answer", "refused", total_s=3.0),
        result("answer", "escalated", total_s=4.0),
        result("refuse", "refused", total_s=5.0),
        result("refuse", "answered", grounded=True, total_s=6.0),
        result("escalate", "escalated", total_s=7.0, sources=[{"file": "c.md", "page": 2}], retrieved=(("x.md", 2), ("c.md", 2))),
        result("escalate", "answered", grounded=True, total_s=8.0),
    ]
    s = summarise(results)
    assert s["n"] == 8
    assert s["retrieval_hit_rate@k"] == pytest.approx(2 / 3)  # b.pdf was retrieved, but from the wrong page
    assert s["verified_citation_rate"] == pytest.approx(3 / 4)  # answered: grounded, not, grounded, grounded
    assert s["refusal_accuracy"] == 0.5
    assert s["false_refusals"] == 0.25 and s["over_escalation"] == 0.25
    assert s["escalation_recall"] == 0.5
    assert s["latency_p50_s"] == pytest.approx(4.5)
    assert s["latency_p95_s"] == pytest.approx(7.65)


def test_ratios_without_cases_are_nan_not_zero() -> None:
    s = summarise([result("answer", "answered", grounded=True)])
    assert s["false_refusals"] == 0.0 and s["verified_citation_rate"] == 1.0
    for name in ("retrieval_hit_rate@k", "refusal_accuracy", "escalation_recall"):
        assert math.isnan(s[name])
    assert math.isnan(summarise([])["latency_p50_s"])


def test_retrieval_hit_page_must_match_when_given() -> None:
    hit = result("answer", "answered", sources=[{"file": "a.md", "page": 2}], retrieved=(("a.md", 2),))
    miss = result("answer", "answered", sources=[{"file": "a.md", "page": 2}], retrieved=(("a.md", None),))
    assert retrieval_hit(hit) and not retrieval_hit(miss)


def test_bad_case_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"id": "1", "question": "q", "expect": "answer"}\n\n{"id": "2", "question": "q", "expect": "maybe"}\n')
    with pytest.raises(ValueError, match="line 3"):
        load_cases(path)


CASES: list[dict[str, Any]] = [
    {"id": "dose", "question": "What IM adrenaline dose is given into the thigh in anaphylaxis?", "expect": "answer",
     "sources": [{"file": "anaphylaxis.md", "page": None}]},
    {"id": "bread", "question": "What is the best recipe for sourdough bread?", "expect": "refuse"},
    {"id": "stridor", "question": "My patient has throat swelling and stridor after a bee sting, what adrenaline dose?",
     "expect": "escalate"},
]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CQA_")}
    full.update(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", CQA_EMBEDDING__MODE="fake", CQA_LLM__BACKEND="fake", **env)
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the anaphylaxis guideline ingested by `core.ingest`, once for the module."""
    data = tmp_path_factory.mktemp("ingested") / "var"
    done = _run(["core.ingest", str(CORPUS / "anaphylaxis.md")], {"CQA_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    return data


def _library(ingested: Path, where: Path) -> dict[str, str]:
    """A copy of the ingested data folder at `where` (each test writes its own audit log, prompts...)."""
    shutil.copytree(ingested, where)
    return {"CQA_DATA_DIR": str(where)}


def test_cli_writes_one_result_per_case_and_a_summary(tmp_path: Path, ingested: Path) -> None:
    env = _library(ingested, tmp_path / "eval-corpus")
    cases, out = tmp_path / "cases.jsonl", tmp_path / "results" / "run.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in CASES))

    done = _run(["core.eval", str(cases), "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["expect"]) for r in lines] == [(c["id"], c["expect"]) for c in CASES]
    answers = [Answer.model_validate(r) for r in lines]  # each line is still a valid Answer
    assert [a.status for a in answers] == ["answered", "refused", "escalated"]
    assert answers[0].retrieved[0].document == "anaphylaxis.md"
    table = {line.split()[0]: line.split()[1] for line in done.stdout.strip().splitlines()[1:]}
    assert table["n"] == "3.000" and table["retrieval_hit_rate@k"] == "1.000"
    assert table["refusal_accuracy"] == "1.000" and table["escalation_recall"] == "1.000"
    assert table["false_refusals"] == "0.000" and "latency_p95_s" in table


def test_cli_names_available_adapters_when_one_is_missing(tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(CASES[0]) + "\n")
    (tmp_path / "var" / "adapters").mkdir(parents=True)
    (tmp_path / "var" / "adapters" / "cite-v1.gguf").write_bytes(b"GGUF")
    done = _run(["core.eval", str(cases), "--out", str(tmp_path / "r.jsonl"), "--adapter", "nice", "--scale", "0.5"],
                {"CQA_DATA_DIR": str(tmp_path / "var")})
    assert done.returncode == 2
    assert "No adapter 'nice'; available: cite-v1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.jsonl").exists()
    bad_scale = _run(["core.eval", str(cases), "--out", str(tmp_path / "r.jsonl"), "--adapter", "cite-v1", "--scale", "2"],
                     {"CQA_DATA_DIR": str(tmp_path / "var")})
    assert bad_scale.returncode == 2 and "between 0 and 1" in bad_scale.stderr


def test_cli_records_the_adapter_and_scale_on_each_answer(tmp_path: Path, ingested: Path) -> None:
    env = _library(ingested, tmp_path / "var")
    (tmp_path / "var" / "adapters").mkdir()
    (tmp_path / "var" / "adapters" / "cite-v1.gguf").write_bytes(b"GGUF")  # the fake backend does not load it
    cases, out = tmp_path / "cases.jsonl", tmp_path / "out.jsonl"
    cases.write_text(json.dumps(CASES[0]) + "\n")
    done = _run(["core.eval", str(cases), "--out", str(out), "--adapter", "cite-v1", "--scale", "0.5"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["adapter"] == {"name": "cite-v1", "scale": 0.5}


def test_cli_uses_the_active_or_named_prompt_version(tmp_path: Path, ingested: Path) -> None:
    from core.answering.prompt_store import PromptStore
    from core.answering.prompts import BUILTIN_SYSTEM_PROMPT, BUILTIN_USER_TEMPLATE

    env = _library(ingested, tmp_path / "eval-corpus")
    store = PromptStore(f"sqlite:///{tmp_path / 'eval-corpus' / 'prompts.sqlite'}")
    created = store.create("terse", BUILTIN_SYSTEM_PROMPT + "\nBe terse.", BUILTIN_USER_TEMPLATE, "test")
    cases, out = tmp_path / "cases.jsonl", tmp_path / "out.jsonl"
    cases.write_text(json.dumps(CASES[0]) + "\n")
    done = _run(["core.eval", str(cases), "--out", str(out), "--prompt", created.version], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["prompt_version"] == created.version
    done = _run(["core.eval", str(cases), "--out", str(out)], env)
    assert json.loads(out.read_text())["prompt_version"] == "builtin-1"  # the active one
    missing = _run(["core.eval", str(cases), "--out", str(out), "--prompt", "v99"], env)
    assert missing.returncode == 3 and "v99" in missing.stderr and "Traceback" not in missing.stderr


def test_every_held_out_guideline_set_loads_and_its_facts_are_in_its_source_files() -> None:
    """The blind sets are read only as a whole by `core.eval`; this checks their shape, not their content."""
    from core.evaluation.cases import load_cases
    from core.evaluation.facts import contains_fact
    from core.library.parsing import parse_file
    from core.settings import REPO_ROOT, Settings

    guidelines = REPO_ROOT / "data" / "guidelines"
    texts: dict[str, str] = {}
    for path in sorted((REPO_ROOT / "tests" / "data" / "blind").glob("guideline_questions*.jsonl")):
        cases = load_cases(path)
        assert len(cases) >= 120, path.name
        assert {c.expect for c in cases} == {"answer", "refuse", "escalate"}, path.name
        for case in cases:
            for source in case.sources:
                if source.file not in texts:
                    data = (guidelines / source.file).read_bytes()
                    parsed = parse_file(data, source.file, Settings().ingest)
                    texts[source.file] = "\n".join(b.text for b in parsed.blocks)
            if case.expect == "answer":
                assert case.sources and case.facts, (path.name, case.id)
                assert any(contains_fact(texts[s.file], f) for f in case.facts for s in case.sources), (path.name, case.id)
