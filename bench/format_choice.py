"""Output format: free text + strict parsing vs constrained decoding (GBNF, JSON schema), measured.

For the answerable demo questions the pipeline would send to the model (past the evidence gate),
the same messages (`core.prompts.build_messages`, same passages as the pipeline) are generated in
each mode on the bundled SmolLM2-135M:

- free:    today's pipeline: free text, then `core.answering.pipeline.format_ok` / `declines`; an invalid
           answer is retried once with `RETRY_REMINDER` as the pipeline does (on the first
           BENCH_FORMAT_RETRY_QUESTIONS questions, to keep the run under ~10 minutes);
- gbnf:    `cited_answer_gbnf(n)`: 1-3 sentences, each ending ". [n]", or exactly "NOT IN GUIDELINES";
- gbnf1:   the same grammar with one sentence only (`CITED_ANSWER_GBNF` for three passages);
- json:    llama.cpp `response_format={"type": "json_object", "schema": cited_answer_schema(n)}`.

Per mode: format validity (the pipeline's own check; for JSON: parses, 1-3 sentences, each with a
source), sentences verified by `core.answering.citations.verify`, answers fully grounded, latency p50/p95,
time to first token and completion tokens. Prints `RATIO format_<mode>_vs_free_latency <x>` (p50 over
the same questions, first attempt only) and `RATIO format_<mode>_valid_rate <x>`.
The decision and the measured table are in docs/output-format.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, cast  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.answering.citations import SUPPORT_THRESHOLD, verify  # noqa: E402
from core.answering.pipeline import _clean, declines, format_ok, standalone_question  # noqa: E402
from core.answering.prompts import BUILTIN_PROMPT, NOT_IN_GUIDELINES, RETRY_REMINDER, build_messages  # noqa: E402
from core.bootstrap import corpus_files  # noqa: E402
from core.llm import ChatMessage, GenerationParams, default_params  # noqa: E402
from core.llm.embedded import EmbeddedLlamaBackend  # noqa: E402
from core.schema import RetrievedPassage  # noqa: E402
from core.services import Services, build_services  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402

N_QUESTIONS = int(os.environ.get("BENCH_FORMAT_QUESTIONS", "25"))
N_JSON = int(os.environ.get("BENCH_FORMAT_JSON_QUESTIONS", "8"))
N_RETRY = int(os.environ.get("BENCH_FORMAT_RETRY_QUESTIONS", "8"))  # free-text retries simulated on the first N
DETAILS = os.environ.get("BENCH_FORMAT_DETAILS")  # optional JSONL path with every generated answer
QUESTIONS = REPO_ROOT / "tests" / "data" / "demo_questions.jsonl"
MODES = ("free", "gbnf", "gbnf1", "json")


def cited_answer_gbnf(n_passages: int = 3, max_sentences: int = 3, max_words: int = 50, max_word_chars: int = 30) -> str:
    """GBNF for the pipeline's answer format: 1..max_sentences sentences, each ending ". [n]" with
    1 <= n <= n_passages, or exactly NOT IN GUIDELINES.

    Why this shape (each choice fixed a failure seen on SmolLM2-135M):
    - a full stop is allowed only where the sentence ends, so the model's own wish to end a sentence
      is what triggers the citation; a grammar demanding " [n]" before the full stop never got it
      (the model kept writing, it never chose "[" itself);
    - decimals ("0.5 mg") stay possible through `[0-9] "." [0-9]`, but "1.1.1." list numbering and
      newlines are not, nor the passage-header characters (dashes, "›", ":") the model copies;
    - every sentence starts with a capital letter and has at most `max_words` words of at most
      `max_word_chars` characters, so a run-away list (or a "word%20like%20this") is cut into a cited
      sentence instead of running to max_tokens. Bounded repetition of single characters is cheap;
      nesting one bounded repetition in another (`(char{1,6}){1,40}`) made decoding crawl.
    """
    if not 1 <= n_passages <= 9:
        raise ValueError(f"n_passages must be 1-9 for a one-digit marker, not {n_passages}")
    more = f' (" " sentence){{0,{max_sentences - 1}}}' if max_sentences > 1 else ""
    return (
        f'root ::= "{NOT_IN_GUIDELINES}" | sentence{more}\n'
        f'sentence ::= [A-Z] wchar{{0,{max_word_chars - 1}}} (" " word){{0,{max_words - 1}}} ". [" [1-{n_passages}] "]"\n'
        f"word ::= wchar{{1,{max_word_chars}}}\n"
        'wchar ::= [^ \\[\\]\\n.:;"–—›] | [0-9] "." [0-9]\n'
    )


# The recommended grammar for the bundled model (docs/output-format.md): one cited sentence, 3 passages.
CITED_ANSWER_GBNF = cited_answer_gbnf(3, max_sentences=1)


def cited_answer_schema(n_passages: int = 3) -> dict[str, Any]:
    """JSON schema: 1-3 sentences, each with the number of its source. A refusal is one sentence
    whose text is NOT IN GUIDELINES (an anyOf with a separate refusal object was always chosen)."""
    sentence = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": 300},
            "source": {"type": "integer", "enum": list(range(1, n_passages + 1))},
        },
        "required": ["text", "source"],
    }
    return {
        "type": "object",
        "properties": {"answer": {"type": "array", "minItems": 1, "maxItems": 3, "items": sentence}},
        "required": ["answer"],
    }


@dataclass
class Attempt:
    text: str
    seconds: float
    ttft_s: float | None
    completion_tokens: int
    hit_length: bool


@dataclass
class Outcome:
    mode: str
    qid: str
    first: Attempt
    answer_text: str  # in the pipeline's "sentence [n]" form (JSON converted)
    valid: bool
    declined: bool
    valid_after_retry: bool
    seconds_with_retry: float
    retried: bool = False
    sentences: int = 0
    supported: int = 0
    claims: int = 0
    claims_supported: int = 0
    grounded: bool = False
    problems: list[str] = field(default_factory=list)


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def build_library(tmp: Path) -> Services:
    services = build_services(Settings(data_dir=tmp / "var"))
    for path in corpus_files(REPO_ROOT / "data" / "guidelines"):
        services.library.ingest_file(path)
    return services


def answerable_questions() -> list[dict[str, Any]]:
    """Answerable questions, in an order spread over the whole file (and so over all guidelines)."""
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["expect"] == "answer"]
    order = sorted(range(len(rows)), key=lambda i: ((i * 7919) % len(rows)))  # deterministic shuffle
    return [rows[i] for i in order]


def model_passages(services: Services, question: str) -> list[RetrievedPassage] | None:
    """The passages the pipeline would give the model, or None when its evidence gate refuses."""
    s = services.settings.answer
    passages = services.retriever.retrieve(standalone_question(question, []), s.top_k)
    if not passages or max(p.similarity or 0.0 for p in passages) < s.evidence_threshold:
        return None
    evidence = [p for p in passages if (p.similarity or 0.0) >= s.min_passage_similarity]
    return evidence[: s.max_passages]


def generate(llm: EmbeddedLlamaBackend, messages: list[ChatMessage], params: GenerationParams) -> Attempt:
    started = time.perf_counter()
    with llm.generate(messages, params) as generation:
        for _ in generation:
            pass
        stats = generation.stats
    return Attempt(generation.text, time.perf_counter() - started, stats.ttft_s, stats.completion_tokens,
                   stats.finish_reason == "length")


def generate_json(llm: EmbeddedLlamaBackend, messages: list[ChatMessage], params: GenerationParams,
                  schema: dict[str, Any]) -> Attempt:
    """llama.cpp's own JSON-schema mode, called as the embedded backend calls llama.cpp (lock, reset)."""
    engine = llm._engine
    started = time.perf_counter()
    parts: list[str] = []
    ttft: float | None = None
    finish = None
    with engine.lock:
        engine.llm.reset()  # type: ignore[no-untyped-call]
        chunks = engine.llm.create_chat_completion(
            messages=cast(Any, [m.model_dump() for m in messages]), stream=True, max_tokens=params.max_tokens,
            temperature=params.temperature, seed=params.seed,
            response_format={"type": "json_object", "schema": schema},
        )
        for chunk in cast(Iterator[dict[str, Any]], chunks):
            choice = chunk["choices"][0]
            delta = choice["delta"].get("content")
            if delta:
                ttft = ttft if ttft is not None else time.perf_counter() - started
                parts.append(delta)
            finish = choice.get("finish_reason") or finish
        text = "".join(parts)
        tokens = len(engine.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
    return Attempt(text, time.perf_counter() - started, ttft, tokens, finish == "length")


def json_to_answer(text: str, n_passages: int) -> tuple[bool, str]:
    """(valid, the answer in the pipeline's "sentence [n]." form)."""
    try:
        items = json.loads(text)["answer"]
    except (ValueError, KeyError, TypeError):
        return False, ""
    if not isinstance(items, list) or not 1 <= len(items) <= 3:
        return False, ""
    sentences = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            return False, ""
        sentence, n = item["text"].strip(), item.get("source")
        if sentence.upper().rstrip(".") == NOT_IN_GUIDELINES:
            return True, NOT_IN_GUIDELINES
        if not isinstance(n, int) or not 1 <= n <= n_passages or not sentence:
            return False, ""
        sentences.append(f"{sentence.rstrip('.')} [{n}].")
    return True, " ".join(sentences)


def run_mode(mode: str, llm: EmbeddedLlamaBackend, qid: str, messages: list[ChatMessage],
             passages: list[RetrievedPassage], base: GenerationParams, retry: bool) -> Outcome:
    n = len(passages)
    if mode == "json":
        first = generate_json(llm, messages, base, cited_answer_schema(n))
        valid, answer = json_to_answer(first.text, n)
        declined = valid and answer == NOT_IN_GUIDELINES
    else:
        grammar = {"free": None, "gbnf": cited_answer_gbnf(n), "gbnf1": cited_answer_gbnf(n, max_sentences=1)}[mode]
        first = generate(llm, messages, base.model_copy(update={"grammar": grammar}))
        answer = first.text
        declined = declines(answer)
        valid = declined or format_ok(answer, n)
    outcome = Outcome(mode, qid, first, answer, valid, declined, valid, first.seconds)
    if mode == "free" and not valid and retry:  # the pipeline's one retry
        outcome.retried = True
        again = [*messages, ChatMessage(role="assistant", content=first.text),
                 ChatMessage(role="user", content=RETRY_REMINDER)]
        second = generate(llm, again, base)
        outcome.seconds_with_retry += second.seconds
        outcome.declined = declines(second.text)
        outcome.valid_after_retry = outcome.declined or format_ok(second.text, n)
        outcome.answer_text = second.text
    if outcome.valid_after_retry and not outcome.declined:
        check = verify(_clean(outcome.answer_text), [(i, p.text) for i, p in enumerate(passages, 1)], SUPPORT_THRESHOLD)
        outcome.sentences = len(check.sentences)
        outcome.supported = sum(s.supported for s in check.sentences)
        # verify() counts a sentence that asserts nothing ("The answer is in the text.") as supported.
        claims = [s for s in check.sentences if "no clinical claim" not in s.problems]
        outcome.claims = len(claims)
        outcome.claims_supported = sum(s.supported for s in claims)
        outcome.grounded = check.all_supported and any(check.cited_ok.values())
        outcome.problems = [p for s in check.sentences for p in s.problems][:4]
    return outcome


def summarise(outcomes: dict[str, list[Outcome]]) -> None:
    print(f"{'mode':<6} {'n':>3} {'valid':>6} {'valid+retry':>11} {'claims ok':>9} {'grounded':>8} {'p50 s':>6} "
          f"{'p95 s':>6} {'p50+retry':>9} {'ttft p50':>8} {'tokens':>6} {'at cap':>6}")
    for mode, rows in outcomes.items():
        if not rows:
            continue
        n = len(rows)
        secs = [r.first.seconds for r in rows]
        ttfts = [r.first.ttft_s for r in rows if r.first.ttft_s is not None]
        retry_rows = rows[:N_RETRY] if mode == "free" else rows
        print(
            f"{mode:<6} {n:>3} {sum(r.valid for r in rows) / n:>6.0%} "
            f"{sum(r.valid_after_retry for r in retry_rows):>5}/{len(retry_rows):<5} "
            f"{sum(r.claims_supported for r in rows):>4}/{sum(r.claims for r in rows):<4} "
            f"{sum(r.grounded for r in rows):>8} {_pct(secs, 50):>6.2f} {_pct(secs, 95):>6.2f} "
            f"{_pct([r.seconds_with_retry for r in retry_rows], 50):>9.2f} {_pct(ttfts, 50):>8.2f} "
            f"{statistics.mean(r.first.completion_tokens for r in rows):>6.0f} {sum(r.first.hit_length for r in rows):>6}"
        )
    print(f"valid: the pipeline's format check on the first attempt. valid+retry, p50+retry: after the pipeline's one "
          f"retry (free text, first {N_RETRY} questions). claims ok: sentences with a clinical claim that "
          "core.answering.citations verifies / such sentences, in valid answers. grounded: answers the pipeline would mark "
          "grounded. at cap: first attempts that hit max_tokens. Latency: first attempt, whole generation.")
    free = {r.qid: r for r in outcomes["free"]}
    for mode, rows in outcomes.items():
        if mode == "free" or not rows:
            continue
        same = [free[r.qid].first.seconds for r in rows]
        ratio = _pct([r.first.seconds for r in rows], 50) / _pct(same, 50)
        print(f"RATIO format_{mode}_vs_free_latency {ratio:.2f}")
    for mode, rows in outcomes.items():
        if rows:
            print(f"RATIO format_{mode}_valid_rate {sum(r.valid for r in rows) / len(rows):.2f}")


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        services = build_library(Path(tmp))
        llm = EmbeddedLlamaBackend(services.settings.llm)
        base = default_params(services.settings.llm)
        print(f"library ready in {time.perf_counter() - started:.0f}s; max_tokens={base.max_tokens}")
        outcomes: dict[str, list[Outcome]] = {m: [] for m in MODES}
        gated = 0
        details: list[str] = []
        for q in answerable_questions():
            if len(outcomes["free"]) >= N_QUESTIONS:
                break
            passages = model_passages(services, q["question"])
            if passages is None:
                gated += 1
                continue
            messages = build_messages(BUILTIN_PROMPT, q["question"], passages)
            k = len(outcomes["free"])
            modes = [m for m in MODES if m != "json" or k < N_JSON]
            for mode in modes[k % len(modes):] + modes[: k % len(modes)]:  # rotate to spread warm-up effects
                outcome = run_mode(mode, llm, q["id"], messages, passages, base, retry=k < N_RETRY)
                outcomes[mode].append(outcome)
                details.append(json.dumps({"id": q["id"], "mode": mode, "first": outcome.first.text,
                                              "answer": outcome.answer_text, "valid": outcome.valid,
                                              "claims_supported": outcome.claims_supported, "claims": outcome.claims,
                                              "grounded": outcome.grounded,
                                              "sentences_supported": outcome.supported, "sentences": outcome.sentences,
                                              "seconds": round(outcome.first.seconds, 2),
                                              "problems": outcome.problems}))
        if DETAILS:
            Path(DETAILS).write_text("\n".join(details) + "\n", encoding="utf-8")
        services.close()
    print(f"questions={len(outcomes['free'])} (json on the first {len(outcomes['json'])}); "
          f"skipped by the evidence gate={gated}; total {time.perf_counter() - started:.0f}s")
    summarise(outcomes)


if __name__ == "__main__":
    main()
