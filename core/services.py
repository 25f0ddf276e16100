"""The one place that turns settings into concrete components and services.

Backends are imported lazily inside their branch so a missing optional dependency only matters
when that backend is chosen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.catalog import Catalog
from core.embedding import Embedder, HashingEmbedder
from core.library import GuidelineLibrary, RecoveryReport
from core.llm import LLMBackend, build_llm, default_params
from core.locking import WriterLock
from core.pipeline import AnswerService
from core.retrieval import Retriever
from core.rules import load_rules
from core.settings import Settings
from core.store import ChunkStore, InMemoryStore, MilvusChunkStore, local_uri

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see STACK.md: torch + llama.cpp contention


def build_embedder(settings: Settings) -> Embedder:
    match settings.embedding.mode:
        case "minilm":
            from core.embedding import MiniLMEmbedder

            return MiniLMEmbedder(settings.embedding.model_dir)
        case "fake":
            return HashingEmbedder(settings.embedding.dim)


def build_store(settings: Settings, dim: int) -> ChunkStore:
    match settings.store.mode:
        case "memory":
            return InMemoryStore()
        case "milvus":
            uri = settings.store.milvus_uri or local_uri(settings.milvus_lite_path)
            return MilvusChunkStore(
                uri=uri, collection=settings.store.collection, dim=dim, token=settings.store.milvus_token,
                ranker=settings.store.hybrid_ranker,
            )


@dataclass
class Services:
    """Everything the UI and CLIs need, built once per process."""

    settings: Settings
    embedder: Embedder
    store: ChunkStore
    catalog: Catalog
    library: GuidelineLibrary
    retriever: Retriever
    recovery: RecoveryReport

    def close(self) -> None:
        self.store.close()
        self.catalog.close()


def build_services(settings: Settings | None = None, *, embedder: Embedder | None = None, store: ChunkStore | None = None) -> Services:
    """Build (and recover) the library services; pass `embedder`/`store` to inject fakes."""
    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedder = embedder or build_embedder(settings)
    store = store or build_store(settings, embedder.dim)
    catalog = Catalog(settings.catalog_path)
    library = GuidelineLibrary(
        catalog=catalog, store=store, embedder=embedder, settings=settings.ingest,
        uploads_dir=settings.uploads_dir, writer_lock=WriterLock(settings.data_dir / "ingest.lock"), embed_batch=settings.ingest.embed_batch,
    )
    recovery = library.recover()
    retriever = Retriever(store, embedder, catalog, settings.retrieval)
    return Services(settings, embedder, store, catalog, library, retriever, recovery)


def build_answer_service(services: Services, llm: LLMBackend | None = None) -> AnswerService:
    """The answer pipeline on the configured LLM backend (or an injected one, e.g. `FakeLLM`).

    With the Ollama backend and `allow_fallback`, an unreachable server falls back to the embedded
    model, and the answer says so."""
    settings = services.settings
    llm = llm or build_llm(settings.llm)
    fallback = None
    if llm.info.backend == "ollama" and settings.llm.allow_fallback:
        embedded = settings.llm.model_copy(update={"backend": "embedded"})
        fallback = lambda: build_llm(embedded)  # noqa: E731 - loaded only if Ollama fails
    return AnswerService(
        retriever=services.retriever, llm=llm, settings=settings.answer, params=default_params(settings.llm),
        safety=load_rules(settings), fallback=fallback, library_is_empty=services.library.is_empty,
    )
