"""The one place that turns settings into concrete components and services.

Backends are imported lazily inside their branch so a missing optional dependency only matters
when that backend is chosen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from core.answering.evidence import EVIDENCE_MODEL, EvidenceModel, EvidenceSelector
from core.answering.pipeline import AnswerService
from core.answering.retrieval import Retriever
from core.answering.scope import ScopeIndex
from core.answering.vocabulary import default_vocabulary
from core.library.catalog import Catalog
from core.library.embedding import Embedder, HashingEmbedder
from core.library.ingestion import GuidelineLibrary, RecoveryReport
from core.library.locking import WriterLock
from core.library.store import ChunkStore, InMemoryStore, MilvusChunkStore, StoredChunk, local_uri
from core.llm import LLMBackend, build_llm, default_params
from core.safety.rule_files import load_rules
from core.safety.triage import build_screen
from core.schema import RetrievedPassage
from core.settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    match settings.embedding.mode:
        case "minilm":
            from core.library.embedding import MiniLMEmbedder

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
    selector: EvidenceSelector | None = None

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
    selector = build_selector(settings, embedder, store)
    vocabulary = default_vocabulary() if settings.retrieval.expand_queries else None
    retriever = Retriever(store, embedder, catalog, settings.retrieval, reranker=selector, vocabulary=vocabulary)
    return Services(settings, embedder, store, catalog, library, retriever, recovery, selector)


def warm_evidence_cache(services: Services, max_chunks: int = 20_000) -> int:
    """Embed the sentences of every active passage now (libraries up to `max_chunks` chunks), so the first
    questions are as fast as the rest. Returns how many passages were cached; run it off the request path."""
    if services.selector is None:
        return 0
    try:
        passages = []
        scope = services.selector.scope
        for doc_id in services.catalog.active_ids():
            chunks = services.library.chunks(doc_id)
            if scope is not None:
                scope.remember(doc_id, [(c.title, c.section, c.text, c.chunk_id) for c in chunks])
            passages += [_as_passage(c) for c in chunks]
            if len(passages) > max_chunks:
                return 0
        # Small batches: a clinician's question waits for the embedder lock at most one batch (~0.2 s).
        for start in range(0, len(passages), 8):
            services.selector.cache.warm(passages[start : start + 8])
    except Exception:  # noqa: BLE001 - a warm-up only saves time; the store may close under it at shutdown
        return 0
    return len(passages)


def start_cache_warmup(services: Services) -> threading.Thread:
    """`warm_evidence_cache` in a daemon thread: off the request path, never blocking a start."""
    thread = threading.Thread(target=warm_evidence_cache, args=(services,), daemon=True, name="evidence-cache")
    thread.start()
    return thread


def _as_passage(c: StoredChunk) -> RetrievedPassage:
    return RetrievedPassage(chunk_id=c.chunk_id, doc_id=c.doc_id, title=c.title, file_name=c.file_name, page=c.page,
                            section=c.section, text=c.text, score_kind="rrf", score=0.0)


def build_selector(settings: Settings, embedder: Embedder, store: ChunkStore | None = None) -> EvidenceSelector | None:
    """The passage reranker and answer-sentence scorer (off: plain hybrid search, model-written answers);
    with `store`, the documents' own scope statements rule out the passages of a guideline that says it
    does not cover the question's subject (`core.answering.scope`)."""
    if not settings.answer.evidence_first:
        return None
    model = EvidenceModel.load(settings.answer.evidence_model or EVIDENCE_MODEL).for_embedder(getattr(embedder, "name", ""))
    scope = ScopeIndex(_scope_chunks(store)) if store is not None else None
    reader = None
    if model.reader_weight is not None:  # trained with the reader: a cross-encoder on the bundled MiniLM
        from core.answering.reader import shared_reader

        reader = shared_reader(base_dir=settings.embedding.model_dir)
    return EvidenceSelector(embedder, model, scope=scope, reader=reader)


def _scope_chunks(store: ChunkStore) -> Callable[[str], list[tuple[str, list[str], str, str]]]:
    def chunks_of(doc_id: str) -> list[tuple[str, list[str], str, str]]:
        return [(c.title, c.section, c.text, c.chunk_id) for c in store.chunks_of(doc_id)]
    return chunks_of


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
        safety=build_screen(settings, load_rules(settings), services.embedder), fallback=fallback, library_is_empty=services.library.is_empty,
        selector=services.selector,
    )
