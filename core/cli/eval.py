"""`python -m core.eval CASES.jsonl --out FILE.jsonl`: every case through the answer pipeline, one Answer JSON per
case, and the summary table (`core.evaluation.cases`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.adapters.registry import requested_adapter
from core.answering.pipeline import AskOptions
from core.answering.prompt_store import prompt_store_for
from core.errors import CQAError
from core.evaluation.cases import case_result, load_cases, summarise, summary_table
from core.services import build_answer_service, build_services
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.eval", description="Evaluate the answer pipeline on cases.")
    parser.add_argument("cases", type=Path, help="JSONL file of cases.")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file to write one result per case to.")
    parser.add_argument("--adapter", help="LoRA adapter: a name in <data dir>/adapters or data/adapters, or a .gguf path; "
                        "'none' for the base model (default, as core.ask and the chat: CQA_LLM__DEFAULT_ADAPTER with "
                        "the embedded model, if present).")
    parser.add_argument("--scale", type=float, help="Adapter scale (with --adapter).")
    parser.add_argument("--prompt", help="Stored prompt version (default: the active one).")
    parser.add_argument("--no-summary", action="store_true",
                        help="Evidence-first answers without the model's summary (the quotes alone; fast).")
    args = parser.parse_args(argv)
    if args.scale is not None and args.adapter is None:
        print("error: --scale needs --adapter.", file=sys.stderr)
        return 2
    try:
        adapter = requested_adapter(args.adapter, args.scale if args.scale is not None else 1.0, Settings())
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cases = load_cases(args.cases)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        services = build_services(Settings())
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    results = []
    try:
        store = prompt_store_for(services.settings)
        prompt = store.get(args.prompt).template if args.prompt else store.active()
        options = AskOptions(prompt=prompt, adapter=adapter, summary=not args.no_summary)
        answers = build_answer_service(services)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as out:
            for case in cases:
                result = case_result(case, answers.ask(case.question, options=options))
                out.write(json.dumps(result) + "\n")
                out.flush()
                results.append(result)
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        services.close()
    print(summary_table(summarise(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
