"""First start: create demo users and index the bundled demo corpus once."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from core.governance.users import UserStore
from core.library.ingestion import GuidelineLibrary, IngestOutcome
from core.library.parsing import SUPPORTED_SUFFIXES
from core.settings import Settings


class FirstStart(BaseModel):
    users_created: list[str] = Field(default_factory=list)
    indexed: list[IngestOutcome] = Field(default_factory=list)


def corpus_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    # A README in the corpus folder describes the corpus; it is not a guideline.
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and p.stem.lower() != "readme"
    )


def ensure_demo_users(settings: Settings) -> list[str]:
    """Create the demo admin and clinician when the users file has nobody (first start)."""
    if not settings.auth.create_demo_users:
        return []
    users = UserStore(settings.users_path, settings.auth.cookie_name, settings.auth.cookie_expiry_days)
    return [] if users.usernames() else users.ensure_demo_users()


def first_start(settings: Settings, library: GuidelineLibrary) -> FirstStart:
    """Idempotent: the corpus is indexed only once per data folder (a marker file records it),
    so an admin who deletes demo documents does not see them come back on restart."""
    result = FirstStart(users_created=ensure_demo_users(settings))
    marker = settings.data_dir / ".corpus-indexed"
    if not marker.exists():
        result.indexed = library.ingest_files(corpus_files(settings.guidelines_dir))
        marker.write_text("indexed from " + str(settings.guidelines_dir) + "\n", encoding="utf-8")
    return result
