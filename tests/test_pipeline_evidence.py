"""Evidence-first answers through the pipeline (fakes): quotes are the answer, the summary goes on top
only when it verifies, no sentence → refusal, an unreachable model changes only a footnote."""

from __future__ import annotations

from collections.abc import Callable

from core.answering.evidence import ANSWERABLE_FEATURES, EvidenceModel, EvidenceSelector, answer_gap
from core.answering.pipeline import NO_ANSWER_SENTENCE_MESSAGE, SUMMARY_NOT_SHOWN, AnswerService, AskOptions
from core.errors import LLMUnavailableError
from core.learning import LinearScorer
from core.library.embedding import HashingEmbedder
from core.llm import ChatMessage, FakeLLM, GenerationParams
from core.services import Services
from core.settings import AnswerSettings
from tests.conftest import GUIDELINE

QUESTION = "What dose of adrenaline in anaphylaxis?"


def _evidence_service(svc: Services, llm: FakeLLM, threshold: float = 0.05, head: LinearScorer | None = None,
                      head_threshold: float = 0.5) -> AnswerService:
    """The shipped scorers with a loose sentence threshold; the shipped answerability head and reader are
    calibrated on MiniLM, so with the hashing embedder of these tests the head is replaced (`head`) or left
    out, and the reader left out."""
    svc.library.ingest_bytes(GUIDELINE, "anaphylaxis.md")
    model = EvidenceModel.load().model_copy(update={"answer_threshold": threshold, "answerable": head,
                                                    "answerable_threshold": head_threshold, "gate": None,
                                                    "reader_weight": None})
    loose = AnswerSettings(evidence_threshold=0.05, min_passage_similarity=0.0, max_passages=3)
    return AnswerService(svc.retriever, llm, loose, GenerationParams(max_tokens=64),
                         selector=EvidenceSelector(HashingEmbedder(), model))


def _cite(sentence: str, phrase: str) -> Callable[[list[ChatMessage]], str]:
    """The model's reply: `sentence` cited to the passage [n] of the prompt that contains `phrase`."""
    def reply(messages: list[ChatMessage]) -> str:
        user = next(m.content for m in messages if m.role == "user")
        n = next(int(b.lstrip("[").split("]", 1)[0]) for b in user.split("\n[") if phrase in b)
        return f"{sentence} [{n}]."
    return reply


def test_quotes_answer_and_a_verified_summary_goes_on_top(fake_services: Services) -> None:
    llm = FakeLLM(_cite("Give adrenaline 0.5 mg intramuscularly into the anterolateral thigh", "0.5 mg"))
    run = _evidence_service(fake_services, llm).run(QUESTION)
    pieces = list(run)
    answer = run.result()
    assert run.evidence is not None and run.evidence.quotes and not run.evidence.summary_shown
    assert pieces[0] == ""  # the UI could show the quotes before the model's first token
    assert answer.status == "answered" and answer.grounded and answer.summary_shown
    dose = [q for q in answer.quotes if "0.5 mg" in q.sentence]
    assert dose, answer.quotes
    passage = fake_services.library.passage(dose[0].chunk_id)
    assert passage is not None and passage.text[dose[0].char_start : dose[0].char_end] == dose[0].sentence
    assert answer.text.startswith("Give adrenaline 0.5 mg") and f"[{dose[0].n}]" in answer.text
    assert any(c.n == dose[0].n and c.verified for c in answer.citations)
    assert answer.timings.select_s >= 0 and answer.tokens.completion > 0


def test_an_unverified_summary_is_not_shown_and_the_quotes_stand(fake_services: Services) -> None:
    llm = FakeLLM(_cite("Give adrenaline 0.3 mg intramuscularly into the anterolateral thigh", "0.5 mg"))
    answer = _evidence_service(fake_services, llm).ask(QUESTION)
    assert answer.status == "answered" and answer.grounded and not answer.summary_shown
    assert "0.3 mg" not in answer.text and "0.3 mg" in answer.summary  # kept for the record, never shown
    assert SUMMARY_NOT_SHOWN in answer.warnings
    assert all(s.supported for s in answer.sentences)  # only the quotes are the answer's sentences


def test_an_unreachable_model_leaves_the_quotes(fake_services: Services) -> None:
    def down(_: list[ChatMessage]) -> str:
        raise LLMUnavailableError("Ollama at http://127.0.0.1:9 is unreachable.")

    answer = _evidence_service(fake_services, FakeLLM(down)).ask(QUESTION)
    assert answer.status == "answered" and answer.quotes and not answer.summary_shown
    assert any("127.0.0.1:9" in w for w in answer.warnings) and "127.0.0.1:9" in answer.summary_error


def test_no_sentence_over_the_threshold_is_a_refusal_with_nearest_sections(fake_services: Services) -> None:
    answer = _evidence_service(fake_services, FakeLLM(lambda _: "unused"), threshold=0.9999).ask(QUESTION)
    assert answer.status == "refused" and answer.refusal is not None and answer.refusal.reason == "no_evidence"
    assert answer.text == NO_ANSWER_SENTENCE_MESSAGE and answer.nearest and not answer.quotes


def test_a_quote_without_the_kind_of_answer_asked_for_is_not_an_answer(fake_services: Services) -> None:
    answer = _evidence_service(fake_services, FakeLLM(lambda _: "unused")).ask(
        "What adrenaline dose for anaphylaxis in children?")
    # The guideline has a dose for adults only: whichever sentence the (hashing) scorer prefers, it is no answer.
    assert answer.status == "refused" and ("mention children" in answer.text or "no dose is given" in answer.text)
    assert answer_gap("adrenaline dose?", ["Give adrenaline into the thigh."], [""]) == "no dose is given in the sentences found"
    assert answer_gap("What BP target in adults?", ["Aim lower."], [""]) == "no value is given in the sentences found"
    assert answer_gap("adrenaline dose?", ["Give adrenaline 0.5 mg IM."], ["Adults"]) is None
    assert answer_gap("dose in pregnancy?", ["Give 5 mg."], ["Adults only"]) == "the passages found do not mention pregnancy"


def test_an_unconvinced_answerability_head_refuses_and_says_why(fake_services: Services) -> None:
    names = list(ANSWERABLE_FEATURES)
    # Refuses when most of the question's topic words are missing from the passages found.
    head = LinearScorer(features=names, weights=[-10.0 if n == "missing_in_evidence" else 0.0 for n in names], bias=3.0,
                        mean=[0.0] * len(names), scale=[1.0] * len(names))
    answered = _evidence_service(fake_services, FakeLLM(lambda _: "unused"), head=head).ask(
        QUESTION, options=AskOptions(summary=False))
    assert answered.status == "answered" and answered.quotes
    # The head's probability is recorded with the answer (and so in the audit log), answered or refused.
    assert answered.evidence_confidence is not None and answered.evidence_confidence >= 0.5
    refused = _evidence_service(fake_services, FakeLLM(lambda _: "unused"), threshold=0.0, head=head).ask(
        "What dose of methotrexate in rheumatoid arthritis flares?", options=AskOptions(summary=False))
    assert refused.status == "refused" and refused.refusal is not None and refused.refusal.reason == "no_evidence"
    assert "do not mention methotrexate" in refused.text and refused.nearest and not refused.quotes
    assert refused.evidence_confidence is not None and refused.evidence_confidence < 0.5


SCOPED = GUIDELINE.replace(b"## 3. Treatment", b"## 1. Scope\n\nThis guideline covers adults aged 16 and over. "
                            b"It does not cover anaphylaxis in children.\n\n## 3. Treatment")


def test_a_question_the_guideline_says_it_does_not_cover_is_refused_with_its_scope_sentence(fake_services: Services) -> None:
    from core.answering.scope import ScopeIndex
    from core.services import _scope_chunks

    fake_services.library.ingest_bytes(SCOPED, "anaphylaxis.md")
    model = EvidenceModel.load().model_copy(update={"answer_threshold": 0.0, "answerable": None, "gate": None,
                                                    "reader_weight": None})
    loose = AnswerSettings(evidence_threshold=0.05, min_passage_similarity=0.0, max_passages=3)
    selector = EvidenceSelector(HashingEmbedder(), model, scope=ScopeIndex(_scope_chunks(fake_services.store)))
    service = AnswerService(fake_services.retriever, FakeLLM(lambda _: "unused"), loose, GenerationParams(max_tokens=64),
                            selector=selector)
    refused = service.ask("What dose of adrenaline in anaphylaxis in children?", options=AskOptions(summary=False))
    assert refused.status == "refused" and refused.refusal is not None and refused.refusal.reason == "out_of_scope"
    assert "does not cover anaphylaxis in children" in refused.text and "Anaphylaxis in adults" in refused.text
    assert not refused.quotes and refused.nearest  # the closest sections are still shown
    answered = service.ask(QUESTION, options=AskOptions(summary=False))
    assert answered.status == "answered" and any("0.5 mg" in q.sentence for q in answered.quotes)
    # The services build the same check from their own store.
    assert fake_services.selector is not None and fake_services.selector.scope is not None


def test_summary_off_returns_the_quotes_without_asking_the_model(fake_services: Services) -> None:
    llm = FakeLLM(lambda _: "unused")
    answer = _evidence_service(fake_services, llm).ask(QUESTION, options=AskOptions(summary=False))
    assert answer.status == "answered" and answer.quotes and not llm.calls


def test_the_sentence_cache_is_warmed_for_every_active_passage(fake_services: Services) -> None:
    from core.services import warm_evidence_cache

    fake_services.library.ingest_bytes(GUIDELINE, "anaphylaxis.md")
    assert fake_services.selector is not None
    n = warm_evidence_cache(fake_services)
    assert n == fake_services.store.count() > 0 and len(fake_services.selector.cache) == n
    scope = fake_services.selector.scope
    assert scope is not None and all(d in scope._items for d in fake_services.catalog.active_ids())  # read once, here
    assert warm_evidence_cache(fake_services, max_chunks=0) == 0  # too large a library: left to first use


def test_a_decision_already_shown_is_not_screened_again(fake_services: Services) -> None:
    from core.answers import Escalation
    from core.safety.decision import SafetyDecision

    calls: list[str] = []

    class Counting:
        def check(self, message: str) -> SafetyDecision:
            calls.append(message)
            return SafetyDecision()

    svc = _evidence_service(fake_services, FakeLLM(lambda _: "unused"))
    svc._safety = Counting()
    shown = SafetyDecision(escalation=Escalation(level="emergent", rule="r", message="Call 999"))
    answer = svc.run(QUESTION, screened=shown).result()
    assert calls == [] and answer.status == "escalated" and answer.text.startswith("Call 999")
    svc.ask(QUESTION)
    assert calls == [QUESTION]
