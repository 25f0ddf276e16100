"""AppTest: the admin prompts page validates, lists, activates, rolls back, diffs and previews."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.answering.prompts import BUILTIN_USER_TEMPLATE
from tests.conftest import REPO, run_page_as

PAGE = REPO / "pages" / "prompts.py"
SUBMIT = "FormSubmitter:pr_new-Save version"


pytestmark = pytest.mark.usefixtures("fast_backends")


def _page(role: str = "admin") -> AppTest:
    return run_page_as(PAGE, role)


def _versions(at: AppTest) -> dict[str, str]:
    table = at.dataframe[0].value
    return dict(zip(table["version"], table["active"], strict=True))


def test_clinician_is_refused() -> None:
    at = _page("clinician")
    assert any("do not have access" in e.value for e in at.error)
    assert not at.dataframe


def test_admin_creates_activates_and_rolls_back() -> None:
    at = _page()
    assert not at.exception, at.exception
    assert _versions(at) == {"builtin-1": "✓"}
    assert at.text_area(key="pr_user").value == BUILTIN_USER_TEMPLATE  # prefilled with the active text

    at.text_area(key="pr_user").input("Passages:\n{passages}\nAnswer now.")
    at.button(key=SUBMIT).click().run()
    assert any("must contain {question}" in e.value for e in at.error)
    assert list(_versions(at)) == ["builtin-1"]

    at.text_input(key="pr_name").input("Terse")
    at.text_area(key="pr_system").input("Answer in one sentence with a citation like [1].")
    at.text_area(key="pr_user").input("Passages:\n{passages}\nQuestion: {question}")
    at.button(key=SUBMIT).click().run()
    assert not at.exception, at.exception
    assert _versions(at) == {"builtin-1": "✓", "v1": ""}
    assert any("Saved as v1" in s.value for s in at.success)
    at.selectbox(key="pr_diff_a").select("builtin-1")
    at.selectbox(key="pr_diff_b").select("v1").run()
    assert "+Answer in one sentence" in at.code[0].value  # the diff tab

    at.selectbox(key="pr_pick").select("v1").run()
    at.button(key="pr_activate").click().run()
    assert _versions(at) == {"builtin-1": "", "v1": "✓"}
    assert any("v1 is now active" in s.value for s in at.success)

    at.button(key="pr_rollback").click().run()
    assert _versions(at) == {"builtin-1": "✓", "v1": ""}
    at.button(key="pr_rollback").click().run()
    assert any("no earlier active version" in e.value for e in at.error)


def test_preview_shows_the_final_prompt_with_real_retrieval() -> None:
    at = _page()
    at.text_input(key="pr_question").input("adrenaline dose anaphylaxis")
    at.button(key="pr_preview").click().run(timeout=120)
    assert not at.exception, at.exception
    system, user = at.code[-2].value, at.code[-1].value
    assert "ONLY the numbered guideline passages" in system
    assert "Question: adrenaline dose anaphylaxis" in user
    assert "[1] " in user or "passes the similarity floor" in " ".join(w.value for w in at.warning)



def test_preview_applies_the_pipelines_evidence_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passages above the similarity floor are not enough: the best must reach the evidence threshold,
    as in the pipeline (the preview once re-implemented the gate without it)."""
    monkeypatch.setenv("CQA_ANSWER__MIN_PASSAGE_SIMILARITY", "-1")
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_THRESHOLD", "1.01")
    monkeypatch.setenv("CQA_ANSWER__EVIDENCE_FIRST", "false")  # else the answerability head's own gate applies
    at = _page()
    at.text_input(key="pr_question").input("adrenaline dose anaphylaxis")
    at.button(key="pr_preview").click().run(timeout=120)
    assert not at.exception, at.exception
    assert any("the model would not be asked" in w.value for w in at.warning)


COMPARE = str(REPO / "pages" / "compare.py")


def test_compare_page_runs_both_sides_and_saves_a_preference(_isolated_data_dir: object) -> None:
    at = AppTest.from_file(COMPARE, default_timeout=120)
    at.session_state["auth_user"] = "clinician"
    at.session_state["auth_role"] = "clinician"
    at.run()
    assert not at.exception, at.exception
    at.text_input(key="cmp_question").input("What dose of adrenaline is given in anaphylaxis?").run()
    at.button(key="cmp_run").click().run(timeout=120)
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader] == ["A", "B"]
    differences = at.dataframe[0].value
    assert "status" in set(differences["measure"])
    at.radio(key="cmp_preferred").set_value("B")
    at.text_area(key="cmp_reason").input("clearer")
    at.button(key="FormSubmitter:cmp_pref-Save preference").click().run()
    assert any("preference was saved" in s.value for s in at.success)
