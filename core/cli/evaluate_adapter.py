"""Base vs base+adapter for an adapter's model card (`core.evaluation.adapter_card`): on its held-out validation
split, and with `--cases` through the whole pipeline on an evaluation set.

    python -m core.adapters.evaluate NAME_OR_PATH [--limit N] [--cases CASES.jsonl] [--skip-validation]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.adapters.registry import resolve_adapter
from core.errors import CQAError
from core.evaluation.adapter_card import evaluate_into_card, evaluate_on_cases, write_card_section
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.adapters.evaluate",
                                     description="Base vs base+adapter on an adapter's held-out validation split, for its model card.")
    parser.add_argument("adapter", help="Adapter name (adapter folders) or .gguf path.")
    parser.add_argument("--limit", type=int, help="Only the first N examples / cases.")
    parser.add_argument("--cases", type=Path, help="Also run base vs adapter through the pipeline on these cases "
                        "(e.g. data/eval/cases.jsonl); the library in CQA_DATA_DIR must be indexed.")
    parser.add_argument("--skip-validation", action="store_true", help="Only the --cases evaluation.")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
        path = resolve_adapter(args.adapter, 1.0, settings).path
        assert path is not None
        if not args.skip_validation:
            result = evaluate_into_card(path, settings, args.limit,
                                        progress=lambda p: print(p.message, end="\r", file=sys.stderr, flush=True))
            _print_table("validation split", result)
        if args.cases:
            result = evaluate_on_cases(path, settings, args.cases, args.limit,
                                       lambda i, n: print(f"case {i}/{n}", end="\r", file=sys.stderr, flush=True))
            write_card_section(path.with_suffix(".json"), "eval_set", result)
            _print_table(f"evaluation set {args.cases.name}", result)
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


def _print_table(title: str, result: dict[str, Any]) -> None:
    print(f"\n{title}: {json.dumps(result.get('counts', {}))}")
    print(f"{'metric':26s} {'base':>8s} {'adapter':>8s}")
    for key, value in result["base"].items():
        other = result["adapter"].get(key)
        if isinstance(value, (int, float)) and isinstance(other, (int, float)):
            print(f"{key:26s} {value:8.3f} {other:8.3f}")
    print(json.dumps(result["criteria"]))


if __name__ == "__main__":
    raise SystemExit(main())
