"""Held-out reader readings for every team question, from several readers, in one file for
`scripts/train_evidence.py --reader-scores`.

    .venv/bin/python scripts/merge_reader_readings.py --features F.pkl --out data/answering/reader_oof.json \\
        READINGS.json [READINGS.json ...] [--reader WEIGHTS --questions CASES.jsonl ...]

The answerability head is fitted on readings of questions the reader never saw (stacking). When team
questions are added, the earlier readings stay valid for the earlier questions, and the new ones can
be read by a reader that never saw them: the previous shipped reader (`--reader OLD.safetensors
--questions NEW.jsonl`), or one trained with `train_reader.py --hold-out NEW.jsonl`, whose readings
file is passed as READINGS.json. Later files win, and `--reader`'s readings of `--questions` win over
all files (so a candidate reader's readings of its held-out part can be put on top of an earlier merge). A pair no reader read held out (the first-stage folds
changed with the added questions, so a question's 8 best sentences can differ a little) gets the
lowest held-out reading of its question: such pairs are never a question's best sentence. Prints the
held-out pair AUC of the result. Held-out (blind) sets must never be passed here.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_evidence as te  # noqa: E402
import train_reader as tr  # noqa: E402
from train_evidence import pair_key  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("readings", nargs="*", type=Path, help="Held-out readings files ({'scores': {...}}).")
    parser.add_argument("--features", type=Path, required=True, help="`train_evidence.py --features` pickle.")
    parser.add_argument("--reader", type=Path, help="Weights of a reader that never saw --questions.")
    parser.add_argument("--questions", type=Path, nargs="*", default=[], help="Team case files --reader reads.")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if any("blind" in str(p) for p in [args.features, *args.readings, *args.questions]):
        print("error: held-out (blind) sets are for evaluation only, never for training.", file=sys.stderr)
        return 2
    sys.modules["__main__"].Case = te.Case  # type: ignore[attr-defined]  # pickled by train_evidence.py as a script
    pairs = tr.build_pairs(pickle.loads(args.features.read_bytes()))
    scores: dict[str, float] = {}
    for path in args.readings:
        scores.update(json.loads(path.read_text(encoding="utf-8"))["scores"])
    if args.reader and args.questions:
        from core.answering.reader import Reader

        reader = Reader(args.reader)
        wanted = {json.loads(x)["id"] for p in args.questions for x in p.read_text(encoding="utf-8").splitlines() if x.strip()}
        by_question: dict[str, list[dict[str, object]]] = defaultdict(list)
        for p in pairs:
            if p["id"] in wanted:
                by_question[p["id"]].append(p)
        for group in by_question.values():
            for p, v in zip(group, reader.score(str(group[0]["question"]), [str(x["text"]) for x in group]), strict=True):
                scores[pair_key(str(p["id"]), str(p["text"]))] = round(float(v), 5)
    keys = [pair_key(p["id"], p["text"]) for p in pairs]
    read: dict[str, list[float]] = defaultdict(list)
    for p, k in zip(pairs, keys, strict=True):
        if k in scores:
            read[p["id"]].append(scores[k])
    unread = [(p, k) for p, k in zip(pairs, keys, strict=True) if k not in scores]
    for p, k in unread:
        scores[k] = min(read[p["id"]]) if read[p["id"]] else 0.5
    auc = tr._auc(np.asarray([p["label"] for p in pairs]), np.asarray([scores[k] for k in keys]))
    args.out.write_text(json.dumps({"pairs": len(pairs), "pair_auc": round(float(auc), 4),
                                    "scores": {k: scores[k] for k in sorted(set(keys))}},
                                   indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(pairs)} pairs, {len(unread)} without a held-out reading (given their question's lowest); "
          f"held-out pair AUC {auc:.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
