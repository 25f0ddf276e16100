"""Library size: retrieval latency, ingestion speed, memory and disk at 100, 1,000 and 10,000 documents.

How the libraries are made: the 13 demo guidelines (data/guidelines) plus synthetic short guidelines
written as Markdown files, each about one passage: a demo passage with its sentences shuffled, a
sentence from another passage spliced in, a numbered title, one of three issuers, the source's
specialty and a unique reference code (so every file is new to the deduplication). The demo questions
(tests/data/demo_questions.jsonl) then have 13 right documents among N - 13 look-alikes.

For each size, in one run and one process:
- ingestion through `GuidelineLibrary.ingest_files` (parse, chunk, MiniLM, Milvus Lite, final flush)
  against raw sentence-transformers encoding of the same chunk texts: documents/s, chunks/s and the
  ratio pipeline speed / raw speed (target >= 0.7);
- retrieval p50/p95 of `Retriever.retrieve` (the answer pipeline's step: query embedding, search,
  similarity of the top 5) and of the store search alone, over the demo questions, after the flush;
  hit@5 (the right file among the top 5);
- the same store today with the filter removed: the same rows and vectors in a second collection left
  unflushed (everything in Milvus Lite's memtable, as the landed code left it), no filter: p50 and hit@5;
- start-up: reopening the library (recovery check, flush, warm-up search) and the first question after it;
- peak RSS so far and the size of the data folder.
At the largest size the answer pipeline runs a few questions on the embedded model to show the share of
its total time spent retrieving (target < 0.25).

Prints `RATIO scale_retrieval_p50_<max>_vs_<min>`, `RATIO scale_ingest_vs_raw_encode_<size>` and
`RATIO scale_answer_retrieval_share`. Sizes: BENCH_SCALE_SIZES (default 100,1000,10000).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.bootstrap import corpus_files  # noqa: E402
from core.library.chunking import chunk_document  # noqa: E402
from core.library.embedding import Embedder, MiniLMEmbedder, bundled_minilm_dir  # noqa: E402
from core.library.parsing import parse_file  # noqa: E402
from core.library.store import _ROW_FIELDS, ChunkFilter, MilvusChunkStore, _row_metadata, index_text  # noqa: E402
from core.services import Services, build_answer_service, build_services  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402

SIZES = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "100,1000,10000").split(",")]
N_ANSWERS = int(os.environ.get("BENCH_SCALE_ANSWERS", "5"))
QUESTIONS = [q for q in map(json.loads, (REPO_ROOT / "tests" / "data" / "demo_questions.jsonl").read_text().splitlines())
             if q["expect"] == "answer"]
ISSUERS = ("Northbridge Health Trust (synthetic)", "Southmoor Clinical Network (synthetic)", "Eastfield Care Group (synthetic)")
SENTENCE = re.compile(r"(?<=[.!?])\s+")


class RecordingEmbedder(Embedder):
    """MiniLM, keeping each passage's vector so the baseline collection gets the very same vectors."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self._inner = inner
        self.dim = inner.dim
        self.name = inner.name
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._inner.embed(texts)
        for text, vec in zip(texts, vectors, strict=True):
            self.vectors[text] = np.asarray(vec, dtype=np.float32)
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._inner.embed_query(text)


def _demo_passages(settings: Settings) -> list[tuple[str, str | None, list[str], str]]:
    out = []
    for path in corpus_files(REPO_ROOT / "data" / "guidelines"):
        parsed = parse_file(path.read_bytes(), path.name, settings.ingest)
        for chunk in chunk_document(parsed, "demo", settings.ingest):
            out.append((parsed.meta.title or path.stem, parsed.meta.specialty, chunk.section, chunk.text))
    return out


def _write_library(folder: Path, n_docs: int, passages: list[tuple[str, str | None, list[str], str]]) -> list[Path]:
    folder.mkdir(parents=True)
    demo = corpus_files(REPO_ROOT / "data" / "guidelines")
    paths = []
    for p in demo:
        shutil.copy(p, folder / p.name)
        paths.append(folder / p.name)
    rng = random.Random(n_docs)
    for i in range(n_docs - len(demo)):
        title, specialty, section, text = rng.choice(passages)
        sentences = [s for s in SENTENCE.split(text) if s.strip()]
        rng.shuffle(sentences)
        extra = [s for s in SENTENCE.split(rng.choice(passages)[3]) if s.strip()]
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(extra))
        body = " ".join(sentences)[:700]
        heading = section[-1] if section else "Recommendations"
        path = folder / f"syn{i:05d}.md"
        path.write_text(
            f"---\ntitle: {json.dumps(f'{title} (synthetic note {i})')}\nissuer: {json.dumps(ISSUERS[i % 3])}\n"
            f"version: '1'\neffective_date: 2025-01-01\nspecialty: {json.dumps(specialty or 'general')}\n---\n"
            f"# {title} (synthetic note {i})\n\n## {heading}\n\n{body} Reference S{i:05d}.\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def _pct(values: list[float], q: int) -> float:
    return float(np.percentile(np.asarray(values), q))


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _hit(files: list[str], question: dict[str, object]) -> bool:
    return question["sources"][0]["file"] in files  # type: ignore[index]


def _retrieval(svc: Services) -> dict[str, float]:
    # Hybrid search as the library scales; the reranker's own cost (sentence embeddings cached per
    # passage) is measured by bench/evidence.py.
    svc.retriever.reranker = None
    for q in QUESTIONS[:2]:
        svc.retriever.retrieve(q["question"], k=5)
    full, store_only, hits = [], [], 0
    for q in QUESTIONS:
        t = time.perf_counter()
        passages = svc.retriever.retrieve(q["question"], k=5)
        full.append(time.perf_counter() - t)
        hits += _hit([p.file_name for p in passages], q)
        vector = svc.embedder.embed_query(q["question"])
        where = svc.catalog.search_filter()
        assert where is not None
        t = time.perf_counter()
        svc.store.search(q["question"], vector, 5, where)
        store_only.append(time.perf_counter() - t)
    return {"p50": _pct(full, 50), "p95": _pct(full, 95), "store_p50": _pct(store_only, 50),
            "store_p95": _pct(store_only, 95), "hit5": hits / len(QUESTIONS)}


def _baseline(svc: Services, db: str, recorder: RecordingEmbedder) -> dict[str, float]:
    """The same rows and vectors, unflushed (all in the memtable), searched with no filter."""
    assert isinstance(svc.store, MilvusChunkStore)
    store = svc.store
    base = MilvusChunkStore(db, "baseline", recorder.dim, flush_rows=10**9)
    rows = list(store._rows("", _ROW_FIELDS))
    chunks = [store._from_metadata(r["id"], r.get("doc_id"), _row_metadata(r)) for r in rows]
    for start in range(0, len(chunks), 1000):
        part = chunks[start : start + 1000]
        base.add(part, [recorder.vectors[index_text(c.title, c.section, c.text)].tolist() for c in part])
    times, hits = [], 0
    for q in QUESTIONS:
        vector = recorder.embed_query(q["question"])
        t = time.perf_counter()
        found = base.search(q["question"], vector, 5, ChunkFilter())
        times.append(time.perf_counter() - t)
        hits += _hit([h.chunk.file_name for h in found], q)
    return {"p50": _pct(times, 50), "hit5": hits / len(QUESTIONS)}


def _raw_encode_s(texts: list[str]) -> float:
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(str(bundled_minilm_dir()), device="cpu")
    raw.encode(["warm-up"])
    start = time.perf_counter()
    raw.encode(texts, batch_size=32, normalize_embeddings=True)
    return time.perf_counter() - start


def _answer_share(svc: Services) -> float:
    service = build_answer_service(svc)
    shares = []
    for q in QUESTIONS[:N_ANSWERS]:
        answer = service.ask(q["question"])
        if answer.timings.total_s > 0:
            shares.append(answer.timings.retrieve_s / answer.timings.total_s)
        print(f"  answer {q['id']}: retrieve {answer.timings.retrieve_s:.3f}s of {answer.timings.total_s:.3f}s ({answer.status})")
    return statistics.median(shares)


def run_size(n_docs: int, root: Path, minilm: MiniLMEmbedder, passages: list[tuple[str, str | None, list[str], str]]) -> dict[str, float]:
    paths = _write_library(root / f"docs-{n_docs}", n_docs, passages)
    settings = Settings(data_dir=root / f"var-{n_docs}")
    recorder = RecordingEmbedder(minilm)
    svc = build_services(settings, embedder=recorder)
    start = time.perf_counter()
    outcomes = svc.library.ingest_files(paths)
    ingest_s = time.perf_counter() - start
    failed = [o.message for o in outcomes if o.status != "ingested"]
    assert not failed, failed[:3]
    n_chunks = svc.store.count()
    texts = []
    for p in paths:
        parsed = parse_file(p.read_bytes(), p.name, settings.ingest)
        texts += [index_text(parsed.meta.title or p.stem, c.section, c.text) for c in chunk_document(parsed, "x", settings.ingest)]
    assert len(texts) == n_chunks, (len(texts), n_chunks)
    raw_s = _raw_encode_s(texts)
    result = {"docs": n_docs, "chunks": n_chunks, "ingest_s": ingest_s, "raw_s": raw_s,
              "docs_per_s": n_docs / ingest_s, "chunks_per_s": n_chunks / ingest_s, "raw_chunks_per_s": n_chunks / raw_s,
              "ingest_ratio": raw_s / ingest_s}
    result.update(_retrieval(svc))
    base = _baseline(svc, str(settings.milvus_lite_path), recorder)
    result["base_p50"], result["base_hit5"] = base["p50"], base["hit5"]
    if n_docs == max(SIZES) and N_ANSWERS:
        result["answer_share"] = _answer_share(svc)
    svc.close()
    start = time.perf_counter()
    again = build_services(Settings(data_dir=root / f"var-{n_docs}"), embedder=minilm)
    result["reopen_s"] = time.perf_counter() - start
    result["startup_flush_s"] = again.recovery.flush_seconds
    start = time.perf_counter()
    again.retriever.retrieve(QUESTIONS[0]["question"], k=5)
    result["first_query_s"] = time.perf_counter() - start
    again.close()
    result["data_mb"] = _folder_mb(settings.data_dir)
    result["peak_rss_mb"] = _peak_rss_mb()
    shutil.rmtree(root / f"docs-{n_docs}")
    return result


def main() -> None:
    minilm = MiniLMEmbedder()
    minilm.embed(["warm-up"])
    passages = _demo_passages(Settings())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            r = run_size(n, Path(tmp), minilm, passages)
            results.append(r)
            print(f"docs={n:,} chunks={r['chunks']:,}: ingest {r['ingest_s']:.1f}s = {r['docs_per_s']:.1f} docs/s, "
                  f"{r['chunks_per_s']:.1f} chunks/s vs raw MiniLM {r['raw_chunks_per_s']:.1f} chunks/s "
                  f"(ratio {r['ingest_ratio']:.2f}) | retrieve p50 {r['p50'] * 1000:.0f}ms p95 {r['p95'] * 1000:.0f}ms "
                  f"(store search p50 {r['store_p50'] * 1000:.0f}ms p95 {r['store_p95'] * 1000:.0f}ms) hit@5 {r['hit5']:.2f} | "
                  f"unflushed, no filter: store p50 {r['base_p50'] * 1000:.0f}ms hit@5 {r['base_hit5']:.2f} | "
                  f"reopen {r['reopen_s']:.1f}s (flush+warm-up {r['startup_flush_s']:.1f}s), first query "
                  f"{r['first_query_s'] * 1000:.0f}ms | data {r['data_mb']:.0f} MB, peak RSS {r['peak_rss_mb']:.0f} MB",
                  flush=True)
    small, large = results[0], results[-1]
    print(f"RATIO scale_retrieval_p50_{large['docs']}_vs_{small['docs']} {large['p50'] / small['p50']:.2f}")
    print(f"RATIO scale_retrieval_p95_{large['docs']}_vs_{small['docs']} {large['p95'] / small['p95']:.2f}")
    for r in results:
        print(f"RATIO scale_ingest_vs_raw_encode_{r['docs']} {r['ingest_ratio']:.2f}")
    if "answer_share" in large:
        print(f"RATIO scale_answer_retrieval_share {large['answer_share']:.2f}")


if __name__ == "__main__":
    main()
