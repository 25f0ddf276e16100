"""Citation verification: sentence splitting, marker parsing, the support checks, and the calibration set."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from core.answering.citations import SUPPORT_THRESHOLD, parse_cited, split_sentences, support_score, verify
from scripts.calibrate_citations import DATA, THRESHOLDS, choose_threshold, evaluate, load_examples

ADRENALINE = """3.1 Adrenaline
- Call for help and remove the trigger if possible.
- Give adrenaline 0.5 mg IM (0.5 mL of 1 mg/mL) into the anterolateral thigh as soon as anaphylaxis is suspected. Do not delay while obtaining IV access.
- Repeat the IM adrenaline dose after 5 minutes if there is no improvement."""
OTHER_DRUGS = """- Antihistamines are not part of the initial emergency treatment. A non-sedating oral antihistamine (for example cetirizine 10 mg) may be given for skin symptoms after the person has been stabilised.
- For persistent bronchospasm after adrenaline, give salbutamol 5 mg by nebuliser."""
STROKE = """- Continue aspirin 300 mg daily for 2 weeks, then start clopidogrel 75 mg once daily long term.
- Add ticagrelor: 180 mg loading dose, then 90 mg twice daily for 12 months."""


def supported(sentence: str, passage: str) -> bool:
    return verify(f"{sentence} [1]", [(1, passage)]).all_supported


# --------------------------------------------------------------------------------------------------
# split_sentences
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Give 0.5 mg IM. Repeat after 5 minutes.", ["Give 0.5 mg IM.", "Repeat after 5 minutes."]),
        ("Use an NSAID, e.g. Naproxen, i.e. Not aspirin.", ["Use an NSAID, e.g. Naproxen, i.e. Not aspirin."]),
        ("Give approx. 5 mg vs. 10 mg here. Next.", ["Give approx. 5 mg vs. 10 mg here.", "Next."]),
        (
            "Treat if glucose is below 4.0 mmol/L. Recheck in 15 minutes.",
            ["Treat if glucose is below 4.0 mmol/L.", "Recheck in 15 minutes."],
        ),
        ("Keep it below 4.0 mmol/L. and so on", ["Keep it below 4.0 mmol/L. and so on"]),
        ("Give it daily. [2] Next sentence [3].", ["Give it daily. [2]", "Next sentence [3]."]),
        ("Give it daily [2]. Next sentence [3].", ["Give it daily [2].", "Next sentence [3]."]),
        ("Give it daily.[2][3] Next.", ["Give it daily.[2][3]", "Next."]),
        ("1. Give adrenaline [1]\n2. Repeat after 5 min [1]", ["Give adrenaline [1]", "Repeat after 5 min [1]"]),
        ("- Lie flat [1]\n* Give oxygen [2]\n• Call 999", ["Lie flat [1]", "Give oxygen [2]", "Call 999"]),
        ("Steps: 1. Give adrenaline [1]. 2. Repeat it [1].", ["Steps: Give adrenaline [1].", "Repeat it [1]."]),
        (
            "A wrapped line that goes\non to the next line [1]. Another.",
            ["A wrapped line that goes on to the next line [1].", "Another."],
        ),
        ("Say one thing [1]\nSay another [2]", ["Say one thing [1]", "Say another [2]"]),
        ("## Answer\nGive **adrenaline** [1].", ["Answer", "Give adrenaline [1]."]),
        ("See section 3.2 (page 4). Then stop.", ["See section 3.2 (page 4).", "Then stop."]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


# --------------------------------------------------------------------------------------------------
# parse_cited
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "citations"),
    [
        ("Give X [1].", [1]),
        ("Give X [1,2].", [1, 2]),
        ("Give X [1, 3].", [1, 3]),
        ("Give X [1][2].", [1, 2]),
        ("Give X [2][1][2].", [2, 1]),
        ("Give X [1-3].", [1, 2, 3]),
        ("Give X [1–3].", [1, 2, 3]),
        ("Give X [Source 1].", [1]),
        ("Give X [passage 2].", [2]),
        ("Give X [Sources 1 and 2].", [1, 2]),
        ("Give X [7].", [7]),
        ("Give X (1).", []),
        ("Give X.", []),
    ],
)
def test_parse_cited_markers(text: str, citations: list[int]) -> None:
    [cited] = parse_cited(text)
    assert cited.citations == citations
    assert cited.raw == text


def test_parse_cited_removes_markers_from_the_text() -> None:
    cited = parse_cited("Give adrenaline 0.5 mg IM [1, 2]. Repeat after 5 minutes. [3]")
    assert [c.text for c in cited] == ["Give adrenaline 0.5 mg IM.", "Repeat after 5 minutes."]
    assert [c.citations for c in cited] == [[1, 2], [3]]


# --------------------------------------------------------------------------------------------------
# Support checks
# --------------------------------------------------------------------------------------------------


def test_verbatim_sentence_is_supported_with_its_quote() -> None:
    sentence = "Repeat the IM adrenaline dose after 5 minutes if there is no improvement."
    support = support_score(sentence, ADRENALINE)
    assert support.passes() and support.score == 1.0
    assert support.best_quote == sentence


def test_paraphrase_with_synonyms_is_supported() -> None:
    assert supported("Administer epinephrine 0.5 mg intramuscularly into the anterolateral thigh.", ADRENALINE)


def test_wrong_dose_is_unsupported_despite_perfect_word_overlap() -> None:
    v = verify(
        "Give adrenaline 0.3 mg IM into the anterolateral thigh as soon as anaphylaxis is suspected [1].",
        [(1, ADRENALINE)],
    )
    [check] = v.sentences
    assert not check.supported and not v.all_supported
    assert "0.3 mg is not in [1]" in check.problems
    assert support_score(check.text, ADRENALINE).unmatched == []


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("Give salbutamol 5 mg by nebuliser for persistent bronchospasm.", True),
        ("Give salbutamol 5 mL by nebuliser for persistent bronchospasm.", False),
        ("Give salbutamol 5 mg IV for persistent bronchospasm.", False),
        ("Give cetirizine 10 mg for skin symptoms after the person has been stabilised.", True),
        ("Give cetirizine 10 mg/kg for skin symptoms after the person has been stabilised.", False),
        ("Give chlorphenamine 10 mg for skin symptoms after the person has been stabilised.", False),
    ],
)
def test_units_routes_and_drugs_must_match(sentence: str, ok: bool) -> None:
    assert supported(sentence, OTHER_DRUGS) is ok


@pytest.mark.parametrize(
    ("sentence", "passage", "ok"),
    [
        ("Give oxygen only if SpO2 is below 94%.", "Give oxygen only if SpO2 is below 94%.", True),
        ("Give oxygen only if SpO2 is above 94%.", "Give oxygen only if SpO2 is below 94%.", False),
        ("Treat if glucose is below 4 mmol/L.", "Treat if glucose is below 4.0 mmol/L.", True),
        ("Give 0.5 mg IM.", "Give 0·5 mg IM.", True),
        ("Give 400 mcg sublingually.", "Give GTN 400 micrograms sublingually.", True),
        ("Give 400 mg sublingually.", "Give GTN 400 micrograms sublingually.", False),
        ("Colchicine 500 micrograms 2 to 4 times daily.", "Colchicine 500 micrograms two to four times daily.", True),
        ("Colchicine 500 micrograms twice a day.", "Colchicine 500 micrograms two to four times daily.", False),
        ("A fluid bolus of 500–1000 mL.", "A fluid bolus of 500-1000 mL.", True),
        ("A fluid bolus of 500 mL.", "A fluid bolus of 500-1000 mL.", False),
        ("Refer if BP is 180/120 mmHg or higher.", "Refer if clinic BP is 180/120 mmHg or higher.", True),
        ("Refer if BP is 160/100 mmHg or higher.", "Refer if clinic BP is 180/120 mmHg or higher.", False),
        ("A PHQ-9 score of 16 or more is more severe.", "A PHQ-9 score of 16 or more is more severe.", True),
        ("A PHQ-2 score of 16 or more is more severe.", "A PHQ-9 score of 16 or more is more severe.", False),
    ],
)
def test_numbers_rule(sentence: str, passage: str, ok: bool) -> None:
    assert supported(sentence, passage) is ok


@pytest.mark.parametrize(
    ("sentence", "problem"),
    [
        (
            "Give aspirin 75 mg daily for 2 weeks, then start clopidogrel.",
            "75 mg is in [1], but not as this sentence uses it",
        ),
        (
            "Add ticagrelor 180 mg loading dose, then 90 mg once daily for 12 months.",
            "90 mg is in [1], but not as this sentence uses it",
        ),
    ],
)
def test_a_dose_keeps_its_drug_and_frequency(sentence: str, problem: str) -> None:
    [check] = verify(f"{sentence} [1]", [(1, STROKE)]).sentences
    assert not check.supported
    assert problem in check.problems


def test_a_dose_keeps_its_drug_when_named_after_it_or_before_a_bracket() -> None:
    passage = "Once TIA is confirmed, give clopidogrel (300 mg loading dose, then 75 mg once daily) plus aspirin 75 mg."
    assert supported("Give 300 mg of clopidogrel as a loading dose once TIA is confirmed.", passage)
    assert not supported("Give 300 mg of aspirin as a loading dose once TIA is confirmed.", passage)


def test_numbers_stated_apart_in_the_passage_are_not_combined() -> None:
    passage = "Benzylpenicillin doses (IM or IV): adults, 1.2 g; children aged 1 to 9 years, 600 mg; children under 1 year, 300 mg."
    assert supported("Children aged 1 to 9 years should receive 600 mg of benzylpenicillin.", passage)
    assert not supported("Children aged 1 to 9 years should receive 300 mg of benzylpenicillin.", passage)


def test_numbers_from_a_neighbouring_sentence_do_not_count() -> None:
    passage = "Review the dose if eGFR is below 45 mL/min/1.73 m2. Stop metformin if eGFR is below 30 mL/min/1.73 m2."
    assert supported("Stop metformin if eGFR is below 30 mL/min/1.73 m2.", passage)
    assert not supported("Stop metformin if eGFR is below 45 mL/min/1.73 m2.", passage)


def test_a_sentence_may_take_its_drug_from_the_sentence_before() -> None:
    passage = "- Offer standard-release metformin first line.\n- Start at 500 mg once daily with breakfast."
    assert supported("Start metformin at 500 mg once daily with breakfast.", passage)
    assert not supported("Start gliclazide at 500 mg once daily with breakfast.", passage)


@pytest.mark.parametrize(
    ("sentence", "passage", "ok"),
    [
        ("Do not give sedatives.", "Do not give sedatives of any kind.", True),
        ("Sedatives of any kind should be avoided.", "Do not give sedatives of any kind.", True),
        ("Sedatives are contraindicated.", "Do not give sedatives of any kind.", True),
        ("Give sedatives of any kind.", "Do not give sedatives of any kind.", False),
        ("Antihistamines are part of the initial emergency treatment.", OTHER_DRUGS, False),
        ("Delay adrenaline until IV access is obtained.", ADRENALINE, False),
        (
            "If there is no IV access, give glucagon 1 mg IM.",
            "If IV access is not available, give glucagon 1 mg IM.",
            True,
        ),
        # A negation about something else in the passage sentence does not count against the claim.
        (
            "Amlodipine can be increased to 10 mg once daily.",
            "Adults who do not have diabetes: amlodipine 5 mg once daily, increased to 10 mg once daily.",
            True,
        ),
    ],
)
def test_negation_rule(sentence: str, passage: str, ok: bool) -> None:
    assert supported(sentence, passage) is ok


def test_negation_problem_is_reported() -> None:
    [check] = verify("Give sedatives of any kind [1].", [(1, "Do not give sedatives of any kind.")]).sentences
    assert any("negation mismatch" in p for p in check.problems)


def test_opposite_verbs_and_reversed_order_are_conflicts() -> None:
    pause = "Advise people to pause metformin during an acute illness with vomiting."
    assert not supported("Advise people to continue metformin during an acute illness with vomiting.", pause)
    thiamine = "Give thiamine before glucose in people with suspected Wernicke's encephalopathy."
    assert supported("Give thiamine before glucose in suspected Wernicke's encephalopathy.", thiamine)
    [check] = verify(
        "Give glucose before thiamine in suspected Wernicke's encephalopathy [1].", [(1, thiamine)]
    ).sentences
    assert not check.supported and any("reverse" in p for p in check.problems)


def test_a_claim_about_a_special_population_needs_a_passage_about_it() -> None:
    sentence = "Give adrenaline 0.5 mg IM into the anterolateral thigh as soon as anaphylaxis is suspected"
    assert supported(f"{sentence}.", ADRENALINE)
    [check] = verify(f"{sentence}, including in children [1].", [(1, ADRENALINE)]).sentences
    assert not check.supported and "children is not in [1]" in check.problems


def test_other_topic_and_generic_sentences_are_unsupported() -> None:
    assert not supported("For pneumonia, give amoxicillin 500 mg three times daily for 5 days.", ADRENALINE)
    assert not supported("Patients should receive appropriate care.", ADRENALINE)
    assert not supported("Anaphylaxis is a serious condition that needs prompt treatment.", ADRENALINE)


# --------------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------------


def test_out_of_range_citation_is_flagged() -> None:
    v = verify("Give adrenaline 0.5 mg IM [1][7].", [(1, ADRENALINE), (2, OTHER_DRUGS)])
    [check] = v.sentences
    assert "[7] was not among the sources" in check.problems
    assert not check.supported and not v.all_supported
    assert check.citations == [1, 7]
    assert v.cited_ok == {1: True, 7: False}


def test_sentence_without_citation_is_unsupported() -> None:
    v = verify("Give adrenaline 0.5 mg IM into the thigh.", [(1, ADRENALINE)])
    assert v.sentences[0].problems == ["no citation"]
    assert not v.all_supported


def test_sentences_without_a_clinical_claim() -> None:
    v = verify("Give adrenaline 0.5 mg IM [1]. Check the full guideline for details.", [(1, ADRENALINE)])
    assert [c.supported for c in v.sentences] == [True, True]
    assert v.sentences[1].problems == ["no clinical claim"]
    assert v.all_supported
    # An answer with no claim at all is not grounded, and a bare "No." is a claim.
    assert not verify("Check the full guideline.", [(1, ADRENALINE)]).all_supported
    assert not verify("No. Give adrenaline 0.5 mg IM [1].", [(1, ADRENALINE)]).all_supported


def test_cited_ok_and_quotes() -> None:
    text = "Give adrenaline 0.5 mg IM into the thigh [1]. Give salbutamol 2.5 mg by nebuliser [2]."
    v = verify(text, [(1, ADRENALINE), (2, OTHER_DRUGS)])
    assert v.cited_ok == {1: True, 2: False}
    assert v.quotes[1].startswith("Give adrenaline 0.5 mg IM (0.5 mL of 1 mg/mL)")
    assert "salbutamol 5 mg" in v.quotes[2]
    assert "2.5 mg is not in [2]" in v.sentences[1].problems


@pytest.mark.parametrize(
    "text",
    [
        "Give adrenaline 0.5 mg IM [1] and salbutamol 5 mg by nebuliser for persistent bronchospasm [2].",
        "Give adrenaline 0.5 mg IM into the thigh and salbutamol 5 mg by nebuliser for persistent bronchospasm [1][2].",
    ],
)
def test_a_sentence_citing_two_passages_may_combine_facts(text: str) -> None:
    v = verify(text, [(1, ADRENALINE), (2, OTHER_DRUGS)])
    assert v.all_supported
    assert v.cited_ok == {1: True, 2: True}


def test_combined_facts_still_need_each_number_in_its_passage() -> None:
    text = "Give adrenaline 0.5 mg IM [2] and salbutamol 5 mg by nebuliser for persistent bronchospasm [1]."
    assert not verify(text, [(1, ADRENALINE), (2, OTHER_DRUGS)]).all_supported
    text = "Give adrenaline 0.5 mg IM and salbutamol 2.5 mg by nebuliser for persistent bronchospasm [1][2]."
    assert not verify(text, [(1, ADRENALINE), (2, OTHER_DRUGS)]).all_supported


# --------------------------------------------------------------------------------------------------
# The calibration set
# --------------------------------------------------------------------------------------------------


def test_calibration_data_is_well_formed() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 120
    assert len({r["id"] for r in rows}) == len(rows)
    assert all({"id", "sentence", "passage", "supported", "kind"} <= r.keys() for r in rows)
    labels = Counter(r["supported"] for r in rows)
    assert 0.4 <= labels[True] / len(rows) <= 0.6
    kinds = {r["kind"] for r in rows}
    assert {"verbatim", "paraphrase", "wrong_number", "wrong_drug", "negation_flip", "other_topic", "generic"} <= kinds


def test_precision_and_recall_on_the_held_out_half() -> None:
    held_out = [e for e in load_examples() if e.half == "held_out"]
    metrics = evaluate(held_out, SUPPORT_THRESHOLD)
    assert metrics.precision >= 0.95, metrics
    assert metrics.recall >= 0.90, metrics


def test_support_threshold_is_the_calibrated_choice() -> None:
    """If the scorer changes, rerun scripts/calibrate_citations.py --write-docs and update the constant."""
    calibration = [e for e in load_examples() if e.half == "calibration"]
    assert choose_threshold({t: evaluate(calibration, t) for t in THRESHOLDS}) == SUPPORT_THRESHOLD
