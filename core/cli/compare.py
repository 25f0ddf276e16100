"""`python -m core.compare CASES.jsonl --a CONFIG --b CONFIG --out FILE.jsonl|FILE.csv`: configurations A
and B over an evaluation set (`core.evaluation.compare_batch`).

Exit codes as `core.eval`: 2 bad input (configuration, prompt, adapter, cases file), 3 the library or
model could not be opened, 130 interrupted (the finished cases are still written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.answering.prompt_store import prompt_store_for
from core.errors import CQAError
from core.evaluation.cases import EvalCase, load_cases
from core.evaluation.compare import CompareConfig, Side, config_options, config_service, side_label
from core.evaluation.compare_batch import BatchCase, BatchRun, format_summary, run_batch, summary_frame, write_results
from core.services import Services, build_services
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.compare", description="Compare configurations A and B on cases.")
    parser.add_argument("cases", type=Path, help="JSONL file of cases ({id, question, expect, sources}).")
    parser.add_argument("--a", default="", help="Configuration A, e.g. 'prompt=v2,adapter=NAME,scale=0.5,backend=embedded'.")
    parser.add_argument("--b", default="", help="Configuration B (same form); empty = all defaults.")
    parser.add_argument("--out", type=Path, required=True, help="Per-case results: .jsonl or .csv.")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() not in {".jsonl", ".csv"}:
        return _fail(f"--out must end in .jsonl or .csv, not {args.out.name!r}.", 2)
    try:
        configs = CompareConfig.parse(args.a), CompareConfig.parse(args.b)
        cases = load_cases(args.cases)
    except (CQAError, OSError, ValueError) as exc:
        return _fail(str(exc), 2)
    if not cases:
        return _fail(f"{args.cases.name} holds no cases.", 2)
    try:
        services = build_services(Settings())
    except CQAError as exc:
        return _fail(str(exc), 3)
    try:
        return _run(cases, configs, services, args.out)
    finally:
        services.close()


def _run(cases: list[EvalCase], configs: tuple[CompareConfig, CompareConfig], services: Services, out: Path) -> int:
    settings, prompts = services.settings, prompt_store_for(services.settings)
    try:
        options = [config_options(c, settings, prompts) for c in configs]
    except CQAError as exc:
        return _fail(str(exc), 2)
    try:
        answer_services = [config_service(c, services) for c in configs]
    except CQAError as exc:
        return _fail(str(exc), 3)
    sides = [Side(svc, opts, side_label(opts, svc)) for svc, opts in zip(answer_services, options, strict=True)]
    run = BatchRun(config_a=sides[0].label, config_b=sides[1].label, total=len(cases))

    def progress(done: int, total: int, item: BatchCase) -> None:
        run.cases.append(item)
        print(f"[{done}/{total}] {item.case.id}: A {item.a.status} · B {item.b.status}", file=sys.stderr, flush=True)

    code = 0
    try:
        run_batch(cases, sides[0], sides[1], progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted after {len(run.cases)} of {len(cases)} cases", file=sys.stderr)
        code = 130
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 3
    write_results(run, out)
    print(f"A: {run.config_a}\nB: {run.config_b}")
    print(format_summary(summary_frame(run)))
    return code


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
