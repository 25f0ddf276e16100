"""Prompt versions: seed, validation, activate/rollback, diff, preview, persistence, concurrent writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.answering.prompt_store import (
    MAX_SYSTEM_CHARS,
    PromptStore,
    PromptStoreError,
    PromptValidationError,
    prompt_store_for,
)
from core.answering.prompts import BUILTIN_PROMPT
from core.schema import RetrievedPassage
from core.settings import Settings

USER = "Passages:\n{passages}\n\nQ: {question}\nA:"


@pytest.fixture
def store(tmp_path: Path) -> PromptStore:
    return PromptStore(f"sqlite:///{tmp_path / 'prompts.sqlite'}")


def _passage(n: int, text: str) -> RetrievedPassage:
    return RetrievedPassage(chunk_id=f"c{n}", doc_id="d", title="Sepsis", file_name="sepsis.md",
                            section=["Sepsis", f"{n}. Treatment"], text=text, score_kind="rrf", score=0.1)


def test_first_use_seeds_the_builtin_prompt_as_active(store: PromptStore) -> None:
    [seed] = store.versions()
    assert seed.version == "builtin-1" and seed.active
    assert store.active() == BUILTIN_PROMPT
    assert [a.version for a in store.activations()] == ["builtin-1"]


def test_create_labels_versions_and_leaves_the_active_one_alone(store: PromptStore) -> None:
    v1 = store.create("Shorter", "Be brief.", USER, author="admin", note="  try shorter  ")
    v2 = store.create("", "Be briefer.", USER, author="admin")
    assert (v1.version, v2.version) == ("v1", "v2")
    assert v1.note == "try shorter" and v2.name == "Version 2"
    assert [v.version for v in store.versions()] == ["builtin-1", "v1", "v2"]
    assert store.get("v1") == v1 and not v1.active
    assert store.active().version == "builtin-1"


@pytest.mark.parametrize(("system", "user", "message"), [
    ("Be brief.", "Passages: {passages}", "must contain {question}"),
    ("Be brief.", "Q: {question}", "must contain {passages}"),
    ("   ", USER, "system prompt is empty"),
    ("x" * (MAX_SYSTEM_CHARS + 1), USER, "limit is 4,000"),
    ("Be brief.", USER + "x" * 2000, "user template has"),
])
def test_invalid_prompts_are_rejected_with_clear_messages(store: PromptStore, system: str, user: str, message: str) -> None:
    with pytest.raises(PromptValidationError, match=message):
        store.create("bad", system, user, author="admin")
    assert len(store.versions()) == 1


def test_all_problems_are_reported_at_once(store: PromptStore) -> None:
    with pytest.raises(PromptValidationError) as info:
        store.create("bad", "", "no placeholders", author="admin")
    assert len(info.value.problems) == 3


def test_activate_and_roll_back_step_by_step(store: PromptStore) -> None:
    store.create("one", "One.", USER, author="admin")
    store.create("two", "Two.", USER, author="admin")
    store.activate("v1", user="alice")
    store.activate("v2", user="bob")
    assert store.active().version == "v2"
    assert [v.version for v in store.versions() if v.active] == ["v2"]
    assert store.rollback(user="carol").version == "v1"
    assert store.active().system == "One."
    assert store.rollback().version == "builtin-1"
    with pytest.raises(PromptStoreError, match="no earlier active version"):
        store.rollback()
    history = store.activations()
    assert [(a.version, a.undone_by) for a in history] == [
        ("builtin-1", None), ("v1", "unknown"), ("v2", "carol")]


def test_unknown_version_is_a_clear_error(store: PromptStore) -> None:
    with pytest.raises(PromptStoreError, match="no prompt version 'v9'"):
        store.activate("v9")
    with pytest.raises(PromptStoreError, match="no prompt version 'v9'"):
        store.get("v9")


def test_diff_shows_changed_lines_of_system_and_user(store: PromptStore) -> None:
    store.create("edit", BUILTIN_PROMPT.system.replace("1 to 3", "1 or 2"), USER, author="admin")
    diff = store.diff("builtin-1", "v1")
    assert diff.startswith("--- builtin-1\n+++ v1\n")
    assert "-- Answer in 1 to 3 short sentences." in diff and "+- Answer in 1 or 2 short sentences." in diff
    assert "+Passages:" in diff
    assert store.diff("v1", "v1") == ""


def test_preview_has_numbered_passages_and_the_question(store: PromptStore) -> None:
    store.create("edit", "Only cite.", USER, author="admin")
    passages = [_passage(1, "Give antibiotics within 1 hour."), _passage(2, "Take blood cultures first.")]
    system, user = store.preview("v1", "  When to give antibiotics?  ", passages)
    assert system.role == "system" and system.content == "Only cite."
    assert user.content.startswith("Passages:\n[1] Sepsis — 1. Treatment")
    assert "[2] Sepsis — 2. Treatment" in user.content and "Take blood cultures first." in user.content
    assert user.content.endswith("Q: When to give antibiotics?\nA:")


def test_versions_and_activation_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'prompts.sqlite'}"
    first = PromptStore(url)
    first.create("kept", "Kept.", USER, author="admin")
    first.activate("v1")
    first.close()
    again = PromptStore(url)
    assert [v.version for v in again.versions()] == ["builtin-1", "v1"]
    assert again.active().version == "v1" and again.rollback().version == "builtin-1"


def test_concurrent_creates_get_distinct_labels(store: PromptStore) -> None:
    threads = [threading.Thread(target=store.create, args=(f"t{i}", "Sys.", USER, "admin")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = [v.version for v in store.versions()]
    assert sorted(labels) == sorted(["builtin-1", *(f"v{i}" for i in range(1, 9))])


def test_store_for_settings_lives_in_the_data_folder(settings: Settings) -> None:
    store = prompt_store_for(settings)
    assert store is prompt_store_for(settings)
    assert store.active().version == "builtin-1"
    assert (settings.data_dir / "prompts.sqlite").is_file()


def test_unusable_url_is_a_clear_error() -> None:
    with pytest.raises(PromptStoreError, match="cannot be used"):
        PromptStore("nosuchdialect://x")
