"""CLI: `python -m core.ask "question" [--json] [--backend embedded|ollama]`."""

from __future__ import annotations

import argparse
import sys

from core.adapters.registry import requested_adapter
from core.answering.pipeline import AskOptions
from core.answering.prompt_store import prompt_store_for
from core.answers import Answer
from core.errors import CQAError
from core.llm import AdapterChoice
from core.services import build_answer_service, build_services
from core.settings import Settings


def render(answer: Answer) -> str:
    lines = [f"[{answer.status}] {answer.text}"]
    if answer.escalation and answer.escalation.explanation:
        lines.append(f"  why escalated ({answer.escalation.layer} layer): {answer.escalation.explanation}")
    for c in answer.citations:
        page = f", page {c.page}" if c.page else ""
        mark = "verified" if c.verified else "NOT VERIFIED"
        lines.append(f"  [{c.n}] {c.title} — {c.section}{page} ({c.document}) {mark}")
    for r in answer.nearest:
        lines.append(f"  nearest: {r.title} — {r.section}" + (f", page {r.page}" if r.page else ""))
    for w in answer.warnings:
        lines.append(f"  warning: {w}")
    t = answer.tokens
    lines.append(f"  {answer.model} ({answer.backend}) · prompt {answer.prompt_version} · "
                 f"{t.prompt + t.completion:,} / {t.context_window:,} tokens · {answer.timings.total_s:.1f} s")
    return "\n".join(lines)


def cli_adapter(name: str | None, scale: float, settings: Settings) -> AdapterChoice | None:
    """An explicit adapter ('none' = base), else the default adapter (`core.adapters.registry`)."""
    return requested_adapter(name, scale, settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.ask", description="Ask the guideline assistant.")
    parser.add_argument("question")
    parser.add_argument("--json", action="store_true", help="Print the Answer JSON.")
    parser.add_argument("--backend", choices=["embedded", "ollama"], help="Override CQA_LLM__BACKEND.")
    parser.add_argument("--adapter", help="LoRA adapter name or .gguf path; 'none' for the base model "
                        "(default with the embedded model: CQA_LLM__DEFAULT_ADAPTER, if present).")
    parser.add_argument("--scale", type=float, default=1.0, help="Adapter scale 0-1.")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.backend:
        settings.llm.backend = args.backend
    try:
        services = build_services(settings)
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        prompt = prompt_store_for(services.settings).active()
        adapter = cli_adapter(args.adapter, args.scale, services.settings)
        answer = build_answer_service(services).ask(args.question, options=AskOptions(prompt=prompt, adapter=adapter))
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        services.close()
    print(answer.model_dump_json(indent=2) if args.json else render(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
