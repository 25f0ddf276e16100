"""The adapter training dataset: targets cite the right passages, splits are by document, builds are
deterministic, and bad libraries get clear errors. Built from the real demo corpus (parsed and
chunked in-process) with the hashing embedder, so no model or Milvus is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.adapters.dataset import (
    NOT_IN_GUIDELINES,
    Dataset,
    build_dataset,
    load_examples,
    passage_of,
    red_flags_from_rules,
)
from core.answering.citations import verify
from core.answering.prompts import BUILTIN_PROMPT, build_messages
from core.errors import CQAError
from core.evaluation.adapter_card import judge, passages_of
from core.library.embedding import HashingEmbedder
from core.library.store import StoredChunk
from core.safety.rules import RuleSet
from tests.conftest import REPO
from tests.helpers import demo_chunks

GUIDELINES = REPO / "data" / "guidelines"




def _flat(text: str) -> str:
    return " ".join(text.replace("**", "").split()).rstrip(".")


@pytest.fixture(scope="module")
def chunks() -> list[StoredChunk]:
    return demo_chunks()


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load(REPO / "data" / "rules")


@pytest.fixture(scope="module")
def dataset(chunks: list[StoredChunk], rules: RuleSet) -> Dataset:
    flags, clarifications = red_flags_from_rules(rules)
    return build_dataset(chunks, HashingEmbedder().embed, red_flags=flags, clarifications=clarifications, seed=0)


def test_answer_targets_cite_the_passage_they_were_made_from(dataset: Dataset, chunks: list[StoredChunk]) -> None:
    by_id = {c.chunk_id: c for c in chunks}
    answers = [e for e in dataset.examples if e.kind == "answer"]
    assert len(answers) >= 100
    for e in answers:
        assert e.cited and len(e.passages) == 3
        cited = by_id[e.passages[e.cited[0] - 1]]
        assert cited.file_name == e.document
        first_sentence = e.target.split(f" [{e.cited[0]}]")[0]
        assert _flat(first_sentence) in _flat(cited.text)  # quoted from the cited passage, not another
        check = verify(e.target, passages_of(e))
        assert check.all_supported, (e.target, check.sentences)


def test_messages_are_laid_out_exactly_as_the_pipeline_does(dataset: Dataset, chunks: list[StoredChunk]) -> None:
    by_id = {c.chunk_id: c for c in chunks}
    e = dataset.examples[0]
    expected = build_messages(BUILTIN_PROMPT, e.question, [passage_of(by_id[i]) for i in e.passages])
    assert [m["content"] for m in e.messages[:-1]] == [m.content for m in expected]
    assert e.messages[-1]["role"] == "assistant"


def test_refusals_come_without_the_source_document(dataset: Dataset, chunks: list[StoredChunk]) -> None:
    by_id = {c.chunk_id: c for c in chunks}
    refusals = [e for e in dataset.examples if e.kind == "refuse"]
    assert len(refusals) >= 30
    for e in refusals:
        assert e.target == NOT_IN_GUIDELINES and not e.cited
        assert all(by_id[i].file_name != e.document for i in e.passages)
    kinds = {e.kind for e in dataset.examples}
    assert kinds == {"answer", "refuse", "escalate", "clarify"}


def test_red_flag_targets_start_with_the_rules_urgent_care_message(dataset: Dataset, rules: RuleSet) -> None:
    flags = [e for e in dataset.examples if e.kind == "escalate"]
    assert len(flags) >= 10
    for e in flags:
        decision = rules.check(e.question)
        assert decision.escalation is not None
        assert e.target.startswith(decision.escalation.message)
        assert judge(e, e.target, 0.1).escalated_first
    clarify = [e for e in dataset.examples if e.kind == "clarify"]
    assert clarify and all(rules.check(e.question).clarify == e.target for e in clarify)


def test_split_is_by_document_and_validation_documents_are_unseen(dataset: Dataset) -> None:
    report = dataset.report
    assert report.validation_documents and not set(report.validation_documents) & set(report.train_documents)
    train_docs = {e.document for e in dataset.split("train") if e.document}
    val_docs = {e.document for e in dataset.split("validation") if e.document}
    assert val_docs == set(report.validation_documents)
    assert not train_docs & val_docs
    assert report.counts["validation/answer"] > 0 and report.counts["train/answer"] > 0


def test_deterministic_deduplicated_and_seeded(chunks: list[StoredChunk], dataset: Dataset, tmp_path: Path) -> None:
    again = build_dataset(chunks, HashingEmbedder().embed, seed=0)
    base_ids = [e.id for e in dataset.examples if e.kind in ("answer", "refuse")]
    assert [e.id for e in again.examples if e.kind in ("answer", "refuse")] == base_ids
    other = build_dataset(chunks, HashingEmbedder().embed, seed=1)
    assert [e.id for e in other.examples] != [e.id for e in again.examples]
    keys = [(e.question.lower(), e.target) for e in dataset.examples]
    assert len(keys) == len(set(keys))
    files = dataset.save(tmp_path / "ds")
    assert [e.id for e in load_examples(files["train"])] == [e.id for e in dataset.split("train")]
    assert json.loads(files["report"].read_text())["seed"] == 0


def test_libraries_too_small_to_learn_from_are_refused_clearly(chunks: list[StoredChunk]) -> None:
    embed = HashingEmbedder().embed
    with pytest.raises(CQAError, match="No guidelines are indexed"):
        build_dataset([], embed)
    one_doc = [c for c in chunks if c.file_name == "anaphylaxis.md"]
    with pytest.raises(CQAError, match="at least 2 documents"):
        build_dataset(one_doc, embed)
    two_small = [c for c in chunks if c.file_name == "anaphylaxis.md"][:2] + [
        c for c in chunks if c.file_name == "hypoglycaemia.md"][:2]
    with pytest.raises(CQAError, match="Too little data"):
        build_dataset(two_small, embed, off_library=())


def test_judge_scores_outputs_like_the_pipeline(dataset: Dataset) -> None:
    answer = next(e for e in dataset.examples if e.kind == "answer")
    assert judge(answer, answer.target, 0.5).verified
    wrong = judge(answer, "Give 50 mg of something else [1].", 0.5)
    assert wrong.format_valid and not wrong.verified
    assert judge(answer, NOT_IN_GUIDELINES, 0.5).declined
    assert not judge(answer, "I think it depends.", 0.5).format_valid
