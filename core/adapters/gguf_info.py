"""Facts about a GGUF file (a model or a LoRA adapter) read from its header only.

`gguf.GGUFReader` builds a numpy view for every vocabulary string and merge rule: 2-4 s for the 98 MB
SmolLM2 file before any question is answered. This reader walks the same header with the `gguf`
package's type tables, memory-mapped, skipping long arrays (their length is kept) and never touching
tensor data; the whole 98 MB model takes tens of milliseconds. Results are cached per (path, mtime, size).
"""

from __future__ import annotations

import mmap
import struct
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, LlamaFileType
from pydantic import BaseModel, Field

from core.errors import CQAError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
ARRAY_KEEP = 64  # arrays up to this many items are kept; longer ones (vocabularies) only counted

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


class GGUFTensor(BaseModel, frozen=True):
    name: str
    shape: tuple[int, ...] = Field(description="numpy order (slowest dimension first): a weight is [out, in].")
    type: str = Field(description="ggml tensor type, e.g. Q4_1, F32.")
    n_elements: int
    n_bytes: int


class GGUFFile(BaseModel):
    """The header of one GGUF file: metadata and tensor descriptions, no tensor data."""

    path: Path
    size_bytes: int
    version: int
    metadata: dict[str, Any] = Field(description="Scalars, strings and short arrays.")
    array_lengths: dict[str, int] = Field(description="Length of every array value, kept or not.")
    tensors: list[GGUFTensor]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    @property
    def kind(self) -> str:
        """`general.type`: "model" or "adapter" (files written before the key existed are models)."""
        return str(self.metadata.get("general.type", "model"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def parameter_count(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def dominant_tensor_type(self) -> str | None:
        """The tensor type holding most of the bytes."""
        by_bytes: Counter[str] = Counter()
        for t in self.tensors:
            by_bytes[t.type] += t.n_bytes
        return by_bytes.most_common(1)[0][0] if by_bytes else None

    @property
    def quantization(self) -> str:
        """`general.file_type` as llama.cpp names it (Q4_1, F16...), else the dominant tensor type."""
        file_type = self.metadata.get("general.file_type")
        if isinstance(file_type, int):
            try:
                return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                pass
        return self.dominant_tensor_type or "unknown"

    @property
    def vocab_size(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.vocab_size")
        if isinstance(value, int):
            return value
        return self.array_lengths.get("tokenizer.ggml.tokens")

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def tensor_map(self) -> dict[str, GGUFTensor]:
        return {t.name: t for t in self.tensors}


class ModelFacts(BaseModel):
    """What the models page shows for a GGUF model."""

    path: Path
    name: str
    architecture: str
    parameters: int
    quantization: str
    dominant_tensor_type: str | None
    vocab_size: int | None
    context_length: int | None
    chat_template: str | None
    size_bytes: int


class LoraTarget(BaseModel, frozen=True):
    """One adapted weight: `base` is the model tensor, shapes in numpy order."""

    base: str
    lora_a: tuple[int, ...]
    lora_b: tuple[int, ...]


class LoraFacts(BaseModel):
    """What a GGUF LoRA adapter says about itself."""

    path: Path
    name: str
    architecture: str
    alpha: float | None
    rank: int | None = Field(description="From the lora_a shapes; the largest if tensors differ.")
    targets: list[LoraTarget]
    base_model_name: str | None = Field(description="general.base_model.0.name, when the converter wrote it.")
    size_bytes: int


class _Cursor:
    """Little-endian reads from a memory map with bounds checks that name what was being read."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"the file ends at byte {len(self.data):,} inside its header (truncated?)")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        if self.pos + length > len(self.data):
            raise ValueError(f"a string at byte {self.pos:,} runs past the end of the file")
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.unpack("<Q")
        if self.pos + length > len(self.data):
            raise ValueError(f"a string at byte {self.pos:,} runs past the end of the file")
        self.pos += length

    def value(self, kind: GGUFValueType) -> Any:
        if kind == GGUFValueType.STRING:
            return self.string()
        return self.unpack(_SCALARS[kind])

    def array(self) -> tuple[list[Any] | None, int]:
        """(items, count); items is None for arrays longer than ARRAY_KEEP (skipped, not decoded)."""
        kind = GGUFValueType(self.unpack("<I"))
        count = self.unpack("<Q")
        if kind == GGUFValueType.ARRAY:
            raise ValueError("nested arrays are not supported")
        if count <= ARRAY_KEEP:
            return [self.value(kind) for _ in range(count)], count
        if kind == GGUFValueType.STRING:
            for _ in range(count):
                self.skip_string()
        else:
            size = struct.calcsize(_SCALARS[kind]) * count
            if self.pos + size > len(self.data):
                raise ValueError("an array runs past the end of the file")
            self.pos += size
        return None, count


def _parse(path: Path, data: mmap.mmap, size: int) -> GGUFFile:
    cur = _Cursor(data)
    if data[:4] != MAGIC:
        raise ValueError("it does not start with the GGUF signature")
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"GGUF version {version} is not supported (only 2 and 3, little-endian)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    if n_tensors > size or n_kv > size:
        raise ValueError("its header declares more entries than the file can hold")
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.string()
        kind = GGUFValueType(cur.unpack("<I"))
        if kind == GGUFValueType.ARRAY:
            items, lengths[key] = cur.array()
            if items is not None:
                metadata[key] = items
        else:
            metadata[key] = cur.value(kind)
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        if not 1 <= n_dims <= MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        dims = [cur.unpack("<Q") for _ in range(n_dims)]
        ggml_type = GGMLQuantizationType(cur.unpack("<I"))
        infos.append((name, dims, ggml_type, cur.unpack("<Q")))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        raise ValueError(f"general.alignment is {alignment!r}")
    data_start = cur.pos + (-cur.pos % alignment)
    tensors = []
    for name, dims, ggml_type, offset in infos:
        block, type_size = GGML_QUANT_SIZES[ggml_type]
        n_elements = 1
        for d in dims:
            n_elements *= d
        if dims[0] % block:
            raise ValueError(f"tensor {name!r} rows of {dims[0]} do not fit {ggml_type.name} blocks of {block}")
        n_bytes = n_elements // block * type_size
        if data_start + offset + n_bytes > size:
            raise ValueError(f"tensor {name!r} runs past the end of the file (truncated?)")
        tensors.append(GGUFTensor(name=name, shape=tuple(reversed(dims)), type=ggml_type.name,
                                  n_elements=n_elements, n_bytes=n_bytes))
    return GGUFFile(path=path, size_bytes=size, version=version, metadata=metadata, array_lengths=lengths,
                    tensors=tensors)


_CACHE: dict[tuple[Path, int, int], GGUFFile] = {}
_CACHE_LOCK = threading.Lock()


def read_gguf(path: Path) -> GGUFFile:
    """The header of `path`; `CQAError` naming the file if it is missing, empty, truncated or not GGUF."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise CQAError(f"{path.name}: the file cannot be read ({exc.strerror or exc}).") from exc
    if stat.st_size == 0:
        raise CQAError(f"{path.name} is empty, not a GGUF file.")
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            parsed = _parse(path, data, stat.st_size)
    except (ValueError, KeyError, OverflowError, struct.error) as exc:
        raise CQAError(f"{path.name} is not a readable GGUF file: {exc}.") from exc
    except OSError as exc:
        raise CQAError(f"{path.name}: the file cannot be read ({exc.strerror or exc}).") from exc
    with _CACHE_LOCK:
        _CACHE[key] = parsed
    return parsed


def model_facts(path: Path) -> ModelFacts:
    """Facts about a GGUF model; `CQAError` if the file is not a model (e.g. an adapter)."""
    f = read_gguf(path)
    if f.kind != "model":
        raise CQAError(f"{f.path.name} is a GGUF {f.kind!r} file, not a model.")
    return ModelFacts(
        path=f.path, name=f.name, architecture=f.architecture, parameters=f.parameter_count,
        quantization=f.quantization, dominant_tensor_type=f.dominant_tensor_type, vocab_size=f.vocab_size,
        context_length=f.context_length, chat_template=f.chat_template, size_bytes=f.size_bytes,
    )


def lora_facts(path: Path) -> LoraFacts:
    """Facts about a GGUF LoRA adapter; `CQAError` naming the first problem otherwise.

    Every `<weight>.lora_a` needs its `<weight>.lora_b` and the reverse, with a shared rank:
    lora_a is [rank, in] and lora_b is [out, rank] (numpy order).
    """
    f = read_gguf(path)
    if f.kind != "adapter":
        raise CQAError(
            f"{f.path.name} is a GGUF {f.kind} ({f.architecture}, {f.parameter_count:,} parameters), "
            "not an adapter: upload a LoRA adapter file (general.type = adapter)."
        )
    adapter_type = f.metadata.get("adapter.type")
    if adapter_type != "lora":
        raise CQAError(f"{f.path.name} is a {adapter_type!r} adapter; only LoRA adapters are supported.")
    tensors = f.tensor_map()
    targets: list[LoraTarget] = []
    for t in f.tensors:
        base, dot, suffix = t.name.rpartition(".")
        if not dot or suffix not in ("lora_a", "lora_b"):
            raise CQAError(f"{f.path.name}: tensor {t.name!r} is not a LoRA tensor (…lora_a or …lora_b).")
        partner = tensors.get(f"{base}.lora_b" if suffix == "lora_a" else f"{base}.lora_a")
        if partner is None:
            missing = "lora_b" if suffix == "lora_a" else "lora_a"
            raise CQAError(f"{f.path.name}: {t.name!r} has no matching {base}.{missing}.")
        if suffix == "lora_b":
            continue
        a, b = t.shape, partner.shape
        if len(a) != 2 or len(b) != 2 or a[0] != b[1]:
            raise CQAError(
                f"{f.path.name}: {base} has lora_a {list(a)} and lora_b {list(b)}; expected [rank, in] and "
                "[out, rank] with the same rank."
            )
        targets.append(LoraTarget(base=base, lora_a=a, lora_b=b))
    if not targets:
        raise CQAError(f"{f.path.name} is an adapter without any LoRA tensors.")
    alpha = f.metadata.get("adapter.lora.alpha")
    base_name = f.metadata.get("general.base_model.0.name")
    return LoraFacts(
        path=f.path, name=f.name, architecture=f.architecture,
        alpha=float(alpha) if isinstance(alpha, int | float) else None,
        rank=max(t.lora_a[0] for t in targets), targets=targets,
        base_model_name=str(base_name) if base_name else None, size_bytes=f.size_bytes,
    )
