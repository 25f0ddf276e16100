"""Instruction data for a LoRA adapter, built from the indexed guidelines.

LoRA teaches behaviour, not facts: the targets are in the app's own answer format (1-3 sentences,
each ending with the number of the passage it comes from), the refusal text when the passages do not
answer, the urgent-care message first for red-flag messages, and a clarifying question when a child's
dose lacks age and weight. Every example is laid out exactly as the pipeline lays out a real request
(`core.prompts.build_messages`), and every answer target is checked with the same citation verifier
that checks real answers, so a target never cites a passage that does not say it.

Deterministic for a given library, rule set and seed; deduplicated; split into train and validation
by document, so validation documents are unseen in training.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from core.answering.citations import split_sentences, support_score, verify
from core.answering.prompts import BUILTIN_PROMPT, NOT_IN_GUIDELINES, PromptTemplate, build_messages
from core.errors import CQAError
from core.library.store import StoredChunk
from core.schema import RetrievedPassage

Kind = Literal["answer", "refuse", "escalate", "clarify"]
Split = Literal["train", "validation"]

MIN_TRAIN_EXAMPLES = 24
# Share of answer questions that are also asked without their passage (target: the refusal). Kept
# low: refusing is the easy way out for a small model, and a first adapter trained with a third of
# refusals learnt to refuse almost everything (docs/training.md).
REFUSAL_SHARE = 0.15
MIN_DOCUMENTS = 2

# Questions about things no demo-style guideline library covers: the model must decline them even
# though retrieval always returns *something*. Clinical on purpose (non-clinical ones are refused
# by the rules before the model is asked).
OFF_LIBRARY_QUESTIONS = (
    "What is the first-line treatment for gout flares?",
    "What dose of methotrexate is used in rheumatoid arthritis?",
    "How is acute otitis media treated in adults?",
    "What is the target INR for a mechanical mitral valve?",
    "When should a patient with psoriasis be referred to dermatology?",
    "What is the recommended vaccine schedule for shingles?",
    "How long should a patient with a clavicle fracture wear a sling?",
    "What is the starting dose of levothyroxine in hypothyroidism?",
    "How is scabies treated?",
    "What are the criteria for referring a patient with suspected glaucoma?",
    "What is the dose of allopurinol after a gout attack?",
    "How should iron deficiency anaemia in pregnancy be treated?",
    "What antibiotic is used for cellulitis in penicillin allergy?",
    "When is a colonoscopy indicated for iron deficiency?",
    "What is the management of plantar fasciitis?",
    "How is head lice treated in children?",
    "What is the first-line treatment for migraine prophylaxis?",
    "How often should lithium levels be checked?",
    "What are the indications for a DEXA scan?",
    "What is the treatment for uncomplicated urinary tract infection in men?",
    "How is benign paroxysmal positional vertigo managed?",
    "What is the dose of prednisolone for polymyalgia rheumatica?",
    "When should tonsillectomy be considered?",
    "What is the management of an ingrown toenail?",
)

_DOSE_TEMPLATES = (
    "What dose of {drug} is recommended?",
    "What is the {drug} dose in {condition}?",
    "How much {drug} should be given for {condition}?",
    "What dose of {drug} does the guideline give for {topic}?",
    "{drug} dose?",
)
_TERM_TEMPLATES = (
    "What does the guideline say about {terms} in {condition}?",
    "What is recommended about {terms} for {topic}?",
    "In {condition}, what should be done about {terms}?",
    "What are the recommendations on {terms} ({topic})?",
    "When it comes to {topic}, what about {terms}?",
    "{condition}: {terms}?",
)
_TOPIC_TEMPLATES = (
    "What does the {condition} guideline say about {topic}?",
    "What is recommended for {topic} in {condition}?",
)
_DOSE = re.compile(r"\b\d+(?:\.\d+)?\s*(?:mg|micrograms?|mcg|g|ml|mL|units|mmol)\b")
# Sections about the document rather than patient care: no clinical question is asked about them.
_BOILERPLATE = re.compile(
    r"\b(scope|summary|purpose|about this|document control|version|history|references?|disclaimer|"
    r"demonstration|audit|authors?|review date|contents|glossary|abbreviations|introduction)\b", re.IGNORECASE)
_DISCLAIMER = re.compile(r"fictional|question-answering application|decisions about patient care", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]+")
_STOP = frozenset(
    """a about above after again all also an and any are as at be because been before being below between both
    but by can could did do does doing down during each few for from further had has have having he her here
    his how i if in into is it its itself may more most must no nor not of off on once only or other our out
    over own same she should so some such than that the their them then there these they this those through
    to too under until up very was we were what when where which while who whom why will with within without
    would you your give given use used using patient patients people person adults adult consider offer
    should must recommended recommend guideline guidelines section page table""".split()
)


class TrainingExample(BaseModel):
    id: str = Field(description="Stable hash of the question, passages and target.")
    kind: Kind
    split: Split
    document: str | None = Field(default=None, description="File name the question was made from (None: none).")
    question: str
    passages: list[str] = Field(description="Chunk ids given to the model, in order ([1], [2], ...).")
    cited: list[int] = Field(default_factory=list, description="Passage numbers the target cites.")
    messages: list[dict[str, str]] = Field(description="system, user, assistant: exactly what the model sees.")

    @property
    def target(self) -> str:
        return self.messages[-1]["content"]


class DatasetReport(BaseModel):
    examples: int
    counts: dict[str, int] = Field(description="'<split>/<kind>' → examples.")
    train_documents: list[str]
    validation_documents: list[str]
    skipped: dict[str, int] = Field(default_factory=dict, description="Why candidate examples were dropped.")
    seed: int
    prompt_version: str


class Dataset(BaseModel):
    examples: list[TrainingExample]
    report: DatasetReport

    def split(self, which: Split) -> list[TrainingExample]:
        return [e for e in self.examples if e.split == which]

    def save(self, folder: Path) -> dict[str, Path]:
        """`train.jsonl`, `validation.jsonl` and `report.json` in `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        for which in ("train", "validation"):
            path = folder / f"{which}.jsonl"
            path.write_text("".join(e.model_dump_json() + "\n" for e in self.split(which)), encoding="utf-8")
            out[which] = path
        out["report"] = folder / "report.json"
        out["report"].write_text(self.report.model_dump_json(indent=2), encoding="utf-8")
        return out


def load_examples(path: Path) -> list[TrainingExample]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [TrainingExample.model_validate(json.loads(line)) for line in lines if line.strip()]


class RedFlag(BaseModel):
    """A message the escalation rules fire on, with the message the rules show first."""

    rule_id: str
    message: str
    escalation: str


class Clarification(BaseModel):
    rule_id: str
    message: str
    question: str


Embed = Callable[[list[str]], list[list[float]]]


def passage_of(chunk: StoredChunk) -> RetrievedPassage:
    return RetrievedPassage(
        chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, title=chunk.title, file_name=chunk.file_name,
        issuer=chunk.issuer, version=chunk.version, effective_date=chunk.effective_date,
        specialty=chunk.specialty, page=chunk.page, section=chunk.section, text=chunk.text,
        score_kind="cosine", score=1.0, similarity=1.0,
    )


def _verifier_text(p: RetrievedPassage) -> str:
    return f"{p.title} › {p.section_label}\n{p.text}"  # as the pipeline verifies


class _Builder:
    def __init__(self, chunks: list[StoredChunk], embed: Embed, prompt: PromptTemplate, seed: int,
                 max_passages: int) -> None:
        self.chunks = [c for c in chunks if c.text.strip()]
        self.embed = embed
        self.prompt = prompt
        self.rng = random.Random(seed)
        self.max_passages = max_passages
        self.skipped: Counter[str] = Counter()
        vectors = np.asarray(embed([f"{c.title} {' '.join(c.section)} {c.text}" for c in self.chunks]), dtype=np.float32)
        self.vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        docs: Counter[str] = Counter()
        for c in self.chunks:
            docs.update({w.lower() for w in _WORD.findall(c.text)})
        self.idf = {w: math.log(len(self.chunks) / n) for w, n in docs.items()}

    # -- pieces -------------------------------------------------------------------------------
    def nearest(self, text: str, k: int, exclude_docs: frozenset[str] | set[str] = frozenset(),
                exclude: frozenset[str] | set[str] = frozenset()) -> list[StoredChunk]:
        q = np.asarray(self.embed([text])[0], dtype=np.float32)
        order = np.argsort(-(self.vectors @ (q / max(float(np.linalg.norm(q)), 1e-9))), kind="stable")
        out = []
        for i in order:
            c = self.chunks[int(i)]
            if c.doc_id in exclude_docs or c.chunk_id in exclude:
                continue
            out.append(c)
            if len(out) == k:
                break
        return out

    def key_sentences(self, chunk: StoredChunk) -> list[str]:
        """Sentences worth asking about: a clinical claim of reasonable length, numbers first."""
        good = []
        for s in split_sentences(chunk.text):
            words = s.split()
            if not 6 <= len(words) <= 45 or s.rstrip().endswith(":") or "|" in s or _DISCLAIMER.search(s):
                continue
            good.append(s.strip())
        good.sort(key=lambda s: (not re.search(r"\d", s), -len(s)))
        return good

    def question_for(self, chunk: StoredChunk, sentence: str) -> str:
        """A clinician-style question whose answer is `sentence`: a dose question when the sentence
        doses a drug, else a question on the section's topic with the sentence's key clinical terms."""
        topic = _topic(chunk)
        condition = _short_title(chunk.title)
        drug = next((w for w in _WORD.findall(sentence) if _is_drug(w)), None)
        if drug and _DOSE.search(sentence):
            template = self.rng.choice(_DOSE_TEMPLATES)
            return template.format(drug=drug.lower(), condition=condition, topic=topic)
        terms = self.key_terms(sentence, topic + " " + chunk.title)
        template = self.rng.choice(_TOPIC_TEMPLATES if not terms else _TERM_TEMPLATES)
        return template.format(terms=_join(terms), topic=topic, condition=condition)

    def key_terms(self, sentence: str, context: str) -> list[str]:
        """Up to three clinically meaningful words of `sentence` not already in `context`, rarest first."""
        seen = {w.lower() for w in _WORD.findall(context)}
        words = [w for w in dict.fromkeys(_WORD.findall(sentence))
                 if w.lower() not in _STOP and w.lower() not in seen and len(w) > 3
                 and not (w.isupper() and not any(ch.isdigit() for ch in w) and len(w) > 4)]
        words.sort(key=lambda w: (not _is_drug(w), -self.idf.get(w.lower(), 0.0)))
        # Codes and abbreviations keep their case (PHQ-9, NEWS2, SpO2); other words are lower-cased.
        return [w if any(ch.isdigit() for ch in w) or w.isupper() else w.lower()
                for w in words[: self.rng.choice((1, 2, 2, 3))]]

    def layout(self, gold: StoredChunk | None, others: list[StoredChunk]) -> tuple[list[StoredChunk], int]:
        """Gold at a random position among the others; returns the passages and its number (0: none)."""
        passages = list(others[: self.max_passages - (1 if gold else 0)])
        if gold is None:
            return passages, 0
        at = self.rng.randrange(len(passages) + 1)
        passages.insert(at, gold)
        return passages, at + 1

    def messages(self, question: str, passages: list[StoredChunk], target: str) -> list[dict[str, str]]:
        msgs = build_messages(self.prompt, question, [passage_of(c) for c in passages])
        return [m.model_dump() for m in msgs] + [{"role": "assistant", "content": target}]

    def supported(self, target: str, passages: list[StoredChunk]) -> bool:
        check = verify(target, [(i, _verifier_text(passage_of(c))) for i, c in enumerate(passages, 1)])
        return check.all_supported

    # -- examples -----------------------------------------------------------------------------
    def answer_examples(self, chunk: StoredChunk) -> list[tuple[Kind, str, list[StoredChunk], list[int], str]]:
        out: list[tuple[Kind, str, list[StoredChunk], list[int], str]] = []
        if any(_BOILERPLATE.search(h) for h in chunk.section[1:] or chunk.section):
            self.skipped["section about the document, not care"] += 1
            return out
        for sentence in self.key_sentences(chunk)[:2]:
            question = self.question_for(chunk, sentence)
            others = self.nearest(question, self.max_passages, exclude={chunk.chunk_id})
            passages, n = self.layout(chunk, others)
            follow = self._next_sentence(chunk, sentence) if self.rng.random() < 0.3 else None
            target = _cite(sentence, n) + (" " + _cite(follow, n) if follow else "")
            if not self.supported(target, passages):
                self.skipped["answer target not verified"] += 1
                continue
            out.append(("answer", question, passages, [n], target))
            # The same question without its passage: the honest answer is the refusal.
            far = self.nearest(question, self.max_passages, exclude_docs={chunk.doc_id})
            if any(support_score(sentence, _verifier_text(passage_of(c))).passes() for c in far):
                self.skipped["refusal would have been answerable"] += 1
                continue
            if self.rng.random() < REFUSAL_SHARE:
                out.append(("refuse", question, far, [], NOT_IN_GUIDELINES))
        return out

    def _next_sentence(self, chunk: StoredChunk, sentence: str) -> str | None:
        sentences = [s.strip() for s in split_sentences(chunk.text)]
        if sentence.strip() in sentences:
            i = sentences.index(sentence.strip())
            if i + 1 < len(sentences) and 6 <= len(sentences[i + 1].split()) <= 40:
                return sentences[i + 1]
        return None

    def off_library(self, question: str) -> tuple[Kind, str, list[StoredChunk], list[int], str]:
        return ("refuse", question, self.nearest(question, self.max_passages), [], NOT_IN_GUIDELINES)

    def red_flag(self, flag: RedFlag) -> tuple[Kind, str, list[StoredChunk], list[int], str]:
        passages = self.nearest(flag.message, self.max_passages)
        target = flag.escalation
        for n, c in enumerate(passages, 1):
            for s in self.key_sentences(c)[:3]:
                overlap = {w.lower() for w in _WORD.findall(s)} & {w.lower() for w in _WORD.findall(flag.message)}
                if len(overlap - _STOP) >= 2 and self.supported(_cite(s, n), passages):
                    return ("escalate", flag.message, passages, [n], f"{target}\n\n{_cite(s, n)}")
        return ("escalate", flag.message, passages, [], target)

    def clarify(self, item: Clarification) -> tuple[Kind, str, list[StoredChunk], list[int], str]:
        return ("clarify", item.message, self.nearest(item.message, self.max_passages), [], item.question)


def _is_drug(word: str) -> bool:
    from core.answering.lexicon import _DRUG_SUFFIX, _DRUGS

    w = word.lower()
    return w in _DRUGS or bool(_DRUG_SUFFIX.search(w))


def _topic(chunk: StoredChunk) -> str:
    topic = next((h for h in reversed(chunk.section) if h.strip() and h != chunk.title), chunk.title)
    topic = re.sub(r"^\d+(\.\d+)*\.?\s*", "", topic).strip() or chunk.title
    return topic[:1].lower() + topic[1:] if not topic[:2].isupper() else topic


def _short_title(title: str) -> str:
    """'Emergency Treatment of Anaphylaxis in Adults' → 'anaphylaxis in adults' (what a clinician says)."""
    head = re.split(r":| — | - ", title.strip())[0]
    short = re.sub(r"^(?:the\s+)?(?:(?:emergency|acute|initial|clinical|primary care)\s+)*"
                   r"(?:management|treatment|assessment|recognition|diagnosis|care|guideline)\s+(?:of|for|in)\s+",
                   "", head, flags=re.IGNORECASE)
    return " ".join(w if w.isupper() or any(ch.isdigit() for ch in w) else w.lower() for w in short.split())


def _join(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " and " + terms[-1]


def _cite(sentence: str, n: int) -> str:
    s = sentence.strip()
    return f"{s[:-1]} [{n}]{s[-1]}" if s[-1:] in ".!?" else f"{s} [{n}]"


def _example_id(question: str, passages: Sequence[StoredChunk], target: str) -> str:
    key = json.dumps([question.lower().strip(), [c.chunk_id for c in passages], target])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def build_dataset(
    chunks: list[StoredChunk],
    embed: Embed,
    *,
    red_flags: Sequence[RedFlag] = (),
    clarifications: Sequence[Clarification] = (),
    prompt: PromptTemplate = BUILTIN_PROMPT,
    seed: int = 0,
    validation_fraction: float = 0.2,
    max_passages: int = 3,
    off_library: Sequence[str] = OFF_LIBRARY_QUESTIONS,
) -> Dataset:
    """Examples from `chunks` (the active library), split by document. Raises `CQAError` when there is
    too little to learn from."""
    documents = sorted({c.file_name for c in chunks if c.text.strip()})
    if not documents:
        raise CQAError("No guidelines are indexed: upload guidelines before training an adapter.")
    if len(documents) < MIN_DOCUMENTS:
        raise CQAError(
            f"Only {len(documents)} guideline is indexed; training needs at least {MIN_DOCUMENTS} documents so that "
            "validation can use a document the adapter never saw."
        )
    b = _Builder(chunks, embed, prompt, seed, max_passages)
    shuffled = list(documents)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(documents) * validation_fraction))
    validation_docs = set(shuffled[:n_val])

    raw: list[tuple[Split, str | None, tuple[Kind, str, list[StoredChunk], list[int], str]]] = []
    for chunk in sorted(b.chunks, key=lambda c: (c.file_name, c.chunk_id)):
        split: Split = "validation" if chunk.file_name in validation_docs else "train"
        raw += [(split, chunk.file_name, ex) for ex in b.answer_examples(chunk)]
    for i, q in enumerate(off_library):
        raw.append(("validation" if i % 5 == 0 else "train", None, b.off_library(q)))
    held = _held_out_rules([f.rule_id for f in red_flags], seed, validation_fraction)
    for flag in red_flags:
        raw.append(("validation" if flag.rule_id in held else "train", None, b.red_flag(flag)))
    held = _held_out_rules([c.rule_id for c in clarifications], seed, validation_fraction)
    for item in clarifications:
        raw.append(("validation" if item.rule_id in held else "train", None, b.clarify(item)))

    seen: set[tuple[str, str]] = set()
    examples: list[TrainingExample] = []
    for split, doc, (kind, question, passages, cited, target) in raw:
        key = (question.lower().strip(), target)
        if key in seen:
            b.skipped["duplicate"] += 1
            continue
        seen.add(key)
        examples.append(TrainingExample(
            id=_example_id(question, passages, target), kind=kind, split=split, document=doc, question=question,
            passages=[c.chunk_id for c in passages], cited=cited, messages=b.messages(question, passages, target),
        ))
    counts = Counter(f"{e.split}/{e.kind}" for e in examples)
    train = sum(v for k, v in counts.items() if k.startswith("train/"))
    if train < MIN_TRAIN_EXAMPLES:
        raise CQAError(
            f"Too little data: {train} training examples could be made from {len(documents)} documents "
            f"(at least {MIN_TRAIN_EXAMPLES} are needed). Upload more guidelines with full-sentence recommendations."
        )
    report = DatasetReport(
        examples=len(examples), counts=dict(sorted(counts.items())),
        train_documents=sorted(set(documents) - validation_docs), validation_documents=sorted(validation_docs),
        skipped=dict(sorted(b.skipped.items())), seed=seed, prompt_version=prompt.version,
    )
    return Dataset(examples=examples, report=report)


def _held_out_rules(rule_ids: list[str], seed: int, fraction: float) -> set[str]:
    """Whole rules go to validation, like whole documents: their messages are unseen in training."""
    rules = sorted(set(rule_ids))
    random.Random(seed).shuffle(rules)
    return set(rules[: max(1, round(len(rules) * fraction))]) if len(rules) > 1 else set()


def red_flags_from_rules(rules: object) -> tuple[list[RedFlag], list[Clarification]]:
    """Red-flag and clarification messages from the rule set's own examples, with the messages the
    rules show for them (so targets always match what the app shows)."""
    from core.safety.rules import RuleSet

    assert isinstance(rules, RuleSet)
    flags: list[RedFlag] = []
    clarifications: list[Clarification] = []
    for rule in rules.rules:
        for message in rule.examples.match:
            decision = rules.check(message)
            if rule.kind == "escalate" and decision.escalation and not decision.refusal:
                flags.append(RedFlag(rule_id=rule.id, message=message, escalation=decision.escalation.message))
            elif rule.kind == "clarify" and decision.clarify and not decision.escalation:
                clarifications.append(Clarification(rule_id=rule.id, message=message, question=decision.clarify))
    return flags, clarifications
