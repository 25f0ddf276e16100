"""AppTest of the admin models page (models table, adapters, upload, delete) and `core.models_info`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from streamlit.testing.v1 import AppTest

from core.adapters.gguf_info import read_gguf
from core.adapters.gguf_write import random_lora
from core.adapters.models_info import local_model, model_table, ollama_models
from core.adapters.registry import AdapterRegistry
from core.errors import LLMUnavailableError
from core.llm.embedded import bundled_model_path
from core.settings import LLMSettings, Settings
from tests.conftest import REPO, run_page_as

if TYPE_CHECKING:
    from tests.fake_ollama import FakeOllama

PAGE = REPO / "pages" / "models.py"
SHIPPED = sorted(p.stem for p in (REPO / "data" / "adapters").glob("*.gguf"))  # read-only, always listed
StartServer = Callable[..., "FakeOllama"]
pytestmark = pytest.mark.usefixtures("fast_backends")


@pytest.fixture
def lora(tmp_path: Path) -> bytes:
    base = bundled_model_path()
    assert base is not None
    return random_lora(tmp_path / "lora.gguf", read_gguf(base), weights=("attn_q",), rank=2).read_bytes()


def _no_ollama(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("CQA_OLLAMA_HOST", url)


def _table(at: AppTest, first_column: str) -> dict[str, list[str]]:
    frame = next(d.value for d in at.dataframe if d.value.columns[0] == first_column)
    return {column: list(frame[column]) for column in frame.columns}


def test_clinician_is_refused() -> None:
    at = run_page_as(PAGE, "clinician")
    assert any("do not have access" in e.value for e in at.error)
    assert not at.dataframe


def test_bundled_model_facts_and_an_uploaded_adapter_are_listed(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str, lora: bytes
) -> None:
    _no_ollama(monkeypatch, closed_port_url)
    AdapterRegistry.for_settings(Settings()).add(lora, "cite-v1", "Teaches the citation format")

    at = run_page_as(PAGE)

    assert not at.exception, at.exception
    models = _table(at, "model")
    assert models["model"] == ["SmolLM2-135M-Instruct.Q4_1"]
    assert (models["quantization"], models["vocabulary"], models["context window"]) == (["Q4_1"], ["49,152"], ["8,192"])
    assert models["parameters"] == ["134,515,008"] and models["file size"] == ["98.4 MB"]
    assert any("Chat template: SmolLM2" in e.label for e in at.expander)
    assert any("is not reachable" in c.value for c in at.caption)  # optional Ollama: a note, not an alarm
    table = _table(at, "adapter")
    row = {k: v[table["adapter"].index("cite-v1")] for k, v in table.items()}
    assert (row["rank"], row["alpha"], row["origin"]) == ("2", "4", "uploaded")
    assert row["description"] == "Teaches the citation format"
    assert set(table["adapter"]) == {"cite-v1", *SHIPPED}
    assert any(e.label == "cite-v1: model card" for e in at.expander)


def test_upload_then_delete_through_the_page(monkeypatch: pytest.MonkeyPatch, closed_port_url: str, lora: bytes) -> None:
    _no_ollama(monkeypatch, closed_port_url)
    at = run_page_as(PAGE)
    assert _table(at, "adapter")["adapter"] == SHIPPED

    at.get("file_uploader")[0].set_value([("my-adapter.gguf", lora, "application/octet-stream")])
    at.text_area(key="md_description").input("Refusal style")
    at.button(key="md_upload").click().run()

    assert not at.exception, at.exception
    assert any("Added adapter 'my-adapter' (rank 2" in s.value for s in at.success)
    assert set(_table(at, "adapter")["adapter"]) == {"my-adapter", *SHIPPED}

    at.checkbox(key="md_confirm_my-adapter").check().run()
    at.button(key="md_delete_my-adapter").click().run()

    assert any("Deleted adapter 'my-adapter'" in s.value for s in at.success)
    assert AdapterRegistry.for_settings(Settings()).names() == SHIPPED


def test_a_bad_upload_shows_the_validation_error(monkeypatch: pytest.MonkeyPatch, closed_port_url: str) -> None:
    _no_ollama(monkeypatch, closed_port_url)
    at = run_page_as(PAGE)
    at.button(key="md_upload").click().run()
    assert any("Choose a .gguf adapter file first" in e.value for e in at.error)

    at.get("file_uploader")[0].set_value([("model.gguf", b"GGUF\x03\x00\x00\x00", "application/octet-stream")])
    at.text_input(key="md_name").input("broken")
    at.button(key="md_upload").click().run()

    assert not at.exception, at.exception
    assert any("model.gguf was not added: broken.gguf is not a readable GGUF file" in e.value for e in at.error)
    assert AdapterRegistry.for_settings(Settings()).names() == SHIPPED


def test_unreachable_ollama_backend_is_a_warning_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, closed_port_url: str
) -> None:
    monkeypatch.setenv("CQA_LLM__BACKEND", "ollama")
    _no_ollama(monkeypatch, closed_port_url)

    at = run_page_as(PAGE)

    assert not at.exception, at.exception
    assert any(closed_port_url.removeprefix("http://") in w.value and "not reachable" in w.value for w in at.warning)
    assert _table(at, "model")["model"] == ["SmolLM2-135M-Instruct.Q4_1"]


def test_ollama_tags_are_listed_with_show_details(monkeypatch: pytest.MonkeyPatch, fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server(models=("llama3.2:1b", "qwen2.5:0.5b"))
    monkeypatch.setenv("CQA_LLM__BACKEND", "ollama")
    monkeypatch.setenv("CQA_OLLAMA_HOST", server.url)

    at = run_page_as(PAGE)

    assert not at.exception, at.exception
    models = _table(at, "model")
    assert models["model"] == ["SmolLM2-135M-Instruct.Q4_1", "llama3.2:1b (in use)", "qwen2.5:0.5b"]
    assert models["parameters"][1] == "1,235,814,432" and models["quantization"][1] == "Q4_K_M"
    assert models["context window"][1] == "131,072" and models["file size"][1] == "1.3 GB"
    assert any(e.label == "Chat template: qwen2.5:0.5b" for e in at.expander)


# -- core.models_info ---------------------------------------------------------------------------------


def test_ollama_models_names_the_host_when_unreachable(closed_port_url: str) -> None:
    with pytest.raises(LLMUnavailableError, match=f"Ollama at {closed_port_url} is not reachable"):
        ollama_models(LLMSettings(ollama_host=closed_port_url))


def test_ollama_models_and_local_model_rows(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server()

    rows = [local_model(LLMSettings()), *ollama_models(LLMSettings(ollama_host=server.url))]

    assert [r.in_use for r in rows] == [True, False]
    table = model_table(rows)
    assert table[1]["architecture"] == "llama" and table[1]["chat template"] == "yes"
    assert table[0]["model"] == "SmolLM2-135M-Instruct.Q4_1 (in use)"
