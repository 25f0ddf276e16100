"""Real browser: a clinician asks a question and sees a cited answer with its Sources panel.

The app runs for real (streamlit, MiniLM, Milvus Lite, the official `ollama` client, citation
verification); the model behind the Ollama API is the test's own server answering by quoting the
first passage it was given, so the answer is deterministic. The real SmolLM2 model is exercised by
the AppTest and integration tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser import RunningApp, click_until, login, start_quoting_app, wait_idle
from tests.fake_ollama import FakeOllama

pytestmark = [pytest.mark.browser, pytest.mark.integration]




@pytest.fixture
def app(tmp_path: Path, fake_ollama_server: Callable[..., FakeOllama]) -> Iterator[RunningApp]:
    yield from start_quoting_app(tmp_path, fake_ollama_server)




def test_clinician_sees_cited_answer_and_sources(app: RunningApp, browser_page: object, test_output: Path) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    login(page, app.url, "clinician", "clinician-demo")
    expect(page.get_by_text("Decision support only, not a medical device")).to_be_visible()
    wait_idle(page)
    box = page.get_by_placeholder("Ask a question about your guidelines")
    question = "What is the adult IM adrenaline dose in anaphylaxis?"
    for _ in range(3):  # resend only if the question never reached the app
        box.fill(question)
        box.press("Enter")
        wait_idle(page)
        if page.get_by_test_id("stChatMessage").count():
            break
    expect(page.get_by_text(re.compile(r"Sources \(\d\)"))).to_be_visible(timeout=180_000)
    # Evidence first: the guideline's own dose sentence, verbatim, cited to its section.
    expect(page.get_by_text("From your guidelines")).to_be_visible()
    quote = page.locator("blockquote").filter(has_text="Give adrenaline 0.5 mg IM")
    expect(quote.first).to_be_visible()
    expect(quote.first).to_contain_text("3.1 Adrenaline")
    expect(page.get_by_text("Emergency Treatment of Anaphylaxis in Adults").first).to_be_visible()
    expect(page.get_by_text("verified").first).to_be_visible()
    expect(page.get_by_text("/ 8,192 tokens", exact=False).first).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Open original")).first).to_be_visible()
    page.screenshot(path=str(test_output / "browser_chat.png"), full_page=True)


def test_clinician_rates_an_answer_and_admin_sees_it_counted(
    app: RunningApp, browser_page: object, test_output: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    login(page, app.url, "clinician", "clinician-demo")
    wait_idle(page)
    box = page.get_by_placeholder("Ask a question about your guidelines")
    for _ in range(3):
        box.fill("What dose of adrenaline is given intramuscularly in anaphylaxis?")
        box.press("Enter")
        wait_idle(page)
        if page.get_by_test_id("stChatMessage").count():
            break
    expect(page.get_by_text(re.compile(r"Sources \(\d\)"))).to_be_visible(timeout=180_000)
    thumbs_down = page.locator('[data-testid^="stFeedbackButton"]').nth(1)
    send = page.get_by_role("button", name="Send feedback")
    wait_idle(page)
    thumbs_down.click()  # a toggle: clicking twice would undo it, so no retry here
    expect(send).to_be_visible(timeout=60_000)
    thanks = page.get_by_text("your feedback was recorded")
    click_until(page, send, thanks)
    expect(thanks.first).to_be_visible()
    assert page.context.browser is not None
    admin = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # a second user, own session
    admin.set_default_timeout(90_000)
    login(admin, app.url, "admin", "admin-demo")
    wait_idle(admin)
    admin.get_by_role("link", name="Analytics").click()
    wait_idle(admin)
    expect(admin.get_by_text("👍 0 · 👎 1")).to_be_visible(timeout=60_000)
    admin.screenshot(path=str(test_output / "browser_feedback.png"), full_page=True)
