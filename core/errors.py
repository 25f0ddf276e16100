"""User-facing errors: every message here is written to be shown to a clinician or admin as is."""

from __future__ import annotations

from typing import Literal

IngestProblem = Literal[
    "empty",
    "too_large",
    "unsupported_type",
    "corrupt",
    "encrypted",
    "needs_ocr",
    "not_utf8",
    "zip_bomb",
    "bad_name",
    "no_text",
]


class CQAError(Exception):
    """Base class for errors whose message is displayed to the user."""


class IngestError(CQAError):
    """A file could not be ingested; `problem` says why in one machine-readable word."""

    def __init__(self, problem: IngestProblem, message: str) -> None:
        super().__init__(message)
        self.problem: IngestProblem = problem


class StoreLockedError(CQAError):
    """The local guideline database is held by another process."""


class StoreUnavailableError(CQAError):
    """The vector store (Milvus) cannot be reached or opened."""


class LLMUnavailableError(CQAError):
    """The language model cannot be loaded or reached."""
