"""GGUF header reading and the adapter registry: validation against the real SmolLM2 base, uploads,
listing, deletion, atomicity and read-only shipped adapters."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from core.adapters.gguf_info import lora_facts, model_facts, read_gguf
from core.adapters.gguf_write import write_lora_gguf
from core.adapters.registry import AdapterRegistry
from core.errors import CQAError
from core.llm.embedded import bundled_model_path

BASE = bundled_model_path()
pytestmark = pytest.mark.skipif(BASE is None or not BASE.is_file(), reason="bundled SmolLM2 GGUF not installed")
HIDDEN, KV = 576, 192  # SmolLM2-135M: attn_q is [576, 576], attn_k [192, 576] ([out, in])


def tiny_lora(path: Path, rank: int = 2, **overrides: np.ndarray) -> bytes:
    """A valid rank-`rank` LoRA on two real SmolLM2 weights; `overrides` replace tensors by name."""
    rng = np.random.default_rng(1)
    tensors = {
        "blk.0.attn_q.weight.lora_a": rng.normal(0, 0.01, (rank, HIDDEN)),
        "blk.0.attn_q.weight.lora_b": rng.normal(0, 0.01, (HIDDEN, rank)),
        "blk.1.attn_k.weight.lora_a": rng.normal(0, 0.01, (rank, HIDDEN)),
        "blk.1.attn_k.weight.lora_b": rng.normal(0, 0.01, (KV, rank)),
    }
    tensors.update({k.replace("__", "."): v for k, v in overrides.items()})
    write_lora_gguf(path, tensors, alpha=16.0)
    return path.read_bytes()


@pytest.fixture
def registry(tmp_path: Path) -> AdapterRegistry:
    assert BASE is not None
    return AdapterRegistry([tmp_path / "var" / "adapters", tmp_path / "shipped"], base_model=BASE)


@pytest.fixture
def valid(tmp_path: Path) -> bytes:
    return tiny_lora(tmp_path / "valid.gguf")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- reading GGUF headers ---------------------------------------------------------------------------


def test_model_facts_of_the_bundled_model_match_the_gguf_reader() -> None:
    assert BASE is not None
    facts = model_facts(BASE)

    assert (facts.architecture, facts.quantization, facts.vocab_size, facts.context_length) == ("llama", "Q4_1", 49152, 8192)
    assert facts.chat_template is not None and "<|im_start|>" in facts.chat_template
    assert facts.size_bytes == BASE.stat().st_size
    reference = gguf.GGUFReader(BASE)  # slow but authoritative
    assert facts.parameters == sum(int(t.n_elements) for t in reference.tensors)
    ours = {t.name: (t.shape, t.type, t.n_bytes) for t in read_gguf(BASE).tensors}
    theirs = {t.name: (tuple(int(d) for d in reversed(t.shape)), t.tensor_type.name, int(t.n_bytes)) for t in reference.tensors}
    assert ours == theirs


def test_lora_facts_read_alpha_rank_and_targets(tmp_path: Path) -> None:
    tiny_lora(tmp_path / "a.gguf", rank=3)

    facts = lora_facts(tmp_path / "a.gguf")

    assert (facts.architecture, facts.alpha, facts.rank) == ("llama", 16.0, 3)
    assert {t.base: (t.lora_a, t.lora_b) for t in facts.targets} == {
        "blk.0.attn_q.weight": ((3, HIDDEN), (HIDDEN, 3)),
        "blk.1.attn_k.weight": ((3, HIDDEN), (KV, 3)),
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"hello, not a model", "not a readable GGUF file: it does not start with the GGUF signature"),
        (b"GGUF" + b"\0" * 3, "truncated"),
        (b"GGUF" + (9).to_bytes(4, "little") + b"\0" * 16, "GGUF version 9 is not supported"),
    ],
)
def test_unreadable_files_are_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)

    with pytest.raises(CQAError, match=message):
        read_gguf(path)


def test_truncated_adapter_is_refused_without_reading_tensor_data(tmp_path: Path, valid: bytes) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(valid[: len(valid) - 100])

    with pytest.raises(CQAError, match="cut.gguf.*runs past the end of the file"):
        read_gguf(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CQAError, match="ghost.gguf: the file cannot be read"):
        read_gguf(tmp_path / "ghost.gguf")


# -- validation against the base model ----------------------------------------------------------------


def test_valid_adapter_validates(registry: AdapterRegistry, tmp_path: Path) -> None:
    tiny_lora(tmp_path / "ok.gguf")

    facts = registry.validate(tmp_path / "ok.gguf")

    assert facts.rank == 2 and len(facts.targets) == 2


def test_wrong_shape_names_the_tensor_and_both_shapes(registry: AdapterRegistry, tmp_path: Path) -> None:
    tiny_lora(tmp_path / "wide.gguf", **{"blk__1__attn_k__weight__lora_b": np.zeros((HIDDEN, 2))})

    with pytest.raises(CQAError) as err:
        registry.validate(tmp_path / "wide.gguf")

    assert str(err.value) == (
        "wide.gguf: blk.1.attn_k.weight is [192, 576] ([out, in]) in SmolLM2-135M-Instruct.Q4_1.gguf, so its "
        "lora_a must be [2, 576] and lora_b [192, 2]; the adapter has lora_a [2, 576] and lora_b [576, 2]."
    )


def test_ranks_of_a_pair_must_agree(registry: AdapterRegistry, tmp_path: Path) -> None:
    tiny_lora(tmp_path / "ranks.gguf", **{"blk__0__attn_q__weight__lora_b": np.zeros((HIDDEN, 5))})

    with pytest.raises(CQAError, match=r"blk.0.attn_q.weight has lora_a \[2, 576\] and lora_b \[576, 5\].*same rank"):
        registry.validate(tmp_path / "ranks.gguf")


def test_tensor_missing_from_the_base_is_named(registry: AdapterRegistry, tmp_path: Path) -> None:
    tiny_lora(tmp_path / "deep.gguf", **{"blk__99__attn_q__weight__lora_a": np.zeros((2, HIDDEN)),
                                         "blk__99__attn_q__weight__lora_b": np.zeros((HIDDEN, 2))})

    with pytest.raises(CQAError, match="has no tensor 'blk.99.attn_q.weight'"):
        registry.validate(tmp_path / "deep.gguf")


def test_half_a_pair_is_refused(registry: AdapterRegistry, tmp_path: Path) -> None:
    write_lora_gguf(tmp_path / "half.gguf", {"blk.0.attn_q.weight.lora_a": np.zeros((2, HIDDEN))}, alpha=1.0)

    with pytest.raises(CQAError, match="'blk.0.attn_q.weight.lora_a' has no matching blk.0.attn_q.weight.lora_b"):
        registry.validate(tmp_path / "half.gguf")


def test_wrong_architecture_is_refused(registry: AdapterRegistry, tmp_path: Path) -> None:
    write_lora_gguf(tmp_path / "qwen.gguf", {"blk.0.attn_q.weight.lora_a": np.zeros((2, HIDDEN)),
                                            "blk.0.attn_q.weight.lora_b": np.zeros((HIDDEN, 2))},
                    alpha=1.0, architecture="qwen2")

    with pytest.raises(CQAError, match="adapter for the 'qwen2' architecture; the base model .* is 'llama'"):
        registry.validate(tmp_path / "qwen.gguf")


def test_a_base_model_is_not_an_adapter(registry: AdapterRegistry) -> None:
    assert BASE is not None
    with pytest.raises(CQAError, match=r"is a GGUF model \(llama, 134,515,008 parameters\), not an adapter"):
        registry.validate(BASE)


def test_not_a_gguf_is_refused(registry: AdapterRegistry, tmp_path: Path) -> None:
    (tmp_path / "notes.gguf").write_text("just text")

    with pytest.raises(CQAError, match="notes.gguf is not a readable GGUF file"):
        registry.validate(tmp_path / "notes.gguf")


# -- add, list, delete --------------------------------------------------------------------------------


def test_add_list_get_delete(registry: AdapterRegistry, valid: bytes) -> None:
    record = registry.add(valid, "cite-v1", "Teaches the citation format")

    assert record.name == "cite-v1" and not record.shipped and record.problem is None
    assert (record.rank, record.alpha, record.targets, record.size_bytes) == (2, 16.0, 2, len(valid))
    assert record.sha256 == hashlib.sha256(valid).hexdigest()
    assert record.base_model == "SmolLM2-135M-Instruct.Q4_1"
    card = json.loads((registry.upload_folder / "cite-v1.json").read_text())
    assert card["description"] == "Teaches the citation format" and card["created_at"] and card["sha256"] == record.sha256
    assert [r.name for r in registry.list()] == ["cite-v1"] and registry.get("cite-v1") == record
    assert registry.choice("cite-v1", 0.5).path == registry.upload_folder / "cite-v1.gguf"

    registry.delete("cite-v1")

    assert registry.list() == [] and _leftovers(registry.upload_folder) == []
    with pytest.raises(CQAError, match="No adapter 'cite-v1'; available: none yet."):
        registry.get("cite-v1")


def test_add_from_a_path_keeps_a_training_card(registry: AdapterRegistry, tmp_path: Path) -> None:
    tiny_lora(tmp_path / "trained.gguf")
    card = {"base_model": "SmolLM2-135M-Instruct", "training": {"steps": 200}, "evaluation": {"verified": 0.8}}

    record = registry.add(tmp_path / "trained.gguf", "trained", card=card)

    assert record.card["training"] == {"steps": 200} and record.card["evaluation"] == {"verified": 0.8}
    assert record.base_model == "SmolLM2-135M-Instruct"


@pytest.mark.parametrize("name", ["", "../evil", "with space", "a" * 65, ".hidden", "semi;colon"])
def test_bad_names_are_refused(registry: AdapterRegistry, valid: bytes, name: str) -> None:
    with pytest.raises(CQAError, match="is not allowed: use 1-64 letters"):
        registry.add(valid, name)
    assert _leftovers(registry.upload_folder) == []


def test_an_existing_name_is_not_overwritten(registry: AdapterRegistry, valid: bytes, tmp_path: Path) -> None:
    registry.add(valid, "cite-v1", "first")
    other = tiny_lora(tmp_path / "other.gguf", rank=4)

    with pytest.raises(CQAError, match="An adapter named 'cite-v1' already exists \\(uploaded\\); choose another name."):
        registry.add(other, "cite-v1", "second")

    assert registry.get("cite-v1").description == "first" and registry.get("cite-v1").rank == 2


def test_size_limit(tmp_path: Path, valid: bytes) -> None:
    assert BASE is not None
    small = AdapterRegistry([tmp_path / "up"], base_model=BASE, max_bytes=1000)

    with pytest.raises(CQAError, match=r"is 0.\d MB; the limit is 0 MB"):
        small.add(valid, "big")
    with pytest.raises(CQAError, match="is empty"):
        small.add(b"", "empty")


def test_a_failed_upload_leaves_nothing(registry: AdapterRegistry, tmp_path: Path) -> None:
    wrong = tiny_lora(tmp_path / "wrong.gguf", **{"blk__0__attn_q__weight__lora_b": np.zeros((KV, 2))})

    with pytest.raises(CQAError, match="wrong-one.gguf: blk.0.attn_q.weight is \\[576, 576\\]"):
        registry.add(wrong, "wrong-one")
    with pytest.raises(CQAError, match="not a readable GGUF"):
        registry.add(b"GGUF garbage", "garbage")

    assert _leftovers(registry.upload_folder) == [] and registry.names() == []


def test_a_failure_while_publishing_leaves_nothing(
    registry: AdapterRegistry, valid: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def fail_on_gguf(src: str | Path, dst: str | Path) -> None:
        if str(dst).endswith(".gguf"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_gguf)
    with pytest.raises(OSError, match="No space left"):
        registry.add(valid, "cite-v1")

    assert _leftovers(registry.upload_folder) == []


def test_shipped_adapters_are_listed_read_only(registry: AdapterRegistry, valid: bytes) -> None:
    shipped = registry.folders[1]
    shipped.mkdir(parents=True)
    (shipped / "house.gguf").write_bytes(valid)
    (shipped / "house.json").write_text(json.dumps({"description": "Shipped one", "evaluation": {"n": 120}}))
    registry.add(valid, "mine")

    records = {r.name: r for r in registry.list()}

    assert list(records) == ["mine", "house"]  # uploads first
    assert records["house"].shipped and not records["mine"].shipped
    assert records["house"].description == "Shipped one" and records["house"].card["evaluation"] == {"n": 120}
    with pytest.raises(CQAError, match="'house' is shipped with the app .* cannot be deleted here"):
        registry.delete("house")
    with pytest.raises(CQAError, match="already exists \\(shipped with the app\\)"):
        registry.add(valid, "house")
    assert (shipped / "house.gguf").is_file()


def test_unreadable_adapters_and_cards_are_listed_with_the_problem(registry: AdapterRegistry, valid: bytes) -> None:
    folder = registry.upload_folder
    folder.mkdir(parents=True)
    (folder / "junk.gguf").write_bytes(b"GGUF")
    (folder / "good.gguf").write_bytes(valid)
    (folder / "good.json").write_text("{not json")

    records = {r.name: r for r in registry.list()}

    assert records["junk"].problem is not None and "junk.gguf is not a readable GGUF file" in records["junk"].problem
    assert records["junk"].rank is None
    assert records["good"].rank == 2 and records["good"].problem is not None and "not readable JSON" in records["good"].problem


def test_listing_hashes_each_file_once(registry: AdapterRegistry, valid: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    registry.add(valid, "cite-v1")
    registry.list()
    calls: list[object] = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(a) or real(*a))

    registry.list()

    assert calls == []
