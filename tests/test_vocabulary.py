"""The clinical vocabulary: abbreviations, brand and lay names searched and recognised as a guideline
writes them."""

from __future__ import annotations

import json
from pathlib import Path

from core.answering.evidence import _acronyms_missing
from core.answering.relevance import missing_terms, unaddressed_terms
from core.answering.vocabulary import SYNONYMS, Vocabulary, default_vocabulary


def test_shipped_vocabulary_loads_and_spells_out_common_typing() -> None:
    vocab = default_vocabulary()
    assert len(vocab) > 1000
    expanded = vocab.expand("amox dose low severity CAP?")
    assert expanded.startswith("amox dose low severity CAP? (")
    assert "amoxicillin" in expanded and "community acquired pneumonia" in expanded
    assert "urea and electrolytes" in vocab.expand("pt on edoxaban, how often u&es")
    assert "dabigatran" in vocab.expand("Someone on Pradaxa is bleeding")


def test_expansion_is_idempotent_and_leaves_plain_questions_alone() -> None:
    vocab = default_vocabulary()
    once = vocab.expand("84yo with HTN, what clinic BP should we aim for?")
    assert vocab.expand(once) == once
    assert vocab.expand("What is the adult dose of adrenaline?") == "What is the adult dose of adrenaline?"


def test_matches_prefer_the_longest_term_and_plurals() -> None:
    vocab = Vocabulary({"blood thinner": ["anticoagulant"], "blood": ["haem"], "epipen": ["adrenaline"]})
    found = vocab.matches("Blood thinner and 2 EpiPens?")
    assert [(m.key, m.words) for m in found] == [("blood thinner", ("blood", "thinner")), ("epipen", ("epipens",))]
    assert vocab.stand_ins("blood thinner") == {"blood": ["anticoagulant"], "thinner": ["anticoagulant"]}


def test_load_merges_sections(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"abbreviations": {"HTN": ["hypertension"]}, "lay_terms": {"htn": ["high blood pressure"]},
                                "drug_names": {"pt": ["patient", "prothrombin time"]}, "ambiguous": ["pt"]}))
    vocab = Vocabulary.load(path)
    assert vocab.matches("htn")[0].expansions == ("hypertension", "high blood pressure")
    assert vocab.matches("pt")[0].expansions == ("patient",)  # ambiguous: its first meaning
    assert json.loads(SYNONYMS.read_text())["abbreviations"], "the shipped file has entries"


def test_a_brand_or_lay_word_is_mentioned_by_what_the_guideline_writes() -> None:
    passage = "Dabigatran is contraindicated if creatinine clearance is below 30 mL/min. Anticoagulant choice..."
    assert "pradaxa" not in missing_terms("Is Pradaxa ok with a creatinine clearance of 26?", passage)
    assert missing_terms("is a blood thinner ok", "Offer an anticoagulant.") == []
    # without the vocabulary's help the same words are missing
    assert "pradaxa" in missing_terms("Is Pradaxa ok?", "Apixaban is preferred.")
    # the topic-word check: one of two words said (through its generic name) is on topic, none is not
    assert unaddressed_terms("Pradaxa antidote?", "Dabigatran is stopped 48 hours before surgery.", []) == []
    assert unaddressed_terms("Pradaxa antidote?", "Apixaban is stopped 48 hours before surgery.", []) == [
        "pradaxa", "antidote"]


def test_an_abbreviation_spelt_out_in_the_passage_is_not_missing() -> None:
    assert _acronyms_missing("84yo with HTN, target?", "In hypertension aged over 80, aim below 150/90 mmHg.") == 0.0
    assert _acronyms_missing("84yo with HTN, target?", "In asthma, give oxygen.") == 1.0


def test_everyday_function_words_count_only_in_capitals() -> None:
    vocab = default_vocabulary()
    assert vocab.expand("what resp rate counts as amber - does that matter?") == (
        "what resp rate counts as amber - does that matter? (respiratory)")
    assert "aortic stenosis" in vocab.expand("known AS, BP target?")


def test_a_term_with_several_meanings_stands_for_its_first() -> None:
    vocab = Vocabulary({"mg": ["milligram", "magnesium"], "cap": ["community acquired pneumonia", "capsule"]}, {"mg"})
    assert vocab.expand("mg dose CAP") == "mg dose CAP (milligram; community acquired pneumonia; capsule)"


def test_unusual_letters_neither_crash_nor_shift_the_words() -> None:
    vocab = default_vocabulary()
    # "İ" lower-cases to two characters: the capitals check must still read the right word
    assert "aortic stenosis" in vocab.expand("İİİ AS")
    assert vocab.expand("İ İ İ İ İ as it on") == "İ İ İ İ İ as it on"


def test_the_question_as_typed_comes_back_from_the_searched_text() -> None:
    vocabulary = Vocabulary({"yo": ["year old"], "cap": ["community acquired pneumonia"]})
    typed = "7 yo with CAP: which antibiotic?"
    searched = vocabulary.expand(typed)
    assert searched != typed and vocabulary.typed(searched) == typed
    own = "glucose infusion rate (mL/hour)"  # the clinician's own brackets stay
    assert vocabulary.typed(own) == own and vocabulary.typed(vocabulary.expand(own)) == own


def test_a_refusal_names_the_words_the_clinician_typed_not_the_expansions() -> None:
    from core.answering.evidence import unmentioned

    searched = default_vocabulary().expand("HbA1c target for a T2DM patient on gliclazide?")
    assert "glycated" in searched  # the search also reads "glycated haemoglobin"
    said = ["Agree an individual HbA1c target, usually 48 mmol/mol for people on metformin alone."]
    cited = ["Type 2 diabetes 3. Glycaemic targets\n" + said[0]]
    assert unmentioned(searched, said, cited) == ["gliclazide"]
    # as typed, and a typed abbreviation counts as mentioned by what it stands for
    searched = default_vocabulary().expand("Dose of Pradaxa in COPD?")
    assert unmentioned(searched, ["Dabigatran 150 mg twice daily."], ["AF 4. Dabigatran\nDabigatran 150 mg twice daily."]) \
        == ["COPD"]
