"""An answer must be about the question: a correctly cited sentence on another topic is not grounded."""

from __future__ import annotations

from core.answering.relevance import topic_terms, unaddressed_terms
from core.llm import FakeLLM
from core.services import Services
from tests.helpers import answer_service, cite_phrase


def test_topic_terms_skip_question_and_generic_words() -> None:
    assert topic_terms("Up to when can thrombectomy be offered?") == ["thrombectomy"]
    assert topic_terms("What dose should I give the patient?") == []
    assert topic_terms("Pt with BP 186/124 and papilloedema on fundoscopy - what do I do?") == ["papilloedema", "fundoscopy"]


def test_off_topic_answers_are_caught_and_on_topic_ones_pass() -> None:
    chest_pain = ["Acute Chest Pain 3.3 Reperfusion\nPrimary PCI is preferred within 120 minutes."]
    assert unaddressed_terms("Up to when can thrombectomy be offered?", "Primary PCI within 120 minutes [1].",
                             chest_pain) == ["thrombectomy"]
    anaphylaxis = ["Emergency Treatment of Anaphylaxis in Adults 3. Treatment\nGive adrenaline intramuscularly."]
    # stems: "anaphylactic" matches "Anaphylaxis"; one missing word of three is tolerated
    assert unaddressed_terms("Adrenaline route in anaphylactic shock?", "Give adrenaline IM [1].", anaphylaxis) == []
    assert unaddressed_terms("What should I do?", "Anything [1].", []) == []


def test_pipeline_does_not_show_a_cited_off_topic_sentence_as_grounded(fake_services: Services) -> None:
    llm = FakeLLM(cite_phrase("Give adrenaline 0.5 mg intramuscularly into the anterolateral thigh", "0.5 mg"))
    answer = answer_service(fake_services, llm).ask("What is the thrombectomy window for adrenaline?")
    assert answer.status == "answered" and answer.citations[0].verified  # the sentence is in the passage...
    assert not answer.grounded  # ...but thrombectomy is not: not shown as grounded
    assert any("do not mention thrombectomy" in w for w in answer.warnings)
