"""Train a LoRA adapter for the bundled model on CPU, convert it to GGUF and register it.

`python -m core.adapters.train --name NAME [--dataset DIR] [--status FILE] [--no-eval] ...` (or `make train`;
the adapters page starts it in the background, `core.adapters.jobs`): build or load the dataset, train
(`core.adapters.train`), then run the base vs adapter evaluation for the model card. Progress goes to the
terminal and to the JSON status file the app polls; SIGTERM cancels cleanly (exit 4).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from core.adapters.progress import TrainProgress
from core.adapters.train import (
    StatusFile,
    TrainConfig,
    TrainingCancelled,
    build_library_dataset,
    load_dataset_dir,
    train_adapter,
)
from core.errors import CQAError
from core.evaluation.adapter_card import evaluate_into_card
from core.llm.embedded import resolve_model_path
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.adapters.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--description", default="")
    parser.add_argument("--dataset", type=Path, help="A saved dataset folder instead of building one from the library.")
    parser.add_argument("--out", type=Path, help="Adapters folder (default: <data dir>/adapters).")
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--rank", type=int)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--lr", type=float, dest="learning_rate")
    parser.add_argument("--grad-accum", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--time-budget", type=float, dest="time_budget_s", metavar="SECONDS",
                        help="Cut the number of steps to fit this many seconds of training.")
    parser.add_argument("--status", type=Path, help="Write progress as JSON to this file.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an adapter of the same name.")
    parser.add_argument("--no-eval", action="store_true", help="Skip the base vs adapter evaluation for the card.")
    args = parser.parse_args(argv)

    status = StatusFile(args.status)
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    started = time.monotonic()
    try:
        settings = Settings()
        overrides = {k: v for k, v in vars(args).items()
                     if k in TrainConfig.model_fields and k not in ("name", "description") and v is not None}
        config = TrainConfig(name=args.name, description=args.description, **overrides)
        out = args.out or settings.data_dir / "adapters"
        status(TrainProgress(phase="dataset", message="Building the dataset from the guideline library…"))
        dataset = load_dataset_dir(args.dataset) if args.dataset else build_library_dataset(settings, args.seed)
        counts = ", ".join(f"{k} {v}" for k, v in dataset.report.counts.items())
        status(TrainProgress(phase="dataset", message=f"{dataset.report.examples} examples ({counts})",
                             elapsed_s=round(time.monotonic() - started, 1)))
        result = train_adapter(dataset, resolve_model_path(settings.llm), out, config, status, cancel, args.overwrite)
        if not args.no_eval:
            evaluate_into_card(result.adapter, settings, progress=status, cancel=cancel)
        status(TrainProgress(phase="done", message=f"Adapter written: {result.adapter}",
                             elapsed_s=round(time.monotonic() - started, 1)))
        return 0
    except TrainingCancelled as exc:
        status(TrainProgress(phase="cancelled", message=str(exc), elapsed_s=round(time.monotonic() - started, 1)))
        return 4
    except CQAError as exc:
        status(TrainProgress(phase="failed", message=str(exc), elapsed_s=round(time.monotonic() - started, 1)))
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except ValueError as exc:  # pydantic validation of the options
        status(TrainProgress(phase="failed", message=str(exc).splitlines()[0]))
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
