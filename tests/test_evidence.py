"""core.evidence: exact sentence spans, the learned scorers, reranking and answer-sentence selection."""

from __future__ import annotations

import numpy as np
import pytest

from core.answering.evidence import (
    PASSAGE_FEATURES,
    SENTENCE_FEATURES,
    EvidenceModel,
    EvidenceSelector,
    QuestionCues,
    SentenceCache,
    sentence_spans,
    with_list,
)
from core.errors import CQAError
from core.evaluation.facts import contains_fact, holds_source, section_matches
from core.learning import fit_logistic
from core.library.embedding import HashingEmbedder
from core.schema import RetrievedPassage
from tests.helpers import evidence_model, evidence_model_with_head

PASSAGE = (
    "Adrenaline is the first-line treatment. Give 0.5 mg IM (0.5 mL of 1 mg/mL) into the anterolateral thigh.\n"
    "- Repeat after 5 minutes if there is no improvement.\n"
    "| Age | Dose |\n|---|---|\n| Adult | 0.5 mg |\n"
    "Note: e.g. in children use the weight-based dose. Short."
)


def _passage(text: str = PASSAGE, chunk: str = "c1", section: list[str] | None = None, title: str = "Anaphylaxis") -> RetrievedPassage:
    return RetrievedPassage(chunk_id=chunk, doc_id="d1", title=title, file_name="anaphylaxis.md", text=text,
                            section=section or ["3. Treatment", "3.1 Adrenaline"], score_kind="rrf", score=0.5)


def test_sentence_spans_are_verbatim_and_split_lists_tables_and_sentences() -> None:
    spans = sentence_spans(PASSAGE)
    texts = [PASSAGE[s.start : s.end] for s in spans]
    assert texts[0] == "Adrenaline is the first-line treatment."
    assert texts[1] == "Give 0.5 mg IM (0.5 mL of 1 mg/mL) into the anterolateral thigh."  # "0.5" not split
    assert texts[2] == "Repeat after 5 minutes if there is no improvement."  # bullet marker left out
    assert "| Adult | 0.5 mg |" in texts and all("---" not in t for t in texts)
    assert [s.table_row for s in spans if PASSAGE[s.start : s.end].startswith("|")] == [True, True]
    assert "Note: e.g. in children use the weight-based dose." in texts  # "e.g." does not end a sentence
    assert "Short." not in texts  # fragments under 12 characters are not answers


def test_question_cues() -> None:
    q = QuestionCues.of("What is the adult IM adrenaline dose in anaphylaxis?")
    assert q.dose and not q.when
    assert QuestionCues.of("How soon should antibiotics be given in sepsis?").when
    assert QuestionCues.of("What BP target for adults under 80?").number
    assert "adrena" in q.stems and "anaphy" in q.stems


def test_fit_logistic_learns_a_separable_feature_and_scores_probabilities() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] > 0).astype(float)
    model = fit_logistic(x, y, ("signal", "noise"))
    assert abs(model.weights[0]) > 5 * abs(model.weights[1])
    p = model.score(np.asarray([[2.0, 0.0], [-2.0, 0.0]]))
    assert p[0] > 0.9 and p[1] < 0.1


def test_rerank_puts_the_section_that_holds_the_answer_first() -> None:
    selector = EvidenceSelector(HashingEmbedder(), evidence_model())
    other = _passage("Refractory anaphylaxis needs an infusion in critical care.", "c2", ["3.4 Refractory anaphylaxis"],
                     title="Critical care")
    question = "adult adrenaline dose IM"
    ranked = selector.rank(question, selector.embed_query(question), [other, _passage()])
    assert [s.passage.chunk_id for s in ranked] == ["c1", "c2"]
    assert ranked[0].score > ranked[1].score and ranked[1].rank == 0  # hybrid rank kept for the record


def test_select_returns_verbatim_spans_numbered_by_passage() -> None:
    selector = EvidenceSelector(HashingEmbedder(), evidence_model())
    question = "What is the adrenaline dose IM?"
    passages = [_passage("Anaphylaxis is a severe reaction of sudden onset.", "c0", ["2. Recognition"]), _passage()]
    quotes = selector.select(question, selector.rescore(question, selector.embed_query(question), passages))
    assert quotes, "a dose sentence answers a dose question"
    dose = [q for q in quotes if "0.5 mg IM" in q.sentence]
    assert dose and dose[0].n == 2 and dose[0].chunk_id == "c1"
    assert all(PASSAGE[q.char_start : q.char_end] == q.sentence for q in quotes if q.chunk_id == "c1")
    assert len(quotes) <= 3 and all(q.score >= 0.5 for q in quotes)
    assert [q.score for q in quotes] == sorted((q.score for q in quotes), reverse=True)


def test_a_lead_in_is_quoted_with_its_list() -> None:
    text = "Diagnose diabetes if any of the following is present:\n- HbA1c 48 mmol/mol or more\n- fasting glucose 7.0 mmol/L or more\nThen repeat the test."
    spans = sentence_spans(text)
    whole = with_list(text, spans, 0)
    assert text[whole.start : whole.end] == ("Diagnose diabetes if any of the following is present:\n- HbA1c 48 mmol/mol or more\n"
                                             "- fasting glucose 7.0 mmol/L or more")
    assert with_list(text, spans, 3) == spans[3]  # not a lead-in


def test_no_sentence_over_the_threshold_means_no_quotes() -> None:
    selector = EvidenceSelector(HashingEmbedder(), evidence_model(threshold=0.9999))
    q = "What is the adrenaline dose IM?"
    assert selector.select(q, selector.rescore(q, selector.embed_query(q), [_passage()])) == []


def test_the_answerability_head_decides_and_names_what_the_passages_do_not_mention() -> None:
    selector = EvidenceSelector(HashingEmbedder(), evidence_model_with_head())
    on_topic = "What is the adrenaline dose IM?"
    chosen = selector.choose(on_topic, selector.rescore(on_topic, selector.embed_query(on_topic), [_passage()]))
    assert chosen.gap is None and chosen.quotes and chosen.confidence is not None and chosen.confidence >= 0.5
    near_miss = "When should methotrexate be used for rheumatoid arthritis?"
    refused = selector.choose(near_miss, selector.rescore(near_miss, selector.embed_query(near_miss), [_passage()]))
    assert refused.confidence is not None and refused.confidence < 0.5
    assert refused.gap is not None and "methotrexate" in refused.gap and "rheumatoid" in refused.gap
    assert selector.select(near_miss, selector.rescore(near_miss, selector.embed_query(near_miss), [_passage()])) == []
    # as a dose question, the drug no passage names is reason enough, whatever the head says
    dose = "What is the methotrexate dose for rheumatoid arthritis?"
    gap = selector.choose(dose, selector.rescore(dose, selector.embed_query(dose), [_passage()])).gap
    assert gap == "the passages found do not mention methotrexate"


def test_answerability_features_see_drugs_and_abbreviations_the_passages_do_not_mention() -> None:
    from core.answering.evidence import _acronyms_missing, _drugs_missing

    text = "Give clopidogrel 300 mg loading dose after a TIA. Amlodipine 5 mg daily."
    assert _drugs_missing("What clopidogrel dose after NSTEMI?", text) == 0.0
    assert _drugs_missing("sitagliptin dose with eGFR 35?", text) == 1.0
    assert _drugs_missing("amlodipine or losartan first?", text) == 0.5
    assert _acronyms_missing("What clopidogrel dose after NSTEMI?", text) == 1.0
    assert _acronyms_missing("clopidogrel after a TIA?", text) == 0.0


def test_the_head_is_used_only_with_the_embedder_it_was_calibrated_on() -> None:
    model = evidence_model_with_head().model_copy(update={"gate": 0.3, "embedder": "all-MiniLM-L6-v2"})
    assert model.for_embedder("all-MiniLM-L6-v2") is model
    other = model.for_embedder("hashing-fake")
    assert other.answerable is None and other.gate is None and other.answer_threshold == model.answer_threshold
    assert dict(zip(other.passage.features, other.passage.weights, strict=True))["hybrid_rank"] == 1.0
    assert sum(abs(w) for w in other.passage.weights) == 1.0  # hybrid order only
    shipped = EvidenceModel.load()
    assert shipped.answerable is not None and shipped.embedder == "all-MiniLM-L6-v2" and shipped.gate is not None


def test_the_dose_value_and_population_checks_overrule_a_confident_head() -> None:
    selector = EvidenceSelector(HashingEmbedder(), evidence_model_with_head(threshold=0.0))
    question = "What is the adrenaline dose IM in pregnancy?"
    chosen = selector.choose(question, selector.rescore(question, selector.embed_query(question), [_passage()]))
    assert chosen.quotes and chosen.gap == "the passages found do not mention pregnancy"


def test_sentence_cache_embeds_each_chunk_once() -> None:
    calls: list[int] = []

    class Counting(HashingEmbedder):
        def embed(self, texts: list[str]) -> list[list[float]]:
            calls.append(len(texts))
            return super().embed(texts)

    cache = SentenceCache(Counting())
    cache.get([_passage()])
    cache.get([_passage(), _passage()])
    assert len(calls) == 1 and len(cache) == 1


def test_missing_or_corrupt_model_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "evidence.json"
    bad.write_text("{not json")
    with pytest.raises(CQAError, match="train_evidence"):
        EvidenceModel.load(bad)
    with pytest.raises(CQAError, match="cannot be read"):
        EvidenceModel.load(tmp_path / "missing.json")


def test_shipped_model_loads_and_reports_cross_validated_figures() -> None:
    model = EvidenceModel.load()
    assert model.passage.features == list(PASSAGE_FEATURES) and model.sentence.features == list(SENTENCE_FEATURES)
    cv = model.report["cross_validated"]
    assert isinstance(cv, dict) and cv["hit@5_reranked"] >= cv["hit@5_hybrid"] - 0.02
    assert "blind" not in str(model.report["trained_on"])


def test_facts_and_sources_match_like_a_reader_would() -> None:
    assert contains_fact("Give 0.5mg IM", "0.5 mg")
    assert contains_fact("500 micrograms", "500 mcg")
    assert contains_fact("1.2–2 g", "1.2-2 g")
    assert not contains_fact("Give 5 mg", "0.5 mg")
    p = _passage()
    assert holds_source(p, {"file": "anaphylaxis.md", "page": None, "section": "3.1 Adrenaline"})
    assert holds_source(p, {"file": "anaphylaxis.md", "section": "3.1 ADRENALINE"})
    assert not holds_source(p, {"file": "anaphylaxis.md", "section": "3.4 Refractory anaphylaxis"})
    assert not holds_source(p, {"file": "asthma.md"})
    assert section_matches(["Guideline", "3. Treatment"], "3. Treatment")


NEWS2 = (
    "Score each parameter using the table below.\n\n"
    "| Parameter | Score 0 | Score 1 | Score 2 | Score 3 |\n| --- | --- | --- | --- | --- |\n"
    "| Respiration rate (breaths/min) | 12-20 | 9-11 | 21-24 | 8 or less; 25 or more |\n"
    "| Pulse (beats/min) | 51-90 | 41-50; 91-110 | 111-130 | 40 or less; 131 or more |\n\n"
    "| Other | table |\n| --- | --- |\n| Second table row | x |\n"
)


def test_a_table_row_is_scored_with_its_column_headers_and_quoted_under_them() -> None:
    from core.answering.evidence import quoted_span, scoring_text, table_header

    spans = sentence_spans(NEWS2)
    rows = [j for j, s in enumerate(spans) if s.table_row]
    header, resp, pulse, other_header, other_row = rows
    assert table_header(NEWS2, spans, resp) == header and table_header(NEWS2, spans, header) is None
    assert table_header(NEWS2, spans, other_row) == other_header  # a blank line starts another table
    assert scoring_text(NEWS2, spans, resp) == ("Parameter: Respiration rate (breaths/min); Score 0: 12-20; Score 1: 9-11; "
                                                "Score 2: 21-24; Score 3: 8 or less; 25 or more")
    assert scoring_text(NEWS2, spans, 0) == "Score each parameter using the table below."  # not a row: as it stands
    shown = quoted_span(NEWS2, spans, pulse)
    assert NEWS2[shown.start : shown.end].startswith("| Parameter |") and NEWS2[shown.start : shown.end].endswith("131 or more |")


def test_two_rows_of_one_table_are_one_quote() -> None:
    selector = EvidenceSelector(HashingEmbedder(), evidence_model(threshold=0.0))
    passage = _passage(NEWS2, "c9", ["2. Assessment", "2.1 NEWS2"], title="Sepsis")
    scored = selector.rescore("NEWS2", selector.embed_query("NEWS2"), [passage])
    spans = scored[0].vectors.spans
    probs = np.asarray([0.8 if "Pulse" in NEWS2[s.start : s.end] else 0.9 if "Respiration" in NEWS2[s.start : s.end]
                        else 0.0 for s in spans])
    from core.answering.evidence import pick_quotes

    quotes = pick_quotes(scored, probs, 0.5, 3, 0.25)
    assert len(quotes) == 1 and quotes[0].table_row
    assert quotes[0].sentence == NEWS2[quotes[0].char_start : quotes[0].char_end]
    assert "Respiration rate" in quotes[0].sentence and "131 or more" in quotes[0].sentence


def test_a_question_about_the_time_around_a_dose_does_not_need_a_dose() -> None:
    from core.answering.evidence import answer_gap, asks_dose

    assert asks_dose("What IM adrenaline dose is given in anaphylaxis?")
    assert asks_dose("What dose of adrenaline, and when do I repeat it?")  # it asks for the dose too
    assert not asks_dose("Needed 2 IM adrenaline doses - how long do we keep them for obs?")
    assert not asks_dose("max time from arrival to first abx dose in CAP?")
    # A condition is not a time question: these still need a dose.
    assert asks_dose("apixaban dose when CrCl is 25?")
    assert asks_dose("calpol dose per kg for a feverish toddler? how often?")
    assert answer_gap("Needed 2 IM adrenaline doses - how long do we observe?",
                      ["Observe for a minimum of 6 hours after 2 doses of IM adrenaline."], []) is None
    assert answer_gap("What IM adrenaline dose?", ["Observe for a minimum of 6 hours."], []) is not None


def test_a_short_word_is_mentioned_by_the_longer_word_it_begins() -> None:
    from core.answering.relevance import mentions, unaddressed_terms

    text = "Treat hypoglycaemia with 15-20 g of fast-acting carbohydrate."
    assert unaddressed_terms("hypo treatment - how much carbohydrate?", text, []) == []
    stems = {"hypogl", "carboh"}
    assert mentions("hypo", stems) and mentions("hypoglycemia", stems)
    assert not mentions("gout", stems) and not mentions("carbon", stems)  # a whole 6-letter stem must match


def test_a_dose_question_about_one_drug_is_not_answered_with_another_drugs_dose() -> None:
    from core.answering.evidence import answer_gap

    passage = ("Hypertension › 4. Drug treatment\nOffer amlodipine 5 mg once daily. If it is not tolerated, offer an "
               "ACE inhibitor such as lisinopril.")
    quote = ["Offer amlodipine 5 mg once daily."]
    assert answer_gap("Lisinopril starting dose for hypertension?", quote, [passage]) == (
        "no dose of lisinopril is given in the sentences found")
    assert answer_gap("Amlodipine starting dose?", quote, [passage]) is None
    # The drug named only by the quote's heading ("3.1 Adrenaline" over "Give 0.5 mg IM") is dosed.
    assert answer_gap("adrenaline dose?", ["Give 0.5 mg IM."], ["Anaphylaxis › 3.1 Adrenaline\nGive 0.5 mg IM."]) is None
    # A name the passages never use (a US name, a brand) is left to the answerability head.
    assert answer_gap("epinephrine dose?", ["Give 0.5 mg IM."], ["Anaphylaxis › 3.1 Adrenaline\nGive 0.5 mg IM."]) is None


def test_a_dose_question_about_a_drug_no_passage_names_is_refused() -> None:
    from core.answering.evidence import answer_gap, unnamed_drugs
    from core.answering.vocabulary import default_vocabulary

    passage = "Depression › 3.3 Antidepressant prescribing\nOffer sertraline 50 mg once daily."
    quote = ["Offer sertraline 50 mg once daily."]
    assert answer_gap("mirtazapine starting dose for depression?", quote, [passage]) == (
        "the passages found do not mention mirtazapine")
    assert answer_gap("sertraline starting dose?", quote, [passage]) is None
    # a drug the patient is on is context; a class is named by its members
    juice = ["Give 15-20 g of fast-acting carbohydrate, for example 150-200 mL of fruit juice."]
    assert unnamed_drugs("BM 3.1, alert, on gliclazide. How much juice?", juice, juice) == []
    statin = ["Offer atorvastatin 20 mg once daily."]
    assert unnamed_drugs("statin dose post mi", statin, statin) == []
    # one of the drugs named is enough: the other may be what the patient already takes
    assert unnamed_drugs("on apixaban - aspirin dose for TIA?", ["Give aspirin 300 mg."], ["TIA\nGive aspirin 300 mg."]) == []
    # a brand is read by the generic name its expansion adds
    adrenaline = ["Anaphylaxis › 3.1 Adrenaline\nGive 0.5 mg IM."]
    assert answer_gap(default_vocabulary().expand("EpiPen dose for an adult?"), ["Give 0.5 mg IM."], adrenaline) is None
    assert answer_gap(default_vocabulary().expand("Glucagen dose?"), ["Give 0.5 mg IM."], adrenaline) is not None
