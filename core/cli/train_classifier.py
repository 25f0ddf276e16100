"""`python -m core.emergency_classifier [--rules DIR] [--out FILE]`: retrain the emergency screen's learned
classifier from the corpus and the rules' examples (`core.safety.emergency_classifier`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import CQAError
from core.library.embedding import MiniLMEmbedder
from core.safety.emergency_classifier import CLASSIFIER_FILE, retrain
from core.safety.rule_schema import BUNDLED_RULES_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.emergency_classifier",
                                     description="Retrain the emergency classifier from the corpus and the rules' examples.")
    parser.add_argument("--rules", type=Path, default=BUNDLED_RULES_DIR)
    parser.add_argument("--out", type=Path, default=CLASSIFIER_FILE)
    args = parser.parse_args(argv)
    try:
        model = retrain(MiniLMEmbedder(), args.rules, args.out)
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {k: v for k, v in model.report.items() if k != "per_category"}
    print(json.dumps(report, indent=2))
    print(f"threshold {model.threshold} (sentence {model.sentence_threshold}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
