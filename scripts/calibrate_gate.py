"""Calibrate the evidence gate: best-passage cosine similarity for answerable vs unanswerable demo
questions, on the real MiniLM embedder and Milvus Lite. Prints the distribution and the threshold
that refuses the most unanswerable questions while refusing at most 5 % of answerable ones.

    .venv/bin/python scripts/calibrate_gate.py [QUESTIONS.jsonl]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.bootstrap import corpus_files  # noqa: E402
from core.services import build_services  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402

MAX_FALSE_REFUSALS = 0.05


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "tests" / "data" / "demo_questions.jsonl"
    questions = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        svc = build_services(Settings(data_dir=Path(tmp) / "var"))
        for f in corpus_files(REPO_ROOT / "data" / "guidelines"):
            svc.library.ingest_file(f)
        scored = []
        for q in questions:
            passages = svc.retriever.retrieve(q["question"], 5)
            best = max((p.similarity or 0.0 for p in passages), default=0.0)
            scored.append((q["expect"], best, q["id"], q["question"]))
        svc.close()
    answer = sorted(s for e, s, _, _ in scored if e == "answer")
    refuse = sorted(s for e, s, _, _ in scored if e != "answer")
    print(f"answerable n={len(answer)} min={answer[0]:.3f} p05={answer[len(answer) // 20]:.3f} median={answer[len(answer) // 2]:.3f}")
    print(f"unanswerable n={len(refuse)} max={refuse[-1]:.3f} median={refuse[len(refuse) // 2]:.3f}")
    best_t, best_caught = 0.0, -1
    for i in range(20, 80):
        t = i / 100
        false_refusals = sum(s < t for s in answer) / len(answer)
        caught = sum(s < t for s in refuse)
        if false_refusals <= MAX_FALSE_REFUSALS and caught > best_caught:
            best_t, best_caught = t, caught
    print(f"threshold={best_t:.2f}: refuses {best_caught}/{len(refuse)} unanswerable, "
          f"{sum(s < best_t for s in answer)}/{len(answer)} answerable")
    for e, s, qid, text in sorted(scored, key=lambda r: r[1]):
        mark = "REFUSED" if s < best_t else "passed "
        print(f"  {mark} {e:<7} {s:.3f} {qid} {text[:70]}")


if __name__ == "__main__":
    main()
