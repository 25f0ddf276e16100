"""core.triage (the layered emergency screen) and core.emergency_classifier, on fast fakes.

The real MiniLM head is measured by `make eval-safety` on the blind set; here each layer's contract:
who escalates, what it names as the trigger, what it must leave alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import CQAError
from core.library.embedding import HashingEmbedder
from core.safety.emergency_classifier import (
    TRIAGE_DIR,
    VECTOR_CACHE,
    EmergencyClassifier,
    EmergencyScreen,
    TrainingExample,
    _choose_bars,
    cached_vectors,
    corpus_examples,
    retrain,
    rule_examples,
    sentence_parts,
    split_sentences,
    train,
    vector_key,
)
from core.safety.rule_schema import BUNDLED_RULES_DIR
from core.safety.rules import RuleSet
from core.safety.triage import SCREEN_CONFIG, LayeredScreen, ScreenConfig, build_screen
from core.safety.vitals import VitalThresholds
from core.settings import Settings

POSITIVES = [
    "my grandad has gone a funny grey colour with a rattling noise, slumped",
    "she is slumped with a rattling noise and a grey colour now",
    "he went a grey colour, slumped, rattling noise",
    "slumped, grey colour, rattling, help",
    "my wife has a grey colour and a rattling noise and is slumped",
    "grey colour and rattling noise, slumped on the floor",
]
NEGATIVES = [
    "can I renew my repeat prescription for statins",
    "what time does the pharmacy open on sunday",
    "mild hay fever, which antihistamine is best",
    "renewing a repeat prescription for inhalers",
    "is the pharmacy open on bank holidays",
    "which antihistamine for mild hay fever in spring",
]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load(BUNDLED_RULES_DIR)


@pytest.fixture(scope="module")
def classifier(rules: RuleSet) -> EmergencyClassifier:
    examples = [TrainingExample(text=t, label=1, category="collapse_grey_gasping", source=f"x.jsonl:{i}")
                for i, t in enumerate(POSITIVES)]
    examples += [TrainingExample(text=t, label=0, category="routine", source=f"x.jsonl:{i}") for i, t in enumerate(NEGATIVES)]
    return train(HashingEmbedder(), examples, rules.cues, RuleSet.CUE_NAMES, folds=3, recall=1.0)


@pytest.fixture(scope="module")
def screen(rules: RuleSet, classifier: EmergencyClassifier) -> LayeredScreen:
    return LayeredScreen(rules, ScreenConfig.load(), VitalThresholds.load(), EmergencyScreen(HashingEmbedder(), classifier, rules.cues))


def test_rules_escalate_first_and_name_their_triggers(screen: LayeredScreen) -> None:
    d = screen.check("My dad has crushing chest pain going down his left arm and he is sweating")
    assert d.escalation is not None and d.escalation.layer == "rules" and d.escalation.level == "emergent"
    assert d.escalation.triggers and all(t in "My dad has crushing chest pain going down his left arm and he is sweating"
                                         for t in d.escalation.triggers)
    assert "+clf-" in d.rule_set_version  # the answer records which classifier screened it


def test_vital_signs_escalate_with_the_values_that_triggered(screen: LayeredScreen) -> None:
    message = "my husband is 60, the home monitor says HR 140, BP 82/50 and temp 39.4"
    d = screen.check(message)
    assert d.escalation is not None and d.escalation.layer == "vitals", d
    assert any("82/50" in t for t in d.escalation.triggers) and all(t in message for t in d.escalation.triggers)
    assert d.escalation.rule in d.matched_rules and "vital signs" in d.escalation.explanation
    assert d.escalation.message.startswith(("EMERGENCY", "URGENT")) and "999" in d.escalation.message


def test_classifier_catches_wording_no_rule_has_and_says_why(screen: LayeredScreen) -> None:
    message = "Sorry to bother you. My uncle has a funny grey colour and a rattling noise and is slumped."
    d = screen.check(message)
    assert d.escalation is not None and d.escalation.layer == "classifier", d
    assert d.escalation.rule == "classifier:collapse_grey_gasping"
    assert d.escalation.triggers == ["My uncle has a funny grey colour and a rattling noise and is slumped."]
    assert "learned classifier" in d.escalation.explanation and "999" in d.escalation.message


def test_routine_messages_and_guideline_questions_pass(screen: LayeredScreen) -> None:
    assert screen.check("can I renew my repeat prescription for statins please").escalation is None
    assert screen.check("What is the first-line treatment for DKA?").escalation is None
    # a refusal from the rules stays a refusal when no layer escalates
    d = screen.check("Write me a short poem about night shifts.")
    assert d.escalation is None and d.refusal is not None


def test_the_classifier_needs_its_own_embedder_and_features(rules: RuleSet, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert build_screen(settings, rules, HashingEmbedder()).layers == ["rules", "vitals"]  # trained on MiniLM
    assert build_screen(settings, rules, None).layers == ["rules", "vitals"]
    old = EmergencyClassifier.load().model_copy(update={"embedder": HashingEmbedder.name})
    old.head = old.head.model_copy(update={"features": old.head.features[:-2]})
    (tmp_path / "triage").mkdir()
    (tmp_path / "triage" / "classifier.json").write_text(old.model_dump_json())
    with pytest.raises(CQAError, match="retrain"):
        build_screen(settings, rules, HashingEmbedder())


def test_screen_config_names_bad_placeholders(tmp_path: Path) -> None:
    bad = tmp_path / "screen.yaml"
    bad.write_text(SCREEN_CONFIG.read_text().replace("{why}", "{diagnosis}"))
    with pytest.raises(CQAError, match="diagnosis"):
        ScreenConfig.load(bad)


def test_threshold_is_chosen_for_recall_on_held_out_folds(classifier: EmergencyClassifier) -> None:
    cv = classifier.report["cross_validated_screen"]
    assert isinstance(cv, dict) and cv["recall"] == 1.0
    assert 0.0 < classifier.threshold < 1.0 and classifier.sentence_threshold >= classifier.threshold
    assert set(classifier.categories) == {"collapse_grey_gasping"}


def test_long_messages_are_scored_sentence_by_sentence() -> None:
    assert split_sentences("Hi. I am fine today thanks. But my dad just collapsed and is not breathing!") == [
        "I am fine today thanks.", "But my dad just collapsed and is not breathing!"]


def test_the_sentence_bar_is_chosen_with_the_message_bar_from_held_out_scores() -> None:
    labels = np.asarray([1.0] * 10 + [0.0] * 10)
    none = np.zeros(20, dtype=bool)
    # Sentences find nothing the whole message misses, but flag calm messages: sentence scoring is switched off.
    cv = np.asarray([0.9] * 10 + [0.1] * 10)
    noisy_parts = np.asarray([0.0] * 10 + [0.95] * 10)
    t_bar, s_bar = _choose_bars(cv, noisy_parts, labels, none, none, recall=1.0)
    assert s_bar > 1.0 and 0.1 < t_bar <= 0.9
    # Two emergencies show only in one sentence of a long message: a sentence bar that catches them is kept.
    cv = np.asarray([0.9] * 8 + [0.2] * 2 + [0.25] * 10)  # the message bar alone would flag every calm one
    parts = np.asarray([0.0] * 8 + [0.97] * 2 + [0.3] * 10)
    t_bar, s_bar = _choose_bars(cv, parts, labels, none, none, recall=1.0)
    assert 0.3 < s_bar <= 0.97 and t_bar > 0.25


def test_sentences_are_embedded_only_when_they_decide_or_explain(rules: RuleSet, classifier: EmergencyClassifier) -> None:
    embedded: list[str] = []

    class Counting(HashingEmbedder):
        def embed(self, texts: list[str]) -> list[list[float]]:
            embedded.extend(texts)
            return super().embed(texts)

    calm = "Hi there. I am fine today thanks. Can I renew my repeat prescription for statins?"
    off = EmergencyScreen(Counting(), classifier.model_copy(update={"sentence_threshold": 1.01}), rules.cues)
    assert not off.verdict(calm).escalate and embedded == [calm]  # the usual case: one embedding
    embedded.clear()
    on = EmergencyScreen(Counting(), classifier.model_copy(update={"sentence_threshold": 0.5}), rules.cues)
    on.verdict(calm)
    assert embedded == [calm, *split_sentences(calm)] and len(embedded) == 3


def test_retrain_writes_atomically_and_refuses_too_little_data(rules: RuleSet, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rows = [{"text": t, "label": 1, "category": "c"} for t in POSITIVES * 4] + [
        {"text": t, "label": 0, "category": "n"} for t in NEGATIVES * 4]
    (corpus / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "clf.json"
    model = retrain(HashingEmbedder(), BUNDLED_RULES_DIR, out=out, corpus=corpus)
    assert EmergencyClassifier.load(out).version == model.version and not out.with_suffix(".tmp").exists()
    (corpus / "a.jsonl").write_text('{"text": "x", "label": 1}\n{"label": 0}\n')
    with pytest.raises(CQAError, match="a.jsonl line 2"):
        corpus_examples(corpus)


def test_a_retrain_embeds_only_the_texts_it_has_not_seen(tmp_path: Path) -> None:
    embedded: list[str] = []

    class Counting(HashingEmbedder):
        def embed(self, texts: list[str]) -> list[list[float]]:
            embedded.extend(texts)
            return super().embed(texts)

    cache = tmp_path / "vectors.npz"
    first = cached_vectors(Counting(), ["chest pain now", "a sore knee", "chest pain now"], cache)
    assert embedded == ["chest pain now", "a sore knee"] and first.shape == (3, 384)
    again = cached_vectors(Counting(), ["a sore knee", "new example"], cache)
    assert embedded[2:] == ["new example"]
    exact = np.asarray(HashingEmbedder().embed(["new example"])[0])
    assert np.array_equal(again[0], first[1])  # read back: the very numbers the first run trained on
    assert float(again[1] @ exact) / float(np.linalg.norm(again[1])) > 0.9999  # stored as int8, one scale per row
    for damaged in (b"not an npz", b"PK\x03\x04 truncated zip"):  # a damaged cache is rebuilt, never fatal
        cache.write_bytes(damaged)
        assert cached_vectors(Counting(), ["a sore knee"], cache).shape == (1, 384)
    # Vectors shipped beside the shipped head seed a fresh install's cache; the seed itself is never written.
    seed = tmp_path / "seed.npz"
    cached_vectors(Counting(), ["seeded text"], seed)
    seeded_bytes, embedded[:] = seed.read_bytes(), []
    fresh_cache = tmp_path / "admin" / "vectors.npz"
    cached_vectors(Counting(), ["seeded text", "admin's new example"], fresh_cache, seed)
    assert embedded == ["admin's new example"] and seed.read_bytes() == seeded_bytes and fresh_cache.exists()


def test_the_shipped_vectors_cover_the_shipped_corpus_so_a_first_retrain_embeds_nothing_new() -> None:
    """Editing the corpus or the rules' examples without retraining (`python -m core.emergency_classifier`,
    which refreshes data/triage/training_vectors.npz) fails here, not as a slow first retrain for an admin."""
    with np.load(TRIAGE_DIR / VECTOR_CACHE) as data:
        shipped = {k.tobytes() for k in data["keys"]}
    texts = [e.text for e in corpus_examples() + rule_examples(BUNDLED_RULES_DIR)]
    texts += sentence_parts(texts)[1]
    embedder = EmergencyClassifier.load().embedder
    missing = [t for t in texts if vector_key(embedder, t) not in shipped]
    assert not missing, f"{len(missing)} training texts have no shipped vector, e.g. {missing[:3]}"


def test_shipped_classifier_covers_the_categories_and_reports_its_training() -> None:
    model = EmergencyClassifier.load()
    assert len(model.categories) >= 80 and model.embedder == "all-MiniLM-L6-v2"
    assert int(str(model.report["examples"])) >= 3000
    sources = model.report["sources"]
    assert isinstance(sources, dict) and not any("blind" in s for s in sources)


def test_screen_stamp_changes_when_the_classifier_is_retrained(tmp_path: Path) -> None:
    from core.safety.triage import screen_stamp

    settings = Settings(data_dir=tmp_path)
    before = screen_stamp(settings)
    (tmp_path / "triage").mkdir()
    (tmp_path / "triage" / "classifier.json").write_text(EmergencyClassifier.load().model_dump_json())
    assert screen_stamp(settings) != before
