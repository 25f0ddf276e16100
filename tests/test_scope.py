"""What a guideline says it does not cover (`core.answering.scope`): read from its own scope statement,
matched by the question's words, and used by the selector to rule that guideline's passages out."""

from __future__ import annotations

import pytest

from core.answering.evidence import EvidenceSelector
from core.answering.scope import ScopeIndex, asks_about, excluded_by, exclusions
from core.library.embedding import HashingEmbedder
from core.schema import RetrievedPassage
from tests.helpers import evidence_model, evidence_model_with_head

CAP_TITLE = "Community-Acquired Pneumonia in Adults: Assessment and Antibiotic Treatment"
CAP_SCOPE = (
    "This guideline covers the assessment and antibiotic treatment of community-acquired pneumonia (CAP) in adults "
    "aged 18 years and over. It does not cover hospital-acquired pneumonia (onset 48 hours or more after admission), "
    "pneumonia in people who are severely immunocompromised, or aspiration pneumonia."
)
T2DM_TITLE = "Type 2 Diabetes in Adults"
T2DM_SCOPE = "It does not cover type 1 diabetes, diabetes in pregnancy or diabetes in children."


def _items(title: str, text: str, section: list[str] | None = None) -> dict[str, tuple[str, ...]]:
    return {e.item: e.distinct for e in exclusions(title, section or ["1. Scope"], text)}


def test_exclusions_are_read_from_the_scope_statement_item_by_item() -> None:
    items = _items(CAP_TITLE, CAP_SCOPE)
    assert list(items) == ["hospital-acquired pneumonia", "pneumonia in people who are severely immunocompromised",
                           "aspiration pneumonia"]  # the parenthesis is not an item
    assert items["hospital-acquired pneumonia"] == ("hospit_acquir",)  # a compound, not "hospital"
    assert items["aspiration pneumonia"] == ("aspira",)  # "pneumonia" is the title's own word
    # Only the number is new to the title, so it is read with its word: "type 1", not any "1".
    assert _items(T2DM_TITLE, T2DM_SCOPE) == {"type 1 diabetes": ("type_1",), "diabetes in pregnancy": ("pregna",),
                                              "diabetes in children": ("childr",)}
    # "X is outside the scope of this guideline" names the item before the verb.
    assert _items("Emergency treatment of anaphylaxis in adults",
                  "Anaphylaxis in children is outside the scope of this guideline.") == {"Anaphylaxis in children": ("childr",)}
    # A relative clause stays with its item instead of becoming one of its own.
    assert list(_items("Hypoglycaemia in adults", "It does not cover neonates, or hypoglycaemia in people without "
                       "diabetes, who need specialist investigation.")) == [
        "neonates", "hypoglycaemia in people without diabetes, who need specialist investigation"]


def test_a_number_left_over_from_the_title_needs_its_word() -> None:
    found = exclusions(T2DM_TITLE, ["1. Scope"], T2DM_SCOPE)
    assert excluded_by("eGFR 27 on metformin 1 g bd - carry on?", found) is None  # "1 g" is not type 1 diabetes
    hit = excluded_by("Starting insulin dose in type 1 diabetes?", found)
    assert hit is not None and hit.item == "type 1 diabetes"


def test_whoever_a_non_population_leaves_out_is_not_covered() -> None:
    scope = ("This guideline covers the recognition and initial management of suspected sepsis in non-pregnant adults "
             "aged 16 years and over in the emergency department.")
    found = exclusions("Sepsis in adults", ["1. Scope"], scope)
    assert [(e.item, e.distinct) for e in found] == [("pregnant adults", ("pregna",))]
    hit = excluded_by("28/40 pregnant with ?chorioamnionitis - which sepsis thresholds do I use?", found)
    assert hit is not None and hit.item == "pregnant adults"
    assert excluded_by("sepsis in a non-pregnant woman: lactate threshold?", found) is None
    assert excluded_by("sepsis: lactate threshold for a fluid bolus?", found) is None
    assert exclusions("Sepsis", ["3. Management"], "Give non-invasive ventilation to adults who need it.") == []


def test_clinical_wording_outside_a_scope_section_is_not_an_exclusion() -> None:
    aspirin = "Once haemorrhage is excluded, give aspirin 300 mg daily. This does not cover people on anticoagulants."
    assert exclusions("Stroke", ["3. Acute management", "3.4 Aspirin"], aspirin) == []
    assert _items("Stroke", "This guideline does not cover subarachnoid haemorrhage.", ["3. Management"]) == {
        "subarachnoid haemorrhage": ("subara", "haemor")}  # any section, when it names "this guideline"


def test_a_question_is_about_an_item_when_it_has_all_its_distinguishing_words() -> None:
    found = exclusions(CAP_TITLE, ["1. Scope"], CAP_SCOPE) + exclusions(T2DM_TITLE, ["1. Scope"], T2DM_SCOPE)
    by_item = {e.item: e for e in found}
    assert asks_about("Empirical antibiotics for hospital acquired pneumonia on day 5?", by_item["hospital-acquired pneumonia"])
    assert not asks_about("How soon should a chest X-ray be done for suspected CAP in hospital?",
                          by_item["hospital-acquired pneumonia"])
    assert asks_about("HbA1c target in type 1 diabetes?", by_item["type 1 diabetes"])
    assert not asks_about("HbA1c target in type 2 diabetes?", by_item["type 1 diabetes"])
    assert asks_about("Metformin in a pregnant woman with diabetes?", by_item["diabetes in pregnancy"])
    assert asks_about("Steroids for severely immunocompromised patients with pneumonia?",
                      by_item["pneumonia in people who are severely immunocompromised"])
    assert not asks_about("Are steroids recommended in severe pneumonia?",
                          by_item["pneumonia in people who are severely immunocompromised"])
    assert excluded_by("Which antibiotic for aspiration pneumonia?", found) == by_item["aspiration pneumonia"]
    # A question about coverage is answered by the scope sentence itself: never ruled out by it.
    assert excluded_by("Does the CAP guideline cover aspiration pneumonia?", found) is None


def test_the_index_reads_each_document_once_and_a_store_error_is_no_veto() -> None:
    calls: list[str] = []

    def chunks_of(doc_id: str) -> list[tuple[str, list[str], str, str]]:
        calls.append(doc_id)
        if doc_id == "broken":
            raise RuntimeError("store closed")
        return [(CAP_TITLE, ["1. Scope"], CAP_SCOPE, "c-scope"), (CAP_TITLE, ["3. Treatment"], "Give amoxicillin.", "c3")]

    index = ScopeIndex(chunks_of)
    assert index.excluded("Antibiotic for aspiration pneumonia?", "cap").chunk_id == "c-scope"  # type: ignore[union-attr]
    assert index.excluded("Antibiotic for CAP?", "cap") is None
    assert calls == ["cap"]
    assert index.of("broken") == [] and index.of("broken") == [] and calls.count("broken") == 2  # not cached
    index.remember("t2dm", [(T2DM_TITLE, ["1. Scope"], T2DM_SCOPE, "t-scope")])
    assert index.excluded("HbA1c target in type 1 diabetes?", "t2dm") is not None and "t2dm" not in calls


def _p(doc: str, chunk: str, title: str, section: list[str], text: str) -> RetrievedPassage:
    return RetrievedPassage(chunk_id=chunk, doc_id=doc, title=title, file_name=f"{doc}.md", text=text, section=section,
                            score_kind="rrf", score=0.5)


ADULT = "Anaphylaxis in adults"
SCOPE = _p("adult", "a0", ADULT, ["1. Scope"], "This guideline covers adults. It does not cover anaphylaxis in children.")
ADULT_DOSE = _p("adult", "a1", ADULT, ["3. Treatment"], "Give adrenaline 0.5 mg IM into the anterolateral thigh.")
CHILD_DOSE = _p("child", "c1", "Paediatric resuscitation", ["4. Anaphylaxis"],
                "For children aged 6 to 12 years give adrenaline 0.3 mg IM.")


def _selector(with_head: bool) -> EvidenceSelector:
    docs = {"adult": [SCOPE, ADULT_DOSE], "child": [CHILD_DOSE]}
    index = ScopeIndex(lambda d: [(p.title, p.section, p.text, p.chunk_id) for p in docs[d]])
    return EvidenceSelector(HashingEmbedder(), evidence_model_with_head(0.0) if with_head else evidence_model(0.0), scope=index)


@pytest.mark.parametrize("with_head", [False, True])
def test_the_selector_quotes_only_guidelines_that_cover_the_question(with_head: bool) -> None:
    selector = _selector(with_head)
    question = "What adrenaline dose IM for anaphylaxis in children?"
    both = selector.choose(question, selector.rescore(question, selector.embed_query(question), [ADULT_DOSE, CHILD_DOSE]))
    assert both.quotes and {q.chunk_id for q in both.quotes} == {"c1"} and both.out_of_scope is None
    assert [q.n for q in both.quotes] == [2]  # numbered by the passage's position in what was given
    only_adult = selector.choose(question, selector.rescore(question, selector.embed_query(question), [ADULT_DOSE]))
    assert not only_adult.quotes and only_adult.out_of_scope is not None
    assert only_adult.out_of_scope.sentence == "It does not cover anaphylaxis in children."
    assert only_adult.gap == '"Anaphylaxis in adults" says it does not cover anaphylaxis in children'
    adults = "What adrenaline dose IM for anaphylaxis in adults?"
    kept = selector.choose(adults, selector.rescore(adults, selector.embed_query(adults), [ADULT_DOSE]))
    assert kept.quotes and kept.out_of_scope is None


def test_the_ages_a_guideline_covers_rule_out_a_patient_of_another_age() -> None:
    from core.answering.scope import age_range, question_age

    fever = age_range("Fever in Children Under 5", ["1. Scope"], "This guideline covers the assessment of children under "
                      "5 years presenting with fever. It does not cover neonates still in hospital.")
    assert [e.ages for e in fever] == [(0.0, 5.0)] and fever[0].item == "patients of that age (it covers those under 5 years)"
    adults = age_range("Hypertension in Adults", ["1. Scope"], "This guideline covers primary hypertension in adults aged "
                       "18 years and over in primary care.")
    assert [e.ages for e in adults] == [(18.0, 200.0)]
    # Ages in a recommendation are not the guideline's scope.
    assert age_range("Hypertension in Adults", ["4. Treatment"], "Offer a CCB to adults aged 55 or over.") == []
    assert question_age("7 year old with a fever of 39 - paracetamol?") == 7.0
    assert question_age("asymptomatic 55M with an HbA1c of 50") == 55.0
    assert question_age("9-month-old with fever") == 0.75
    assert question_age("What is the adult adrenaline dose?") is None
    assert asks_about("7 year old with a fever of 39 - paracetamol?", fever[0])
    assert not asks_about("3 year old with a fever of 39 - paracetamol?", fever[0])
    assert not asks_about("Paracetamol for a feverish toddler?", fever[0])  # no age given: no veto
    assert asks_about("BP target in a 17yo with hypertension?", adults[0])
    assert not asks_about("BP target for a 55M with hypertension?", adults[0])


def test_an_adult_patient_who_mentions_children_is_not_a_child() -> None:
    from core.answering.scope import age_range

    found = (exclusions("Acute Asthma in Adults", ["1. Scope"], "It does not cover asthma in children or asthma in pregnancy.")
             + age_range("Acute Asthma in Adults", ["1. Scope"], "This guideline covers acute asthma in adults aged 16 years and over."))
    assert excluded_by("35F, mother of two children, acute asthma - prednisolone dose?", found) is None
    assert excluded_by("Prednisolone dose for acute asthma in children?", found) is not None  # no age given
    assert excluded_by("8 year old with acute asthma - prednisolone dose?", found) is not None  # the age range
    pregnant = excluded_by("32 year old, 20 weeks pregnant, acute asthma - prednisolone dose?", found)
    assert pregnant is not None and pregnant.item == "asthma in pregnancy"  # not an age group: still ruled out


def test_a_question_about_coverage_is_asked_of_the_guideline_not_of_a_treatment() -> None:
    found = exclusions(CAP_TITLE, ["1. Scope"], CAP_SCOPE)
    assert excluded_by("Does the CAP guideline apply to aspiration pneumonia?", found) is None
    assert excluded_by("Is aspiration pneumonia within the scope?", found) is None
    # "cover" and "include" in a clinical sense do not make it a question about the guideline.
    assert excluded_by("Antibiotic cover for aspiration pneumonia?", found) is not None
    assert excluded_by("What should treatment of aspiration pneumonia include?", found) is not None
