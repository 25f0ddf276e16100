"""Real browser: log in as admin, upload a guideline, see it listed, run a retrieval."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import RunningApp, click_until, login, start_app, wait_idle
from tests.conftest import CORPUS

pytestmark = [pytest.mark.browser, pytest.mark.integration]

GUIDELINE = b"""---
title: Gout Flare Management
issuer: Browser Test Trust
version: "1.0"
specialty: Rheumatology
---
# Gout Flare Management

## 1. Treatment of an acute flare

Offer colchicine 500 micrograms two to four times daily, or naproxen 500 mg twice daily with a proton pump inhibitor.

## 2. Urate lowering

Start allopurinol 100 mg once daily two weeks after the flare settles, titrating to a serum urate below 360 micromol/L.
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[RunningApp]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anaphylaxis.md", corpus)  # a small first-start corpus keeps start-up quick
    yield from start_app(tmp_path / "var", corpus)


def test_admin_uploads_lists_and_retrieves(app: RunningApp, browser_page: object, tmp_path: Path, test_output: Path) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    login(page, app.url, "admin", "admin-demo")
    wait_idle(page)
    page.get_by_role("link", name="Guideline library").click()
    wait_idle(page)
    upload = tmp_path / "gout.md"
    upload.write_bytes(GUIDELINE)
    page.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("gout.md").first.wait_for()
    outcome = page.get_by_text(re.compile(r"Ingested 'gout.md'|'gout.md' is already in the library"))
    click_until(page, page.get_by_role("button", name="Ingest"), outcome)
    expect(outcome.first).to_be_visible(timeout=120_000)

    page.get_by_role("tab", name="Library").click()
    # The table itself is a canvas grid; the document picker under it lists the same rows as text.
    panel = page.get_by_role("tabpanel", name="Library")
    panel.get_by_role("combobox").first.click()
    expect(page.get_by_role("option", name="Gout Flare Management · v1.0 · active · gout.md")).to_be_visible()
    page.keyboard.press("Escape")

    page.get_by_role("tab", name="Retrieval test").click()
    page.get_by_label("Query").fill("colchicine dose for a gout flare")
    result = page.get_by_text("[1] Gout Flare Management")
    click_until(page, page.get_by_role("button", name="Retrieve"), result)
    expect(result).to_be_visible(timeout=60_000)
    expect(page.get_by_text("1. Treatment of an acute flare").first).to_be_visible()
    page.screenshot(path=str(test_output / "browser_library.png"), full_page=True)
