"""Training runs started from the app: a real background process that can be cancelled, a process that
dies is reported as failed, and the models page shows progress, Cancel and outcomes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from core.adapters.jobs import cancel_training, job_status, jobs_dir, list_jobs, start_training
from core.errors import CQAError
from tests.conftest import REPO, run_page_as
from tests.helpers import tiny_dataset

PAGE = REPO / "pages" / "models.py"


def _wait_for(adapters: Path, name: str, phases: set[str], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = job_status(adapters, name)
        if status is not None and status.phase in phases:
            return status.phase
        time.sleep(0.5)
    raise AssertionError(f"{name}: never reached {phases}; last {job_status(adapters, name)}")


@pytest.mark.integration
@pytest.mark.slow
def test_background_run_can_be_cancelled_and_a_killed_run_is_reported(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    dataset = tiny_dataset()
    start_training(adapters, "stopme", dataset, time_budget_s=60)
    with pytest.raises(CQAError, match="already in progress"):
        start_training(adapters, "stopme", dataset)
    _wait_for(adapters, "stopme", {"load", "train"})
    assert cancel_training(adapters, "stopme")
    assert _wait_for(adapters, "stopme", {"cancelled", "failed"}) == "cancelled"
    status = job_status(adapters, "stopme")
    assert status is not None and not status.running and "no adapter was registered" in status.message
    assert not list(adapters.glob("*.gguf")) and not list(adapters.glob("*.json"))

    start_training(adapters, "killed", dataset)
    _wait_for(adapters, "killed", {"load", "train"})
    pid = json.loads((jobs_dir(adapters) / "killed" / "job.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    assert _wait_for(adapters, "killed", {"failed"}, timeout=30) == "failed"
    killed = job_status(adapters, "killed")
    assert killed is not None and "stopped unexpectedly" in killed.message
    assert [j.name for j in list_jobs(adapters)] == ["killed", "stopme"]
    assert not list(adapters.glob("*.gguf"))


def _fake_job(adapters: Path, name: str, status: dict[str, object], pid: int) -> None:
    folder = jobs_dir(adapters) / name
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"pid": pid, "started_at": time.time()}))
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "train.log").write_text("Traceback ... MemoryError\n")


@pytest.mark.usefixtures("fast_backends")
def test_models_page_shows_progress_cancel_and_outcomes(monkeypatch: pytest.MonkeyPatch) -> None:
    adapters = Path(os.environ["CQA_DATA_DIR"]) / "adapters"
    _fake_job(adapters, "running", {"phase": "train", "step": 5, "total": 20, "loss": 0.8, "message": "Step 5/20"},
              os.getpid())
    _fake_job(adapters, "broken", {"phase": "failed", "message": "Disk almost full: 3 MB free"}, 999_999)
    at = run_page_as(PAGE, "admin")
    assert not at.exception
    assert [p.proto.value for p in at.get("progress")] == [25], [p.proto for p in at.get("progress")]
    assert any(b.label == "Cancel" for b in at.button)
    assert any("Disk almost full" in e.value for e in at.error)


@pytest.mark.usefixtures("fast_backends")
def test_training_form_rejects_a_bad_name_and_a_taken_one() -> None:
    adapters = Path(os.environ["CQA_DATA_DIR"]) / "adapters"
    adapters.mkdir(parents=True)
    (adapters / "taken.gguf").write_bytes(b"x")
    at = run_page_as(PAGE, "admin")
    submit = next(b for b in at.button if b.label == "Build dataset and train")
    at.text_input(key="tr_name").input("bad name!")
    submit.click()
    at.run()
    assert any("Give the adapter a name" in e.value for e in at.error)
    at.text_input(key="tr_name").input("taken")
    next(b for b in at.button if b.label == "Build dataset and train").click()
    at.run()
    assert any("already exists" in e.value for e in at.error), [e.value for e in at.error]
    assert not jobs_dir(adapters).exists()  # nothing was started
