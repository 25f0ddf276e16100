"""Train the evidence scorers (passage reranker and answer-sentence scorer) of `core.answering.evidence` on the
team's evaluation set and write `data/answering/evidence_model.json` with its training report.

    .venv/bin/python scripts/train_evidence.py [CASES.jsonl ...] [--out PATH]

Labels come from the cases themselves, not from anyone reading the scorer's output: a passage is
positive when it is the case's source (file, section heading and page); a sentence is positive when
it contains one of the case's expected facts. Unanswerable ("refuse") cases give negative sentences,
which is what calibrates the answer threshold. The report gives 5-fold cross-validated figures (each
question scored by a model that never saw it) next to plain hybrid search. Held-out sets
(`data/eval/blind/`) must never be passed here: they are for `core.eval` only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.answering.evidence import (  # noqa: E402
    ANSWERABLE_FEATURES,
    EVIDENCE_MODEL,
    PASSAGE_FEATURES,
    READER_FEATURES,
    SENTENCE_FEATURES,
    EvidenceModel,
    QuestionCues,
    Scored,
    SentenceCache,
    answer_gap,
    answerability_row,
    cited_text,
    passage_matrix,
    pick_quotes,
    read_order,
    reread,
    sentence_matrix,
    sentence_texts,
    with_list,
)
from core.answering.relevance import unaddressed_terms  # noqa: E402
from core.answering.retrieval import _passage  # noqa: E402
from core.bootstrap import corpus_files  # noqa: E402
from core.evaluation.facts import contains_fact, holds_source  # noqa: E402
from core.learning import LinearScorer, fit_logistic  # noqa: E402
from core.library.embedding import MiniLMEmbedder  # noqa: E402
from core.schema import RetrievedPassage  # noqa: E402
from core.services import Services, build_services  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402

CANDIDATES = 25
TOP_PASSAGES = 5
FOLDS = 5
MAX_FALSE_REFUSALS = 0.08
HEAD_MAX_FALSE_REFUSALS = 0.20
HEAD_GATE = 0.30  # below it a question is off-topic for the library: the head decides above it
MAX_QUOTES = 3
QUOTE_MARGIN = 0.25
READER_WEIGHT = 1.0
READER_OOF = REPO_ROOT / "data" / "answering" / "reader_oof.json"


@dataclass
class Reads:
    """The reader's held-out scores (`scripts/train_reader.py --cv`), by question and sentence."""

    scores: dict[str, float]
    weight: float = READER_WEIGHT
    reads: int = 8

    def of(self, case_id: str, texts: list[str]) -> np.ndarray:
        # Every sentence read in cross-validation has a held-out score (same folds, same scorers as
        # train_reader.py); anything else would read as 0.5, which adds nothing.
        return np.asarray([self.scores.get(pair_key(case_id, t), 0.5) for t in texts])


def pair_key(case_id: str, text: str) -> str:
    return f"{case_id}:{hashlib.sha1(text.encode()).hexdigest()[:16]}"


@dataclass
class Case:
    id: str
    question: str
    expect: str
    sources: list[dict[str, Any]]
    facts: list[str]
    scored: list[Scored]
    gate: float  # best passage cosine among the hybrid top 5 (the evidence gate's input)


def _candidates(svc: Services, cache: SentenceCache, question: str) -> tuple[list[Scored], float]:
    vector = svc.embedder.embed_query(question)
    where = svc.catalog.search_filter(False)
    assert where is not None, "the demo corpus was not indexed"
    passages = [_passage(h, None) for h in svc.store.search(question, vector, CANDIDATES, where)]
    q = np.asarray(vector, dtype=np.float32)
    scored = []
    for rank, (p, vec) in enumerate(zip(passages, cache.get(passages), strict=True)):
        scored.append(Scored(p, vec, vec.sentences @ q, float(vec.heading @ q), float(vec.passage @ q), rank))
    gate = max((s.passage_cos for s in scored[:TOP_PASSAGES]), default=0.0)
    return scored, gate


def _passage_rows(case: Case) -> tuple[np.ndarray, np.ndarray]:
    rows = passage_matrix(case.scored, QuestionCues.of(case.question))
    labels = [float(any(holds_source(s.passage, src) for src in case.sources)) for s in case.scored]
    return rows, np.asarray(labels)


def _rank(case: Case, model: LinearScorer) -> list[Scored]:
    rows, _ = _passage_rows(case)
    for s, v in zip(case.scored, model.score(rows), strict=True):
        s.score = float(v)
    return sorted(case.scored, key=lambda s: (-s.score, s.rank))


def _sentence_rows(case: Case, ranked: list[Scored]) -> tuple[np.ndarray, np.ndarray, list[str], list[RetrievedPassage]]:
    rows = sentence_matrix(case.question, ranked[:TOP_PASSAGES])
    labels, texts, owners = [], [], []
    for s in ranked[:TOP_PASSAGES]:
        for j in range(len(s.vectors.spans)):
            whole = with_list(s.passage.text, s.vectors.spans, j)
            text = s.passage.text[whole.start : whole.end]
            labels.append(float(case.expect == "answer" and any(contains_fact(text, f) for f in case.facts)))
            texts.append(text)
            owners.append(s.passage)
    return rows, np.asarray(labels), texts, owners


def _fit(train: list[Case]) -> tuple[LinearScorer, LinearScorer]:
    answer = [c for c in train if c.expect == "answer" and c.sources]
    pr, pl = zip(*(_passage_rows(c) for c in answer), strict=True)
    passage = fit_logistic(np.vstack(pr), np.concatenate(pl), PASSAGE_FEATURES)
    srows, slabels = [], []
    for c in train:
        if c.expect == "answer" and not c.facts:
            continue
        rows, labels, _, _ = _sentence_rows(c, _rank(c, passage))
        srows.append(rows)
        slabels.append(labels)
    sentence = fit_logistic(np.vstack(srows), np.concatenate(slabels), SENTENCE_FEATURES)
    return passage, sentence


@dataclass
class Outcome:
    case: Case
    hit1_hybrid: bool
    hit5_hybrid: bool
    hit1: bool
    hit5: bool
    best: float
    fact_in_top3: bool
    on_topic: bool  # the topic-word check and `answer_gap` pass (the decision without a head)
    gap: bool  # `answer_gap` alone objects (a hard check, also with the head)
    row: list[float]  # head_features()
    confidence: float = 0.0  # the answerability head's cross-validated probability


def _evaluate(case: Case, passage: LinearScorer, sentence: LinearScorer, reader: Reads | None = None) -> Outcome:
    def hit(items: list[Scored], n: int) -> bool:
        return any(holds_source(s.passage, src) for s in items[:n] for src in case.sources)

    hybrid = sorted(case.scored, key=lambda s: s.rank)
    ranked = _rank(case, passage)
    top = ranked[:TOP_PASSAGES]
    rows = sentence_matrix(case.question, top)
    probs = sentence.score(rows) if len(rows) else np.zeros(0)
    read_best = 0.0
    if reader is not None and len(probs):
        idx = read_order(probs, reader.reads)
        texts = sentence_texts(top)
        reads = reader.of(case.id, [texts[k] for k in idx])
        probs, read_best = reread(probs, idx, reads, reader.weight), float(reads.max())
    quotes = pick_quotes(top, probs, 0.0, MAX_QUOTES, QUOTE_MARGIN)
    said = [q.sentence for q in quotes]
    cited = [cited_text(top[q.n - 1].passage) for q in quotes]
    gap = answer_gap(case.question, said, cited) is not None
    names = head_features(reader)
    row = answerability_row(case.question, top, probs, said, cited) + [read_best] * (reader is not None) if said \
        else [0.0] * len(names)
    return Outcome(
        case, hit(hybrid, 1), hit(hybrid, 5), hit(ranked, 1), hit(ranked, 5),
        float(probs.max()) if len(probs) else 0.0,
        any(contains_fact(t, f) for t in said for f in case.facts),
        not unaddressed_terms(case.question, " ".join(said), cited) and not gap,
        gap, row,
    )


def by_fold(cases: list[Case]) -> Iterator[tuple[Case, LinearScorer, LinearScorer]]:
    """Each case with the first-stage scorers (passage, sentence) fitted without its fold: the 5 folds of
    the cross-validated report, in fold order."""
    folds = np.random.default_rng(7).permutation(len(cases)) % FOLDS
    for k in range(FOLDS):
        passage, sentence = _fit([c for c, f in zip(cases, folds, strict=True) if f != k])
        for c, f in zip(cases, folds, strict=True):
            if f == k:
                yield c, passage, sentence


def head_features(reader: Reads | None) -> tuple[str, ...]:
    return (*ANSWERABLE_FEATURES, *READER_FEATURES) if reader is not None else ANSWERABLE_FEATURES


def _threshold(outcomes: list[Outcome], gate: float, value: Callable[[Outcome], float],
               share: float = MAX_FALSE_REFUSALS) -> float:
    """The highest threshold on `value` that refuses at most MAX_FALSE_REFUSALS of answerable questions
    (counting those the evidence gate and the hard checks refuse anyway)."""
    answer = sorted(value(o) for o in outcomes if o.case.expect == "answer" and o.case.gate >= gate and o.on_topic)
    n_answer = sum(o.case.expect == "answer" for o in outcomes)
    allowed = int(share * n_answer) - (n_answer - len(answer))
    return max(0.0, answer[max(allowed, 0)] - 1e-4) if answer else 0.5


def _fit_answerable(outcomes: list[Outcome], gate: float, share: float = MAX_FALSE_REFUSALS,
                    names: tuple[str, ...] = ANSWERABLE_FEATURES) -> tuple[LinearScorer, float, list[Outcome]]:
    """The answerability head, fitted on the cross-validated first-stage features (stacking): its own
    5-fold probabilities fill `confidence`, which sets the threshold."""
    usable = [o for o in outcomes if o.case.gate >= gate and not o.gap]
    rows = np.asarray([o.row for o in usable])
    labels = np.asarray([float(o.case.expect == "answer") for o in usable])
    folds = np.random.default_rng(13).permutation(len(usable)) % FOLDS
    for k in range(FOLDS):
        head = fit_logistic(rows[folds != k], labels[folds != k], names)
        for o, p in zip([u for u, f in zip(usable, folds, strict=True) if f == k], head.score(rows[folds == k]), strict=True):
            o.confidence = float(p)
    head = fit_logistic(rows, labels, names)
    threshold = _answerable_threshold(outcomes, gate, share)
    return head, threshold, outcomes


def head_shows(o: Outcome, gate: float, threshold: float) -> bool:
    """The head's decision: past the evidence gate, no hard gap, and confident enough."""
    return o.case.gate >= gate and not o.gap and o.confidence >= threshold


def _answerable_threshold(outcomes: list[Outcome], gate: float, share: float) -> float:
    """The head's threshold: the one that maximises (answerable answered + unanswerable refused), both
    cross-validated, among those refusing at most `share` of the answerable questions. A refusal still
    shows the nearest sections, so a missed answer costs a look; a near miss shown as the answer can mislead."""
    ans = [o for o in outcomes if o.case.expect == "answer"]
    ref = [o for o in outcomes if o.case.expect == "refuse"]

    def shown(o: Outcome, t: float) -> bool:
        return head_shows(o, gate, t)

    best_t, best_j = 0.0, -1.0
    for t in sorted({0.0, *(o.confidence for o in outcomes)}):
        answered = sum(shown(o, t) for o in ans) / max(len(ans), 1)
        if answered < 1.0 - share:
            break
        j = answered + sum(not shown(o, t) for o in ref) / max(len(ref), 1)
        if j > best_j:
            best_t, best_j = t, j
    return max(0.0, best_t - 1e-4)


def _summary(outcomes: list[Outcome], shown: Callable[[Outcome], bool]) -> dict[str, float]:
    ans = [o for o in outcomes if o.case.expect == "answer" and o.case.sources]
    ref = [o for o in outcomes if o.case.expect == "refuse"]
    with_facts = [o for o in ans if o.case.facts]

    def rate(xs: list[bool]) -> float:
        return round(sum(xs) / len(xs), 3) if xs else float("nan")

    return {
        "answerable": len(ans), "unanswerable": len(ref),
        "hit@1_hybrid": rate([o.hit1_hybrid for o in ans]), "hit@1_reranked": rate([o.hit1 for o in ans]),
        "hit@5_hybrid": rate([o.hit5_hybrid for o in ans]), "hit@5_reranked": rate([o.hit5 for o in ans]),
        "answered": rate([shown(o) for o in ans]),
        "fact_in_quotes": rate([shown(o) and o.fact_in_top3 for o in with_facts]),
        "unanswerable_refused": rate([not shown(o) for o in ref]),
    }


def _retrieve_all(raw: list[dict[str, Any]]) -> list[Case]:
    with tempfile.TemporaryDirectory() as tmp:
        svc = build_services(Settings(data_dir=Path(tmp) / "var", answer={"evidence_first": False}))
        try:
            svc.library.ingest_files(corpus_files(REPO_ROOT / "data" / "guidelines"))  # sealed: fast searches
            cache = SentenceCache(svc.embedder)
            cases = []
            for r in raw:
                question = svc.retriever.search_text(r["question"])  # as the pipeline searches and scores it
                scored, gate = _candidates(svc, cache, question)
                cases.append(Case(r["id"], question, r["expect"], r.get("sources") or [], r.get("facts") or [],
                                  scored, gate))
        finally:
            svc.close()
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", type=Path, default=[
        REPO_ROOT / "data" / "eval" / "cases.jsonl", REPO_ROOT / "data" / "answering" / "train_cases.jsonl",
        REPO_ROOT / "data" / "answering" / "train_cases_part2.jsonl",
        REPO_ROOT / "data" / "answering" / "train_cases_part3.jsonl",
        REPO_ROOT / "data" / "answering" / "train_cases_part4.jsonl",
        REPO_ROOT / "data" / "answering" / "train_cases_part5.jsonl",
        REPO_ROOT / "data" / "answering" / "train_cases_part6.jsonl"],
        help="Team-written case files (default: the seven the shipped model was trained on).")
    parser.add_argument("--out", type=Path, default=EVIDENCE_MODEL)
    parser.add_argument("--features", type=Path, help="Pickle of the retrieved candidates: reused if present, "
                        "written if not (for trying feature or threshold changes without re-embedding).")
    parser.add_argument("--gate", type=float, default=HEAD_GATE,
                        help="Evidence gate (best passage cosine) in front of the answerability head (default %(default)s).")
    parser.add_argument("--max-false-refusals", type=float, default=MAX_FALSE_REFUSALS,
                        help="Share of answerable training questions the thresholds may refuse (default %(default)s).")
    parser.add_argument("--head-max-false-refusals", type=float, default=HEAD_MAX_FALSE_REFUSALS,
                        help="Cap on answerable training questions the head may refuse (default %(default)s).")
    parser.add_argument("--no-answerable-head", action="store_true",
                        help="Decide by the sentence threshold and the topic-word check, as evidence-v1 did.")
    parser.add_argument("--reader-scores", type=Path, default=READER_OOF,
                        help="The reader's held-out scores (scripts/train_reader.py --cv; default %(default)s).")
    parser.add_argument("--no-reader", action="store_true", help="Train without the reader (the earlier design).")
    args = parser.parse_args(argv)
    if any("blind" in str(p) for p in args.cases):
        print("error: held-out (blind) sets are for evaluation only, never for training.", file=sys.stderr)
        return 2
    raw = [json.loads(line) for p in args.cases for line in p.read_text().splitlines() if line.strip()]
    raw = [r for r in raw if r["expect"] in ("answer", "refuse")]
    settings = Settings()
    if args.features and args.features.exists():
        cases = pickle.loads(args.features.read_bytes())
    else:
        cases = _retrieve_all(raw)
        if args.features:
            args.features.write_bytes(pickle.dumps(cases))
    reader = None
    if not args.no_reader:
        try:
            reader = Reads(json.loads(args.reader_scores.read_text(encoding="utf-8"))["scores"])
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot read the reader's held-out scores {args.reader_scores} ({exc}); run "
                  "scripts/train_reader.py --cv, or pass --no-reader", file=sys.stderr)
            return 2
    gate = settings.answer.evidence_threshold
    held_out = [_evaluate(c, passage, sentence, reader) for c, passage, sentence in by_fold(cases)]
    share = args.max_false_refusals
    cv_threshold = _threshold(held_out, gate, lambda o: o.best, share)
    head_gate = args.gate
    head, head_threshold, _ = _fit_answerable(held_out, head_gate, args.head_max_false_refusals, head_features(reader))
    passage, sentence = _fit(cases)
    # The sentence threshold serves only without a head, and so without the reader (`EvidenceModel.for_embedder`).
    final = [_evaluate(c, passage, sentence) for c in cases]
    threshold = round(_threshold(final, gate, lambda o: o.best, share), 4)

    def by_sentence(t: float) -> Callable[[Outcome], bool]:
        return lambda o: o.case.gate >= gate and o.best >= t and o.on_topic

    def by_head(o: Outcome) -> bool:
        return head_shows(o, head_gate, head_threshold)

    report = {
        "trained_on": [str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p) for p in args.cases],
        "cases": len(cases), "candidates": CANDIDATES, "top_passages": TOP_PASSAGES,
        "max_false_refusals": share, "evidence_gate": gate,
        "reader": {"weight": reader.weight, "reads": reader.reads, "scores": str(args.reader_scores.name)} if reader else None,
        "cross_validated": {"folds": FOLDS, "threshold": round(cv_threshold, 4), **_summary(held_out, by_sentence(cv_threshold))},
        "cross_validated_with_answerable_head": {"gate": head_gate, "threshold": round(head_threshold, 4),
                                                 "threshold_rule": "max(answered + refused), refusing at most "
                                                 f"{args.head_max_false_refusals:.0%} of answerable questions",
                                                 **_summary(held_out, by_head)},
        "training_fit": _summary(final, by_sentence(threshold)),
    }
    use_head = not args.no_answerable_head
    # v4: the v3 design trained on 1,624 questions (parts 5 and 6 added), with a reader trained on 1,408 of them.
    version = ("evidence-v4" if reader is not None else "evidence-v2") if use_head else "evidence-v1"
    model = EvidenceModel(version=version, passage=passage, sentence=sentence,
                          answer_threshold=threshold, candidates=CANDIDATES, embedder=MiniLMEmbedder.name,
                          max_quotes=MAX_QUOTES, quote_margin=QUOTE_MARGIN,
                          answerable=head if use_head else None, answerable_threshold=round(head_threshold, 4),
                          gate=head_gate if use_head else None,
                          reader_weight=reader.weight if reader is not None else None,
                          reader_reads=reader.reads if reader is not None else 8,
                          report=report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(model.model_dump_json(indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    print("passage weights:", dict(zip(passage.features, passage.weights, strict=True)))
    print("sentence weights:", dict(zip(sentence.features, sentence.weights, strict=True)))
    print("answerable weights:", dict(zip(head.features, head.weights, strict=True)))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
