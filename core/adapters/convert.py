"""PEFT LoRA weights → a GGUF LoRA adapter that llama.cpp loads with `llama_adapter_lora_init`.

The same mapping as llama.cpp's `convert_lora_to_gguf.py` for the llama architecture, without its
dependency on a checkout of llama.cpp: HF module names become GGUF tensor names
(`model.layers.3.self_attn.q_proj` → `blk.3.attn_q.weight`, with `.lora_a` / `.lora_b`), and the
rows of the query and key B matrices are permuted the way the converter permutes the base q/k
weights (HF and GGUF order the rotary halves differently; A is unaffected since the permutation acts
on output rows only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.errors import CQAError

_MODULES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_PEFT_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$")


def permute_rows(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute` (HF rotary layout → GGUF) applied to the output rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_lora_tensors(
    state: Mapping[str, np.ndarray], n_head: int, n_head_kv: int, dtype: type[np.floating] = np.float32
) -> dict[str, np.ndarray]:
    """GGUF tensor name → array, from a PEFT state dict (names as `get_peft_model_state_dict` gives)."""
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        m = _PEFT_NAME.search(name)
        if not m:
            raise CQAError(f"Cannot convert LoRA tensor {name!r}: only llama attention and MLP projections are supported.")
        layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
        array = np.asarray(value, dtype=np.float32)
        if ab == "B" and module == "self_attn.q_proj":
            array = permute_rows(array, n_head, n_head)
        elif ab == "B" and module == "self_attn.k_proj":
            array = permute_rows(array, n_head, n_head_kv)
        out[f"blk.{layer}.{_MODULES[module]}.weight.lora_{ab.lower()}"] = np.ascontiguousarray(array, dtype=dtype)
    if not out:
        raise CQAError("The adapter has no LoRA tensors to convert.")
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def _order(name: str) -> tuple[int, str]:
    m = re.match(r"blk\.(\d+)\.(.*)", name)
    return (int(m.group(1)), m.group(2)) if m else (1 << 30, name)


def write_gguf_lora(path: Path, tensors: Mapping[str, np.ndarray], alpha: float, name: str,
                    base_name: str = "SmolLM2-135M-Instruct") -> Path:
    """Write a GGUF LoRA adapter atomically (temporary file, then rename)."""
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is pinned in requirements.txt
        raise CQAError("The GGUF converter is missing: install the `gguf` package (pip install -r requirements.txt).") from exc
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer = gguf.GGUFWriter(str(tmp), arch="llama")
        writer.add_name(name)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        writer.add_string("general.base_model.0.name", base_name)
        for tensor_name, array in tensors.items():
            writer.add_tensor(tensor_name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CQAError(f"Could not write the adapter file {path.name}: {exc.strerror or exc}.") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
