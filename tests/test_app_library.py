"""AppTest: login, role-based navigation, the admin library page and the search page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

APP = str(REPO / "app.py")


pytestmark = pytest.mark.usefixtures("fast_backends")


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def _login(at: AppTest, user: str, password: str) -> AppTest:
    at.text_input(key="login_user").input(user)
    at.text_input(key="login_password").input(password)
    at.button[0].click().run()
    return at


def test_login_required_and_wrong_password_is_refused() -> None:
    at = _app()
    assert not at.exception
    assert at.text_input(key="login_user")
    _login(at, "admin", "wrong-password")
    assert any("wrong password" in e.value for e in at.error)
    assert "auth_role" not in at.session_state


def test_admin_sees_library_with_demo_corpus(_isolated_data_dir: Path) -> None:
    at = _login(_app(), "admin", "admin-demo")
    assert not at.exception, at.exception
    at.switch_page("pages/library.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value  # Library tab (the upload tab has none before an upload)
    assert len(table) >= 12
    assert set(table["status"]) == {"active"}
    assert (_isolated_data_dir / "users.yaml").exists()


def test_clinician_cannot_open_admin_page() -> None:
    at = _login(_app(), "clinician", "clinician-demo")
    assert not at.exception
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/library.py")  # not in the clinician's navigation
    # And the page refuses by itself if reached some other way.
    page = AppTest.from_file(str(REPO / "pages" / "library.py"), default_timeout=60)
    page.session_state["auth_user"] = "clinician"
    page.session_state["auth_role"] = "clinician"
    page.run()
    assert any("do not have access" in e.value for e in page.error)
    assert not page.dataframe


def test_admin_uploads_good_and_bad_files_and_sees_clear_messages() -> None:
    at = _login(_app(), "admin", "admin-demo")
    at.switch_page("pages/library.py").run()
    good = b"---\ntitle: Gout flare management\nissuer: Test Trust\n---\n# Gout\n\n## 1. Treatment\n\nOffer colchicine 500 micrograms two to four times daily.\n"
    at.get("file_uploader")[0].set_value(
        [("gout.md", good, "text/markdown"), ("scan.exe", b"MZ\x90", "application/octet-stream"), ("empty.pdf", b"", "application/pdf")]
    )
    at.text_input(key="lib_version").input("1.0")
    at.button(key="FormSubmitter:lib_meta-Ingest").click().run(timeout=120)
    assert not at.exception, at.exception
    assert any("Ingested 'gout.md'" in s.value for s in at.success)
    errors = " ".join(e.value for e in at.error)
    assert "scan.exe" in errors and "empty.pdf" in errors
    results = at.dataframe[0].value  # upload results come first
    assert list(results["status"]) == ["ingested", "failed", "failed"]


def test_admin_retrieval_test_box_shows_page_and_section() -> None:
    at = _login(_app(), "admin", "admin-demo")
    at.switch_page("pages/library.py").run()
    at.text_input(key="lib_query").input("adrenaline dose anaphylaxis")
    at.button(key="FormSubmitter:lib_retrieval-Retrieve").click().run()
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert "Anaphylaxis" in shown or "anaphylaxis" in shown


def test_clinician_search_page() -> None:
    at = _login(_app(), "clinician", "clinician-demo")
    at.switch_page("pages/search.py").run()
    at.text_input(key="search_query").input("asthma inhaler")
    at.button(key="FormSubmitter:search_form-Search").click().run()
    assert not at.exception, at.exception
    assert any("[1]" in m.value for m in at.markdown)
