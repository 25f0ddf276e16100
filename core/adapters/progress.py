"""Progress of a training run, shared by training and the evaluation it ends with (and read by the UI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Phase = Literal["dataset", "load", "train", "convert", "evaluate", "register", "done", "failed", "cancelled"]


class TrainProgress(BaseModel):
    phase: Phase
    step: int = 0
    total: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    message: str = ""
