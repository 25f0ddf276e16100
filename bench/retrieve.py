"""Hybrid search latency over 20k synthetic chunks: our store layer vs raw pymilvus `hybrid_search`
on the same collection, same query vectors and texts, same run.

Prints `RATIO retrieve_store_vs_raw_p50 <x>` and `..._p95`. The full retriever (query embedding plus
re-embedding the top-k for the evidence gate's cosine) is printed separately for context.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.library.embedding import HashingEmbedder  # noqa: E402
from core.library.store import ChunkFilter, MilvusChunkStore, StoredChunk  # noqa: E402

N_CHUNKS = int(os.environ.get("BENCH_CHUNKS", "20000"))
N_QUERIES = int(os.environ.get("BENCH_QUERIES", "20"))
WORDS = ("dose blood pressure asthma sepsis lactate troponin stroke insulin glucose fever child adult "
         "referral urgent oxygen saturation antibiotic aspirin warfarin apixaban renal kidney heart").split()


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    rng = random.Random(7)
    embedder = HashingEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = MilvusChunkStore(str(Path(tmp) / "milvus.db"), "bench", embedder.dim, batch_size=1000)
        docs = [f"doc{i:03d}" for i in range(100)]
        t0 = time.perf_counter()
        for start in range(0, N_CHUNKS, 2000):
            chunks = [
                StoredChunk(chunk_id=f"c{i}", doc_id=docs[i % 100], title=f"Guideline {i % 100}", file_name="x.md",
                            section=[f"{i % 7}. Section"], text=" ".join(rng.choice(WORDS) for _ in range(60)) + f" {i} mg")
                for i in range(start, min(start + 2000, N_CHUNKS))
            ]
            store.add(chunks, embedder.embed([c.text for c in chunks]))
        print(f"inserted {N_CHUNKS} chunks in {time.perf_counter() - t0:.1f}s")
        queries = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(N_QUERIES)]
        vectors = embedder.embed(queries)
        where = ChunkFilter()
        ours, raw = [], []
        from pymilvus import AnnSearchRequest, RRFRanker

        expr = MilvusChunkStore._filter_expr(where)
        for q, v in zip(queries, vectors, strict=True):
            t = time.perf_counter()
            store.search(q, v, 5, where)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.client.hybrid_search(
                "bench",
                [AnnSearchRequest(data=[v], anns_field="embedding", param={"metric_type": "COSINE", "params": {"ef": 64}}, limit=5, expr=expr),
                 AnnSearchRequest(data=[q], anns_field="sparse_embedding", param={"metric_type": "BM25"}, limit=5, expr=expr)],
                ranker=RRFRanker(60), limit=5, output_fields=["*"],
            )
            raw.append(time.perf_counter() - t)
        store.close()
    p50o, p95o, p50r, p95r = _pct(ours, 50), _pct(ours, 95), _pct(raw, 50), _pct(raw, 95)
    print(f"store.search p50={p50o * 1000:.1f}ms p95={p95o * 1000:.1f}ms | raw hybrid_search p50={p50r * 1000:.1f}ms p95={p95r * 1000:.1f}ms")
    print(f"RATIO retrieve_store_vs_raw_p50 {p50o / p50r:.2f}")
    print(f"RATIO retrieve_store_vs_raw_p95 {p95o / p95r:.2f}")


if __name__ == "__main__":
    main()
