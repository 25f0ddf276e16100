"""The Ollama backend through the real `ollama` client against tests/fake_ollama.py."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import socket  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import ollama  # noqa: E402
import pytest  # noqa: E402

from core.errors import CQAError, LLMUnavailableError  # noqa: E402
from core.llm import AdapterChoice, ChatMessage, FakeLLM, GenerationParams, build_llm  # noqa: E402
from core.llm.ollama_backend import OllamaBackend  # noqa: E402
from core.settings import LLMSettings  # noqa: E402

if TYPE_CHECKING:
    from tests.fake_ollama import FakeOllama

# Registers the `fake_ollama_server` fixture (imported only this way, so pytest can rewrite its asserts).

DEFAULT_MODEL = "llama3.2:1b"  # what the fake server installs unless told otherwise
StartServer = Callable[..., "FakeOllama"]
QUESTION = [
    ChatMessage(role="system", content="Answer from the sources."),
    ChatMessage(role="user", content="What is the first-line drug for hypertension?"),
]


def backend_for(url: str, **overrides: object) -> OllamaBackend:
    return OllamaBackend(LLMSettings(backend="ollama", ollama_host=url, ollama_model=DEFAULT_MODEL, **overrides))


@pytest.fixture
def silent_server_url() -> Iterator[str]:
    """Accepts connections and never answers: a hung Ollama."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_streams_deltas_and_takes_stats_from_the_final_chunk(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server()
    backend = backend_for(server.url)

    generation = backend.generate(QUESTION, GenerationParams(max_tokens=50))
    deltas = list(generation)

    assert len(deltas) > 3
    assert generation.text == "You asked: What is the first-line drug for hypertension?"
    assert generation.stats.prompt_tokens == FakeLLM().count_tokens(QUESTION)
    assert generation.stats.completion_tokens == len(deltas)
    assert generation.stats.finish_reason == "stop"


def test_every_request_carries_num_ctx_and_the_sampling_options(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server()
    backend = backend_for(server.url, ollama_num_ctx=6144)

    backend.complete(QUESTION, GenerationParams(max_tokens=40, temperature=0.0, seed=7))
    backend.complete(QUESTION, GenerationParams(stop=["\n\n"]))

    first, second = (r.body for r in server.requests_to("/api/chat"))
    assert first["model"] == DEFAULT_MODEL and first["stream"] is True
    assert first["options"] == {"num_ctx": 6144, "temperature": 0.0, "seed": 7, "num_predict": 40}
    assert second["options"]["num_ctx"] == 6144 and second["options"]["stop"] == ["\n\n"]
    assert first["messages"] == [m.model_dump() for m in QUESTION]


def test_answer_cut_at_num_predict_reports_length(fake_ollama_server: StartServer) -> None:
    backend = backend_for(fake_ollama_server().url)

    generation = backend.generate(QUESTION, GenerationParams(max_tokens=2))

    assert "".join(generation) == "You asked:"
    assert generation.stats.finish_reason == "length"


def test_fake_server_answers_non_streaming_chat_like_ollama(fake_ollama_server: StartServer) -> None:
    client = ollama.Client(host=fake_ollama_server().url)

    reply = client.chat(model=DEFAULT_MODEL, messages=[m.model_dump() for m in QUESTION], stream=False)

    assert reply.done and reply.done_reason == "stop"
    assert reply.message.content == "You asked: What is the first-line drug for hypertension?"
    assert reply.eval_count == 9 and reply.prompt_eval_count
    assert client._client.get("/api/version").json()["version"]


def test_list_and_show_fill_model_info(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server(models=[DEFAULT_MODEL, "qwen2.5"])
    backend = backend_for(server.url)

    assert backend.list_models() == [DEFAULT_MODEL, "qwen2.5:latest"]
    info = backend.info
    assert info.backend == "ollama" and info.name == DEFAULT_MODEL
    assert info.context_window == 8192
    assert info.details["quantization_level"] == "Q4_K_M"
    assert info.details["parameter_size"] == "1.2B"
    assert info.details["context_length_trained"] == "131072"
    assert info.details["chat_template"] == "yes" and "{{ .Prompt }}" in info.details["template"]
    assert "stop" in info.details["parameters_default"]


def test_health_ok_when_the_model_is_installed(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server()

    health = backend_for(server.url).health()

    assert health.ok
    assert server.url in health.message and DEFAULT_MODEL in health.message


def test_missing_model_is_named_with_host_and_installed_models(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server(models=["qwen2.5:0.5b", "phi3:mini"])
    backend = backend_for(server.url)

    health = backend.health()
    with pytest.raises(LLMUnavailableError) as raised:
        backend.complete(QUESTION)

    expected = (
        f"Model '{DEFAULT_MODEL}' is not installed on Ollama at {server.url}; installed: phi3:mini, qwen2.5:0.5b."
    )
    assert not health.ok and health.message == expected
    assert str(raised.value) == expected


def test_server_down_is_unavailable_naming_host_and_model(closed_port_url: str) -> None:
    backend = backend_for(closed_port_url)

    health = backend.health()
    with pytest.raises(LLMUnavailableError) as raised:
        backend.complete(QUESTION)

    assert not health.ok
    assert health.message == f"Ollama at {closed_port_url} is not reachable (connection refused)."
    assert str(raised.value) == (
        f"Ollama at {closed_port_url} is not reachable (connection refused); model '{DEFAULT_MODEL}' cannot answer."
    )
    assert "error" in backend.info.details  # info never raises


def test_hung_server_times_out_as_unavailable(silent_server_url: str) -> None:
    backend = backend_for(silent_server_url, ollama_timeout_s=0.5)

    with pytest.raises(LLMUnavailableError, match=r"did not answer within 0.5 s \(model 'llama3.2:1b'\)"):
        backend.complete(QUESTION)
    assert "did not answer" in backend.health().message


def test_token_count_is_the_documented_estimate(closed_port_url: str) -> None:
    backend = backend_for(closed_port_url)

    # 24 and 45 characters: ceil(24/3.5)=7 and ceil(45/3.5)=13, + 4 per message, + 3 for the answer prompt.
    assert backend.count_tokens(QUESTION) == 7 + 13 + 2 * 4 + 3


def test_build_llm_makes_an_ollama_backend_without_contacting_it(closed_port_url: str) -> None:
    backend = build_llm(LLMSettings(backend="ollama", ollama_host=closed_port_url))

    assert isinstance(backend, OllamaBackend)


def test_closing_the_stream_early_leaves_the_backend_usable(fake_ollama_server: StartServer) -> None:
    server = fake_ollama_server()
    backend = backend_for(server.url)

    generation = backend.generate(QUESTION)
    assert next(generation) == "You"
    generation.close()

    assert backend.complete(QUESTION).startswith("You asked:")
    backend.close()


# -- adapters ------------------------------------------------------------------------------------


@pytest.fixture
def adapter_file(tmp_path: Path) -> Path:
    path = tmp_path / "refusals.gguf"
    path.write_bytes(b"GGUF fake adapter bytes")
    return path


def test_adapter_is_baked_into_a_derived_model_once(fake_ollama_server: StartServer, adapter_file: Path) -> None:
    server = fake_ollama_server()
    backend = backend_for(server.url)
    adapter = AdapterChoice(name="Refusals v1", path=adapter_file)

    backend.complete(QUESTION, adapter=adapter)
    backend.complete(QUESTION, adapter=adapter)

    creates = server.requests_to("/api/create")
    assert len(creates) == 1
    tag = creates[0].body["model"]
    assert tag.startswith("llama3.2-refusals-v1:")
    digest = creates[0].body["adapters"]["refusals.gguf"]
    assert creates[0].body["from"] == DEFAULT_MODEL and digest in server.blobs
    assert [r.body["model"] for r in server.requests_to("/api/chat")] == [tag, tag]
    assert backend.ensure_adapter_model(AdapterChoice(name="off", path=adapter_file, scale=0)) == DEFAULT_MODEL


def test_server_refusing_adapters_is_surfaced(fake_ollama_server: StartServer, adapter_file: Path) -> None:
    server = fake_ollama_server(refuse_adapters="adapters are not supported for this model architecture")
    backend = backend_for(server.url)

    with pytest.raises(CQAError, match="refused to create .*adapters are not supported"):
        backend.complete(QUESTION, adapter=AdapterChoice(name="refusals", path=adapter_file))


def test_partial_adapter_strength_is_refused(closed_port_url: str, adapter_file: Path) -> None:
    with pytest.raises(CQAError, match="full strength only"):
        backend_for(closed_port_url).ensure_adapter_model(AdapterChoice(name="r", path=adapter_file, scale=0.5))


# -- backed by the real model ---------------------------------------------------------------------


@pytest.mark.integration
def test_server_backed_by_the_embedded_model_gives_its_answer(fake_ollama_server: StartServer) -> None:
    from core.llm.embedded import EmbeddedLlamaBackend

    embedded = EmbeddedLlamaBackend(LLMSettings())
    server = fake_ollama_server(backend=embedded)
    params = GenerationParams(max_tokens=24)

    generation = backend_for(server.url).generate(QUESTION, params)
    text = "".join(generation)

    assert text.strip()
    assert text == embedded.complete(QUESTION, params)
    assert generation.stats.prompt_tokens == embedded.count_tokens(QUESTION)
    assert generation.stats.completion_tokens > 0
