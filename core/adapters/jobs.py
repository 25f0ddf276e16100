"""Training runs started from the app: a separate process per run, polled through a status file.

The app process holds the Milvus Lite database (one process per db), so the dataset is built here,
in the app, and saved into the job folder; the training process reads only that folder and the base
model. Training in its own process also keeps the app responsive and its memory small, and lets
Cancel be a plain SIGTERM (the trainer stops at the next example and registers nothing).

Layout: `<adapters dir>/.jobs/<name>/` with `dataset/`, `status.json`, `train.log`, `job.json`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from core.adapters.dataset import Dataset
from core.errors import CQAError

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTIVE = frozenset({"dataset", "load", "train", "convert", "evaluate", "register"})


class JobStatus(BaseModel):
    name: str
    phase: str = Field(description="dataset, load, train, convert, evaluate, register, done, failed, cancelled.")
    step: int = 0
    total: int = 0
    loss: float | None = None
    message: str = ""
    elapsed_s: float = 0.0
    running: bool = False
    started_at: float = 0.0
    log_tail: str = ""

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


def jobs_dir(adapters_dir: Path) -> Path:
    return adapters_dir / ".jobs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that nobody waited for is a zombie: not running
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def check_new_name(adapters_dir: Path, name: str) -> None:
    """Raise before any work is done if `name` is taken or already training."""
    if (adapters_dir / f"{name}.gguf").exists():
        raise CQAError(f"An adapter named {name!r} already exists; choose another name or delete it first.")
    current = job_status(adapters_dir, name)
    if current is not None and current.running:
        raise CQAError(f"A training run for {name!r} is already in progress.")


def start_training(
    adapters_dir: Path, name: str, dataset: Dataset, *, description: str = "", time_budget_s: float | None = None,
    epochs: float | None = None, evaluate: bool = True, env: dict[str, str] | None = None,
) -> JobStatus:
    """Save `dataset` and start the training command (`core.cli.train_adapter`) on it in the background."""
    check_new_name(adapters_dir, name)
    folder = jobs_dir(adapters_dir) / name
    shutil.rmtree(folder, ignore_errors=True)
    try:
        dataset.save(folder / "dataset")
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise CQAError(f"Could not save the training data: {exc.strerror or exc} (is the disk full?).") from exc
    cmd = [sys.executable, "-m", "core.cli.train_adapter", "--name", name, "--dataset", str(folder / "dataset"),
           "--out", str(adapters_dir), "--status", str(folder / "status.json"), "--description", description]
    if time_budget_s:
        cmd += ["--time-budget", str(time_budget_s)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    if not evaluate:
        cmd.append("--no-eval")
    with (folder / "train.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own module, arguments are not shell-interpreted
            cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 **(env or {})},
        )
    (folder / "job.json").write_text(json.dumps({"pid": proc.pid, "started_at": time.time(), "cmd": cmd}), encoding="utf-8")
    status = job_status(adapters_dir, name)
    assert status is not None
    return status


def job_status(adapters_dir: Path, name: str) -> JobStatus | None:
    folder = jobs_dir(adapters_dir) / name
    try:
        job = json.loads((folder / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        raw = json.loads((folder / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {"phase": "dataset", "message": "Starting…"}
    alive = _alive(int(job["pid"]))
    status = JobStatus(name=name, running=alive and raw.get("phase") in ACTIVE, started_at=float(job["started_at"]),
                       **{k: v for k, v in raw.items() if k in JobStatus.model_fields and k != "name"})
    if not alive and status.phase in ACTIVE:
        status.phase = "failed"  # the process died without saying so (killed, out of memory)
        status.message = "The training process stopped unexpectedly; nothing was registered. See the log."
    if not status.running:
        log = folder / "train.log"
        status.log_tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.is_file() else ""
    return status


def list_jobs(adapters_dir: Path) -> list[JobStatus]:
    folder = jobs_dir(adapters_dir)
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    found = [job_status(adapters_dir, n) for n in names]
    return sorted((s for s in found if s is not None), key=lambda s: -s.started_at)


def cancel_training(adapters_dir: Path, name: str) -> bool:
    """Ask a running job to stop (SIGTERM: it stops at the next example, registers nothing)."""
    status = job_status(adapters_dir, name)
    if status is None or not status.running:
        return False
    job = json.loads((jobs_dir(adapters_dir) / name / "job.json").read_text(encoding="utf-8"))
    try:
        os.kill(int(job["pid"]), signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def forget_job(adapters_dir: Path, name: str) -> None:
    """Remove a finished job's folder (its dataset copy and log)."""
    status = job_status(adapters_dir, name)
    if status is not None and status.running:
        raise CQAError("Cancel the run before removing it.")
    shutil.rmtree(jobs_dir(adapters_dir) / name, ignore_errors=True)
