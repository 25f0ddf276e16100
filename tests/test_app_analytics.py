"""AppTest: the admin analytics page over a pre-filled audit log, and its empty and no-access states."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.answers import AdapterRef
from core.governance.audit import audit_log_for
from core.settings import Settings
from tests.conftest import REPO, run_page_as
from tests.helpers import make_answer

PAGE = REPO / "pages" / "analytics.py"


pytestmark = pytest.mark.usefixtures("fast_backends")


def _page(role: str = "admin") -> AppTest:
    return run_page_as(PAGE, role)


def _table(at: AppTest, column: str, exclude: str = "") -> pd.DataFrame:
    """The first table with `column` (and without `exclude`): tables carry no keys."""
    return next(d.value for d in at.dataframe if column in d.value.columns and exclude not in d.value.columns)


def _fill(settings: Settings) -> None:
    log = audit_log_for(settings)
    lora = AdapterRef(name="concise", scale=0.5)
    ids = [
        log.record(make_answer(total_s=1.0), "alice", "clinician", "s1"),
        log.record(make_answer(grounded=False, total_s=3.0, adapter=lora), "alice", "clinician", "s1"),
        log.record(make_answer("refused", "Dose of unobtainium?"), "bob", "clinician", "s2"),
        log.record(make_answer("refused", "dose of Unobtainium"), "bob", "clinician", "s2"),
        log.record(make_answer("escalated", prompt_version="builtin-2"), "alice", "clinician", "s1"),
    ]
    log.add_feedback(ids[0], "alice", 1)
    log.add_feedback(ids[2], "bob", -1, "should_not_have_refused", "It is in the formulary.")
    log.close()


def test_admin_sees_rates_gaps_and_documents(settings: Settings) -> None:
    _fill(settings)
    at = _page()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Questions"] == "5"
    assert metrics["Answered"] == "40%" and metrics["Refused"] == "40%" and metrics["Escalated"] == "20%"
    assert metrics["Verified citations"] == "50%"
    assert metrics["Latency p50 / p95"].endswith("s")
    refused = _table(at, "example")
    assert refused.iloc[0]["times"] == 2  # the two spellings are one gap
    cited = _table(at, "cited")
    assert cited.iloc[0]["document"] == "anaphylaxis.md" and cited.iloc[0]["cited"] == 3
    never = _table(at, "document", exclude="cited")
    assert "anaphylaxis.md" not in set(never["document"]) and len(never) >= 10  # the demo corpus
    adapters = _table(at, "adapter_name").set_index("adapter_name")
    assert adapters.loc["concise", "questions"] == 1 and adapters.loc["(none)", "thumbs_down"] == 1
    assert len(at.get("download_button")) == 2


def test_status_filter_narrows_every_table(settings: Settings) -> None:
    _fill(settings)
    at = _page()
    at.selectbox(key="an_status").select("refused").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Questions"] == "2" and metrics["Refused"] == "100%" and metrics["Verified citations"] == "—"


def test_empty_log_says_so() -> None:
    at = _page()
    assert not at.exception, at.exception
    assert any("No answers recorded yet" in i.value for i in at.info)


def test_clinician_is_refused() -> None:
    at = _page("clinician")
    assert any("do not have access" in e.value for e in at.error)
    assert not at.metric
