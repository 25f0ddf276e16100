"""Safety-set evaluation: per-class table, escalation recall and precision, over-escalation on
controls, refusal accuracy and false refusals; then every rule's own examples.

Usage: python scripts/eval_safety.py [--rules DIR] [--cases FILE] [--failures]
Exit code 1 if an emergent case is missed or a rule example fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.rules import BUNDLED_RULES_DIR, RuleSet, load_cases  # noqa: E402
from core.settings import REPO_ROOT  # noqa: E402

DEFAULT_CASES = REPO_ROOT / "tests" / "data" / "safety_cases.jsonl"
DEMO = REPO_ROOT / "tests" / "data" / "demo_questions.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, default=BUNDLED_RULES_DIR)
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--failures", action="store_true", help="List every failing case.")
    args = parser.parse_args()
    rules = RuleSet.load(args.rules)
    report = rules.evaluate(load_cases(args.cases))
    print(f"Rule set {rules.version}: {len(rules.rules)} rules, {len(report.results)} cases ({args.cases.name})\n")
    print(report.table())
    failing = [r for r in report.results if not r.passed]
    if args.failures or report.missed_emergent:
        for r in failing:
            print(f"  FAIL {r.id} [{r.cls}] expected {r.expect}, got {r.got} {r.rules}: {r.message}")
    demo = demo_false_refusals(rules)
    print(f"\ndemo_questions 'answer' items not answered: {demo[0]}/{demo[1]} ({demo[0] / max(demo[1], 1):.1%})")
    examples = rules.run_examples()
    bad = [e for e in examples if not e.passed]
    print(f"rule examples: {len(examples) - len(bad)}/{len(examples)} pass")
    for e in bad:
        print(f"  FAIL {e.id}: expected {e.expect}, got {e.got}: {e.message}")
    return 1 if report.missed_emergent or bad else 0


def demo_false_refusals(rules: RuleSet) -> tuple[int, int]:
    import json

    from core.rules import outcome

    items = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    answerable = [d for d in items if d["expect"] == "answer"]
    return sum(outcome(rules.check(d["question"])) != "answer" for d in answerable), len(answerable)


if __name__ == "__main__":
    raise SystemExit(main())
