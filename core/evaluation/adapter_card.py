"""Base vs base+adapter on an adapter's held-out validation split, for its model card.

Each validation example is replayed exactly as it was laid out for training (system prompt, numbered
passages, question) with the real model, greedy, once without and once with the adapter, and judged
the way the pipeline judges a real answer:

- format validity: the reply either declines (NOT IN GUIDELINES, no markers) or has at least one
  citation marker and every marker names a passage that was given;
- verified-citation rate (answerable examples): every sentence is supported by the passage it cites
  (`core.answering.citations.verify`, the same check the chat applies);
- false refusals (answerable examples): the reply would reach the clinician as a refusal although the
  answer was in the passages: it declines, or its format is invalid (the pipeline refuses those as
  "could not be checked"); `declined_rate` counts explicit NOT IN GUIDELINES replies alone;
- refusal accuracy (examples whose passages do not answer): the reply declines;
- escalation (red-flag examples): the reply starts with the urgent-care message (the pipeline shows
  that message first anyway; this measures whether the model learnt it);
- latency: seconds per reply, median and 95th percentile.

    python -m core.adapters.evaluate NAME_OR_PATH [--limit N]    # writes the card's "evaluation"

(the command is `core/cli/evaluate_adapter.py`; `core/cli/train_adapter.py` runs `evaluate_into_card` at the
end of every training run).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.adapters.dataset import TrainingExample, load_examples
from core.adapters.progress import TrainProgress
from core.answering.citations import verify
from core.answering.pipeline import declines, format_ok, strip_escalation
from core.errors import CQAError
from core.llm import AdapterChoice, ChatMessage, GenerationParams, LLMBackend, default_params

_PASSAGE = re.compile(r'^\[(\d+)\] (.*?) — (.*?)\n"""\n(.*?)\n"""', re.MULTILINE | re.DOTALL)


class ExampleResult(BaseModel):
    id: str
    kind: str
    output: str
    format_valid: bool
    declined: bool
    verified: bool
    escalated_first: bool
    seconds: float


class SideMetrics(BaseModel):
    examples: int
    format_validity: float
    verified_citation_rate: float
    false_refusal_rate: float
    declined_rate: float
    refusal_accuracy: float
    escalation_first_rate: float
    latency_p50_s: float
    latency_p95_s: float


def passages_of(example: TrainingExample) -> list[tuple[int, str]]:
    """The numbered passages as the verifier sees them, read back from the user message."""
    user = next(m["content"] for m in example.messages if m["role"] == "user")
    return [(int(n), f"{title} › {where}\n{text}") for n, title, where, text in _PASSAGE.findall(user)]


def _starts_with(text: str, message: str) -> bool:
    head = text.strip()[: len(message) + 20]
    return difflib.SequenceMatcher(None, head[: len(message)].lower(), message.lower()).ratio() >= 0.8


def judge(example: TrainingExample, output: str, seconds: float) -> ExampleResult:
    passages = passages_of(example)
    escalation = example.target.split("\n\n")[0] if example.kind == "escalate" else None
    body = strip_escalation(output, escalation) if escalation else output
    declined = declines(body)
    valid = declined or format_ok(body, len(passages))
    verified = bool(valid and not declined and verify(body, passages).all_supported)
    return ExampleResult(
        id=example.id, kind=example.kind, output=output, format_valid=valid, declined=declined, verified=verified,
        escalated_first=bool(escalation and _starts_with(output, escalation)), seconds=round(seconds, 3),
    )


def _rate(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 3) if flags else 0.0


def summarise(results: list[ExampleResult]) -> SideMetrics:
    answers = [r for r in results if r.kind == "answer"]
    refusals = [r for r in results if r.kind == "refuse"]
    red_flags = [r for r in results if r.kind == "escalate"]
    times = sorted(r.seconds for r in results) or [0.0]
    return SideMetrics(
        examples=len(results),
        format_validity=_rate([r.format_valid for r in answers + refusals]),
        verified_citation_rate=_rate([r.verified for r in answers]),
        false_refusal_rate=_rate([r.declined or not r.format_valid for r in answers]),
        declined_rate=_rate([r.declined for r in answers]),
        refusal_accuracy=_rate([r.declined for r in refusals]),
        escalation_first_rate=_rate([r.escalated_first for r in red_flags]),
        latency_p50_s=round(statistics.median(times), 3),
        latency_p95_s=round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
    )


def run_side(
    llm: LLMBackend, examples: list[TrainingExample], adapter: AdapterChoice | None, params: GenerationParams,
    progress: Callable[[int, int], None] = lambda i, n: None, cancel: threading.Event | None = None,
) -> list[ExampleResult]:
    out = []
    for i, example in enumerate(examples, 1):
        if cancel is not None and cancel.is_set():
            raise CQAError("Evaluation was cancelled.")
        messages = [ChatMessage(role=m["role"], content=m["content"]) for m in example.messages[:-1]]  # type: ignore[arg-type]
        t0 = time.perf_counter()
        text = llm.complete(messages, params, adapter)
        out.append(judge(example, text, time.perf_counter() - t0))
        progress(i, len(examples))
    return out


def compare_on_validation(
    llm: LLMBackend, examples: list[TrainingExample], adapter: AdapterChoice, params: GenerationParams,
    progress: Callable[[str, int, int], None] = lambda side, i, n: None, cancel: threading.Event | None = None,
) -> dict[str, Any]:
    base = run_side(llm, examples, None, params, lambda i, n: progress("base", i, n), cancel)
    adapted = run_side(llm, examples, adapter, params, lambda i, n: progress("adapter", i, n), cancel)
    mb, ma = summarise(base), summarise(adapted)
    return {
        "examples": len(examples),
        "counts": {k: sum(1 for e in examples if e.kind == k) for k in ("answer", "refuse", "escalate", "clarify")},
        "base": mb.model_dump(), "adapter": ma.model_dump(),
        "criteria": criteria(mb.model_dump(), ma.model_dump()),
        "samples": [
            {"question": e.question, "kind": e.kind, "base": b.output, "adapter": a.output}
            for e, b, a in list(zip(examples, base, adapted, strict=True))[:6]
        ],
    }


def criteria(base: dict[str, Any], adapter: dict[str, Any]) -> dict[str, bool]:
    """The bar the shipped adapter must clear (issue 6)."""
    return {
        "beats_base_on_format_validity": adapter["format_validity"] > base["format_validity"],
        "beats_base_on_verified_citations": adapter["verified_citation_rate"] > base["verified_citation_rate"],
        "false_refusals_up_at_most_5_points": adapter["false_refusal_rate"] - base["false_refusal_rate"] <= 0.05,
    }


def evaluate_on_cases(
    adapter_path: Path, settings: Any, cases_path: Path, limit: int | None = None,
    progress: Callable[[int, int], None] = lambda i, n: None,
) -> dict[str, Any]:
    """Base vs adapter through the whole pipeline (retrieval, safety rules, verification) on an
    evaluation set (`core.eval` cases), retrieval shared by both sides (`core.evaluation.compare_batch`)."""
    import math

    from core.answering.prompt_store import prompt_store_for
    from core.evaluation.cases import load_cases
    from core.evaluation.compare import BASE_MODEL, CompareConfig, build_side, config_service
    from core.evaluation.compare_batch import cases_frame, run_batch, summary_frame
    from core.services import build_services

    cases = load_cases(cases_path)[:limit]
    services = build_services(settings)
    try:
        prompts = prompt_store_for(settings)
        service = config_service(CompareConfig(), services)
        base = build_side(CompareConfig(adapter=BASE_MODEL), service, prompts, settings)
        adapted = build_side(CompareConfig(adapter=str(adapter_path)), service, prompts, settings)
        run = run_batch(cases, base, adapted, progress=lambda done, total, _: progress(done, total))
    finally:
        services.close()
    summary = summary_frame(run)
    frame = cases_frame(run)
    answerable = frame[frame["expect"] == "answer"]
    sides: dict[str, dict[str, float | None]] = {}
    for column, side, key in (("A", "a", "base"), ("B", "b", "adapter")):
        values = {k: (None if isinstance(v, float) and math.isnan(v) else round(float(v), 3))
                  for k, v in summary[column].items()}
        values["grounded_answer_rate"] = round(float(answerable[f"{side}_grounded"].mean()), 3) if len(answerable) else None
        sides[key] = values
    b, a = sides["base"], sides["adapter"]
    return {
        "cases_file": cases_path.name, "cases": len(run.cases),
        "counts": {k: int((frame["expect"] == k).sum()) for k in ("answer", "refuse", "escalate")},
        "base": b, "adapter": a,
        "criteria": {
            "beats_base_on_format_validity": (a["format_valid_rate"] or 0) > (b["format_valid_rate"] or 0),
            "beats_base_on_verified_citations": (a["grounded_answer_rate"] or 0) > (b["grounded_answer_rate"] or 0),
            "false_refusals_up_at_most_5_points": (a["false_refusals"] or 0) - (b["false_refusals"] or 0) <= 0.05,
        },
    }


def write_card_section(card_path: Path, key: str, value: dict[str, Any]) -> None:
    card: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
    card.setdefault("evaluation", {})[key] = value
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2), encoding="utf-8")
    os.replace(tmp, card_path)


def evaluate_into_card(
    adapter_path: Path, settings: Any, limit: int | None = None, progress: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the validation comparison and store it under the card's `evaluation.validation`."""
    from core.llm.embedded import EmbeddedLlamaBackend

    name = adapter_path.stem
    card_path = adapter_path.with_suffix(".json")
    dataset = adapter_path.with_name(f"{name}.dataset") / "validation.jsonl"
    if not dataset.is_file():
        raise CQAError(f"No validation split next to {adapter_path.name} (expected {dataset.name} in {name}.dataset/).")
    examples = load_examples(dataset)[:limit]
    llm = EmbeddedLlamaBackend(settings.llm)
    params = default_params(settings.llm)
    started = time.monotonic()

    def tick(side: str, i: int, n: int) -> None:
        if progress is not None:
            progress(TrainProgress(phase="evaluate", step=i, total=n, elapsed_s=round(time.monotonic() - started, 1),
                                   message=f"Validation, {side}: {i}/{n}"))

    result = compare_on_validation(llm, examples, AdapterChoice(name=name, path=adapter_path), params, tick, cancel)
    write_card_section(card_path, "validation", result)
    return result
