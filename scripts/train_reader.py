"""Train the reader (`core.answering.reader`), a MiniLM cross-encoder, on the team's questions.

    .venv/bin/python scripts/train_reader.py --features F.pkl [--cv] [--out PATH]

Pairs: for each team question, the 8 best sentences of its top passages as the evidence scorers rank
them, each scorer fitted without that question (the same 5 folds as `scripts/train_evidence.py`). A
sentence is positive when the question is answerable and the sentence holds one of its expected facts;
all others (and every sentence offered for an unanswerable question) are negative. Labels come from
the case files, never from anyone reading the reader's output.

`--cv` trains twice, each time on half of the questions, and writes the held-out half's scores to
`data/answering/reader_oof.json`: `scripts/train_evidence.py` fits the answerability head on those
(stacking: each question read by a reader that never saw it). Without `--cv` it trains on all the
questions and writes the shipped weights `data/answering/reader.safetensors`; `--hold-out CASES` keeps
one team file's questions out of that training and writes their readings beside the weights (held out,
for the answerability head and to compare readers). Held-out (blind) sets must never be passed here.
About 20 to 35 minutes each way on 2 cores (17 pairs/s measured on a quiet machine, 9 on a busy one).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_evidence as te  # noqa: E402
from train_evidence import pair_key  # noqa: E402

from core.answering.evidence import embedding_text, sentence_matrix, with_list  # noqa: E402
from core.answering.reader import MAX_TOKENS, READER_MODEL, build_network, learned_state, tokenizer  # noqa: E402
from core.evaluation.facts import contains_fact  # noqa: E402
from core.settings import REPO_ROOT  # noqa: E402

READ = 8  # sentences read per question (as `EvidenceSelector` reads them)
OOF = REPO_ROOT / "data" / "answering" / "reader_oof.json"
EPOCHS = 2
POSITIVE_WEIGHT = 4.0  # about 1 positive in 10 pairs


def build_pairs(cases: list[te.Case]) -> list[dict[str, Any]]:
    out = []
    for c, passage, sentence in te.by_fold(cases):
        top = te._rank(c, passage)[: te.TOP_PASSAGES]
        rows = sentence_matrix(c.question, top)
        if not len(rows):
            continue
        probs = sentence.score(rows)
        items = [(i, j) for i, s in enumerate(top) for j in range(len(s.vectors.spans))]
        for rank, idx in enumerate(np.argsort(-probs)[:READ]):
            i, j = items[idx]
            s = top[i]
            whole = with_list(s.passage.text, s.vectors.spans, j)
            quoted = s.passage.text[whole.start : whole.end]
            label = float(c.expect == "answer" and any(contains_fact(quoted, fx) for fx in c.facts))
            out.append({"id": c.id, "question": c.question, "text": embedding_text(s.passage, s.vectors.spans, j),
                        "label": label, "rank": rank})
    return out


def _batches(tok: Any, items: list[dict[str, Any]], size: int, shuffle: bool) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    items = list(items)
    if shuffle:
        random.Random(len(items)).shuffle(items)
    for i in range(0, len(items), size):
        chunk = items[i : i + size]
        yield chunk, tok([p["question"] for p in chunk], [p["text"] for p in chunk], padding=True,
                         truncation="longest_first", max_length=MAX_TOKENS, return_tensors="pt")


def train(tok: Any, pairs: list[dict[str, Any]]) -> Any:
    import torch

    net = build_network()
    learned = [p for p in net.bert.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": learned, "lr": 5e-5}, {"params": net.head.parameters(), "lr": 1e-3}],
                            weight_decay=0.01)
    weight = torch.tensor(POSITIVE_WEIGHT)
    start, seen = time.time(), 0
    for epoch in range(EPOCHS):
        net.train()
        for chunk, batch in _batches(tok, pairs, 32, True):
            y = torch.tensor([p["label"] for p in chunk])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(dict(batch)), y, pos_weight=weight)
            loss.backward()
            opt.step()
            opt.zero_grad()
            seen += len(chunk)
        print(f"epoch {epoch}: {seen / (time.time() - start):.1f} pairs/s, last loss {loss.item():.3f}", flush=True)
    net.eval()
    return net


def score(tok: Any, net: Any, pairs: list[dict[str, Any]]) -> dict[str, float]:
    import torch

    out = {}
    with torch.inference_mode():
        for chunk, batch in _batches(tok, pairs, 64, False):
            for p, v in zip(chunk, torch.sigmoid(net(dict(batch))).tolist(), strict=True):
                out[pair_key(p["id"], p["text"])] = round(float(v), 5)
    return out


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive pair reads higher than a negative one (ties half)."""
    pos, neg = scores[labels > 0], scores[labels <= 0]
    if not len(pos) or not len(neg):
        return float("nan")
    higher = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(higher / (len(pos) * len(neg)))


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True,
                        help="Pickle of the team questions' retrieved candidates (`train_evidence.py --features`).")
    parser.add_argument("--cv", action="store_true", help="Write held-out scores (two halves) instead of weights.")
    parser.add_argument("--out", type=Path, help=f"Default {READER_MODEL.name}, or {OOF.name} with --cv.")
    parser.add_argument("--hold-out", type=Path, help="A team case file whose questions are not trained on: the "
                        "trained reader reads them, prints their pair AUC and writes their scores next to --out.")
    args = parser.parse_args(argv)
    if "blind" in str(args.features) or "blind" in str(args.hold_out or ""):
        print("error: held-out (blind) sets are for evaluation only, never for training.", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    torch.manual_seed(0)
    sys.modules["__main__"].Case = te.Case  # type: ignore[attr-defined]  # pickled by train_evidence.py as a script
    cases = pickle.loads(args.features.read_bytes())
    pairs = build_pairs(cases)
    print(f"{len(pairs)} pairs, {int(sum(p['label'] for p in pairs))} positive", flush=True)
    tok = tokenizer()
    if args.cv:
        ids = sorted({p["id"] for p in pairs})
        random.Random(3).shuffle(ids)
        half = {i: n % 2 for n, i in enumerate(ids)}
        scores: dict[str, float] = {}
        for k in (0, 1):
            net = train(tok, [p for p in pairs if half[p["id"]] != k])
            scores.update(score(tok, net, [p for p in pairs if half[p["id"]] == k]))
        auc = _auc(np.asarray([p["label"] for p in pairs]), np.asarray([scores[pair_key(p["id"], p["text"])] for p in pairs]))
        out = args.out or OOF
        out.write_text(json.dumps({"pairs": len(pairs), "pair_auc": round(float(auc), 4), "scores": scores},
                                  indent=0, sort_keys=True) + "\n", encoding="utf-8")
        print(f"held-out pair AUC {auc:.3f}; wrote {out}")
        return 0
    held: set[str] = set()
    if args.hold_out:
        held = {json.loads(x)["id"] for x in args.hold_out.read_text(encoding="utf-8").splitlines() if x.strip()}
    net = train(tok, [p for p in pairs if p["id"] not in held])
    out = args.out or READER_MODEL
    if held:
        kept = [p for p in pairs if p["id"] in held]
        scores = score(tok, net, kept)
        auc = _auc(np.asarray([p["label"] for p in kept]), np.asarray([scores[pair_key(p["id"], p["text"])] for p in kept]))
        side = out.with_name(out.stem + "_held_out.json")
        side.write_text(json.dumps({"pairs": len(kept), "pair_auc": round(float(auc), 4), "scores": scores},
                                   indent=0, sort_keys=True) + "\n", encoding="utf-8")
        print(f"held-out ({args.hold_out.name}) pair AUC {auc:.3f}; wrote {side}")
    save_file(learned_state(net), str(out), metadata={"trained_on": str(len(pairs)) + " pairs", "epochs": str(EPOCHS)})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
