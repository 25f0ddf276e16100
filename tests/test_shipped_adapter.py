"""The adapter shipped in data/adapters: registered with its model card and dataset, valid for the
bundled model, and it toggles and changes answers on the real model."""

from __future__ import annotations

import pytest

from core.adapters.dataset import load_examples
from core.adapters.registry import AdapterRegistry
from core.evaluation.adapter_card import judge
from core.llm import AdapterChoice, ChatMessage, GenerationParams
from core.llm.embedded import EmbeddedLlamaBackend
from core.settings import LLMSettings, Settings
from tests.conftest import REPO

NAME = "cqa-cite-v1"
FOLDER = REPO / "data" / "adapters"


def test_shipped_adapter_is_registered_with_its_card_and_dataset() -> None:
    registry = AdapterRegistry.for_settings(Settings())
    record = registry.get(NAME)
    assert record.shipped and record.problem is None
    registry.validate(record.path)  # fits the bundled model's tensors
    card = record.card
    assert card["base_model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    training = card["training"]
    assert training["steps"] > 0 and training["validation_loss_after"] < training["validation_loss_before"]
    for section in ("validation", "eval_set"):
        evaluation = card["evaluation"][section]
        assert all(evaluation["criteria"].values()), (section, evaluation["criteria"])
    dataset = FOLDER / f"{NAME}.dataset"
    assert len(load_examples(dataset / "train.jsonl")) == training["train_examples"] + training["skipped_too_long"]


@pytest.mark.integration
def test_shipped_adapter_toggles_and_changes_answers_on_the_real_model() -> None:
    examples = [e for e in load_examples(FOLDER / f"{NAME}.dataset" / "validation.jsonl") if e.kind == "answer"][:3]
    llm = EmbeddedLlamaBackend(LLMSettings(backend="embedded"))
    params = GenerationParams(max_tokens=96, temperature=0.0, seed=0)
    adapter = AdapterChoice(name=NAME, path=FOLDER / f"{NAME}.gguf")
    base_valid = adapted_valid = 0
    for example in examples:
        messages = [ChatMessage(role=m["role"], content=m["content"])  # type: ignore[arg-type]
                    for m in example.messages[:-1]]
        base = llm.complete(messages, params)
        adapted = llm.complete(messages, params, adapter)
        off = llm.complete(messages, params, adapter.model_copy(update={"scale": 0.0}))
        assert off == base and adapted != base
        base_valid += judge(example, base, 0).format_valid
        adapted_valid += judge(example, adapted, 0).format_valid
    assert adapted_valid > base_valid
