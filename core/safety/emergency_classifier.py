"""The learned layer of the emergency screen: MiniLM sentence embeddings + logistic regression.

Phrase rules catch the wordings someone wrote down; people describe emergencies in endless other
ways. This head is trained on a labelled corpus the team wrote (`data/triage/corpus/*.jsonl`: 88
emergency categories in patient, carer and clinician voice, short and long, with typos, plus hard
negatives: the same symptoms negated, historical, resolved, mild or asked about in general) and on
the rules' own YAML examples. A message is scored whole and sentence by sentence, so a red flag in
sentence four of a long message is not diluted by the rest.

`python -m core.emergency_classifier` (`core.cli.train_classifier`) retrains it (well under a minute on
2 cores) and writes `data/triage/classifier.json` with its training report; the rules page has a button
for the same.
Held-out test sets (`tests/data/blind/`) are never read here.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from core.errors import CQAError
from core.learning import LinearScorer
from core.library.embedding import Embedder
from core.settings import REPO_ROOT

TRIAGE_DIR = REPO_ROOT / "data" / "triage"
CORPUS_DIR = TRIAGE_DIR / "corpus"
CLASSIFIER_FILE = TRIAGE_DIR / "classifier.json"
# Long messages are also scored sentence by sentence; these end a sentence.
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_MIN_SENTENCE_WORDS = 3
TARGET_RECALL = 0.97


class TrainingExample(BaseModel):
    text: str
    label: int = Field(ge=0, le=1, description="1 = an emergency happening now.")
    category: str = "rules"
    source: str = ""


class MLPHead(BaseModel):
    """One hidden ReLU layer over standardised features: it can weigh "chest pain" differently when a
    negation or history cue is present, which a linear head over an embedding cannot."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    w1: list[list[float]] = Field(description="features × hidden")
    b1: list[float]
    w2: list[float]
    b2: float

    def score(self, rows: np.ndarray) -> np.ndarray:
        mean, scale, w1, b1, w2 = self._arrays
        hidden = np.maximum(((rows - mean) / scale) @ w1 + b1, 0.0)
        return np.asarray(1.0 / (1.0 + np.exp(-(hidden @ w2 + self.b2))))

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, ...]:
        """The weights as arrays, converted once (a conversion per message cost ~1.5 ms on the screen)."""
        return tuple(np.asarray(v) for v in (self.mean, self.scale, self.w1, self.b1, self.w2))


def fit_mlp(rows: np.ndarray, labels: np.ndarray, names: tuple[str, ...], hidden: int = 64, epochs: int = 30,
            weight_decay: float = 1e-2, seed: int = 0) -> MLPHead:
    """Train the head with torch (CPU, seconds for a few thousand rows); export plain weights."""
    import torch

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-6] = 1.0
    x = torch.tensor((rows - mean) / scale, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.float32)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(rows.shape[1], hidden), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(hidden, 1))
    # Matrices this small gain nothing from a second thread, only synchronisation: one thread trains
    # ~8x faster on 2 cores (measured: 3.2 s vs 24.7 s per fit while another process was busy).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), 64):
                batch = order[i : i + 64]
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]).squeeze(1), y[batch])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
    finally:
        torch.set_num_threads(threads)
    first, last = net[0], net[3]
    assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)

    def rounded(t: torch.Tensor) -> list[float]:
        return [round(float(v), 6) for v in t.detach().flatten()]

    return MLPHead(
        features=list(names), mean=[round(float(v), 6) for v in mean], scale=[round(float(v), 6) for v in scale],
        w1=[rounded(col) for col in first.weight.detach().T], b1=rounded(first.bias), w2=rounded(last.weight.detach()[0]),
        b2=round(float(last.bias.detach()[0]), 6),
    )


class EmergencyClassifier(BaseModel):
    """The shipped head: weights, the decision threshold, category centroids for the explanation."""

    version: str
    embedder: str
    head: MLPHead | LinearScorer
    threshold: float = Field(description="Probability at or above which the message escalates.")
    sentence_threshold: float = Field(description="The same for a single sentence of a longer message.")
    declined_threshold: float = Field(
        default=0.9, description="The bar when the rules refuse the message, ask to clarify or see an injection "
        "('Tell me a joke about doctors'): an emergency wrapped in such a request must still be caught, but the "
        "classifier alone has to be surer.")
    categories: dict[str, list[float]] = Field(
        default_factory=dict, description="Mean embedding of each emergency category (names the nearest one)."
    )
    report: dict[str, object] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = CLASSIFIER_FILE) -> EmergencyClassifier:
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CQAError(f"The emergency classifier {str(path)!r} cannot be read ({exc}); retrain it: "
                           "python -m core.emergency_classifier") from exc


class Verdict(BaseModel):
    """The classifier's view of one message."""

    probability: float
    escalate: bool
    trigger: str = Field(description="The message or sentence that scored highest.")
    category: str = Field(default="", description="Nearest emergency category of the training corpus.")


def split_sentences(message: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE.split(message) if p and p.strip()]
    return [p for p in parts if len(p.split()) >= _MIN_SENTENCE_WORDS]


CueFn = Callable[[str], list[float]]


def features(embedder: Embedder, texts: list[str], cues: CueFn, cache: Path | None = None,
             seed: Path | None = None) -> np.ndarray:
    """MiniLM embedding of each text, then the rules' cue features (negation, history, ...)."""
    if cache is None:
        vectors = np.asarray(embedder.embed(texts), dtype=np.float64).reshape(len(texts), -1)
    else:
        vectors = cached_vectors(embedder, texts, cache, seed)
    return np.hstack([vectors, np.asarray([cues(t) for t in texts], dtype=np.float64).reshape(len(texts), -1)])


def cached_vectors(embedder: Embedder, texts: list[str], cache: Path, seed: Path | None = None) -> np.ndarray:
    """Embeddings of `texts`, reusing those an earlier training run with the same embedder kept in
    `cache` (an .npz beside the trained head) or that ship in `seed` (the corpus's vectors, committed
    beside the shipped head): a retrain embeds only the texts neither has seen, so a fresh install's
    first retrain does not embed the whole corpus again (minutes on 2 cores). An unreadable file is
    ignored and the cache rewritten.

    Vectors are stored as int8 with one scale per row (cosine to the float vector ≥ 0.9999, a quarter
    of the size) and always returned dequantised, so a retrain trains on the same numbers whether the
    vectors were just embedded or read back."""
    name = getattr(embedder, "name", type(embedder).__name__)
    keys = [vector_key(name, t) for t in texts]
    known: dict[bytes, tuple[np.ndarray, float]] = {}
    for path in (seed, cache):
        if path is not None and path.exists():
            known.update(_read_vectors(path))
    missing = list({k: i for i, k in reversed(list(enumerate(keys))) if k not in known}.values())
    if missing:
        fresh = np.asarray(embedder.embed([texts[i] for i in missing]), dtype=np.float32).reshape(len(missing), -1)
        for i, v in zip(missing, fresh, strict=True):
            known[keys[i]] = _quantise(v)
        try:
            _write_vectors(cache, {k: known[k] for k in dict.fromkeys(keys)})
        except OSError:
            pass  # the cache only saves time
    if not keys:
        return np.zeros((0, embedder.dim))
    return np.stack([known[k][0].astype(np.float64) * known[k][1] for k in keys])


def _quantise(vector: np.ndarray) -> tuple[np.ndarray, float]:
    scale = float(np.float32(np.abs(vector).max() / 127.0)) or 1.0  # stored as float32
    return np.round(vector / scale).astype(np.int8), scale


def _read_vectors(path: Path) -> dict[bytes, tuple[np.ndarray, float]]:
    try:
        with np.load(path) as data:
            keys, vectors, scales = data["keys"], data["vectors"], data["scales"]
            if keys.dtype != np.uint8 or keys.shape[1:] != (20,) or vectors.dtype != np.int8 \
                    or not len(keys) == len(vectors) == len(scales):
                return {}
            return {k.tobytes(): (v, float(s)) for k, v, s in zip(keys, vectors, scales, strict=True)}
    except Exception:  # noqa: BLE001 - any damaged file (truncated zip, wrong arrays) is ignored, never fatal
        return {}


def _write_vectors(path: Path, rows: dict[bytes, tuple[np.ndarray, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        # Keys as raw bytes (n × 20 uint8): a numpy "S20" string would drop a digest's trailing zero bytes.
        np.savez_compressed(f, keys=np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 20),
                            vectors=np.stack([v for v, _ in rows.values()]),
                            scales=np.asarray([s for _, s in rows.values()], dtype=np.float32))
    tmp.replace(path)


class EmergencyScreen:
    """Scores messages with the shipped head; thread-safe (read-only after construction)."""

    def __init__(self, embedder: Embedder, model: EmergencyClassifier, cues: CueFn) -> None:
        self._embedder = embedder
        self._cues = cues
        self.model = model
        self._names = list(model.categories)
        self._centroids = np.asarray([model.categories[n] for n in self._names]) if self._names else None

    def verdict(self, message: str, declined: bool = False) -> Verdict:
        sentence_on = self.model.sentence_threshold <= 1.0
        sentences = split_sentences(message)
        long = len(sentences) > 1
        texts = [message] + (sentences if long and sentence_on else [])
        rows = features(self._embedder, texts, self._cues)
        probs = self.model.head.score(rows)
        whole = float(probs[0])
        bar = max(self.model.declined_threshold, self.model.threshold) if declined else self.model.threshold
        if long and not sentence_on and whole >= bar:
            # Sentences do not decide, but the explanation names the one that reads most like an emergency.
            extra = features(self._embedder, sentences, self._cues)
            rows, probs, texts = np.vstack([rows, extra]), np.concatenate([probs, self.model.head.score(extra)]), texts + sentences
        vectors = rows[:, : self._embedder.dim]
        best = int(np.argmax(probs[1:])) + 1 if len(texts) > 1 else 0
        part = float(probs[best]) if best else 0.0
        sentence_bar = max(bar, self.model.sentence_threshold)
        escalate = whole >= bar or (sentence_on and best > 0 and part >= sentence_bar)
        pick = best if best and part >= whole else 0
        category = ""
        if self._centroids is not None:
            category = self._names[int(np.argmax(self._centroids @ vectors[pick]))]
        return Verdict(probability=round(max(whole, part), 4), escalate=escalate, trigger=texts[pick].strip(),
                       category=category)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def corpus_examples(folder: Path = CORPUS_DIR) -> list[TrainingExample]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.append(TrainingExample(text=row["text"], label=int(row["label"]), category=row.get("category", ""),
                                           source=f"{path.name}:{number}"))
            except (ValueError, KeyError) as exc:
                raise CQAError(f"{path.name} line {number}: {exc}") from exc
    return out


def rule_examples(rules_dir: Path) -> list[TrainingExample]:
    """The YAML rules' own examples: an escalation rule's `match` are emergencies; every `no_match`,
    and the examples of refusal/clarification rules, are not."""
    from core.safety.rules import RuleSet

    out = []
    for rule in RuleSet.load(rules_dir).rules:
        for text in rule.examples.match:
            out.append(TrainingExample(text=text, label=int(rule.kind == "escalate"), category=rule.id,
                                       source=f"rule {rule.id}"))
        for text in rule.examples.no_match:
            out.append(TrainingExample(text=text, label=0, category=rule.id, source=f"rule {rule.id}"))
    return out


def _choose_bars(cv: np.ndarray, cv_part: np.ndarray, labels: np.ndarray, caught: np.ndarray, muted: np.ndarray,
                 recall: float) -> tuple[float, float]:
    """(message bar, sentence bar): for each candidate sentence bar, the highest message bar that still
    lets the screen escalate `recall` of the emergencies; the pair with the least over-escalation wins
    (ties: the higher sentence bar). A sentence bar above 1 switches sentence scoring off."""
    positive, negative = labels == 1, labels == 0
    need = int(np.ceil(recall * positive.sum())) - int((caught & positive).sum())
    open_ = ~caught & ~muted
    best: tuple[float, float, float] | None = None  # (over-escalation, -sentence bar, message bar)
    for s_bar in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.01):
        by_part = open_ & (cv_part >= s_bar)
        left = need - int((by_part & positive).sum())
        rest = np.sort(cv[positive & open_ & ~by_part])[::-1]
        if left <= 0 or not len(rest):
            t_bar = 0.99
        else:
            t_bar = float(rest[min(left, len(rest)) - 1]) - 1e-6
        t_bar = min(t_bar, s_bar)
        escalated = caught | (open_ & ((cv >= t_bar) | (cv_part >= max(s_bar, t_bar))))
        over = float(np.mean(escalated[negative])) if negative.any() else 0.0
        if best is None or (over, -s_bar) < best[:2]:
            best = (over, -s_bar, t_bar)
    assert best is not None
    return best[2], min(1.01, -best[1])


OtherLayers = Callable[[str], tuple[bool, bool, bool]]


def sentence_parts(texts: list[str]) -> tuple[list[int], list[str]]:
    """The sentences of every long message, each with the index of its message."""
    owners: list[int] = []
    parts: list[str] = []
    for i, t in enumerate(texts):
        sentences = split_sentences(t)
        if len(sentences) > 1:
            owners += [i] * len(sentences)
            parts += sentences
    return owners, parts


def vector_key(embedder_name: str, text: str) -> bytes:
    return hashlib.sha1(f"{embedder_name}\0{text}".encode()).digest()


def train(embedder: Embedder, examples: list[TrainingExample], cues: CueFn, cue_names: tuple[str, ...],
          folds: int = 5, recall: float = TARGET_RECALL,
          other_layers: OtherLayers | None = None, vector_cache: Path | None = None,
          vector_seed: Path | None = None) -> EmergencyClassifier:
    """Fit the head; choose the threshold from cross-validated probabilities (each example scored by a
    model that did not see it) so that the whole screen escalates `recall` of the training emergencies.

    `other_layers(text)` gives (escalated by the rules or vital signs, reads as a guideline question, the rules
    refuse it / ask to clarify / see an injection): the
    classifier only has to catch what the other layers miss, and never speaks on a guideline question,
    so the threshold is chosen for the screen as it runs, not for the classifier alone."""
    started = time.perf_counter()
    texts = [e.text for e in examples]
    labels = np.asarray([e.label for e in examples], dtype=np.float64)
    # A long message is also scored sentence by sentence (a red flag among chit-chat): embed those too,
    # so the sentence bar is chosen from the same cross-validated scores as the message bar.
    owners, parts = sentence_parts(texts)
    all_rows = features(embedder, texts + parts, cues, vector_cache, vector_seed)
    rows, part_rows = all_rows[: len(texts)], all_rows[len(texts) :]
    part_owner = np.asarray(owners, dtype=np.int64)
    vectors = rows[:, : embedder.dim]
    embed_s = time.perf_counter() - started
    names = (*(f"e{i}" for i in range(embedder.dim)), *cue_names)
    order = np.random.default_rng(11).permutation(len(examples)) % folds
    cv = np.zeros(len(examples))
    cv_part = np.zeros(len(examples))  # best sentence of each long message (0 for one-sentence messages)
    for k in range(folds):
        fold_head = fit_mlp(rows[order != k], labels[order != k], names)
        cv[order == k] = fold_head.score(rows[order == k])
        mine = order[part_owner] == k if len(part_owner) else np.zeros(0, dtype=bool)
        if mine.any():
            np.maximum.at(cv_part, part_owner[mine], fold_head.score(part_rows[mine]))
    layers = [other_layers(t) if other_layers else (False, False, False) for t in texts]
    caught = np.asarray([esc for esc, _, _ in layers])
    muted = np.asarray([question and not esc for esc, question, _ in layers])
    declined = np.asarray([dec and not esc for esc, _, dec in layers])
    threshold, sentence_threshold = _choose_bars(cv, cv_part, labels, caught, muted, recall)
    # Declined messages: the bar that keeps `recall` of the emergencies among them (enough of them, else 0.9).
    declined_pos = np.sort(cv[declined & (labels == 1)])
    declined_threshold = 0.9
    if len(declined_pos) >= 20:
        declined_threshold = max(threshold, float(declined_pos[int(np.floor((1.0 - recall) * len(declined_pos)))]) - 1e-6)
    head = fit_mlp(rows, labels, names)
    cats: dict[str, list[np.ndarray]] = {}
    for e, v in zip(examples, vectors, strict=True):
        if e.label == 1 and e.source.endswith(tuple("0123456789")) and not e.source.startswith("rule"):
            cats.setdefault(e.category, []).append(v)
    centroids = {}
    for name, vs in sorted(cats.items()):
        c = np.mean(vs, axis=0)
        centroids[name] = [round(float(x), 5) for x in c / (np.linalg.norm(c) or 1.0)]
    bar = np.where(declined, declined_threshold, threshold)
    predicted = caught | (((cv >= bar) | (cv_part >= np.maximum(bar, sentence_threshold))) & ~muted)
    per_category: dict[str, dict[str, float]] = {}
    for cat in sorted({e.category for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.category == cat]
        pos = [i for i in idx if labels[i] == 1]
        neg = [i for i in idx if labels[i] == 0]
        per_category[cat] = {
            "emergencies": len(pos), "recall": round(float(np.mean(predicted[pos])), 3) if pos else float("nan"),
            "non_urgent": len(neg), "over_escalation": round(float(np.mean(predicted[neg])), 3) if neg else float("nan"),
        }
    report: dict[str, object] = {
        "examples": len(examples), "emergencies": int(labels.sum()), "non_urgent": int(len(labels) - labels.sum()),
        "categories": len(centroids), "sources": dict(Counter(e.source.split(":")[0].split(" ")[0] for e in examples)),
        "sentence_bar": "chosen with the message bar: the pair that reaches the target recall with the least "
                        "over-escalation (cross-validated, sentences of long messages scored on their own)",
        "head": "MLP, 64 hidden units (torch, AdamW, weight decay 0.01, 30 epochs)", "folds": folds, "target_recall": recall,
        "other_layers": {"escalated": int(caught.sum()), "emergencies_caught": int((caught & (labels == 1)).sum()),
                         "guideline_questions_muted": int(muted.sum()), "declined_by_rules": int(declined.sum()),
                         "declined_emergencies": int((declined & (labels == 1)).sum())},
        "cross_validated_screen": {
            "recall": round(float(np.mean(predicted[labels == 1])), 4),
            "over_escalation": round(float(np.mean(predicted[labels == 0])), 4),
        },
        "per_category": per_category,
        "embed_s": round(embed_s, 1), "train_s": round(time.perf_counter() - started, 1),
    }
    return EmergencyClassifier(
        version=time.strftime("%Y%m%d-%H%M%S"), embedder=getattr(embedder, "name", "unknown"), head=head,
        threshold=round(threshold, 4), sentence_threshold=round(sentence_threshold, 4),
        declined_threshold=round(declined_threshold, 4), categories=centroids, report=report,
    )


VECTOR_CACHE = "training_vectors.npz"  # beside the head; the corpus's ship beside the shipped head


def retrain(embedder: Embedder, rules_dir: Path, out: Path = CLASSIFIER_FILE, corpus: Path = CORPUS_DIR) -> EmergencyClassifier:
    """Train from the corpus plus the rules' examples and write the head atomically."""
    from core.safety.rules import RuleSet
    from core.safety.vitals import VitalThresholds, read_vitals

    examples = corpus_examples(corpus) + rule_examples(rules_dir)
    if sum(e.label for e in examples) < 20 or sum(1 - e.label for e in examples) < 20:
        raise CQAError("Too few training examples: at least 20 emergencies and 20 non-urgent messages are needed.")
    rules = RuleSet.load(rules_dir)
    vitals = VitalThresholds.load()

    def other_layers(text: str) -> tuple[bool, bool, bool]:
        report = read_vitals(text, vitals)
        decision = rules.check(text)
        escalated = decision.escalation is not None or (report.level is not None and not report.question_only)
        declined = decision.refusal is not None or decision.clarify is not None or decision.injection
        return escalated, rules.is_guideline_question(text), declined

    model = train(embedder, examples, rules.cues, RuleSet.CUE_NAMES, other_layers=other_layers,
                  vector_cache=out.parent / VECTOR_CACHE, vector_seed=TRIAGE_DIR / VECTOR_CACHE)
    tmp = out.with_suffix(".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(model.model_dump_json(indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    return model
