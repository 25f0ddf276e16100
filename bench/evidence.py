"""Evidence-first answers: what reranking and sentence selection add to retrieval, same process, same
questions (the team's evaluation set over the demo corpus, MiniLM + Milvus Lite).

Prints p50/p95 of plain hybrid retrieval (top 5), retrieval with the reranker (25 candidates → 5), the
sentence selection, and the time from the end of retrieval to a quote-only answer (no model), then
`RATIO rerank_and_select_vs_retrieval <x>` (p95 added / p95 plain retrieval). Budget: at most 0.3 s p95
added per question, quote-only answer under 1 s after retrieval. The sentence cache is warmed once
first (as the app does for libraries of a few thousand chunks); the cold first pass is printed too.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.answering.pipeline import AskOptions  # noqa: E402
from core.bootstrap import corpus_files  # noqa: E402
from core.llm.fake import FakeLLM  # noqa: E402
from core.services import build_answer_service, build_services  # noqa: E402
from core.settings import Settings  # noqa: E402


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    cases = [json.loads(x) for x in (REPO / "data" / "eval" / "cases.jsonl").read_text().splitlines() if x.strip()]
    questions = [c["question"] for c in cases if c["expect"] != "escalate"]
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(data_dir=Path(tmp)))
        try:
            for f in corpus_files(REPO / "data" / "guidelines"):
                services.library.ingest_file(f)
            retriever, selector = services.retriever, services.selector
            assert selector is not None
            t = time.perf_counter()
            for q in questions:
                retriever.retrieve(q, 5)
            cold = time.perf_counter() - t
            plain, reranked, select, quote_only = [], [], [], []
            answers = build_answer_service(services, FakeLLM())
            for q in questions:
                retriever.reranker = None
                t0 = time.perf_counter()
                retriever.retrieve(q, 5)
                plain.append(time.perf_counter() - t0)
                retriever.reranker = selector
                t0 = time.perf_counter()
                passages = retriever.retrieve(q, 5)
                reranked.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                selector.select(q, selector.rescore(q, selector.embed_query(q), passages))
                select.append(time.perf_counter() - t0)
                answer = answers.ask(q, options=AskOptions(summary=False))
                quote_only.append(answer.timings.total_s - answer.timings.retrieve_s)
        finally:
            services.close()
    p95 = {name: _pct(v, 95) * 1000 for name, v in
           [("plain", plain), ("reranked", reranked), ("select", select), ("quote_only", quote_only)]}
    for name, v in [("hybrid retrieval (top 5)", plain), ("retrieval + rerank (25 → 5)", reranked),
                    ("sentence selection", select), ("quote-only answer after retrieval", quote_only)]:
        print(f"{name}: p50 {_pct(v, 50) * 1000:.1f} ms, p95 {_pct(v, 95) * 1000:.1f} ms")
    print(f"first pass with a cold sentence cache: {cold / len(questions) * 1000:.0f} ms per question")
    added = p95["reranked"] - p95["plain"] + p95["select"]
    print(f"added by rerank + selection: p95 {added:.1f} ms (budget 300 ms)")
    print(f"RATIO rerank_and_select_vs_retrieval {added / p95['plain']:.3f}")


if __name__ == "__main__":
    main()
