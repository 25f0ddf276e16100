"""Batch comparison: configurations A and B over an evaluation set, retrieval once per case shared by
both sides, with progress and cancellation; the summary reuses `core.eval`'s metrics per side.

CLI (`python -m core.compare`, in `core.cli.compare`): `CASES.jsonl --a CONFIG --b CONFIG --out FILE.jsonl|FILE.csv`.
Exit codes as `core.eval`: 2 bad input (configuration, prompt, adapter, cases file), 3 the library or
model could not be opened, 130 interrupted (the finished cases are still written).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from core.answering.pipeline import _ref
from core.answers import Answer, RetrievedRef
from core.evaluation.cases import EvalCase, case_result, retrieval_hit, summarise
from core.evaluation.compare import Side, compare_sides
from core.settings import REPO_ROOT

SideName = Literal["a", "b"]
EVAL_SET = REPO_ROOT / "data" / "eval" / "cases.jsonl"
OUTCOME = {"answer": "answered", "refuse": "refused", "escalate": "escalated"}
# The summary's ratios (0-1) drawn as one chart; latencies are drawn apart (seconds).
RATE_METRICS = [
    "retrieval_hit_rate@k", "verified_citation_rate", "format_valid_rate", "refusal_accuracy",
    "false_refusals", "escalation_recall", "over_escalation",
]
LATENCY_METRICS = ["latency_p50_s", "latency_p95_s"]

Progress = Callable[[int, int, "BatchCase"], bool | None]


class BatchCase(BaseModel):
    case: EvalCase
    retrieved: list[RetrievedRef] = Field(description="The passages retrieved once; both sides were given these.")
    retrieve_s: float
    a: Answer
    b: Answer

    def answer(self, side: SideName) -> Answer:
        return self.a if side == "a" else self.b


class BatchRun(BaseModel):
    config_a: str
    config_b: str
    total: int = Field(description="Cases in the set; more than `len(cases)` when the run was cancelled.")
    cases: list[BatchCase] = Field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return len(self.cases) < self.total


def compare_case(case: EvalCase, a: Side, b: Side) -> BatchCase:
    result = compare_sides(case.question, a, b)
    return BatchCase(case=case, retrieved=[_ref(p) for p in result.passages], retrieve_s=result.retrieve_s,
                     a=result.a, b=result.b)


def run_batch(
    cases: list[EvalCase], a: Side, b: Side, *, progress: Progress | None = None, cancel: threading.Event | None = None
) -> BatchRun:
    """Compare A and B on every case in order. Stops before the next case once `cancel` is set or
    `progress(done, total, case)` returns False; the finished cases are kept."""
    run = BatchRun(config_a=a.label, config_b=b.label, total=len(cases))
    for case in cases:
        if cancel is not None and cancel.is_set():
            break
        item = compare_case(case, a, b)
        run.cases.append(item)
        if progress is not None and progress(len(run.cases), len(cases), item) is False:
            break
    return run


def side_results(run: BatchRun, side: SideName) -> list[dict[str, Any]]:
    """One side's results in `core.eval`'s shape. `retrieved` is the shared retrieval, so the hit rate
    counts every case with sources, also those a safety rule stopped before the side's own retrieval."""
    rows = []
    for item in run.cases:
        row = case_result(item.case, item.answer(side))
        row["retrieved"] = [r.model_dump(mode="json") for r in item.retrieved]
        rows.append(row)
    return rows


def summary_frame(run: BatchRun) -> pd.DataFrame:
    """One row per metric (`core.eval.summarise`), one column per side."""
    a, b = summarise(side_results(run, "a")), summarise(side_results(run, "b"))
    frame = pd.DataFrame({"A": pd.Series(a), "B": pd.Series(b)})
    frame.index.name = "metric"
    return frame


def expected_met(expect: str, answer: Answer) -> bool:
    return answer.status == OUTCOME[expect]


def cases_frame(run: BatchRun) -> pd.DataFrame:
    """One row per case: the case, whether retrieval found a named source, and each side's outcome."""
    rows = []
    for item, result in zip(run.cases, side_results(run, "a"), strict=True):
        row: dict[str, Any] = {
            "id": item.case.id, "question": item.case.question, "expect": item.case.expect,
            "sources": " ".join(s.file for s in item.case.sources),
            "retrieval_hit": retrieval_hit(result) if item.case.sources else None,
        }
        for side in ("a", "b"):
            answer = item.answer(side)
            row.update({
                f"{side}_status": answer.status, f"{side}_expected": expected_met(item.case.expect, answer),
                f"{side}_grounded": answer.grounded,
                f"{side}_verified_citations": sum(c.verified for c in answer.citations),
                f"{side}_format_valid": answer.format_valid,
                f"{side}_refusal": answer.refusal.reason if answer.refusal else "",
                f"{side}_escalation": answer.escalation.level if answer.escalation else "",
                f"{side}_total_s": answer.timings.total_s, f"{side}_text": answer.text,
            })
        rows.append(row)
    return pd.DataFrame(rows)


def format_summary(frame: pd.DataFrame) -> str:
    return str(frame.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))


def write_results(run: BatchRun, path: Path) -> None:
    """Per-case rows: CSV (`cases_frame`) or JSONL (one `BatchCase` per line, both full answers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        cases_frame(run).to_csv(path, index=False)
    else:
        path.write_text("".join(item.model_dump_json() + "\n" for item in run.cases), encoding="utf-8")
