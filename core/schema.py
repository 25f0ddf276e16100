"""The project's own data types. LlamaIndex and Milvus types never leave `core`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FileFormat = Literal["pdf", "docx", "html", "markdown", "text"]
BlockKind = Literal["heading", "text", "table"]


class DocumentMeta(BaseModel):
    """Descriptive metadata of a guideline, from the file itself or the upload form."""

    title: str | None = Field(default=None, description="Guideline title.")
    issuer: str | None = Field(default=None, description="Organisation that issued it.")
    version: str | None = Field(default=None, description="Issuer's version label.")
    effective_date: str | None = Field(default=None, description="ISO date the guideline takes effect.")
    specialty: str | None = Field(default=None, description="Clinical specialty, e.g. cardiology.")

    def merged_with(self, override: DocumentMeta) -> DocumentMeta:
        """Fields set in `override` win; the rest come from self."""
        data = self.model_dump()
        data.update({k: v for k, v in override.model_dump().items() if v not in (None, "")})
        return DocumentMeta(**data)


class Block(BaseModel):
    """One structural unit of a parsed file, in reading order."""

    kind: BlockKind
    text: str
    level: int = Field(default=0, description="Heading level (1 = top); 0 for text and tables.")
    page: int | None = Field(default=None, description="1-based page number (PDF only).")


class ParsedDocument(BaseModel):
    """A file turned into ordered blocks, before chunking."""

    file_name: str
    format: FileFormat
    meta: DocumentMeta
    blocks: list[Block]
    pages: int | None = Field(default=None, description="Page count (PDF only).")
    warnings: list[str] = Field(default_factory=list)


class Chunk(BaseModel):
    """A retrievable passage with everything needed to cite it."""

    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    kind: Literal["text", "table"] = "text"
    page: int | None = None
    section: list[str] = Field(default_factory=list, description="Heading path, outermost first.")
    char_start: int = Field(description="Start offset in the page text (PDF) or the section text.")
    char_end: int


class RetrievedPassage(BaseModel):
    """A chunk returned by retrieval, with its document's citation metadata."""

    chunk_id: str
    doc_id: str
    title: str
    file_name: str
    issuer: str | None = None
    version: str | None = None
    effective_date: str | None = None
    specialty: str | None = None
    page: int | None = None
    section: list[str] = Field(default_factory=list)
    text: str
    score_kind: Literal["rrf", "cosine"]
    score: float = Field(description="Fused rank score (rrf) or cosine similarity; never a BM25 raw score.")
    similarity: float | None = Field(
        default=None, description="Dense cosine similarity to the query, used by the evidence gate."
    )
    rerank_score: float | None = Field(
        default=None, description="Passage reranker probability that it holds the answer (core.answering.evidence)."
    )

    @property
    def section_label(self) -> str:
        # A document's H1 is usually its title; repeating it in every citation is noise.
        path = self.section[1:] if self.section[:1] == [self.title] and len(self.section) > 1 else self.section
        return " › ".join(path) if path else "(no section)"
