"""Hybrid retrieval over the searchable guidelines, returning `RetrievedPassage`s."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.library.catalog import Catalog
from core.library.embedding import Embedder, cosine
from core.library.store import ChunkStore, SearchHit, index_text
from core.schema import RetrievedPassage
from core.settings import RetrievalSettings

if TYPE_CHECKING:
    from core.answering.evidence import EvidenceSelector
    from core.answering.vocabulary import Vocabulary


class Retriever:
    """Hybrid search, then (with an `EvidenceSelector`) a reranking of the top candidates so that the
    section holding the answer comes first."""

    vocabulary: Vocabulary | None = None

    def __init__(self, store: ChunkStore, embedder: Embedder, catalog: Catalog, settings: RetrievalSettings,
                 reranker: EvidenceSelector | None = None, vocabulary: Vocabulary | None = None) -> None:
        self._store = store
        self.vocabulary = vocabulary
        self._embedder = embedder
        self._catalog = catalog
        self._settings = settings
        self.reranker = reranker

    def retrieve(
        self,
        query: str,
        k: int | None = None,
        *,
        doc_ids: list[str] | None = None,
        issuer: str | None = None,
        specialty: str | None = None,
        include_superseded: bool | None = None,
    ) -> list[RetrievedPassage]:
        """Top-k passages, best first. Only active documents unless superseded ones are asked for."""
        query = self.search_text(query)
        if not query:
            return []
        include = self._settings.include_superseded if include_superseded is None else include_superseded
        k = k or self._settings.top_k
        vector = self._embedder.embed_query(query)
        # Read right before the search: it names the few documents to leave out, not every searchable one.
        where = self._catalog.search_filter(include, doc_ids, issuer=issuer or None, specialty=specialty or None)
        if where is None:
            return []
        if self.reranker is None:
            return self._with_similarity(self._store.search(query, vector, k, where), vector)
        hits = self._store.search(query, vector, max(k, self.reranker.candidates), where)
        ranked = self.reranker.rank(query, vector, [_passage(h, None) for h in hits])
        return [s.passage.model_copy(update={"similarity": round(s.passage_cos, 4), "rerank_score": round(s.score, 4)})
                for s in ranked[:k]]

    def search_text(self, query: str) -> str:
        """The text searched for `query`: with the expansions of its abbreviations, brand and lay names
        when a clinical vocabulary is set (`core.answering.vocabulary`); expanding twice changes nothing."""
        query = query.strip()
        return self.vocabulary.expand(query) if self.vocabulary is not None and query else query

    def _with_similarity(self, hits: list[SearchHit], query_vector: list[float]) -> list[RetrievedPassage]:
        # RRF scores rank but do not measure relevance; the evidence gate needs a calibrated
        # cosine: from the stored vectors, or by re-embedding the few returned passages.
        missing = [index_text(h.chunk.title, h.chunk.section, h.chunk.text) for h in hits if h.vector is None]
        fresh = iter(self._embedder.embed(missing) if missing else [])
        vectors = [h.vector if h.vector is not None else next(fresh) for h in hits]  # stored vectors when the store has them
        return [_passage(hit, round(cosine(query_vector, vec), 4)) for hit, vec in zip(hits, vectors, strict=True)]


def _passage(hit: SearchHit, similarity: float | None) -> RetrievedPassage:
    c = hit.chunk
    return RetrievedPassage(
        chunk_id=c.chunk_id, doc_id=c.doc_id, title=c.title, file_name=c.file_name,
        issuer=c.issuer, version=c.version, effective_date=c.effective_date, specialty=c.specialty,
        page=c.page, section=c.section, text=c.text, score_kind="rrf", score=hit.score, similarity=similarity,
    )
