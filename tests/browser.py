"""A real browser against a real `streamlit run`: our own fixtures (no browser downloads here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.llm import FakeLLM
from tests.conftest import CORPUS, REPO
from tests.fake_ollama import FakeOllama
from tests.helpers import free_port, quote_first_passage

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("Debian chromium is required for browser tests (.ci/run installs it).")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    return found




@dataclass
class RunningApp:
    url: str
    data_dir: Path
    log: Path


def start_app(data_dir: Path, guidelines: Path, env_extra: dict[str, str] | None = None) -> Iterator[RunningApp]:
    port = free_port()
    log = data_dir.parent / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CQA_")}
    env.update(CQA_DATA_DIR=str(data_dir), CQA_GUIDELINES_DIR=str(guidelines), OMP_WAIT_POLICY="PASSIVE",
               HF_HUB_OFFLINE="1", **(env_extra or {}))
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start:\n" + log.read_text()[-3000:])
        yield RunningApp(url, data_dir, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        yield page
        browser.close()


def login(page: object, url: str, user: str, password: str) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(url)
    page.get_by_label("User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    signed_in = page.get_by_text(f"Signed in as {user}")
    click_until(page, page.get_by_role("button", name="Log in"), signed_in)
    signed_in.wait_for()


def wait_idle(page: object, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished its current script run (its 'Running…' widget is gone);
    a click during a rerun can be dropped."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout_ms)


def click_until(page: object, button: object, expected: object, tries: int = 3, timeout: float | None = None) -> None:
    """Click, then wait for what the click should show (`expected`). A click that lands while a rerun
    is starting can be dropped, so click again, but only while the button is still there: under load
    the rerun may start late, and the button may already be gone when the first click worked. `timeout`
    (ms) is how long the outcome may then take."""
    from playwright.sync_api import Locator
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    assert isinstance(button, Locator) and isinstance(expected, Locator)
    for _ in range(tries):
        wait_idle(page)
        if expected.count():
            return
        if not button.count():
            break  # the click was taken and the page moved on: just wait for the outcome
        button.click()
        try:
            expected.first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            continue
    expected.first.wait_for(timeout=timeout)  # None: the page's default (90 s)


def start_quoting_app(tmp_path: Path, fake_ollama_server: Callable[..., FakeOllama]) -> Iterator[RunningApp]:
    """The app on the anaphylaxis guideline, answering through an Ollama API that quotes passage [1]."""
    server = fake_ollama_server(backend=FakeLLM(quote_first_passage))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anaphylaxis.md", corpus)
    env = {"CQA_LLM__BACKEND": "ollama", "CQA_OLLAMA_HOST": server.url, "CQA_LLM__ALLOW_FALLBACK": "false"}
    yield from start_app(tmp_path / "var", corpus, env)
