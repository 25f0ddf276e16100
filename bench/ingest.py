"""Ingestion throughput: the whole pipeline vs raw sentence-transformers encoding of the same chunks.

Prints `RATIO ingest_pipeline_vs_raw_encode <x>` (pipeline seconds / raw encode seconds; 1.0 means
parsing, chunking and Milvus writes cost nothing on top of the embedding itself).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.bootstrap import corpus_files  # noqa: E402
from core.library.chunking import chunk_document  # noqa: E402
from core.library.embedding import MiniLMEmbedder, bundled_minilm_dir  # noqa: E402
from core.library.parsing import parse_file  # noqa: E402
from core.library.store import index_text  # noqa: E402
from core.services import build_services  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402


def main() -> None:
    files = corpus_files(REPO_ROOT / "data" / "guidelines")
    embedder = MiniLMEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "var")
        svc = build_services(settings, embedder=embedder)
        embedder.embed(["warm-up"])
        start = time.perf_counter()
        outcomes = [svc.library.ingest_file(p) for p in files]
        pipeline_s = time.perf_counter() - start
        svc.close()
    n_chunks = sum(o.chunks for o in outcomes)
    texts = []
    for p in files:
        parsed = parse_file(p.read_bytes(), p.name, settings.ingest)
        title = parsed.meta.title or p.stem
        texts += [index_text(title, c.section, c.text) for c in chunk_document(parsed, "bench", settings.ingest)]
    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(str(bundled_minilm_dir()), device="cpu")
    raw.encode(["warm-up"])
    start = time.perf_counter()
    raw.encode(texts, batch_size=32, normalize_embeddings=True)
    raw_s = time.perf_counter() - start
    print(f"files={len(files)} chunks={n_chunks} pipeline={pipeline_s:.2f}s ({n_chunks / pipeline_s:.1f} chunks/s) "
          f"raw_encode={raw_s:.2f}s ({len(texts) / raw_s:.1f} chunks/s)")
    print(f"RATIO ingest_pipeline_vs_raw_encode {pipeline_s / raw_s:.2f}")


if __name__ == "__main__":
    main()
