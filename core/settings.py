"""All configuration, read from `CQA_*` environment variables (nested with `__`) and `.env`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class IngestSettings(BaseModel):
    chunk_size: int = Field(default=900, ge=200, le=8000, description="Target chunk length in characters.")
    chunk_overlap: int = Field(default=120, ge=0, le=2000, description="Characters repeated between chunks.")
    min_chunk_chars: int = Field(default=160, ge=0, description="Fragments shorter than this are merged.")
    max_file_mb: float = Field(default=25.0, gt=0, description="Uploads larger than this are refused.")
    max_unzipped_mb: float = Field(default=100.0, gt=0, description="DOCX expanding beyond this is refused.")
    embed_batch: int = Field(
        default=256, ge=1, le=4096, description="Passages embedded and stored per batch, across files in a bulk run."
    )


class StoreSettings(BaseModel):
    mode: Literal["milvus", "memory"] = Field(
        default="milvus", description="milvus: Milvus Lite or server; memory: in-process fake (tests, demos)."
    )
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus server URI (http://host:port). Unset: Milvus Lite under the data folder.",
    )
    milvus_token: str | None = Field(default=None, description="Token for a secured Milvus server.")
    collection: str = Field(default="guidelines", description="Milvus collection name.")
    hybrid_ranker: Literal["RRFRanker", "WeightedRanker"] = Field(default="RRFRanker")


class EmbeddingSettings(BaseModel):
    mode: Literal["minilm", "fake"] = Field(
        default="minilm", description="minilm: bundled all-MiniLM-L6-v2; fake: hashing (tests only)."
    )
    model_dir: Path | None = Field(default=None, description="Override the bundled model folder.")
    dim: int = Field(default=384, description="Embedding dimension.")


class LLMSettings(BaseModel):
    backend: Literal["embedded", "ollama", "fake"] = Field(
        default="embedded", description="embedded: llama.cpp in-process; ollama: OLLAMA server; fake: tests."
    )
    model_path: Path | None = Field(default=None, description="GGUF file; unset = bundled SmolLM2-135M.")
    n_ctx: int = Field(default=8192, ge=512, description="Context window for the embedded model.")
    n_threads: int | None = Field(default=None, description="CPU threads for llama.cpp; unset = auto.")
    ollama_host: str = Field(default="http://127.0.0.1:11434", description="Ollama server URL.")
    ollama_model: str = Field(default="llama3.2:1b", description="Ollama model tag.")
    ollama_num_ctx: int = Field(default=8192, description="num_ctx sent with every Ollama request.")
    ollama_timeout_s: float = Field(default=120.0, description="Timeout for one Ollama request.")
    allow_fallback: bool = Field(
        default=True, description="If Ollama is unreachable, answer with the embedded model (shown)."
    )
    default_adapter: str | None = Field(
        default="cqa-cite-v1",
        description="LoRA adapter used by default with the embedded model (chat sidebar pre-selection, core.ask); "
        "a registry name; empty = the base model. Ignored when the adapter is missing or the backend is Ollama.",
    )
    max_answer_tokens: int = Field(default=320, description="Cap on generated tokens per answer.")
    seed: int = Field(default=42, description="Sampling seed.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)


class RetrievalSettings(BaseModel):
    top_k: int = Field(default=5, ge=1, le=50, description="Passages retrieved per question.")
    include_superseded: bool = Field(default=False, description="Search superseded versions too.")
    expand_queries: bool = Field(
        default=True, description="Search with the expansions of the question's abbreviations, brand and lay names "
        "(data/answering/clinical_synonyms.json: 'amox' is also searched as amoxicillin).",
    )


class AnswerSettings(BaseModel):
    top_k: int = Field(default=5, ge=1, le=20, description="Passages retrieved per question.")
    max_passages: int = Field(default=3, ge=1, le=10, description="Passages given to the model at most.")
    evidence_threshold: float = Field(
        default=0.41, description="Refuse unless the best passage cosine similarity reaches this (scripts/calibrate_gate.py)."
    )
    min_passage_similarity: float = Field(
        default=0.30, description="Passages below this similarity are not given to the model."
    )
    evidence_first: bool = Field(
        default=True,
        description="Rerank passages and answer with verbatim guideline sentences, the model's summary on top "
        "only when it verifies (core.answering.evidence). Off: the model writes the answer (the checks stay).",
    )
    evidence_model: Path | None = Field(
        default=None, description="Evidence scorers file; unset = data/answering/evidence_model.json."
    )


class AuditSettings(BaseModel):
    url: str | None = Field(
        default=None, description="SQLAlchemy URL of the audit log; unset = SQLite audit.sqlite in the data folder."
    )
    store_raw_questions: bool = Field(
        default=False, description="Keep questions unredacted in the audit log (an admin decision; off by default)."
    )


class AuthSettings(BaseModel):
    cookie_name: str = Field(default="cqa_auth")
    cookie_expiry_days: float = Field(default=1.0, description="Login lifetime.")
    create_demo_users: bool = Field(default=True, description="Create demo admin/clinician on first start.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CQA_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Field(default=REPO_ROOT / "var", description="All run-time state lives here.")
    guidelines_dir: Path = Field(
        default=REPO_ROOT / "data" / "guidelines", description="Corpus indexed on first start."
    )
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    # Shortcut env names the issues promise (CQA_MILVUS_URI, CQA_OLLAMA_HOST) map onto nested fields.
    milvus_uri: str | None = Field(default=None, description="Alias of store.milvus_uri.")
    ollama_host: str | None = Field(default=None, description="Alias of llm.ollama_host.")

    def model_post_init(self, __context: object) -> None:
        if self.milvus_uri:
            self.store.milvus_uri = self.milvus_uri
        if self.ollama_host:
            self.llm.ollama_host = self.ollama_host
        self.data_dir = self.data_dir.resolve()

    @cached_property
    def milvus_lite_path(self) -> Path:
        return self.data_dir / "milvus.db"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "library.sqlite"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def users_path(self) -> Path:
        return self.data_dir / "users.yaml"
