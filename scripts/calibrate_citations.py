"""Calibrate `SUPPORT_THRESHOLD` (core/citations.py) on tests/data/citation_support.jsonl.

Each example is one model-style sentence, one guideline passage and a hand label: does the passage
support the sentence? The examples are split in two halves by a hash of their id. The threshold is
chosen on the calibration half only: the one with the highest recall whose precision of "supported"
is at least 0.95 (safety first; on a tie, the higher threshold). The held-out half then shows whether
that precision survives on examples the choice never saw.

    .venv/bin/python scripts/calibrate_citations.py               # print the tables
    .venv/bin/python scripts/calibrate_citations.py --errors      # also list every misjudged example
    .venv/bin/python scripts/calibrate_citations.py --write-docs  # refresh docs/citation-verification.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.answering.citations import SUPPORT_THRESHOLD, verify  # noqa: E402

DATA = REPO / "tests" / "data" / "citation_support.jsonl"
DOC = REPO / "docs" / "citation-verification.md"
THRESHOLDS = [round(0.30 + 0.05 * i, 2) for i in range(13)]
MIN_PRECISION = 0.95
DOC_START = "<!-- calibration:start -->"
DOC_END = "<!-- calibration:end -->"

Half = Literal["calibration", "held_out"]


@dataclass(frozen=True)
class Example:
    id: str
    sentence: str
    passage: str
    supported: bool
    kind: str
    batch: int

    @property
    def half(self) -> Half:
        return "calibration" if hashlib.sha256(self.id.encode()).digest()[0] % 2 == 0 else "held_out"


@dataclass(frozen=True)
class Metrics:
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_examples(path: Path = DATA) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(r["id"], r["sentence"], r["passage"], r["supported"], r["kind"], r.get("batch", 1)) for r in rows]


def predict(example: Example, threshold: float) -> bool:
    """The production path: the sentence cites [1], the passage is [1]."""
    return verify(f"{example.sentence} [1]", [(1, example.passage)], threshold).all_supported


def evaluate(examples: Iterable[Example], threshold: float) -> Metrics:
    tp = fp = fn = tn = 0
    for ex in examples:
        said = predict(ex, threshold)
        tp += said and ex.supported
        fp += said and not ex.supported
        fn += not said and ex.supported
        tn += not said and not ex.supported
    return Metrics(tp, fp, fn, tn)


def choose_threshold(table: dict[float, Metrics]) -> float:
    safe = [t for t, m in table.items() if m.precision >= MIN_PRECISION]
    if not safe:
        return max(table, key=lambda t: (table[t].precision, t))
    return max(safe, key=lambda t: (table[t].recall, t))


def sweep_table(examples: list[Example]) -> tuple[list[str], float]:
    halves = {h: [e for e in examples if e.half == h] for h in ("calibration", "held_out")}
    calibration = {t: evaluate(halves["calibration"], t) for t in THRESHOLDS}
    held_out = {t: evaluate(halves["held_out"], t) for t in THRESHOLDS}
    chosen = choose_threshold(calibration)
    lines = [
        "| threshold | calibration P | calibration R | calibration F1 | held-out P | held-out R | held-out F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in THRESHOLDS:
        c, h = calibration[t], held_out[t]
        mark = " **(chosen)**" if t == chosen else ""
        lines.append(
            f"| {t:.2f}{mark} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} "
            f"| {h.precision:.3f} | {h.recall:.3f} | {h.f1:.3f} |"
        )
    return lines, chosen


def summary_lines(examples: list[Example], threshold: float) -> list[str]:
    lines = [
        "| half | examples | supported | TP | FP | FN | TN | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    parts = {
        "calibration": [e for e in examples if e.half == "calibration"],
        "held_out": [e for e in examples if e.half == "held_out"],
        "all": examples,
        "batch 2, held_out (fresh)": [e for e in examples if e.batch == 2 and e.half == "held_out"],
        "batch 2, all": [e for e in examples if e.batch == 2],
    }
    for name, part in parts.items():
        m = evaluate(part, threshold)
        lines.append(
            f"| {name} | {len(part)} | {sum(e.supported for e in part)} | {m.tp} | {m.fp} | {m.fn} | {m.tn} "
            f"| {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} |"
        )
    return lines


def kind_lines(examples: list[Example], threshold: float) -> list[str]:
    lines = ["| kind | label | examples | judged correctly | rate |", "|---|---|---|---|---|"]
    kinds = sorted({(not e.supported, e.kind) for e in examples})
    for unsupported, kind in kinds:
        part = [e for e in examples if e.kind == kind and e.supported != unsupported]
        right = sum(predict(e, threshold) == e.supported for e in part)
        label = "unsupported" if unsupported else "supported"
        lines.append(f"| {kind} | {label} | {len(part)} | {right} | {right / len(part):.2f} |")
    return lines


def error_lines(examples: list[Example], threshold: float) -> list[str]:
    out = []
    for e in examples:
        v = verify(f"{e.sentence} [1]", [(1, e.passage)], threshold)
        if v.all_supported != e.supported:
            check = v.sentences[0]
            tag = "FALSE SUPPORT" if v.all_supported else "missed"
            out.append(f"{tag:13} {e.id} [{e.half}] ({e.kind}) score={check.score:.2f} {check.problems}")
            out.append(f"    {e.sentence}")
    return out


def write_docs(sections: dict[str, list[str]]) -> None:
    body = [DOC_START]
    for title, lines in sections.items():
        body += ["", f"#### {title}", "", *lines]
    body += ["", DOC_END]
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(DOC_START), text.index(DOC_END) + len(DOC_END)
    DOC.write_text(text[:start] + "\n".join(body) + text[end:], encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--errors", action="store_true", help="list misjudged examples at the chosen threshold")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the tables in {DOC.relative_to(REPO)}")
    args = parser.parse_args()

    examples = load_examples()
    sweep, chosen = sweep_table(examples)
    sections = {
        f"Threshold sweep (precision/recall of 'supported'; chosen on the calibration half: highest recall "
        f"with precision >= {MIN_PRECISION})": sweep,
        f"At the chosen threshold {chosen:.2f}": summary_lines(examples, chosen),
        f"Per kind at {chosen:.2f} (all examples)": kind_lines(examples, chosen),
    }
    for title, lines in sections.items():
        print(f"\n{title}\n" + "\n".join(lines))
    if args.errors:
        print("\nMisjudged examples\n" + "\n".join(error_lines(examples, chosen)))
    print(f"\nchosen threshold: {chosen:.2f}")
    if abs(chosen - SUPPORT_THRESHOLD) > 1e-9:
        print(f"note: core/citations.py has SUPPORT_THRESHOLD = {SUPPORT_THRESHOLD:.2f}; set it to {chosen:.2f}")
    if args.write_docs:
        write_docs(sections)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
