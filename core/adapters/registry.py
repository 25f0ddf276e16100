"""The adapter registry: GGUF LoRA files in `<data dir>/adapters` (uploaded, deletable) and
`data/adapters` in the repo (shipped, read-only), each with an optional model card `<name>.json`.

A card is free-form JSON written by the training pipeline or by an upload; the keys read here are
"description", "base_model", "created_at", "training" (dict) and "evaluation" (dict).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.adapters.gguf_info import LoraFacts, lora_facts, read_gguf
from core.errors import CQAError
from core.llm.base import AdapterChoice
from core.settings import REPO_ROOT, Settings

# A leading dot is refused on top of the pattern: such files are hidden and the staging folders
# of uploads in progress start with one.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
MAX_ADAPTER_BYTES = 256 * 1024 * 1024
STALE_UPLOAD_S = 3600.0

_SHA_CACHE: dict[tuple[Path, int, int], str] = {}
_SHA_LOCK = threading.Lock()
_WRITE_LOCK = threading.Lock()


def adapter_folders(settings: Settings) -> list[Path]:
    """Where adapters are looked up, first match wins: uploads first, then those shipped in the repo."""
    return [settings.data_dir / "adapters", REPO_ROOT / "data" / "adapters"]


BASE_MODEL_WORDS = frozenset({"none", "base", "off", "no", ""})


def resolve_adapter(name: str, scale: float, settings: Settings) -> AdapterChoice:
    """A GGUF LoRA by file path or by name (`<name>.gguf` in the adapter folders, uploads first)."""
    if not 0.0 <= scale <= 1.0:
        raise CQAError(f"--scale must be between 0 and 1, not {scale}.")
    path = Path(name)
    if path.suffix == ".gguf" and path.is_file():
        return AdapterChoice(name=path.stem, path=path, scale=scale)
    return AdapterRegistry.for_settings(settings).choice(name, scale)


def default_adapter(settings: Settings, scale: float = 1.0, backend: str | None = None) -> AdapterChoice | None:
    """The adapter an answer uses when none is named, the same for the chat, `core.ask`, `core.eval` and
    `core.compare`: `CQA_LLM__DEFAULT_ADAPTER` with the embedded model, if that adapter is installed."""
    name = settings.llm.default_adapter
    if (backend or settings.llm.backend) != "embedded" or not name:
        return None
    registry = AdapterRegistry.for_settings(settings)
    return registry.choice(name, scale) if registry.path_of(name) else None


def requested_adapter(name: str | None, scale: float, settings: Settings) -> AdapterChoice | None:
    """A command line's `--adapter`: a name or path, 'none' for the base model, unset for the default."""
    if name is None:
        return default_adapter(settings, scale)
    return None if name.lower() in BASE_MODEL_WORDS else resolve_adapter(name, scale, settings)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per (path, mtime, size)."""
    stat = path.stat()
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _SHA_LOCK:
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


class AdapterRecord(BaseModel):
    """One adapter as the models page and the chat sidebar show it."""

    name: str
    path: Path
    shipped: bool = Field(description="In the repo's data/adapters: read-only here.")
    base_model: str | None = Field(description="From the model card, else from the GGUF metadata.")
    architecture: str | None
    sha256: str
    rank: int | None
    alpha: float | None
    targets: int = Field(description="Number of adapted weight tensors.")
    size_bytes: int
    description: str
    card: dict[str, Any]
    problem: str | None = Field(default=None, description="Why the file or its card could not be read.")


class AdapterRegistry:
    """Adapters in `folders` (the first is writable); `base_model` is the GGUF they must fit."""

    def __init__(
        self,
        folders: builtins.list[Path],
        base_model: Path | Callable[[], Path],
        max_bytes: int = MAX_ADAPTER_BYTES,
    ) -> None:
        self.folders = folders
        self._base_model = base_model
        self.max_bytes = max_bytes

    @classmethod
    def for_settings(cls, settings: Settings) -> AdapterRegistry:
        def base_model() -> Path:
            # Imported here: it loads llama.cpp, which listing adapters does not need.
            from core.llm.embedded import resolve_model_path

            return resolve_model_path(settings.llm)

        return cls(adapter_folders(settings), base_model)

    @property
    def upload_folder(self) -> Path:
        return self.folders[0]

    def base_model_path(self) -> Path:
        return self._base_model if isinstance(self._base_model, Path) else self._base_model()

    # -- lookup (cheap: no file is parsed) --------------------------------------------------------

    def names(self) -> builtins.list[str]:
        seen: dict[str, None] = {}
        for folder in self.folders:
            if folder.is_dir():
                for path in sorted(folder.glob("*.gguf")):
                    if path.is_file():
                        seen.setdefault(path.stem, None)
        return list(seen)

    def path_of(self, name: str) -> Path | None:
        for folder in self.folders:
            path = folder / f"{name}.gguf"
            if NAME_PATTERN.fullmatch(name) and path.is_file():
                return path
        return None

    def choice(self, name: str, scale: float = 1.0) -> AdapterChoice:
        """What a request carries to the model: the adapter's file and strength."""
        return AdapterChoice(name=name, path=self._existing(name), scale=scale)

    def _existing(self, name: str) -> Path:
        path = self.path_of(name)
        if path is None:
            raise CQAError(f"No adapter {name!r}; available: {', '.join(self.names()) or 'none yet'}.")
        return path

    # -- records ---------------------------------------------------------------------------------

    def list(self) -> builtins.list[AdapterRecord]:
        """Every adapter, uploads first; unreadable files are listed with their `problem`."""
        return [self._record(name, self._existing(name)) for name in self.names()]

    def get(self, name: str) -> AdapterRecord:
        return self._record(name, self._existing(name))

    def _record(self, name: str, path: Path) -> AdapterRecord:
        card, problem = _read_card(path.with_suffix(".json"))
        facts: LoraFacts | None = None
        try:
            facts = lora_facts(path)
        except CQAError as exc:
            problem = str(exc)
        base = card.get("base_model") or (facts.base_model_name if facts else None)
        return AdapterRecord(
            name=name,
            path=path,
            shipped=path.parent != self.upload_folder,
            base_model=str(base) if base else None,
            architecture=facts.architecture if facts else None,
            sha256=file_sha256(path),
            rank=facts.rank if facts else None,
            alpha=facts.alpha if facts else None,
            targets=len(facts.targets) if facts else 0,
            size_bytes=path.stat().st_size,
            description=str(card.get("description") or ""),
            card=card,
            problem=problem,
        )

    # -- validation ------------------------------------------------------------------------------

    def validate(self, path: Path) -> LoraFacts:
        """The adapter's facts if it fits the base model; `CQAError` naming the first mismatch.

        Same architecture; every `<weight>.lora_a/lora_b` names a 2-D weight of the base, and with the
        base weight [out, in] (numpy order) lora_a is [rank, in] and lora_b is [out, rank].
        """
        lora = lora_facts(path)
        base_path = self.base_model_path()
        base = read_gguf(base_path)
        label = path.name
        if lora.architecture != base.architecture:
            raise CQAError(
                f"{label} is an adapter for the {lora.architecture!r} architecture; the base model "
                f"{base_path.name} is {base.architecture!r}."
            )
        weights = base.tensor_map()
        for target in lora.targets:
            weight = weights.get(target.base)
            if weight is None:
                raise CQAError(
                    f"{label}: the base model {base_path.name} has no tensor {target.base!r}; the adapter was "
                    "made for another model."
                )
            if len(weight.shape) != 2:
                raise CQAError(f"{label}: {target.base!r} is not a matrix in {base_path.name} ({list(weight.shape)}).")
            out_dim, in_dim = weight.shape
            if target.lora_a[1] != in_dim or target.lora_b[0] != out_dim:
                rank = target.lora_a[0]
                raise CQAError(
                    f"{label}: {target.base} is [{out_dim}, {in_dim}] ([out, in]) in {base_path.name}, so its "
                    f"lora_a must be [{rank}, {in_dim}] and lora_b [{out_dim}, {rank}]; the adapter has "
                    f"lora_a {list(target.lora_a)} and lora_b {list(target.lora_b)}."
                )
        return lora

    # -- changes (upload folder only) --------------------------------------------------------------

    def add(
        self,
        source: Path | bytes,
        name: str,
        description: str = "",
        card: dict[str, Any] | None = None,
    ) -> AdapterRecord:
        """Validate and store an adapter under `name`; nothing is left behind if any step fails.

        `card` (e.g. from the training pipeline) is stored as the model card, with `description`,
        `base_model`, `created_at` and `sha256` filled in.
        """
        name = name.strip()
        if not NAME_PATTERN.fullmatch(name):
            raise CQAError(
                f"Adapter name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "not starting with '.'."
            )
        size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
        if size == 0:
            raise CQAError(f"The adapter file for {name!r} is empty.")
        if size > self.max_bytes:
            raise CQAError(
                f"The adapter file for {name!r} is {size / 1e6:,.1f} MB; the limit is {self.max_bytes / 1e6:,.0f} MB."
            )
        folder = self.upload_folder
        with _WRITE_LOCK:
            self._refuse_existing(name)
            folder.mkdir(parents=True, exist_ok=True)
            _remove_stale_uploads(folder)
            staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=folder))
            try:
                staged = staging / f"{name}.gguf"
                if isinstance(source, bytes):
                    staged.write_bytes(source)
                else:
                    shutil.copyfile(source, staged)
                self.validate(staged)
                full_card = {
                    **(card or {}),
                    "description": description.strip() or str((card or {}).get("description") or ""),
                    "base_model": (card or {}).get("base_model") or self.base_model_path().stem,
                    "created_at": (card or {}).get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
                    "sha256": file_sha256(staged),
                }
                staged.with_suffix(".json").write_text(json.dumps(full_card, indent=2), encoding="utf-8")
                self._publish(staged, folder / staged.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.get(name)

    def _refuse_existing(self, name: str) -> None:
        existing = self.path_of(name)
        if existing is not None:
            where = "shipped with the app" if existing.parent != self.upload_folder else "uploaded"
            raise CQAError(f"An adapter named {name!r} already exists ({where}); choose another name.")

    @staticmethod
    def _publish(staged: Path, final: Path) -> None:
        """Card first, then the GGUF: the adapter exists once its GGUF is in place."""
        card = final.with_suffix(".json")
        os.replace(staged.with_suffix(".json"), card)
        try:
            os.replace(staged, final)
        except OSError:
            card.unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        """Remove an uploaded adapter and its card; shipped adapters are read-only."""
        with _WRITE_LOCK:
            path = self._existing(name)
            if path.parent != self.upload_folder:
                raise CQAError(f"Adapter {name!r} is shipped with the app ({path.parent}) and cannot be deleted here.")
            path.unlink()
            path.with_suffix(".json").unlink(missing_ok=True)


def _read_card(path: Path) -> tuple[dict[str, Any], str | None]:
    if not path.is_file():
        return {}, None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"Model card {path.name} is not readable JSON ({exc})."
    if not isinstance(card, dict):
        return {}, f"Model card {path.name} is not a JSON object."
    return card, None


def _remove_stale_uploads(folder: Path) -> None:
    """Staging folders of uploads a crashed process left behind."""
    cutoff = time.time() - STALE_UPLOAD_S
    for staging in folder.glob(".upload-*"):
        if staging.is_dir() and staging.stat().st_mtime < cutoff:
            shutil.rmtree(staging, ignore_errors=True)
