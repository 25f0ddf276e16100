"""Safety evaluation of the whole emergency screen (rules + vital signs + learned classifier).

1. The team's labelled set (tests/data/safety_cases.jsonl): per-class table, escalation recall and
   precision, over-escalation on controls, refusal accuracy and false refusals; then every rule's own
   examples.
2. The held-out set written blind (tests/data/blind/safety_blind.jsonl, never used for training):
   escalation recall per category, over-escalation per kind of non-urgent message, per voice, and which
   layer caught what. Also the rules alone, for comparison.

Usage: python scripts/eval_safety.py [--rules DIR] [--cases FILE] [--blind FILE] [--failures] [--rules-only]
Exit code 1 if an emergent case of the team set is missed or a rule example fails.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.safety.decision import SafetyRules  # noqa: E402
from core.safety.rule_schema import BUNDLED_RULES_DIR  # noqa: E402
from core.safety.rules import RuleSet  # noqa: E402
from core.safety.safety_set import load_cases, outcome  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402

DEFAULT_CASES = REPO_ROOT / "tests" / "data" / "safety_cases.jsonl"
BLIND = REPO_ROOT / "tests" / "data" / "blind" / "safety_blind.jsonl"
DEMO = REPO_ROOT / "tests" / "data" / "demo_questions.jsonl"


def blind_report(screen: SafetyRules, path: Path, failures: bool) -> dict[str, float]:
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_cat: dict[str, list[bool]] = defaultdict(list)
    by_kind: dict[str, list[bool]] = defaultdict(list)
    by_voice: dict[str, list[bool]] = defaultdict(list)
    layers: dict[str, int] = defaultdict(int)
    missed, over = [], []
    for c in cases:
        decision = screen.check(c["message"])
        escalated = decision.escalation is not None
        if escalated and decision.escalation is not None:
            layers[getattr(decision.escalation, "layer", "rules")] += 1
        if c["expect"] == "escalate":
            by_cat[c["category"]].append(escalated)
            by_voice[f"{c['voice']} (recall)"].append(escalated)
            if not escalated:
                missed.append(c)
        else:
            by_kind[c["kind"]].append(escalated)
            by_voice[f"{c['voice']} (over-escalation)"].append(escalated)
            if escalated:
                over.append((c, decision))
    emergencies = [e for v in by_cat.values() for e in v]
    controls = [e for v in by_kind.values() for e in v]
    recall = sum(emergencies) / max(len(emergencies), 1)
    over_rate = sum(controls) / max(len(controls), 1)
    print(f"\nBlind set {path.name}: {len(cases)} cases ({len(emergencies)} emergencies in {len(by_cat)} categories, "
          f"{len(controls)} non-urgent)")
    print(f"  escalation recall {sum(emergencies)}/{len(emergencies)} = {recall:.1%}   "
          f"over-escalation {sum(controls)}/{len(controls)} = {over_rate:.1%}")
    print("  escalated by layer: " + ", ".join(f"{k} {v}" for k, v in sorted(layers.items())))
    print("  over-escalation by kind: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_kind.items())))
    print("  by voice: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_voice.items())))
    weak = sorted((sum(v) / len(v), k, v) for k, v in by_cat.items() if sum(v) < len(v))
    print(f"  categories with a miss ({len(weak)} of {len(by_cat)}): "
          + ", ".join(f"{k} {sum(v)}/{len(v)}" for _, k, v in weak))
    if failures:
        for c in missed:
            print(f"  MISSED [{c['category']}] {c['message']}")
        for c, d in over:
            why = d.escalation.explanation if d.escalation is not None and hasattr(d.escalation, "explanation") else ""
            print(f"  OVER   [{c['kind']}] {c['message']}  <- {why or (d.escalation.rule if d.escalation else '')}")
    return {"recall": recall, "over_escalation": over_rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=Path, default=BUNDLED_RULES_DIR)
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--blind", type=Path, default=BLIND)
    parser.add_argument("--failures", action="store_true", help="List every failing case.")
    parser.add_argument("--rules-only", action="store_true", help="Evaluate the phrase rules alone.")
    args = parser.parse_args()
    rules = RuleSet.load(args.rules)
    screen: SafetyRules = rules
    if not args.rules_only:
        from core.library.embedding import MiniLMEmbedder
        from core.safety.triage import build_screen

        layered = build_screen(Settings(), rules, MiniLMEmbedder())
        screen = layered
        print(f"Screen layers: {', '.join(layered.layers)} (version {layered.version})")
    report = rules.evaluate(load_cases(args.cases), screen=screen)
    print(f"Rule set {rules.version}: {len(rules.rules)} rules, {len(report.results)} cases ({args.cases.name})\n")
    print(report.table())
    failing = [r for r in report.results if not r.passed]
    if args.failures or report.missed_emergent:
        for r in failing:
            print(f"  FAIL {r.id} [{r.cls}] expected {r.expect}, got {r.got} {r.rules}: {r.message}")
    items = [json.loads(line) for line in DEMO.read_text(encoding="utf-8").splitlines() if line.strip()]
    answerable = [d for d in items if d["expect"] == "answer"]
    not_answered = sum(outcome(screen.check(d["question"])) != "answer" for d in answerable)
    print(f"\ndemo_questions 'answer' items not answered: {not_answered}/{len(answerable)} "
          f"({not_answered / max(len(answerable), 1):.1%})")
    examples = rules.run_examples()
    bad = [e for e in examples if not e.passed]
    print(f"rule examples: {len(examples) - len(bad)}/{len(examples)} pass")
    for e in bad:
        print(f"  FAIL {e.id}: expected {e.expect}, got {e.got}: {e.message}")
    if args.blind.exists():
        blind_report(screen, args.blind, args.failures)
        if not args.rules_only:
            print("\nThe phrase rules alone, for comparison:")
            blind_report(rules, args.blind, failures=False)
    return 1 if report.missed_emergent or bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
