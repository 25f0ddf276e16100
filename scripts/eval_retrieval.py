"""Retrieval hit@1 and hit@5, plain hybrid search vs hybrid + reranker, on any case file, same store.

    CQA_DATA_DIR=/tmp/x .venv/bin/python scripts/eval_retrieval.py CASES.jsonl [--failures]

A hit is a retrieved passage from the case's source file, on its page (if given) and under its
section heading (if given) — `core.facts.holds_source`, the same check the evidence scorers learn from.
Uses the library in CQA_DATA_DIR (ingest the demo corpus there first: python -m core.ingest data/guidelines).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.evaluation.facts import holds_source  # noqa: E402
from core.services import build_services  # noqa: E402
from core.settings import Settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", type=Path)
    parser.add_argument("--failures", action="store_true")
    args = parser.parse_args()
    cases = [json.loads(x) for x in args.cases.read_text().splitlines() if x.strip()]
    cases = [c for c in cases if c["expect"] == "answer" and c.get("sources")]
    services = build_services(Settings())
    counts = {"hybrid": [0, 0], "reranked": [0, 0]}
    try:
        reranker = services.retriever.reranker
        for c in cases:
            for name, rr in (("hybrid", None), ("reranked", reranker)):
                services.retriever.reranker = rr
                passages = services.retriever.retrieve(c["question"], 5)
                hits = [any(holds_source(p, s) for s in c["sources"]) for p in passages]
                counts[name][0] += bool(hits[:1] and hits[0])
                counts[name][1] += any(hits)
                if args.failures and name == "reranked" and not (hits and hits[0]):
                    top = passages[0].section_label if passages else "-"
                    print(f"  top-1 miss {c['id']}: {c['question'][:70]} -> {top}")
            services.retriever.reranker = reranker
    finally:
        services.close()
    n = len(cases)
    for name, (h1, h5) in counts.items():
        print(f"{name:9s} hit@1 {h1}/{n} = {h1 / n:.3f}   hit@5 {h5}/{n} = {h5 / n:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
