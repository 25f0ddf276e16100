"""The reader (`core.answering.reader`): how its scores reorder the best sentences and feed the
answerability head (with a fake reader), and the shipped cross-encoder itself (real weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.answering.evidence import READER_FEATURES, EvidenceSelector, read_order, reread
from core.errors import CQAError
from core.learning import LinearScorer
from core.library.embedding import HashingEmbedder
from core.schema import RetrievedPassage
from tests.helpers import evidence_model, evidence_model_with_head

TEXT = ("Adrenaline is the first-line treatment. Give 0.5 mg IM into the anterolateral thigh.\n"
        "- Repeat after 5 minutes if there is no improvement.\n"
        "Refer all patients to the allergy clinic after discharge.")


def _passage() -> RetrievedPassage:
    return RetrievedPassage(chunk_id="c1", doc_id="d1", title="Anaphylaxis", file_name="anaphylaxis.md", text=TEXT,
                            section=["3. Treatment", "3.1 Adrenaline"], score_kind="rrf", score=0.5)


class FakeReader:
    """Reads 'allergy clinic' as the answer, everything else as not."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        self.calls.append(sentences)
        return np.asarray([0.99 if "allergy clinic" in s else 0.01 for s in sentences])


def test_reread_adds_the_readers_log_odds_and_keeps_unread_sentences_below() -> None:
    probs = np.asarray([0.9, 0.6, 0.5, -1.0, 0.55])
    idx = read_order(probs, 3)
    assert list(idx) == [0, 1, 4]  # the best three; a sentence ruled out (-1) is never read
    out = reread(probs, idx, np.asarray([0.1, 0.9, 0.5]), 1.0)
    assert out[1] > out[0]  # the reader's yes lifts it over the scorer's first choice
    assert out[4] == pytest.approx(0.55)  # a reading of 0.5 adds nothing
    assert out[2] < min(out[idx]) and out[3] == -1.0
    assert list(read_order(np.asarray([-1.0, -1.0]), 8)) == []


def test_the_reader_reorders_the_quotes_and_feeds_the_head() -> None:
    head = evidence_model_with_head(threshold=0.0)
    assert head.answerable is not None
    names = [*head.answerable.features, *READER_FEATURES]
    weights = [0.0] * (len(names) - 1) + [5.0]
    model = head.model_copy(update={
        "reader_weight": 1.0, "reader_reads": 8,
        "answerable": LinearScorer(features=names, weights=weights, bias=-2.5, mean=[0.0] * len(names),
                                   scale=[1.0] * len(names))})
    reader = FakeReader()
    selector = EvidenceSelector(HashingEmbedder(), model, reader=reader)
    q = "Where should patients be referred after anaphylaxis?"
    chosen = selector.choose(q, selector.rescore(q, selector.embed_query(q), [_passage()]))
    assert reader.calls and all(s.startswith("3.1 Adrenaline: ") for s in reader.calls[0])  # read under its heading
    assert chosen.quotes[0].sentence == "Refer all patients to the allergy clinic after discharge."
    # the head's only weight is the reader's best score: 0.99 gives sigmoid(5 * 0.99 - 2.5)
    assert chosen.confidence == pytest.approx(1 / (1 + np.exp(-(5 * 0.99 - 2.5))), abs=1e-3)


def test_scorers_trained_with_the_reader_need_one_and_drop_it_with_another_embedder() -> None:
    model = evidence_model().model_copy(update={"reader_weight": 1.0})
    with pytest.raises(CQAError, match="reader"):
        EvidenceSelector(HashingEmbedder(), model)
    assert model.for_embedder("hashing-fake").reader_weight is None


def test_the_shipped_reader_reads_the_dose_sentence_as_the_answer() -> None:
    from core.answering.evidence import EvidenceModel
    from core.answering.reader import shared_reader

    assert EvidenceModel.load().reader_weight is not None  # the shipped scorers use it
    reader = shared_reader()
    q = "What is the adult IM adrenaline dose in anaphylaxis?"
    scores = reader.score(q, [
        "3.1 Adrenaline: Give adrenaline 0.5 mg IM (0.5 mL of 1 mg/mL) into the anterolateral thigh as soon as "
        "anaphylaxis is suspected.",
        "5. Follow-up: Refer all patients to an allergy clinic after discharge.",
        "2.1 Diagnosis: Check capillary blood glucose in anyone with symptoms of hypoglycaemia.",
    ])
    assert scores.shape == (3,) and scores[0] > 0.5 > max(scores[1:])
    assert reader.score(q, []).shape == (0,)


def test_building_the_services_again_reuses_the_loaded_reader() -> None:
    from core.answering.reader import shared_reader

    assert shared_reader() is shared_reader()


def test_an_unreadable_reader_file_is_a_clear_error(tmp_path: Path) -> None:
    from core.answering.reader import Reader

    bad = tmp_path / "reader.safetensors"
    bad.write_bytes(b"not weights")
    with pytest.raises(CQAError, match="cannot be read"):
        Reader(bad)
    with pytest.raises(CQAError, match="cannot be read"):
        Reader(tmp_path / "missing.safetensors")
