"""AppTest: the admin rules page lists rules, shows validation errors with file and line, runs tests, saves."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO, run_page_as

PAGE = REPO / "pages" / "rules.py"


pytestmark = pytest.mark.usefixtures("fast_backends")


def _page(role: str = "admin") -> AppTest:
    return run_page_as(PAGE, role)


def test_clinician_is_refused() -> None:
    at = _page("clinician")
    assert any("do not have access" in e.value for e in at.error)


def test_admin_validates_broken_edit_and_runs_tests(_isolated_data_dir: Path) -> None:
    at = _page()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) >= 20  # the rules table
    at.selectbox(key="rules_file").select("escalation.yaml").run()
    original = at.text_area(key="rules_text_escalation.yaml").value
    assert original is not None
    at.text_area(key="rules_text_escalation.yaml").input(original.replace("level: emergent", "level: soonish", 1)).run()
    at.button(key="rules_validate").click().run()
    assert any("escalation.yaml line" in e.value and "level must be emergent|urgent" in e.value for e in at.error)
    assert at.button(key="rules_save").disabled

    at.text_area(key="rules_text_escalation.yaml").input(original).run()
    at.button(key="rules_run").click().run()
    assert not at.exception, at.exception
    # AppTest does not expose dataframe keys: the results table is the one with expect/got columns.
    results = next(d.value for d in at.dataframe if "got" in d.value.columns)
    assert len(results) > 200 and {"expect", "got", "passed"} <= set(results.columns)
    assert not at.button(key="rules_save").disabled

    at.button(key="rules_save").click().run()
    saved = _isolated_data_dir / "rules" / "escalation.yaml"
    assert saved.is_file() and list(saved.parent.glob("escalation.yaml.bak-*"))


def test_admin_sees_every_layer_of_the_screen_and_can_retrain_the_classifier(_isolated_data_dir: Path) -> None:
    at = _page()
    assert not at.exception, at.exception
    assert any("vitals.yaml" in e.label for e in at.expander)
    assert any("Learned classifier" in e.label for e in at.expander)
    categories = next(d.value for d in at.dataframe if "recall" in d.value.columns)
    assert len(categories) >= 80
    at.button(key="rules_retrain").click().run(timeout=300)
    assert not at.exception, at.exception
    assert any("Retrained" in s.value for s in at.success), [e.value for e in at.error]
    assert (_isolated_data_dir / "triage" / "classifier.json").is_file()
