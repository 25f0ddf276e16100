"""Question → safety hook → hybrid retrieval + rerank → evidence gate → answer sentences (verbatim
quotes) → prompt → generation of a summary → parse → citation verification → `Answer`.

The answer is the guideline's own sentences (`core.answering.evidence`); the model's summary goes on top only
when every sentence of it verifies against the passages it cites. So an answer never depends on the
small model writing well, and the model never replaces the quotes.

`AnswerService.run()` returns an `AnswerRun`: iterate it for the model's text as it streams (a
preview), then read `.answer`, the verified result that the UI renders in place of the preview.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from core.answering.citations import SUPPORT_THRESHOLD, cited_numbers, has_marker, verify
from core.answering.evidence import EvidenceSelector
from core.answering.prompts import BUILTIN_PROMPT, NOT_IN_GUIDELINES, RETRY_REMINDER, PromptTemplate, build_messages
from core.answering.relevance import unaddressed_terms
from core.answering.retrieval import Retriever
from core.answers import (
    AdapterRef,
    Answer,
    Citation,
    Quote,
    Refusal,
    RetrievedRef,
    SentenceCheck,
    TokenUsage,
)
from core.errors import CQAError, LLMUnavailableError
from core.llm import AdapterChoice, ChatMessage, GenerationParams, LLMBackend
from core.safety.decision import NoSafetyRules, SafetyDecision, SafetyRules
from core.schema import RetrievedPassage
from core.settings import AnswerSettings

NO_EVIDENCE_MESSAGE = (
    "This is not covered by your organisation's guidelines in the library, so no answer is given. "
    "The closest sections are listed below; check them, or consult a senior colleague or specialist."
)
# The passages passed the evidence gate but the model found no answer in them: the guidelines may
# well cover it (a small model declines answerable questions), so do not say they do not.
MODEL_DECLINED_MESSAGE = (
    "No answer could be drafted from the guideline passages found, so none is given. They may still "
    "cover your question: read the closest sections below, or consult a senior colleague or specialist."
)
# The evidence gate passed but no sentence of the passages scores as an answer.
NO_ANSWER_SENTENCE_MESSAGE = (
    "No sentence of the guideline passages found answers this question, so no answer is given. They may "
    "still be relevant: read the closest sections below, or consult a senior colleague or specialist."
)
OUT_OF_SCOPE_MESSAGE = (
    '"{title}" says it does not cover {item} ("{sentence}"), and no other guideline passage found answers this '
    "question, so no answer is given. Consult guidance that covers it, or a senior colleague or specialist."
)
SUMMARY_NOT_SHOWN = (
    "The model's summary did not verify against the passages, so only the guidelines' own sentences are shown."
)
INVALID_OUTPUT_MESSAGE = (
    "The model's answer could not be checked against the guidelines, so it is not shown. "
    "Read the most relevant guideline sections below."
)
EMPTY_LIBRARY_MESSAGE = "The guideline library is empty. Ask an admin to upload your organisation's guidelines."
PII_WARNING = (
    "Your message seems to contain patient identifiers ({kinds}). "
    "Remove them: they are not needed to search the guidelines."
)
_FOLLOW_UP = re.compile(
    r"^(and|but|what about|how about|also|what if|then|so)\b|\b(it|its|that|this|these|those|they|them|he|she)\b",
    re.IGNORECASE,
)


class Turn(BaseModel):
    """One earlier exchange in the conversation."""

    question: str
    answer: str = ""


class AskOptions(BaseModel):
    adapter: AdapterChoice | None = None
    prompt: PromptTemplate = Field(default_factory=lambda: BUILTIN_PROMPT)
    top_k: int | None = None
    summary: bool = Field(default=True, description="Ask the model for a summary above the quotes.")


@dataclass
class AnswerRun:
    """Iterate for streamed model text; `.answer` is set when iteration ends."""

    _steps: Iterator[str]
    answer: Answer | None = None
    evidence: Answer | None = field(
        default=None, metadata={"doc": "The quote-only answer, set before the model starts (show it at once)."}
    )
    _done: bool = field(default=False)

    def __iter__(self) -> Iterator[str]:
        yield from self._steps
        self._done = True

    def result(self) -> Answer:
        """Run to the end (discarding the preview) and return the answer."""
        if not self._done:
            for _ in self:
                pass
        assert self.answer is not None
        return self.answer


def standalone_question(question: str, history: list[Turn]) -> str:
    """A follow-up ("and in children?", "what dose is it?") is searched together with the previous
    question. Rule-based on purpose: a 135M model rewriting queries is too unreliable to gate on."""
    if not history:
        return question.strip()
    q = question.strip()
    if len(q.split()) <= 6 or _FOLLOW_UP.search(q):
        return f"{q} (follow-up to: {history[-1].question.strip()})"
    return q


class AnswerService:
    def __init__(
        self,
        retriever: Retriever,
        llm: LLMBackend,
        settings: AnswerSettings,
        params: GenerationParams,
        safety: SafetyRules | None = None,
        fallback: Callable[[], LLMBackend] | None = None,
        library_is_empty: Callable[[], bool] = lambda: False,
        selector: EvidenceSelector | None = None,
    ) -> None:
        self._retriever = retriever
        self._llm = llm
        self._settings = settings
        self._params = params
        self._safety = safety or NoSafetyRules()
        self._fallback = fallback
        self._library_is_empty = library_is_empty
        self._selector = selector

    @property
    def llm(self) -> LLMBackend:
        return self._llm

    def screen(self, question: str) -> SafetyDecision:
        """The safety rules' decision alone (sub-millisecond), so a UI can show an escalation before
        retrieval and generation have even started; `run` applies the same decision."""
        return self._safety.check(question)

    def gate(self, passages: list[RetrievedPassage]) -> tuple[list[RetrievedPassage], bool]:
        """The evidence gate as this pipeline applies it (see `gate_evidence`), so a preview can show it."""
        gate = self._settings.evidence_threshold
        if self._selector is not None and self._selector.gate is not None:
            gate = self._selector.gate  # the answerability head decides above its own, lower gate
        return gate_evidence(passages, self._settings, gate)

    def ask(self, question: str, history: list[Turn] | None = None, options: AskOptions | None = None) -> Answer:
        return self.run(question, history, options).result()

    def run(self, question: str, history: list[Turn] | None = None, options: AskOptions | None = None,
            screened: SafetyDecision | None = None) -> AnswerRun:
        """`screened`: this question's decision from `screen`, so a UI that showed it first does not pay
        for the screen (its MiniLM call) twice."""
        run = AnswerRun(iter(()))
        run._steps = self._steps(run, question, history or [], options or AskOptions(), screened)
        return run

    # -- the pipeline -----------------------------------------------------------------------
    def _steps(self, run: AnswerRun, question: str, history: list[Turn], opts: AskOptions,
               screened: SafetyDecision | None = None) -> Iterator[str]:
        started = time.perf_counter()
        base = Answer(
            status="answered", text="", question=question, prompt_version=opts.prompt.version,
            model=self._llm.info.name, backend=self._llm.info.backend,
            adapter=AdapterRef(name=opts.adapter.name, scale=opts.adapter.scale) if opts.adapter else None,
        )
        decision = screened if screened is not None else self._safety.check(question)
        base.rule_set_version = decision.rule_set_version
        if decision.pii:
            base.warnings.append(PII_WARNING.format(kinds=", ".join(decision.pii)))
        if decision.injection:
            base.warnings.append("Instructions inside the message were treated as part of the question, not obeyed.")
        if decision.clarify and not decision.escalation and not decision.refusal:
            run.answer = self._finish(base.model_copy(update={
                "status": "refused", "text": decision.clarify,
                "refusal": Refusal(reason="needs_clarification", message=decision.clarify)}), started)
            return
        if decision.escalation and decision.refusal and decision.refusal.reason == "unsafe":
            # e.g. crisis language together with a request for a lethal dose: the crisis message,
            # the refusal, and nothing from the guidelines.
            text = f"{decision.escalation.message}\n\n{decision.refusal.message}"
            run.answer = self._finish(base.model_copy(update={
                "status": "escalated", "escalation": decision.escalation, "refusal": decision.refusal,
                "text": text}), started)
            return
        if decision.refusal and not decision.escalation:
            run.answer = self._finish(base.model_copy(update={
                "status": "refused", "refusal": decision.refusal, "text": decision.refusal.message}), started)
            return
        if self._library_is_empty():
            run.answer = self._finish(self._refuse(base, "empty_library", EMPTY_LIBRARY_MESSAGE, []), started)
            return
        query = standalone_question(question, history)
        base.standalone_question = query
        t0 = time.perf_counter()
        passages = self._retriever.retrieve(query, opts.top_k or self._settings.top_k)
        base.timings.retrieve_s = round(time.perf_counter() - t0, 3)
        base.retrieved = [_ref(p) for p in passages]
        evidence, enough = self.gate(passages)
        urgent = decision.escalation.message if decision.escalation else None
        if not enough:
            answer = self._refuse(base, "no_evidence", NO_EVIDENCE_MESSAGE, passages)
        elif self._selector is None:
            answer = yield from self._generate(base, question, evidence[: self._settings.max_passages], opts, urgent)
        else:
            answer = yield from self._evidence_first(run, base, query, question, evidence, opts, urgent, decision)
        if decision.escalation:
            answer = _escalate(answer, decision)
        run.answer = self._finish(answer, started)

    def _evidence_first(
        self, run: AnswerRun, base: Answer, query: str, question: str, evidence: list[RetrievedPassage],
        opts: AskOptions, urgent: str | None, decision: SafetyDecision,
    ) -> Generator[str, None, Answer]:
        assert self._selector is not None
        t0 = time.perf_counter()
        query = self._retriever.search_text(query)  # as searched: with its abbreviations spelt out
        scored = self._selector.rescore(query, self._selector.embed_query(query), evidence)
        selection = self._selector.choose(query, scored)
        quotes, gap = selection.quotes, selection.gap
        base.evidence_confidence = selection.confidence
        base.timings.select_s = round(time.perf_counter() - t0, 3)
        if selection.out_of_scope is not None:
            scope = selection.out_of_scope
            return self._refuse(base, "out_of_scope", OUT_OF_SCOPE_MESSAGE.format(
                title=scope.title, item=scope.item, sentence=scope.sentence), evidence)
        if not quotes or gap:
            message = NO_ANSWER_SENTENCE_MESSAGE if not quotes or not gap else NO_ANSWER_SENTENCE_MESSAGE.replace(
                "this question, so", f"this question ({gap}), so")
            return self._refuse(base, "no_evidence", message, evidence)
        quoted_answer = _quoted(base, quotes, evidence)
        run.evidence = _escalate(quoted_answer, decision) if decision.escalation else quoted_answer
        if not opts.summary:
            return quoted_answer
        yield ""  # lets a UI show `run.evidence` now, before the model has written anything
        summary = yield from self._generate(base.model_copy(deep=True), question,
                                            evidence[: self._settings.max_passages], opts, urgent)
        return _with_summary(quoted_answer, summary)

    def _generate(
        self, base: Answer, question: str, passages: list[RetrievedPassage], opts: AskOptions, urgent: str | None = None
    ) -> Generator[str, None, Answer]:
        llm = self._llm
        messages, passages, dropped = self._fit(llm, opts.prompt, question, passages)
        base.tokens = TokenUsage(
            prompt=llm.count_tokens(messages), context_window=llm.info.context_window,
            passages_given=len(passages), passages_dropped=dropped, estimated=llm.info.backend == "ollama",
        )
        if dropped:
            base.warnings.append(f"{dropped} lower-ranked passage(s) left out to fit the model's context window.")
        t0 = time.perf_counter()
        text = ""
        for attempt in range(2):
            try:
                text, ttft = yield from self._stream(llm, messages, opts.adapter, base)
            except LLMUnavailableError as exc:
                if self._fallback is None or llm is not self._llm:
                    base.timings.generate_s = round(time.perf_counter() - t0, 3)
                    return self._refuse(base, "model_unavailable", str(exc), passages)
                base.warnings.append(f"{exc} Answered with the embedded model instead.")
                llm = self._fallback()
                base.model, base.backend = llm.info.name, llm.info.backend
                text, ttft = yield from self._stream(llm, messages, opts.adapter, base)
            if urgent:
                # A model taught to put the urgent-care message first repeats what the rules already
                # show at the top; only the guideline part is checked against the passages.
                text = strip_escalation(text, urgent)
            if attempt == 0:
                base.timings.ttft_s = ttft
            if declines(text) or format_ok(text, len(passages)):
                break
            base.format_valid = False
            if attempt == 1:
                break
            base.retries = 1
            messages = [*messages, ChatMessage(role="assistant", content=text), ChatMessage(role="user", content=RETRY_REMINDER)]
            yield "\n\n"
        base.timings.generate_s = round(time.perf_counter() - t0, 3)
        if declines(text):
            return self._refuse(base, "no_evidence", MODEL_DECLINED_MESSAGE, passages)
        if not format_ok(text, len(passages)):
            return self._refuse(base, "invalid_output", INVALID_OUTPUT_MESSAGE, passages)
        return _verified(base, _clean(text), passages)

    def _stream(
        self, llm: LLMBackend, messages: list[ChatMessage], adapter: AdapterChoice | None, base: Answer
    ) -> Generator[str, None, tuple[str, float | None]]:
        generation = llm.generate(messages, self._params, adapter)
        with generation:
            yield from generation
            stats = generation.stats
        base.tokens.completion += stats.completion_tokens
        if stats.prompt_tokens:
            base.tokens.prompt = stats.prompt_tokens
        if stats.finish_reason == "length":
            base.warnings.append("The answer hit the length limit and may be cut short.")
        return generation.text, stats.ttft_s

    def _fit(
        self, llm: LLMBackend, prompt: PromptTemplate, question: str, passages: list[RetrievedPassage]
    ) -> tuple[list[ChatMessage], list[RetrievedPassage], int]:
        """Drop the lowest-ranked passages until prompt + answer fit the context window."""
        budget = llm.info.context_window - self._params.max_tokens
        kept = list(passages)
        while True:
            messages = build_messages(prompt, question, kept)
            if llm.count_tokens(messages) <= budget or len(kept) <= 1:
                return messages, kept, len(passages) - len(kept)
            kept.pop()

    def _refuse(self, base: Answer, reason: str, message: str, nearest: list[RetrievedPassage]) -> Answer:
        return base.model_copy(update={
            "status": "refused", "text": message, "refusal": Refusal(reason=reason, message=message),  # type: ignore[arg-type]
            "nearest": [_ref(p) for p in nearest[:3]], "citations": [], "grounded": False,
        })

    @staticmethod
    def _finish(answer: Answer, started: float) -> Answer:
        answer.timings.total_s = round(time.perf_counter() - started, 3)
        return answer


def _escalate(answer: Answer, decision: object) -> Answer:
    from core.safety.decision import SafetyDecision

    assert isinstance(decision, SafetyDecision) and decision.escalation is not None
    text = decision.escalation.message + ("\n\n" + answer.text if answer.status == "answered" else "")
    return answer.model_copy(update={"status": "escalated", "escalation": decision.escalation, "text": text})


def _quote_text(quotes: list[Quote]) -> str:
    return "\n".join(f"“{q.sentence.strip()}” [{q.n}]" for q in quotes)


def _quoted(base: Answer, quotes: list[Quote], passages: list[RetrievedPassage]) -> Answer:
    """The answer made of verbatim guideline sentences: grounded by construction (each is the exact
    span `text[char_start:char_end]` of the passage it cites)."""
    citations: dict[int, Citation] = {}
    for q in quotes:
        p = passages[q.n - 1]
        assert p.text[q.char_start : q.char_end] == q.sentence
        if q.n not in citations:
            citations[q.n] = Citation(
                n=q.n, document=p.file_name, doc_id=p.doc_id, title=p.title, page=p.page, section=p.section_label,
                chunk_id=p.chunk_id, quote=q.sentence, verified=True, issuer=p.issuer, version=p.version,
            )
    checks = [SentenceCheck(text=q.sentence, citations=[q.n], supported=True, score=1.0) for q in quotes]
    return base.model_copy(update={
        "status": "answered", "text": _quote_text(quotes), "quotes": quotes, "citations": list(citations.values()),
        "sentences": checks, "grounded": True, "warnings": list(base.warnings),
    })


def _with_summary(quoted: Answer, summary: Answer) -> Answer:
    """The quotes, with the model's summary on top only when it is grounded."""
    update: dict[str, object] = {
        "summary": summary.text if summary.status == "answered" else "", "tokens": summary.tokens,
        "format_valid": summary.format_valid, "retries": summary.retries, "model": summary.model,
        "backend": summary.backend,
        "timings": quoted.timings.model_copy(update={
            "generate_s": summary.timings.generate_s, "ttft_s": summary.timings.ttft_s}),
    }
    notes = list(dict.fromkeys([*quoted.warnings, *summary.warnings]))
    if summary.status == "answered" and summary.grounded:
        citations = {c.n: c for c in quoted.citations}
        for c in summary.citations:
            citations.setdefault(c.n, c)
        update.update({
            "summary_shown": True, "text": f"{summary.text}\n\n{quoted.text}",
            "citations": [citations[n] for n in sorted(citations)],
            "sentences": [*summary.sentences, *quoted.sentences], "warnings": notes,
        })
    else:
        # Warnings about the summary's sentences do not apply: it is not shown.
        warnings = [w for w in notes if not w.startswith(("Not every sentence", "The cited passages do not mention"))]
        if summary.refusal and summary.refusal.reason == "model_unavailable":
            warnings.append(f"{summary.refusal.message} The guidelines' own sentences are shown.")
            update["summary_error"] = summary.refusal.message
        elif summary.status == "answered":
            warnings.append(SUMMARY_NOT_SHOWN)
        update["warnings"] = warnings
    return quoted.model_copy(update=update)


def _ref(p: RetrievedPassage) -> RetrievedRef:
    return RetrievedRef(
        chunk_id=p.chunk_id, document=p.file_name, doc_id=p.doc_id, page=p.page, score=round(p.score, 5),
        similarity=p.similarity, title=p.title, section=p.section_label,
    )


def gate_evidence(
    passages: list[RetrievedPassage], settings: AnswerSettings, threshold: float | None = None
) -> tuple[list[RetrievedPassage], bool]:
    """The evidence gate: the passages above the similarity floor (what the model may be given, best
    first), and whether the best passage reaches `threshold` (default: the settings' evidence threshold)."""
    evidence = [p for p in passages if (p.similarity or 0.0) >= settings.min_passage_similarity]
    gate = settings.evidence_threshold if threshold is None else threshold
    enough = bool(passages) and max(p.similarity or 0.0 for p in passages) >= gate
    return evidence, enough


def _clean(text: str) -> str:
    return re.sub(r"^\s*(answer|response)\s*:\s*", "", text.strip(), flags=re.IGNORECASE).strip()


def strip_escalation(text: str, message: str) -> str:
    """`text` without leading paragraphs that repeat the urgent-care `message` (near-verbatim)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    while paragraphs and not has_marker(paragraphs[0]) and (
        difflib.SequenceMatcher(None, paragraphs[0].strip().lower(), message.strip().lower()).ratio() >= 0.8
    ):
        paragraphs.pop(0)
    return "\n\n".join(paragraphs)


def declines(text: str) -> bool:
    return NOT_IN_GUIDELINES.lower() in text.lower() and not has_marker(text)


def format_ok(text: str, n_passages: int) -> bool:
    """At least one citation marker, and every marker points at a passage that was given."""
    numbers = cited_numbers(text)
    if not numbers or not _clean(text):
        return False
    return all(1 <= n <= n_passages for n in numbers)


def _verified(base: Answer, text: str, passages: list[RetrievedPassage]) -> Answer:
    # The heading path goes with the text: a faithful sentence often names the topic ("For
    # low-severity pneumonia, give…") that only the section title states.
    check = verify(text, [(i, f"{p.title} › {p.section_label}\n{p.text}") for i, p in enumerate(passages, 1)], SUPPORT_THRESHOLD)
    citations = []
    for n in sorted(check.cited_ok):
        if not 1 <= n <= len(passages):
            continue
        p = passages[n - 1]
        citations.append(Citation(
            n=n, document=p.file_name, doc_id=p.doc_id, title=p.title, page=p.page, section=p.section_label,
            chunk_id=p.chunk_id, quote=check.quotes.get(n, ""), verified=check.cited_ok[n], issuer=p.issuer,
            version=p.version,
        ))
    grounded = check.all_supported and any(c.verified for c in citations)
    warnings = list(base.warnings)
    if not grounded:
        warnings.append("Not every sentence is supported by the passage it cites: read the sources before acting.")
    else:
        cited = [f"{p.title} {p.section_label}\n{p.text}" for n, p in enumerate(passages, 1) if check.cited_ok.get(n)]
        missing = unaddressed_terms(base.standalone_question or base.question, text, cited)
        if missing:
            grounded = False
            warnings.append(
                f"The cited passages do not mention {', '.join(missing)}: this may not answer your question. "
                "Read the sources before acting.")
    return base.model_copy(update={
        "text": text, "citations": citations, "sentences": check.sentences, "grounded": grounded, "warnings": warnings,
    })


class PipelineError(CQAError):
    """Raised when the pipeline cannot run at all (never for a refusal)."""
