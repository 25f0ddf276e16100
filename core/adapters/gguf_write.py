"""Writing small GGUF LoRA adapters with the `gguf` writer: test fixtures and synthetic adapters
until a trained one ships. Real adapters come from llama.cpp's `convert_lora_to_gguf.py`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from core.adapters.gguf_info import GGUFFile


def write_lora_gguf(
    path: Path,
    tensors: dict[str, np.ndarray],
    alpha: float,
    *,
    architecture: str = "llama",
    name: str | None = None,
) -> Path:
    """A GGUF LoRA adapter as llama.cpp's `llama_adapter_lora_init` reads it (F32 tensors).

    `tensors` maps `<base weight>.lora_a` ([rank, in]) and `<base weight>.lora_b` ([out, rank]),
    numpy order, e.g. "blk.0.attn_q.weight.lora_a".
    """
    writer = GGUFWriter(path, architecture)
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    if name:
        writer.add_name(name)
    for tensor_name, array in tensors.items():
        writer.add_tensor(tensor_name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def random_lora(
    path: Path,
    base: GGUFFile,
    *,
    weights: Iterable[str] = ("attn_output",),
    rank: int = 4,
    alpha: float = 4.0,
    std: float = 0.5,
    seed: int = 0,
) -> Path:
    """Random LoRA tensors for every block's `weights` (e.g. attn_q, attn_output) with the base
    model's real shapes: a valid adapter that visibly changes the output."""
    rng = np.random.default_rng(seed)
    wanted = set(weights)
    tensors: dict[str, np.ndarray] = {}
    for target in base.tensors:
        parts = target.name.split(".")
        if len(parts) == 4 and parts[0] == "blk" and parts[2] in wanted and parts[3] == "weight":
            out_dim, in_dim = target.shape
            tensors[f"{target.name}.lora_a"] = rng.normal(0, std, (rank, in_dim))
            tensors[f"{target.name}.lora_b"] = rng.normal(0, std, (out_dim, rank))
    return write_lora_gguf(path, tensors, alpha, architecture=base.architecture)
