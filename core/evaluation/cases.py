"""CLI: `python -m core.eval CASES.jsonl --out RESULTS.jsonl` runs each case through the answer
pipeline of the configured data folder (`CQA_DATA_DIR`) and prints a summary table.

A case is one JSON line: {"id", "question", "expect": "answer"|"refuse"|"escalate",
"sources": [{"file", "page", "section"}], "facts": ["0.5 mg", ...]}. Each result line is the `Answer`
JSON plus the case's `id`, `expect`, `sources` and `facts`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from core.answers import Answer
from core.evaluation.facts import contains_fact, section_matches

Expectation = Literal["answer", "refuse", "escalate"]


class SourceRef(BaseModel):
    file: str = Field(description="File name of the guideline that holds the answer.")
    page: int | None = Field(default=None, description="Page that holds it; unset = any page.")
    section: str | None = Field(default=None, description="Heading of the section that holds it; unset = any.")


class EvalCase(BaseModel):
    id: str
    question: str
    expect: Expectation
    sources: list[SourceRef] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list, description="Strings a correct answer must contain (any one).")


def load_cases(path: Path) -> list[EvalCase]:
    return parse_cases(path.read_text(encoding="utf-8"), path.name)


def parse_cases(text: str, name: str) -> list[EvalCase]:
    """One case per non-blank JSONL line; a bad line raises `ValueError` naming `name` and the line."""
    cases = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cases.append(EvalCase.model_validate_json(line))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = f" at {error['loc']}" if error["loc"] else ""
            raise ValueError(f"{name} line {number}: {error['msg']}{where}") from exc
    return cases


def case_result(case: EvalCase, answer: Answer) -> dict[str, Any]:
    """One result line: the `Answer` JSON plus the case's `id`, `expect` and `sources`."""
    return {**answer.model_dump(mode="json"), "id": case.id, "expect": case.expect,
            "sources": [s.model_dump() for s in case.sources], "facts": case.facts}


def retrieval_hit(result: dict[str, Any]) -> bool:
    """Any retrieved passage comes from a named source file (and page, when one is given)."""
    return any(
        r.get("document") == s["file"] and (s.get("page") is None or r.get("page") == s["page"])
        for s in result.get("sources") or [] for r in result.get("retrieved") or []
    )


def _at(result: dict[str, Any], n: int) -> bool:
    """A passage from the expected file (and page and section, when given) is among the first `n` retrieved."""
    return any(
        r.get("document") == s["file"] and (s.get("page") is None or r.get("page") == s["page"])
        and (not s.get("section") or section_matches(str(r.get("section") or "").split(" › "), str(s["section"])))
        for s in result.get("sources") or [] for r in (result.get("retrieved") or [])[:n]
    )


def cites_expected_document(result: dict[str, Any]) -> bool:
    files = {s["file"] for s in result.get("sources") or []}
    return any(c.get("verified") and c.get("document") in files for c in result.get("citations") or [])


def fact_present(result: dict[str, Any]) -> bool:
    """One of the case's facts is in the answer the clinician is shown."""
    shown = result.get("text") or ""
    return result.get("status") in ("answered", "escalated") and any(contains_fact(shown, f) for f in result.get("facts") or [])


def _rate(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
    """The run's ratios; a ratio with no applicable cases is NaN (not 0, which would look like a failure)."""
    def status_of(expect: str, status: str) -> int:
        return sum(r["expect"] == expect and r["status"] == status for r in results)

    expected = {e: sum(r["expect"] == e for r in results) for e in ("answer", "refuse", "escalate")}
    with_sources = [r for r in results if r.get("sources")]
    answered = [r for r in results if r["status"] == "answered"]
    generated = [r for r in results if model_was_asked(r)]
    latencies = pd.Series([float(r.get("timings", {}).get("total_s", 0.0)) for r in results], dtype=float)
    answerable = [r for r in results if r["expect"] == "answer"]
    with_facts = [r for r in answerable if r.get("facts")]
    return {
        "n": float(len(results)),
        "retrieval_hit_rate@k": _rate(sum(retrieval_hit(r) for r in with_sources), len(with_sources)),
        "retrieval_hit@1": _rate(sum(_at(r, 1) for r in with_sources), len(with_sources)),
        "retrieval_hit@5": _rate(sum(_at(r, 5) for r in with_sources), len(with_sources)),
        # An escalated answer still shows its grounded answer under the urgent-care text: it counts here,
        # and the escalation is counted in over_escalation.
        "answerable_verified_right_doc": _rate(
            sum(r["status"] in ("answered", "escalated") and bool(r.get("grounded")) and cites_expected_document(r)
                for r in answerable),
            len([r for r in answerable if r.get("sources")])),
        "expected_fact_present": _rate(sum(fact_present(r) for r in with_facts), len(with_facts)),
        "summary_shown_rate": _rate(sum(bool(r.get("summary_shown")) for r in answered), len(answered)),
        "verified_citation_rate": _rate(sum(bool(r.get("grounded")) for r in answered), len(answered)),
        "format_valid_rate": _rate(sum(bool(r.get("format_valid", True)) for r in generated), len(generated)),
        "refusal_accuracy": _rate(status_of("refuse", "refused"), expected["refuse"]),
        "false_refusals": _rate(status_of("answer", "refused"), expected["answer"]),
        "escalation_recall": _rate(status_of("escalate", "escalated"), expected["escalate"]),
        "over_escalation": _rate(status_of("answer", "escalated"), expected["answer"]),
        "latency_p50_s": float(latencies.quantile(0.5)) if len(latencies) else math.nan,
        "latency_p95_s": float(latencies.quantile(0.95)) if len(latencies) else math.nan,
    }


def model_was_asked(result: dict[str, Any]) -> bool:
    """The pipeline reached generation (passages were put in a prompt), so `format_valid` means something:
    answers stopped by a safety rule or the evidence gate never asked the model."""
    return int((result.get("tokens") or {}).get("passages_given", 0)) > 0


def summary_table(summary: dict[str, float]) -> str:
    frame = pd.DataFrame({"metric": list(summary), "value": list(summary.values())})
    return str(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
