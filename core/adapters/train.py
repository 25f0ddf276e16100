"""Train a LoRA adapter for the bundled model on CPU, convert it to GGUF and register it.

    python -m core.adapters.train --name cqa-smollm2            # dataset from the indexed library
    python -m core.adapters.train --name x --dataset DIR          # a dataset saved earlier (train.jsonl, ...)
    python -m core.adapters.train --name x --max-steps 5          # a smoke run

(the command itself is `core/cli/train_adapter.py`, which also ends a run with the model card's evaluation).

The adapter appears in the registry (`<adapters dir>/<name>.gguf`) only when everything worked: the
GGUF file is moved into place last, after its model card and dataset; a failed or cancelled run
leaves nothing behind. Progress goes to the callback (and, from the CLI, to a JSON status file that
the app's adapters page reads); SIGTERM cancels a CLI run cleanly.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.adapters.convert import gguf_lora_tensors, write_gguf_lora
from core.adapters.dataset import Dataset, DatasetReport, TrainingExample, load_examples
from core.adapters.progress import Phase, TrainProgress
from core.errors import CQAError

MIN_FREE_BYTES = 200 * 1024 * 1024


class TrainConfig(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Adapter name (file <name>.gguf).")
    description: str = ""
    rank: int = Field(default=8, ge=1, le=128)
    alpha: float = Field(default=16.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    first_layer: int = Field(
        default=15, ge=0,
        description="Adapt layers from this one up: backpropagation stops below it, so training is cheaper.")
    learning_rate: float = Field(default=3e-4, gt=0)
    epochs: float = Field(default=2.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    grad_accum: int = Field(default=4, ge=1, description="Examples per optimizer step.")
    max_seq_tokens: int = Field(default=1024, ge=64, description="Longer examples are skipped.")
    seed: int = 0
    threads: int | None = Field(default=None, description="Torch threads (default: all cores).")
    time_budget_s: float | None = Field(
        default=None, gt=0, description="Fit the run into this many seconds of training: after 3 steps the "
        "step count (and the learning-rate schedule) is cut to what the measured speed allows.")
    validation_batches: int = Field(default=12, ge=0, description="Validation examples scored for the loss curve.")


class TrainingCancelled(CQAError):
    pass


class TrainResult(BaseModel):
    adapter: Path
    card: Path
    dataset_dir: Path
    card_data: dict[str, Any]


Progress = Callable[[TrainProgress], None]


def _noop(_: TrainProgress) -> None:
    pass


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled("Training was cancelled; no adapter was registered.")


def load_base(base_gguf: Path) -> tuple[Any, Any]:
    """The bundled GGUF dequantized into a transformers model (fp32) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not base_gguf.is_file():
        raise CQAError(f"The base model {base_gguf} does not exist.")
    tokenizer = AutoTokenizer.from_pretrained(str(base_gguf.parent), gguf_file=base_gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(base_gguf.parent), gguf_file=base_gguf.name, dtype=torch.float32)
    return model, tokenizer


def encode(tokenizer: Any, example: TrainingExample) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt: only the answer is learned), in the model's chat template."""
    prompt = tokenizer.apply_chat_template(example.messages[:-1], add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(example.target + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def lora_config(config: TrainConfig, n_layers: int) -> Any:
    """The PEFT configuration for a run: every field of the card's `training.config` that PEFT reads."""
    from peft import LoraConfig

    return LoraConfig(r=config.rank, lora_alpha=config.alpha,  # type: ignore[arg-type]  # float alphas work
                      lora_dropout=config.dropout, target_modules=list(config.target_modules), bias="none",
                      task_type="CAUSAL_LM", layers_to_transform=list(range(config.first_layer, n_layers)))


def train_adapter(
    dataset: Dataset,
    base_gguf: Path,
    adapters_dir: Path,
    config: TrainConfig,
    progress: Progress = _noop,
    cancel: threading.Event | None = None,
    overwrite: bool = False,
) -> TrainResult:
    import torch
    from peft import get_peft_model, get_peft_model_state_dict

    started = time.monotonic()

    def report(phase: Phase, message: str, step: int = 0, total: int = 0, loss: float | None = None) -> None:
        progress(TrainProgress(phase=phase, step=step, total=total, loss=loss, elapsed_s=round(time.monotonic() - started, 1),
                               message=message))

    adapters_dir.mkdir(parents=True, exist_ok=True)
    final = adapters_dir / f"{config.name}.gguf"
    if final.exists() and not overwrite:
        raise CQAError(f"An adapter named {config.name!r} already exists; choose another name or delete it first.")
    free = shutil.disk_usage(adapters_dir).free
    if free < MIN_FREE_BYTES:
        raise CQAError(f"Disk almost full: {free // 2**20} MB free in {adapters_dir}, training needs at least "
                       f"{MIN_FREE_BYTES // 2**20} MB.")
    train_set, val_set = dataset.split("train"), dataset.split("validation")
    if not train_set:
        raise CQAError("The dataset has no training examples.")

    report("load", "Loading the base model (dequantizing the GGUF)…")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(base_gguf)
    _check_cancel(cancel)
    n_layers = int(model.config.num_hidden_layers)
    if config.first_layer >= n_layers:
        raise CQAError(f"first_layer {config.first_layer} is past the model's {n_layers} layers.")
    model = get_peft_model(model, lora_config(config, n_layers))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    encoded = [encode(tokenizer, e) for e in train_set]
    too_long = sum(1 for ids, _ in encoded if len(ids) > config.max_seq_tokens)
    encoded = [x for x in encoded if len(x[0]) <= config.max_seq_tokens]
    val_encoded = [x for x in (encode(tokenizer, e) for e in val_set) if len(x[0]) <= config.max_seq_tokens]
    val_encoded = val_encoded[: config.validation_batches]
    if not encoded:
        raise CQAError(f"Every training example is longer than {config.max_seq_tokens} tokens.")

    steps_per_epoch = math.ceil(len(encoded) / config.grad_accum)
    total = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=0.0)
    warmup = max(1, total // 20)
    planned = total
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / total))

    causal_lm: Any = model.base_model.model

    def answer_loss(ids: list[int], labels: list[int], reduction: str = "mean") -> Any:
        """Cross-entropy on the answer tokens only; the vocabulary projection (49k outputs) is applied to
        those positions alone, not to the whole prompt."""
        start = next(i for i, label in enumerate(labels) if label != -100)
        hidden = causal_lm.model(input_ids=torch.tensor([ids])).last_hidden_state
        logits = causal_lm.lm_head(hidden[0, start - 1 : -1])
        return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(ids[start:]), reduction=reduction)

    def val_loss() -> float | None:
        if not val_encoded:
            return None
        model.eval()
        with torch.no_grad():
            losses = [float(answer_loss(ids, labels)) for ids, labels in val_encoded]
        model.train()
        return round(sum(losses) / len(losses), 4)

    report("train", "Scoring the validation examples before training…", 0, total)
    val_before = val_loss()
    order_rng = random.Random(config.seed)
    order: list[int] = []
    curve: list[tuple[int, float]] = []
    model.train()
    t_train = time.monotonic()
    step = 0
    while step < total:
        step += 1
        group = []
        for _ in range(config.grad_accum):
            if not order:
                order = list(range(len(encoded)))
                order_rng.shuffle(order)
            group.append(encoded[order.pop()])
        # Every answer token weighs the same: averaging per example instead would give a 3-token
        # refusal the weight of a 40-token cited answer, and the model learns to refuse.
        tokens = sum(len(ids) - next(i for i, x in enumerate(labels) if x != -100) for ids, labels in group)
        batch_loss = 0.0
        for ids, labels in group:
            _check_cancel(cancel)
            loss = answer_loss(ids, labels, reduction="sum") / tokens
            loss.backward()
            batch_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        curve.append((step, round(batch_loss, 4)))
        report("train", f"Step {step}/{total}", step, total, round(batch_loss, 4))
        if config.time_budget_s and step == 3:
            per_step = (time.monotonic() - t_train) / step
            total = max(step, min(total, int(config.time_budget_s / per_step)))
    train_seconds = time.monotonic() - t_train
    val_after = val_loss()
    _check_cancel(cancel)

    report("convert", "Converting to a GGUF LoRA…", total, total)
    state = {k: v.detach().float().numpy() for k, v in get_peft_model_state_dict(model).items()}
    cfg = causal_lm.config
    tensors = gguf_lora_tensors(state, cfg.num_attention_heads, cfg.num_key_value_heads)
    work = adapters_dir / f".training-{config.name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True)
        write_gguf_lora(work / final.name, tensors, config.alpha, config.name, base_name=base_gguf.stem)
        dataset_dir = work / f"{config.name}.dataset"
        dataset.save(dataset_dir)
        card = {
            "name": config.name,
            "description": config.description or "LoRA adapter trained from the guideline library.",
            "base_model": base_gguf.name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training": {
                "method": "LoRA (PEFT) on the dequantized base model, CPU, fp32; converted to a GGUF LoRA",
                "config": config.model_dump(),
                "trainable_parameters": trainable,
                "train_examples": len(encoded), "validation_examples": len(val_set),
                "skipped_too_long": too_long,
                "steps": total, "planned_steps": planned, "examples_seen": total * config.grad_accum,
                "train_seconds": round(train_seconds, 1),
                "seconds_per_step": round(train_seconds / total, 2),
                "threads": torch.get_num_threads(),
                "validation_loss_before": val_before, "validation_loss_after": val_after,
                "loss_curve": curve,
                "dataset": dataset.report.model_dump(),
                "dataset_files": f"{config.name}.dataset/",
                "software": _versions(),
            },
            "evaluation": {},
        }
        (work / f"{config.name}.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        _check_cancel(cancel)
        report("register", "Registering the adapter…", total, total)
        result = _move_into_place(work, adapters_dir, config.name)
    except OSError as exc:
        raise CQAError(f"Could not save the adapter: {exc.strerror or exc} (is the disk full?). Nothing was registered.") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("done", f"Adapter {config.name!r} trained in {round(time.monotonic() - started)} s.", total, total)
    return TrainResult(adapter=result, card=adapters_dir / f"{config.name}.json",
                       dataset_dir=adapters_dir / f"{config.name}.dataset", card_data=card)


def _move_into_place(work: Path, adapters_dir: Path, name: str) -> Path:
    """Card and dataset first, the GGUF last: the registry lists `.gguf` files only, so a crash in
    between leaves no half-registered adapter."""
    dataset_dir = adapters_dir / f"{name}.dataset"
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    os.replace(work / f"{name}.dataset", dataset_dir)
    os.replace(work / f"{name}.json", adapters_dir / f"{name}.json")
    final = adapters_dir / f"{name}.gguf"
    os.replace(work / f"{name}.gguf", final)
    return final


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "peft", "gguf")}


def load_dataset_dir(folder: Path) -> Dataset:
    """A dataset saved by `Dataset.save` (train.jsonl, validation.jsonl, report.json)."""
    try:
        examples = load_examples(folder / "train.jsonl") + load_examples(folder / "validation.jsonl")
        report = DatasetReport.model_validate_json((folder / "report.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CQAError(f"{folder} is not a saved dataset: {Path(str(exc.filename)).name} is missing.") from exc
    except ValueError as exc:
        raise CQAError(f"The dataset in {folder} is not valid: {str(exc).splitlines()[0]}") from exc
    return Dataset(examples=examples, report=report)


def build_dataset_from(svc: Any, seed: int = 0) -> Dataset:
    """The dataset from the active documents of an open library (`core.services.Services`)."""
    from core.adapters.dataset import build_dataset, red_flags_from_rules
    from core.safety.rule_files import load_rules

    chunks = [c for d in svc.library.documents() if d.status == "active" for c in svc.library.chunks(d.doc_id)]
    flags, clarifications = red_flags_from_rules(load_rules(svc.settings))
    return build_dataset(chunks, svc.embedder.embed, red_flags=flags, clarifications=clarifications, seed=seed)


def build_library_dataset(settings: Any, seed: int = 0) -> Dataset:
    """The dataset from the library in `settings.data_dir` (opens it: the app must not be holding it)."""
    from core.services import build_services

    svc = build_services(settings)
    try:
        return build_dataset_from(svc, seed)
    finally:
        svc.close()


class StatusFile:
    """Progress as JSON, rewritten atomically, for a UI in another process to poll."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, p: TrainProgress) -> None:
        print(f"[{p.elapsed_s:7.1f}s] {p.phase:9s} {p.message}" + (f"  loss {p.loss:.4f}" if p.loss is not None else ""),
              flush=True)
        self.write(p)

    def write(self, p: TrainProgress) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**p.model_dump(), "pid": os.getpid(), "updated": time.time()}), encoding="utf-8")
        os.replace(tmp, self.path)


if __name__ == "__main__":  # the documented `python -m core.adapters.train`: the command is core/cli/train_adapter.py
    # (importing it from here would be an import cycle), so this process becomes that command.
    os.execv(sys.executable, [sys.executable, "-m", "core.cli.train_adapter", *sys.argv[1:]])
