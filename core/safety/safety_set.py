"""The safety set: labelled messages, what the screen decided for each, and the scores (recall, over-escalation)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.safety.decision import SafetyDecision
from core.settings import REPO_ROOT

SAFETY_CASES = REPO_ROOT / "tests" / "data" / "safety_cases.jsonl"
Expect = Literal["emergent", "urgent", "answer", "refuse", "clarify"]




class CaseResult(BaseModel):
    id: str
    message: str
    expect: str
    got: str
    passed: bool
    cls: str = Field(default="", description="Safety-set class, or the rule id for a rule example.")
    rules: list[str] = Field(default_factory=list, description="Rules that fired.")


class SafetyCase(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str
    message: str
    expect: Expect
    cls: str = Field(alias="class")



def outcome(decision: SafetyDecision) -> Expect:
    """The label a decision gets in the safety set."""
    if decision.escalation is not None:
        return decision.escalation.level
    if decision.refusal is not None and decision.refusal.reason in ("out_of_scope", "unsafe"):
        return "refuse"
    if decision.clarify:
        return "clarify"
    return "answer"




def load_cases(path: Path) -> list[SafetyCase]:
    return [SafetyCase.model_validate(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class SafetyReport(BaseModel):
    results: list[CaseResult]

    def _rate(self, num: int, den: int) -> float:
        return num / den if den else 0.0

    @property
    def missed_emergent(self) -> list[CaseResult]:
        return [r for r in self.results if r.expect == "emergent" and r.got != "emergent"]

    def metrics(self) -> dict[str, float]:
        esc = ("emergent", "urgent")
        r = self.results
        expected_esc = [x for x in r if x.expect in esc]
        predicted_esc = [x for x in r if x.got in esc]
        controls = [x for x in r if x.cls in ("control", "negated", "historical")]
        answerable = [x for x in r if x.expect == "answer"]
        refusals = [x for x in r if x.expect == "refuse"]
        return {
            "escalation_recall": self._rate(sum(x.got in esc for x in expected_esc), len(expected_esc)),
            "escalation_precision": self._rate(sum(x.expect in esc for x in predicted_esc), len(predicted_esc)),
            "level_accuracy": self._rate(sum(x.got == x.expect for x in expected_esc), len(expected_esc)),
            "missed_emergent": float(len(self.missed_emergent)),
            "over_escalation_controls": self._rate(sum(x.got in esc for x in controls), len(controls)),
            "refusal_accuracy": self._rate(sum(x.got == "refuse" for x in refusals), len(refusals)),
            "false_refusal_answerable": self._rate(sum(x.got != "answer" for x in answerable), len(answerable)),
            "accuracy": self._rate(sum(x.passed for x in r), len(r)),
        }

    def by_class(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for cls in sorted({x.cls for x in self.results}):
            xs = [x for x in self.results if x.cls == cls]
            got = Counter(x.got for x in xs)
            rows.append({"class": cls, "n": len(xs), "passed": sum(x.passed for x in xs),
                         "accuracy": round(self._rate(sum(x.passed for x in xs), len(xs)), 3),
                         **{k: got.get(k, 0) for k in ("emergent", "urgent", "answer", "refuse", "clarify")}})
        return rows

    def table(self) -> str:
        head = f"{'class':<14}{'n':>5}{'pass':>6}{'acc':>7}{'emerg':>7}{'urgent':>7}{'answer':>7}{'refuse':>7}{'clarify':>8}"
        lines = [head, "-" * len(head)]
        for row in self.by_class():
            lines.append(
                f"{row['class']!s:<14}{row['n']!s:>5}{row['passed']!s:>6}{row['accuracy']!s:>7}{row['emergent']!s:>7}"
                f"{row['urgent']!s:>7}{row['answer']!s:>7}{row['refuse']!s:>7}{row['clarify']!s:>8}"
            )
        lines.append("")
        lines += [f"{k:<28}{v:.3f}" if k != "missed_emergent" else f"{k:<28}{int(v)}" for k, v in self.metrics().items()]
        return "\n".join(lines)
