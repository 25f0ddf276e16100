"""Real browser: a clinician compares two configurations on one question and sees both columns.

The app runs for real (streamlit, MiniLM, Milvus Lite, the `ollama` client, citation verification);
behind the Ollama API is the test's own server quoting the first passage it gets (as in
test_browser_chat.py), so both sides answer quickly and deterministically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser import RunningApp, click_until, login, start_quoting_app, wait_idle
from tests.fake_ollama import FakeOllama

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def app(tmp_path: Path, fake_ollama_server: Callable[..., FakeOllama]) -> Iterator[RunningApp]:
    yield from start_quoting_app(tmp_path, fake_ollama_server)


def test_side_by_side_comparison_shows_both_columns(app: RunningApp, browser_page: object, test_output: Path) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    login(page, app.url, "clinician", "clinician-demo")
    wait_idle(page)
    page.get_by_role("link", name="Compare").click()
    wait_idle(page)
    expect(page.get_by_role("heading", name="Compare configurations")).to_be_visible(timeout=60_000)
    question = page.get_by_role("textbox", name="Question")
    question.fill("What dose of adrenaline is given intramuscularly in anaphylaxis?")
    question.press("Enter")  # commits the text input, enabling Run
    wait_idle(page)
    differences = page.get_by_text("Differences", exact=True)
    # Both sides answer in turn after one retrieval; on a loaded 2-core machine that has taken over 90 s.
    click_until(page, page.get_by_role("button", name="Run", exact=True), differences, timeout=180_000)
    expect(differences).to_be_visible()
    expect(page.get_by_role("heading", name="A", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="B", exact=True)).to_be_visible()
    # Both sides quote the guideline; the quoting model's summary verifies, so it is shown on top of each.
    expect(page.get_by_text("Summary verified: shown above the guideline sentences.")).to_have_count(2)
    expect(page.get_by_text("passage(s) retrieved once", exact=False)).to_be_visible()
    page.set_viewport_size({"width": 1400, "height": 2000})  # Streamlit scrolls inside its main area
    wait_idle(page)
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    page.wait_for_timeout(1000)  # let the table's canvas paint before the screenshot
    page.screenshot(path=str(test_output / "browser_compare.png"), full_page=True)
