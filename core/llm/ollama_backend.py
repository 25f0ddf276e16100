"""Backend for an Ollama server, through the official `ollama` client.

Every transport or server failure leaves this module as `LLMUnavailableError` naming host and model.
`GenerationParams.grammar` is ignored here: Ollama has no GBNF input (see `OllamaBackend.options`).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import ollama

from core.errors import CQAError, LLMUnavailableError
from core.llm.base import AdapterChoice, ChatMessage, GenerationParams, Health, LLMBackend, ModelInfo, Usage
from core.settings import LLMSettings

# Estimate only: Ollama exposes no tokenizer endpoint. ~3.5 characters per token for English prose
# with BPE vocabularies, plus the role/turn markers a chat template adds around each message.
CHARS_PER_TOKEN = 3.5
TOKENS_PER_MESSAGE = 4
TOKENS_FOR_GENERATION_PROMPT = 3
CONNECT_TIMEOUT_S = 5.0
METADATA_TIMEOUT_S = 10.0
INFO_RETRY_S = 30.0


def normalize_model_name(name: str) -> str:
    """Ollama's own defaulting: a name without a tag means ':latest'."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _describe_transport_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError) and exc.__context__:
        # The client replaces httpx.ConnectError by a ConnectionError carrying a download hint;
        # the original (refused, DNS, ...) is still its context.
        return _describe_transport_error(exc.__context__)
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if "refused" in str(exc).lower() or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


class OllamaBackend(LLMBackend):
    """Chat with `settings.ollama_model` on `settings.ollama_host`; always sends `num_ctx`."""

    def __init__(self, settings: LLMSettings, client: ollama.Client | None = None) -> None:
        self._settings = settings
        self.host = settings.ollama_host.rstrip("/")
        self.model = settings.ollama_model
        self._timeout_s = settings.ollama_timeout_s
        # Health checks and model listings must not hang for a whole answer's timeout.
        self._meta_timeout_s = min(METADATA_TIMEOUT_S, settings.ollama_timeout_s)
        try:
            self._client = client or ollama.Client(host=self.host, timeout=self._timeout(self._timeout_s))
            self._meta_client = client or ollama.Client(host=self.host, timeout=self._timeout(self._meta_timeout_s))
        except ValueError as exc:
            raise LLMUnavailableError(f"The Ollama address {self.host!r} is not a valid URL ({exc}).") from exc
        self._owns_clients = client is None
        self._details: dict[str, str] | None = None
        self._details_at = 0.0
        self._adapter_tags: dict[tuple[Path, int, int], str] = {}
        self._adapter_lock = threading.Lock()

    @staticmethod
    def _timeout(seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT_S, seconds))

    # -- LLMBackend --------------------------------------------------------------------------------

    @property
    def info(self) -> ModelInfo:
        """Model facts from /api/show, fetched once. While that fails, details carry the error and the
        server is asked again only after `INFO_RETRY_S`, so a page showing `info` never stalls repeatedly."""
        now = time.monotonic()
        if self._details is None or ("error" in self._details and now - self._details_at > INFO_RETRY_S):
            try:
                self._details = self.show(self.model)
            except CQAError as exc:
                self._details = {"host": self.host, "error": str(exc)}
            self._details_at = now
        return ModelInfo(
            backend="ollama", name=self.model, context_window=self._settings.ollama_num_ctx, details=self._details
        )

    def close(self) -> None:
        if self._owns_clients:
            self._client.close()  # type: ignore[no-untyped-call]
            self._meta_client.close()  # type: ignore[no-untyped-call]

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        """An estimate: ceil(chars / 3.5) per message + 4 per message + 3 for the answer prompt."""
        return TOKENS_FOR_GENERATION_PROMPT + sum(
            math.ceil(len(m.content) / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE for m in messages
        )

    def health(self) -> Health:
        try:
            installed = self.list_models()
        except LLMUnavailableError as exc:
            return Health(ok=False, message=str(exc))
        if normalize_model_name(self.model) not in {normalize_model_name(m) for m in installed}:
            return Health(ok=False, message=self._not_installed_message(self.model, installed))
        return Health(ok=True, message=f"Ollama at {self.host} is serving {self.model!r}.")

    def _stream(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: AdapterChoice | None, usage: Usage
    ) -> Iterator[str]:
        model = self.ensure_adapter_model(adapter) if adapter is not None else self.model
        with self._errors_as_unavailable(model):
            parts = self._client.chat(
                model=model,
                messages=[m.model_dump() for m in messages],
                stream=True,
                options=self.options(params),
            )
            try:
                for part in parts:
                    if part.message.content:
                        yield part.message.content
                    if part.done:
                        usage.prompt_tokens = part.prompt_eval_count or 0
                        usage.completion_tokens = part.eval_count or 0
                        usage.finish_reason = "length" if part.done_reason == "length" else "stop"
            finally:
                # Ends the HTTP response when the reader stops early, so the server stops generating.
                cast(Generator[ollama.ChatResponse, None, None], parts).close()

    # -- Ollama specifics --------------------------------------------------------------------------

    def options(self, params: GenerationParams) -> dict[str, Any]:
        """Request options. num_ctx always: Ollama's default (2048) silently truncates long prompts.

        `params.grammar` (GBNF) is not sent: Ollama accepts no grammar. Its nearest equivalent is the
        chat request's `format` (a JSON schema), which this backend does not use.
        """
        options: dict[str, Any] = {
            "num_ctx": self._settings.ollama_num_ctx,
            "temperature": params.temperature,
            "seed": params.seed,
            "num_predict": params.max_tokens,
        }
        # An explicit empty list would replace the model's own stop words, so send only additions.
        if params.stop:
            options["stop"] = list(params.stop)
        return options

    def list_models(self) -> list[str]:
        """Model tags installed on the server (/api/tags)."""
        with self._errors_as_unavailable(None, timeout_s=self._meta_timeout_s):
            return [m.model for m in self._meta_client.list().models if m.model]

    def show(self, model: str) -> dict[str, str]:
        """Display facts about `model` from /api/show."""
        with self._errors_as_unavailable(model, timeout_s=self._meta_timeout_s):
            shown = self._meta_client.show(model)
        details: dict[str, str] = {"host": self.host, "num_ctx_sent": str(self._settings.ollama_num_ctx)}
        if shown.details is not None:
            for key in ("family", "format", "parameter_size", "quantization_level", "parent_model"):
                value = getattr(shown.details, key)
                if value:
                    details[key] = str(value)
        info = dict(shown.modelinfo or {})
        architecture = info.get("general.architecture")
        if architecture:
            details["architecture"] = str(architecture)
            if f"{architecture}.context_length" in info:
                details["context_length_trained"] = str(info[f"{architecture}.context_length"])
        if "general.parameter_count" in info:
            details["parameters"] = f"{int(info['general.parameter_count']):,}"
        if shown.parameters:
            details["parameters_default"] = shown.parameters
        details["chat_template"] = "yes" if shown.template else "no"
        if shown.template:
            details["template"] = shown.template
        return details

    def ensure_adapter_model(self, adapter: AdapterChoice) -> str:
        """The model tag to use for `adapter`: the base model, or a derived tag with the adapter baked in.

        Ollama has no per-request adapter switch: an adapter lives in its own model, created once from
        an uploaded blob. Partial strength cannot be expressed, so 0 < scale < 1 is refused.
        """
        if adapter.path is None or adapter.scale == 0:
            return self.model
        if adapter.scale != 1:
            raise CQAError(
                f"Adapter {adapter.name!r}: Ollama applies adapters at full strength only (asked {adapter.scale})."
            )
        path = adapter.path.expanduser().resolve()
        if not path.is_file():
            raise CQAError(f"Adapter {adapter.name!r}: file {str(path)!r} does not exist.")
        stat = path.stat()
        key = (path, stat.st_size, stat.st_mtime_ns)
        with self._adapter_lock:
            if key not in self._adapter_tags:
                self._adapter_tags[key] = self._create_adapter_model(adapter.name, path)
            return self._adapter_tags[key]

    def _create_adapter_model(self, name: str, path: Path) -> str:
        with self._errors_as_unavailable(self.model):
            digest = self._client.create_blob(path)
        slug = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "adapter"
        tag = f"{self.model.split(':')[0]}-{slug}:{digest.removeprefix('sha256:')[:12]}"
        if normalize_model_name(tag) in {normalize_model_name(m) for m in self.list_models()}:
            return tag
        try:
            with self._errors_as_unavailable(self.model, passthrough_response_errors=True):
                for progress in self._client.create(
                    model=tag, from_=self.model, adapters={path.name: digest}, stream=True
                ):
                    if progress.status == "success":
                        return tag
        except ollama.ResponseError as exc:
            raise CQAError(
                f"Ollama at {self.host} refused to create model {tag!r} from {self.model!r} with adapter "
                f"{name!r}: {exc.error}"
            ) from exc
        raise CQAError(f"Ollama at {self.host} did not confirm creating model {tag!r} with adapter {name!r}.")

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _errors_as_unavailable(
        self, model: str | None, *, timeout_s: float | None = None, passthrough_response_errors: bool = False
    ) -> Iterator[None]:
        try:
            yield
        except ollama.ResponseError as exc:
            if passthrough_response_errors:
                raise
            raise self._response_error(exc, model) from exc
        except ValueError as exc:
            # Not JSON, or JSON of another shape: something else is listening there.
            raise LLMUnavailableError(
                f"The server at {self.host} did not answer like Ollama ({type(exc).__name__})."
            ) from exc
        except (httpx.TimeoutException, httpx.TransportError, ConnectionError) as exc:
            reason = _describe_transport_error(exc)
            if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
                message = f"Ollama at {self.host} did not answer within {timeout_s or self._timeout_s:g} s" + (
                    f" (model {model!r})." if model else "."
                )
            else:
                message = f"Ollama at {self.host} is not reachable ({reason})."
                if model:
                    message = message[:-1] + f"; model {model!r} cannot answer."
            raise LLMUnavailableError(message) from exc

    def _response_error(self, exc: ollama.ResponseError, model: str | None) -> LLMUnavailableError:
        if exc.status_code == 404 and model is not None:
            try:
                installed = self.list_models()
            except LLMUnavailableError:
                installed = []
            return LLMUnavailableError(self._not_installed_message(model, installed))
        about = f" for model {model!r}" if model else ""
        return LLMUnavailableError(f"Ollama at {self.host} returned an error{about}: {exc.error}")

    def _not_installed_message(self, model: str, installed: list[str]) -> str:
        listing = ", ".join(sorted(installed)) if installed else "none"
        return f"Model {model!r} is not installed on Ollama at {self.host}; installed: {listing}."
