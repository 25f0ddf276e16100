"""A small real HTTP server speaking the parts of Ollama's documented API the app uses (docs/api.md).

It answers with any `LLMBackend` (an echoing `FakeLLM` by default; pass the embedded llama.cpp backend
for real text), records every request for assertions, and runs on 127.0.0.1 on a free port:

    def test_x(fake_ollama_server):
        server = fake_ollama_server()            # or fake_ollama_server(backend=embedded)
        client = ollama.Client(host=server.url)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.llm.base import ChatMessage, GenerationParams, LLMBackend
from core.llm.fake import FakeLLM

DEFAULT_MODEL = "llama3.2:1b"
SERVER_VERSION = "0.12.6"


def _echo(messages: list[ChatMessage]) -> str:
    last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    return f"You asked: {last_user}"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _normalize(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any


@dataclass
class FakeModel:
    name: str
    family: str = "llama"
    parameter_size: str = "1.2B"
    quantization_level: str = "Q4_K_M"
    context_length: int = 131072
    template: str = "{{ .System }}\n{{ .Prompt }}"
    parameters: str = 'stop                           "<|eot_id|>"'
    parent: str = ""
    adapters: dict[str, str] = field(default_factory=dict)

    def tag_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": _now(),
            "size": 1_321_098_329,
            "digest": hashlib.sha256(self.name.encode()).hexdigest(),
            "details": self.details(),
        }

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": self.parent,
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def show(self) -> dict[str, Any]:
        return {
            "modelfile": f"FROM {self.parent or self.name}\n",
            "parameters": self.parameters,
            "template": self.template,
            "details": self.details(),
            "model_info": {
                "general.architecture": self.family,
                "general.parameter_count": 1_235_814_432,
                f"{self.family}.context_length": self.context_length,
            },
            "capabilities": ["completion"],
            "modified_at": _now(),
        }


class FakeOllama(ThreadingHTTPServer):
    """Server state: installed models, uploaded blobs, recorded requests and the answering backend."""

    daemon_threads = True

    def __init__(self, backend: LLMBackend, models: Iterable[str], refuse_adapters: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self.models = {_normalize(m): FakeModel(_normalize(m)) for m in models}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self.refuse_adapters = refuse_adapters
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ollama", daemon=True
        )

    def start(self) -> FakeOllama:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading a stream early (tested on purpose) resets the connection.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeOllama

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        pass

    # -- plumbing ----------------------------------------------------------------------------------

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self) -> dict[str, Any]:
        raw = self._body()
        body: dict[str, Any] = json.loads(raw) if raw else {}
        self.server.requests.append(RecordedRequest(self.command, self.path, body))
        return body

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _stream_ndjson(self, lines: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _not_found(self, model: str) -> None:
        self._send_json(404, {"error": f"model '{model}' not found"})

    def _model(self, name: str) -> FakeModel | None:
        return self.server.models.get(_normalize(name)) if name else None

    # -- routes ------------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server.requests.append(RecordedRequest("GET", self.path, None))
        if self.path == "/api/version":
            self._send_json(200, {"version": SERVER_VERSION})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [m.tag_entry() for m in self.server.models.values()]})
        elif self.path == "/":
            self._send_json(200, "Ollama is running")
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.requests.append(RecordedRequest("HEAD", self.path, None))
        digest = self.path.removeprefix("/api/blobs/")
        self._send_empty(200 if self.path.startswith("/api/blobs/") and digest in self.server.blobs else 404)

    def do_POST(self) -> None:  # noqa: N802
        if self.path.startswith("/api/blobs/"):
            self._create_blob(self.path.removeprefix("/api/blobs/"))
            return
        body = self._json_body()
        routes: dict[str, Callable[[dict[str, Any]], None]] = {
            "/api/chat": self._chat,
            "/api/show": self._show,
            "/api/create": self._create,
        }
        route = routes.get(self.path)
        if route is None:
            self._send_json(404, {"error": "404 page not found"})
        else:
            route(body)

    def _create_blob(self, digest: str) -> None:
        data = self._body()
        self.server.requests.append(RecordedRequest("POST", self.path, {"bytes": len(data)}))
        if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
            self._send_json(400, {"error": "digest mismatch"})
            return
        self.server.blobs[digest] = data
        self._send_empty(201)

    def _show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name") or ""
        model = self._model(name)
        if model is None:
            self._not_found(name)
        else:
            self._send_json(200, model.show())

    def _create(self, body: dict[str, Any]) -> None:
        name, base_name = body.get("model", ""), body.get("from", "")
        adapters: dict[str, str] = body.get("adapters") or {}
        base = self._model(base_name)
        if base is None:
            self._not_found(base_name)
            return
        missing = [d for d in adapters.values() if d not in self.server.blobs]

        def progress() -> Iterator[dict[str, Any]]:
            yield {"status": "using existing layer sha256:" + hashlib.sha256(base.name.encode()).hexdigest()}
            if missing:
                yield {"error": f"blob {missing[0]} not found"}
                return
            if adapters and self.server.refuse_adapters:
                yield {"status": "parsing GGUF"}
                yield {"error": self.server.refuse_adapters}
                return
            for digest in adapters.values():
                yield {"status": f"creating new layer {digest}"}
            yield {"status": "writing manifest"}
            self.server.models[_normalize(name)] = FakeModel(_normalize(name), parent=base.name, adapters=adapters)
            yield {"status": "success"}

        lines = progress()
        if body.get("stream", True):
            self._stream_ndjson(lines)
            return
        last: dict[str, Any] = {}
        for last in lines:
            if "error" in last:
                self._send_json(400, last)
                return
        self._send_json(200, last)

    def _chat(self, body: dict[str, Any]) -> None:
        name = body.get("model", "")
        model = self._model(name)
        if model is None:
            self._not_found(name)
            return
        options = body.get("options") or {}
        messages = [ChatMessage(role=m["role"], content=m.get("content", "")) for m in body.get("messages", [])]
        params = GenerationParams(
            max_tokens=int(options.get("num_predict", 128)),
            temperature=float(options.get("temperature", 0.8)),
            seed=int(options.get("seed", 0)),
            stop=list(options.get("stop", [])),
        )
        started = time.perf_counter_ns()
        generation = self.server.backend.generate(messages, params)

        def final() -> dict[str, Any]:
            stats = generation.stats
            total = time.perf_counter_ns() - started
            return {
                "model": model.name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": stats.finish_reason or "stop",
                "total_duration": total,
                "load_duration": 1_000_000,
                "prompt_eval_count": stats.prompt_tokens,
                "prompt_eval_duration": int((stats.ttft_s or 0) * 1e9),
                "eval_count": stats.completion_tokens,
                "eval_duration": total - int((stats.ttft_s or 0) * 1e9),
            }

        def lines() -> Iterator[dict[str, Any]]:
            with generation:
                for delta in generation:
                    message = {"role": "assistant", "content": delta}
                    yield {"model": model.name, "created_at": _now(), "message": message, "done": False}
            yield final()

        if body.get("stream", True):
            self._stream_ndjson(lines())
        else:
            text = "".join(generation)
            reply = final()
            reply["message"]["content"] = text
            self._send_json(200, reply)


@pytest.fixture
def fake_ollama_server() -> Iterator[Callable[..., FakeOllama]]:
    """Factory: `fake_ollama_server(backend=None, models=("llama3.2:1b",), refuse_adapters=None)`."""
    servers: list[FakeOllama] = []

    def start(
        backend: LLMBackend | None = None,
        models: Iterable[str] = (DEFAULT_MODEL,),
        refuse_adapters: str | None = None,
    ) -> FakeOllama:
        server = FakeOllama(backend or FakeLLM(_echo), models, refuse_adapters).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
