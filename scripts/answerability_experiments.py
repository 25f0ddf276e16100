"""Cross-validated experiments on the answerability head (issue 10's near misses), team data only.

    .venv/bin/python scripts/train_evidence.py --features /tmp/feats.pkl --out /tmp/evidence_model.json
    .venv/bin/python scripts/answerability_experiments.py /tmp/feats.pkl [--cross-encoder]

Reuses the retrieved candidates `train_evidence.py --features` pickled, runs its 5-fold first stage,
then compares the head's held-out AUC and "unanswerable refused at 80/85/90 % of answerable answered"
with extra inputs: five word-level features (topic words missing from all 25 candidates, IDF-weighted
missing share, the rarest missing word, words missing from the best sentence, words the library never
uses), question–sentence pair features (product of their MiniLM embeddings), and with
`--cross-encoder` a MiniLM cross-encoder fine-tuned per fold on (question, best quote) pairs (~30 min
on 2 cores). Nothing here is used by the app; the results are in docs/answer-pipeline.md. Held-out
(blind) sets are never read.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_evidence as te  # noqa: E402

from core.answering.evidence import (  # noqa: E402
    ANSWERABLE_FEATURES,
    _stems,
    cited_text,
    heading_text,
    pick_quotes,
    sentence_matrix,
    with_list,
)
from core.answering.relevance import topic_terms  # noqa: E402
from core.evaluation.facts import contains_fact  # noqa: E402
from core.learning import fit_logistic  # noqa: E402
from core.library.embedding import MiniLMEmbedder, bundled_minilm_dir  # noqa: E402

WORD_FEATURES = ("missing_in_candidates", "idf_missing_share", "max_idf_missing", "missing_in_best_sentence",
                 "absent_from_library")


def held_out(cases: list[Any]) -> list[Any]:
    """The first stage's 5-fold outcomes (as train_evidence.py computes them), with the quotes kept."""
    out = []
    for c, passage, sentence in te.by_fold(cases):
        o = te._evaluate(c, passage, sentence)
        top = te._rank(c, passage)[: te.TOP_PASSAGES]
        rows = sentence_matrix(c.question, top)
        probs = sentence.score(rows) if len(rows) else np.zeros(0)
        quotes = pick_quotes(top, probs, 0.0, te.MAX_QUOTES, te.QUOTE_MARGIN)
        o.said = [q.sentence for q in quotes]
        o.cited = [cited_text(top[q.n - 1].passage) for q in quotes]
        o.heads = [heading_text(top[q.n - 1].passage) for q in quotes]
        o.others = [
            (heading_text(s.passage), s.passage.text[w.start : w.end])
            for s in top for j in range(len(s.vectors.spans))
            if (w := with_list(s.passage.text, s.vectors.spans, j))
            and not any(contains_fact(s.passage.text[w.start : w.end], fact) for fact in c.facts)
        ]
        out.append(o)
    return out


def word_features(usable: list[Any], cases: list[Any]) -> np.ndarray:
    library = {s.passage.chunk_id: s.passage for c in cases for s in c.scored}
    n = len(library)
    df: dict[str, int] = {}
    for p in library.values():
        for w in _stems(heading_text(p) + "\n" + p.text):
            df[w] = df.get(w, 0) + 1

    def idf(word: str) -> float:
        return math.log((n + 1) / (1 + df.get(word[:6], 0)))

    rows = []
    for o in usable:
        terms = topic_terms(o.case.question)
        if not terms:
            rows.append([0.0] * len(WORD_FEATURES))
            continue
        candidates = _stems(" ".join(heading_text(s.passage) + "\n" + s.passage.text for s in o.case.scored))
        quoted = _stems(" ".join(o.said) + "\n" + "\n".join(o.cited))
        best = _stems(o.said[0]) if o.said else set()
        missing = [t for t in terms if t[:6] not in quoted]
        rows.append([
            sum(t[:6] not in candidates for t in terms) / len(terms),
            sum(idf(t) for t in missing) / (sum(idf(t) for t in terms) or 1.0),
            max((idf(t) for t in missing), default=0.0) / math.log(n + 1),
            sum(t[:6] not in best for t in terms) / len(terms),
            sum(df.get(t[:6], 0) == 0 for t in terms) / len(terms),
        ])
    return np.asarray(rows)


def cross_encoder_scores(usable: list[Any], labels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """MiniLM fine-tuned per fold as a cross-encoder on (question, "heading: best quote"), plus one
    non-answer sentence of the same passages per answerable question as a negative."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = AutoModel.from_pretrained(str(bundled_minilm_dir()))
            self.out = torch.nn.Linear(384, 1)

        def forward(self, batch: Any) -> Any:
            return self.out(self.enc(**batch).last_hidden_state[:, 0]).squeeze(-1)

    def encode(pairs: list[tuple[str, str]]) -> Any:
        return tok([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=128, padding=True,
                   return_tensors="pt")

    rng = np.random.default_rng(0)
    scores = np.zeros(len(usable))
    for k in range(5):
        torch.manual_seed(k)
        model = CrossEncoder()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
        pairs: list[tuple[tuple[str, str], float]] = []
        for o, label, f in zip(usable, labels, folds, strict=True):
            if f == k:
                continue
            pairs.append(((o.case.question, f"{o.heads[0]}: {o.said[0]}"), float(label)))
            if label == 1 and o.others:
                head, text = o.others[int(rng.integers(len(o.others)))]
                pairs.append(((o.case.question, f"{head}: {text}"), 0.0))
        model.train()
        for _ in range(3):
            order = rng.permutation(len(pairs))
            for i in range(0, len(pairs), 16):
                batch = [pairs[j] for j in order[i : i + 16]]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    model(encode([p for p, _ in batch])), torch.tensor([y for _, y in batch], dtype=torch.float32))
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        idx = np.where(folds == k)[0]
        with torch.inference_mode():
            for i in range(0, len(idx), 32):
                part = idx[i : i + 32]
                batch_pairs = [(usable[j].case.question, f"{usable[j].heads[0]}: {usable[j].said[0]}") for j in part]
                scores[part] = torch.sigmoid(model(encode(batch_pairs))).numpy()
        print(f"cross-encoder fold {k} done ({len(pairs)} pairs)", flush=True)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("features", type=Path, help="Pickle written by train_evidence.py --features.")
    parser.add_argument("--cross-encoder", action="store_true", help="Also fine-tune a cross-encoder per fold (slow).")
    args = parser.parse_args(argv)
    sys.modules["__main__"].Case = te.Case  # type: ignore[attr-defined]  # the pickle names train_evidence's Case
    cases = pickle.loads(args.features.read_bytes())
    usable = [o for o in held_out(cases) if o.case.gate >= te.HEAD_GATE and not o.gap and o.said]
    labels = np.asarray([float(o.case.expect == "answer") for o in usable])
    folds = np.random.default_rng(13).permutation(len(usable)) % 5
    base = np.asarray([o.row for o in usable])

    def cv(rows: np.ndarray, names: tuple[str, ...], l2: float = 1.0) -> np.ndarray:
        probs = np.zeros(len(rows))
        for k in range(5):
            head = fit_logistic(rows[folds != k], labels[folds != k], names, l2=l2)
            probs[folds == k] = head.score(rows[folds == k])
        return probs

    def report(label: str, probs: np.ndarray) -> None:
        pos, neg = probs[labels == 1], probs[labels == 0]
        auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
        refused = [float((neg < np.quantile(pos, 1 - a)).mean()) for a in (0.80, 0.85, 0.90)]
        print(f"{label:40s} AUC {auc:.3f}  refused at 80/85/90 % answered: "
              + " / ".join(f"{r:.3f}" for r in refused))

    print(f"{len(usable)} questions past the gate and the hard checks: {int(labels.sum())} answerable, "
          f"{int((1 - labels).sum())} not")
    report("head", cv(base, ANSWERABLE_FEATURES))
    words = word_features(usable, cases)
    for i, name in enumerate(WORD_FEATURES):
        report(f"head + {name}", cv(np.hstack([base, words[:, [i]]]), (*ANSWERABLE_FEATURES, name)))
    report("head + all five", cv(np.hstack([base, words]), (*ANSWERABLE_FEATURES, *WORD_FEATURES)))
    embedder = MiniLMEmbedder()
    q = np.asarray(embedder.embed([o.case.question for o in usable]))
    s = np.asarray(embedder.embed([o.said[0] for o in usable]))
    names = (*ANSWERABLE_FEATURES, *(f"qs{i}" for i in range(q.shape[1])))
    for l2 in (10.0, 100.0, 1000.0):
        report(f"head + question×sentence (l2 {l2:g})", cv(np.hstack([base, q * s]), names, l2))
    if args.cross_encoder:
        ce = cross_encoder_scores(usable, labels, folds)
        report("cross-encoder alone", ce)
        report("head + cross-encoder", cv(np.hstack([base, ce[:, None]]), (*ANSWERABLE_FEATURES, "cross_encoder")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
