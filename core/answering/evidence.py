"""Evidence-first answers: rerank retrieved passages and pick the guideline sentences that answer.

A 135M model cannot be trusted to write the answer, but the answer is usually *in* the passages that
retrieval found. So the sentences (or table rows) of the passages are scored as answers to the
question and the best ones are shown verbatim, each with its exact character span; the model's
summary goes on top only when it verifies (`core.answering.pipeline`).

Two small logistic-regression scorers (`core.learning.LinearScorer`) over explainable features, learned from the team's evaluation
set by `scripts/train_evidence.py` and shipped as `data/answering/evidence_model.json` with their
training report:
- the **passage reranker** orders the hybrid search's top candidates (the section that holds the answer
  first): hybrid rank, MiniLM cosine of the passage and of its best sentence, question words found in
  the heading path and in the text, and whether any sentence is of the kind the question asks for;
- the **sentence scorer** rates each sentence of the top passages: MiniLM question-sentence cosine,
  lexical overlap with the sentence and with its heading path, and question-type cues (a dose question
  wants a dose with a unit, a "when" question a time, a target question a number with a unit, a
  "which drug" question a drug name), plus its passage's reranker score.
Embeddings of passage sentences are cached per chunk (content-addressed by chunk id), so a passage is
embedded once per process.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from core.answering.lexicon import _DRUGS as _DRUG_NAMES
from core.answering.relevance import missing_terms, says, topic_terms, unaddressed_terms
from core.answering.scope import Exclusion, ScopeIndex, question_ages
from core.answering.vocabulary import default_vocabulary
from core.answers import Quote
from core.errors import CQAError
from core.learning import LinearScorer
from core.library.embedding import Embedder
from core.library.store import index_text
from core.schema import RetrievedPassage
from core.settings import REPO_ROOT

EVIDENCE_MODEL = REPO_ROOT / "data" / "answering" / "evidence_model.json"

# --------------------------------------------------------------------------------------------------
# Sentences with exact spans
# --------------------------------------------------------------------------------------------------

_LINE = re.compile(r"[^\n]+")
_BULLET = re.compile(r"^\s*(?:[-*•‣▪◦]|\d{1,2}[.)])\s+")
# A sentence ends at . ! ? (not inside "0.5" or "e.g.") followed by space and a capital, digit or bracket.
_END = re.compile(r"(?<!\b[eEiI]\.[gGeE])(?<!\bvs)(?<!\bapprox)[.!?][\"')\]]*\s+(?=[A-Z0-9(\[\"'])")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|?\s*$")
_MARKDOWN = re.compile(r"^\s*#{1,6}\s+")
_MIN_CHARS = 12


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    table_row: bool = False
    item: bool = False  # a list item or table row: it may complete a lead-in sentence ending in ":"


def sentence_spans(text: str) -> list[Span]:
    """Spans of the sentences, list items and table rows of `text`; `text[s.start:s.end]` is verbatim.
    Table rule lines ("|---|") and fragments under 12 characters are left out."""
    spans: list[Span] = []
    for line in _LINE.finditer(text):
        raw = line.group()
        if _TABLE_RULE.match(raw) and "-" in raw:
            continue
        offset = line.start()
        lead = _BULLET.match(raw) or _MARKDOWN.match(raw)
        begin = lead.end() if lead else len(raw) - len(raw.lstrip())
        if raw.lstrip().startswith("|") or raw.count("|") >= 2:
            _add(spans, text, offset + begin, offset + len(raw.rstrip()), table_row=True, item=True)
            continue
        if _BULLET.match(raw):
            _add(spans, text, offset + begin, offset + len(raw.rstrip()), item=True)
            continue
        start = begin
        for m in _END.finditer(raw, begin):
            end = m.start() + 1
            _add(spans, text, offset + start, offset + end)
            start = m.end()
        _add(spans, text, offset + start, offset + len(raw.rstrip()))
    return spans


def _add(spans: list[Span], text: str, start: int, end: int, table_row: bool = False, item: bool = False) -> None:
    while start < end and text[start].isspace():
        start += 1
    if end - start >= _MIN_CHARS:
        spans.append(Span(start, end, table_row, item))


_MAX_ITEMS = 8


def with_list(text: str, spans: list[Span], j: int) -> Span:
    """Span j, extended over the list items or table rows that follow it when it introduces them
    ("Diagnose type 2 diabetes if any of the following is present:"): the lead-in alone answers nothing."""
    span = spans[j]
    lead = text[span.start : span.end].rstrip()
    if not (lead.endswith(":") or (span.table_row and j + 1 < len(spans) and spans[j + 1].table_row and j == 0)):
        return span
    end = span.end
    for nxt in spans[j + 1 : j + 1 + _MAX_ITEMS]:
        if not nxt.item:
            break
        end = nxt.end
    return Span(span.start, end, span.table_row, span.item)


def table_header(text: str, spans: list[Span], j: int) -> int | None:
    """The index of the header row of the table that row j belongs to; None when span j is not a table
    row, or is the header itself."""
    if not spans[j].table_row:
        return None
    i = j
    while i > 0 and spans[i - 1].table_row and _same_table(text, spans[i - 1], spans[i]):
        i -= 1
    return i if i != j else None


def _same_table(text: str, above: Span, below: Span) -> bool:
    between = text[above.end : below.start]
    return "\n\n" not in between and all(ch in " \t\r\n|-:" for ch in between)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def scoring_text(text: str, spans: list[Span], j: int) -> str:
    """What span j is scored (and embedded) as: its own text, except that a table row is read with its
    column headers ("Parameter: Respiration rate; ...; Score 3: 8 or less; 25 or more"). A row alone
    ("| Respiration rate | 12-20 | 9-11 | 21-24 | 8 or less; 25 or more |") does not say which column
    is "score 3", so a question about it could not find it."""
    span = spans[j]
    row = text[span.start : span.end]
    h = table_header(text, spans, j)
    if h is None:
        return row
    head, cells = _cells(text[spans[h].start : spans[h].end]), _cells(row)
    if len(head) != len(cells):
        return f"{' '.join(head)}: {' '.join(cells)}"
    return "; ".join(f"{a}: {b}" if a else b for a, b in zip(head, cells, strict=True))


def embedding_text(p: RetrievedPassage, spans: list[Span], j: int) -> str:
    """What span j of passage `p` is embedded as: its scoring text under its section heading ("3.1
    Adrenaline: Give 0.5 mg IM ..."). "Give 0.5 mg IM" alone does not say what is given; the heading
    does (cross-validated on the team's questions: the answer sentence ranked first 64 % → 67 % of the
    time, with fewer quotes shown)."""
    heading = p.section[-1] if p.section else p.title
    return f"{heading}: {scoring_text(p.text, spans, j)}"


def quoted_span(text: str, spans: list[Span], j: int) -> Span:
    """What is shown for span j: a lead-in with its list (`with_list`), and a table row under its header
    row (with the rows between, as they stand in the guideline: a quote is one verbatim span)."""
    h = table_header(text, spans, j)
    if h is not None and j - h <= _MAX_ITEMS:
        return Span(spans[h].start, spans[j].end, True, True)
    return with_list(text, spans, j)


# --------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------

_Q_DOSE = re.compile(r"\b(dose|doses|dosing|dosage|how much|regimen|mg|mcg|micrograms?|units?|loading|titrat\w*)\b", re.I)
_Q_NUMBER = re.compile(
    r"\b(target|threshold|level|cut[- ]?off|how (high|low|many|much)|above|below|range|score|value|limit|"
    r"define[sd]?|definition|criteria|diagnos\w*|stage|grade|what (bp|blood pressure|glucose|hba1c|sats|saturation|temperature))\b",
    re.I,
)
_Q_WHEN = re.compile(r"\b(when|how (long|soon|often|quickly)|within|timing|time ?frame|interval|duration|until|how many (days|hours|weeks|minutes))\b", re.I)
_Q_WHICH = re.compile(
    r"\b(which|first[- ]line|second[- ]line|drug|medication|medicine|antibiotic|agent|choice|alternative|instead|"
    r"treat\w*|give|prescribe|start)\b",
    re.I,
)
_Q_REFER = re.compile(r"\b(refer\w*|admit\w*|admission|escalat\w*|specialist|transfer|hospital|same[- ]day|urgent\w*)\b", re.I)

_UNIT = (
    r"(?:mg/kg|mcg/kg|micrograms?/kg|units?/kg|ml/kg|mg|mcg|micrograms?|µg|g|ml|mL|l|mmol/l|mmol/mol|mmol|units?|iu|"
    r"mmhg|%|°c|bpm|/min|breaths|beats|kg|cm|hours?|hrs?|h|days?|weeks?|months?|years?|minutes?|mins?|seconds?)"
)
_NUM_UNIT = re.compile(rf"\d(?:[\d.,/]*\d)?\s*(?:-|to|–)?\s*(?:\d[\d.,/]*)?\s*{_UNIT}(?![a-z])", re.I)
_DOSE_UNIT = re.compile(r"\d(?:[\d.,]*\d)?\s*(?:mg|mcg|micrograms?|µg|g|ml|units?|iu|mmol)(?:/kg)?(?![a-z])", re.I)
_TIME = re.compile(
    r"\b(within|after|before|every|daily|weekly|monthly|annually|yearly|immediately|same[- ]day|at least|"
    r"\d+\s*(?:-|to)?\s*\d*\s*(?:minutes?|mins?|hours?|hrs?|h|days?|weeks?|months?|years?))\b",
    re.I,
)
_DRUG = re.compile(
    r"\b\w+(?:pril|sartan|olol|dipine|statin|azole|cillin|mycin|cycline|floxacin|gliflozin|gliptin|glutide|"
    r"formin|parin|xaban|gatran|arin|amide|thiazide|sone|olone|asone|terol|tropium|prazole|caine|pam|lam|"
    r"line|ine|ide|ate|one)\b|\b(insulin|adrenaline|epinephrine|oxygen|aspirin|paracetamol|ibuprofen|glucagon|glucose)\b",
    re.I,
)
_REFER = re.compile(r"\b(refer\w*|admit\w*|admission|escalat\w*|specialist|transfer|emergency department|same[- ]day|urgent\w*|999|ambulance)\b", re.I)
_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STEM = 6

_SENTENCE_OWN = (
    "cos_sentence", "cos_heading", "lex_sentence", "lex_heading", "dose_cue", "number_cue", "time_cue",
    "drug_cue", "refer_cue", "short", "passage_score",
)
SENTENCE_FEATURES = (*_SENTENCE_OWN, "cos_sentence_vs_best", "lex_sentence_vs_best", "passage_score_vs_best")
_OWN = ("hybrid_rank", "cos_passage", "cos_best_sentence", "lex_heading", "lex_text", "best_cue", "cos_heading", "cos_top2_sentences")
# Each candidate's feature is also given relative to the best candidate of the same question: a
# pointwise scorer then sees "the best heading match of this list", not an absolute cosine.
PASSAGE_FEATURES = (*_OWN, *(f"{n}_vs_best" for n in _OWN[1:]))


class QuestionCues(BaseModel):
    """What kind of answer the question asks for, and its topic word stems."""

    dose: bool
    number: bool
    when: bool
    which: bool
    refer: bool
    stems: list[str]

    @classmethod
    def of(cls, question: str) -> QuestionCues:
        return cls(
            dose=bool(_Q_DOSE.search(question)), number=bool(_Q_NUMBER.search(question)),
            when=bool(_Q_WHEN.search(question)), which=bool(_Q_WHICH.search(question)),
            refer=bool(_Q_REFER.search(question)),
            stems=list(dict.fromkeys(t[:_STEM] for t in topic_terms(question))),
        )


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in _WORD.findall(text.lower())}


def _overlap(stems: list[str], text: str) -> float:
    if not stems:
        return 0.0
    found = _stems(text)
    return sum(s in found for s in stems) / len(stems)


def _cues(q: QuestionCues, sentence: str) -> list[float]:
    return [
        float(q.dose and bool(_DOSE_UNIT.search(sentence))),
        float(q.number and bool(_NUM_UNIT.search(sentence))),
        float(q.when and bool(_TIME.search(sentence))),
        float(q.which and bool(_DRUG.search(sentence))),
        float(q.refer and bool(_REFER.search(sentence))),
    ]


_ASKS_DOSE = re.compile(r"\b(dose|doses|dosing|dosage|how much|how many (mg|micrograms|units|ml)|infusion rate|regimen)\b", re.I)
# "How long do we observe after 2 doses?" names doses given (an event) and asks for a time: no dose is
# needed to answer it. "Apixaban dose when CrCl is 25?" or "calpol dose per kg, how often?" still ask for
# one, and so does any question that says so ("what dose, and when to repeat it?").
_ASKS_TIME = re.compile(r"\b(how (long|soon|often|quickly)|when|what time|max(imum)? time|time (to|from|between)|timing)\b", re.I)
_DOSE_GIVEN = re.compile(r"\b(\d+|one|two|three|first|second|third|another|next|last|previous|single|further|repeat)\s+"
                         r"(?:[\w&/-]+\s+){0,2}doses?\b", re.I)
_ASKS_DOSE_ITSELF = re.compile(r"\b((what|which) dose|dose of|dosing|dosage|how much|how many (mg|micrograms|units|ml))\b", re.I)
_ASKS_NUMBER = re.compile(r"\b(target|threshold|cut[- ]?off|what (level|score|value|number|percentage)|how (high|low|many))\b", re.I)
_NUMBER = re.compile(r"\d")
# Who a guideline is for: a question about another population is not answered by it.
_POPULATIONS = {
    "children": re.compile(r"\b(child|children|paediatric|pediatric|infant|infants|baby|babies|toddler|neonat\w*|newborn|kids?|under[- ]?(1[0-8]|[1-9])s?)\b", re.I),
    "pregnancy": re.compile(r"\b(pregnan\w*|antenatal|postpartum|breast[- ]?feeding|lactat\w*)\b", re.I),
}


CHILD_AGE_UNDER = 16


def _asks_about(name: str, question: str) -> bool:
    """Whether `question` is about that population: its words, or (children) an age under 16 or in
    months, weeks or days ("a 6 year old", "9-month-old", "aged 4")."""
    if _POPULATIONS[name].search(question):
        return True
    if name == "children":  # the same ages the scope check reads (`core.answering.scope.question_ages`)
        return any(age < CHILD_AGE_UNDER for age in question_ages(question))
    return False


def asks_dose(question: str) -> bool:
    """Whether the answer to `question` must hold a dose: it asks for one, not for a time around one."""
    if not _ASKS_DOSE.search(question):
        return False
    about_a_dose_given = bool(_ASKS_TIME.search(question) and _DOSE_GIVEN.search(question))
    return not about_a_dose_given or bool(_ASKS_DOSE_ITSELF.search(question))


def named_drugs(text: str) -> list[str]:
    """The drugs `text` names: a common drug name (`core.answering.lexicon`) or a WHO INN stem."""
    words = dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z][a-z]+", text))
    return [w for w in words if w in _DRUG_NAMES or _INN_DRUG.fullmatch(w)]


def undosed_drugs(question: str, quotes: list[str], context: list[str]) -> list[str]:
    """The drugs a dose question names that its quoted passages name but never dose in the quotes: the
    dose shown is another drug's ("lisinopril dose?" answered by "amlodipine 5 mg once daily" from a
    passage that names lisinopril only as an alternative). A drug the passages never name (a brand, a
    US name) is left to the answerability head. A quote's drug may be in its heading ("3.1 Adrenaline")."""
    named = " ".join(context).lower()
    drugs = [d for d in named_drugs(question) if re.search(rf"\b{d}\b", named)]
    if not drugs:
        return []
    for i, quote in enumerate(quotes):
        heading = context[i].split("\n", 1)[0] if i < len(context) else ""
        said = f"{heading}\n{quote}".lower()
        if _DOSE_UNIT.search(quote) and any(re.search(rf"\b{d}\b", said) for d in drugs):
            return []
    return drugs


def unnamed_drugs(question: str, quotes: list[str], context: list[str]) -> list[str]:
    """The drugs a dose question asks about when the quoted sentences and their passages name none of
    them: "mirtazapine starting dose?" quoted with the sertraline dose. A drug the patient is on ("on
    gliclazide, how much juice?") is context, not asked about. A brand or US name counts by the generic
    name the question's expansion adds ("Pradaxa (dabigatran)": `core.answering.vocabulary`)."""
    drugs = [d for d in named_drugs(question) if not re.search(rf"\b(?:on|taking|takes)\s+{d}\b", question, re.I)]
    text = " ".join([*quotes, *context]).lower()
    if not drugs or any(d in text for d in drugs):  # "statin" is named by "atorvastatin"
        return []
    return drugs


def answer_gap(question: str, quotes: list[str], context: list[str]) -> str | None:
    """Why the chosen sentences cannot answer `question`, or None. Two checks any clinician would make:
    a dose question needs a sentence with a dose (a number and a unit) and a target question a number; a
    question about children or pregnancy needs guidance that mentions them (`context`: the quoted passages
    with their titles and headings)."""
    said = " ".join(quotes)
    if asks_dose(question):
        if not _DOSE_UNIT.search(said):
            return "no dose is given in the sentences found"
        unnamed = unnamed_drugs(question, quotes, context)
        if unnamed:
            return f"the passages found do not mention {', '.join(unnamed)}"
        undosed = undosed_drugs(question, quotes, context)
        if undosed:
            return f"no dose of {', '.join(undosed)} is given in the sentences found"
    if _ASKS_NUMBER.search(question) and not _NUMBER.search(said):
        return "no value is given in the sentences found"
    where = " ".join(context)
    for name, pattern in _POPULATIONS.items():
        if _asks_about(name, question) and not pattern.search(where):
            return f"the passages found do not mention {name}"
    return None


def heading_text(p: RetrievedPassage) -> str:
    return " › ".join([p.title, *[s for s in p.section if s != p.title]])


# --------------------------------------------------------------------------------------------------
# Sentence embedding cache
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassageVectors:
    spans: list[Span]
    sentences: np.ndarray  # (n, dim), unit rows
    heading: np.ndarray  # (dim,)
    passage: np.ndarray  # (dim,): the indexed text (title, headings, body), as the evidence gate compares


class SentenceCache:
    """Per-chunk sentence and heading embeddings, computed once per process (LRU, thread-safe).
    A chunk id names immutable text (a new document version gets new ids), so entries never go stale."""

    def __init__(self, embedder: Embedder, max_chunks: int = 20_000) -> None:
        self.embedder = embedder
        self._max = max_chunks
        self._items: OrderedDict[str, PassageVectors] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, passages: list[RetrievedPassage]) -> list[PassageVectors]:
        with self._lock:
            missing = [p for p in passages if p.chunk_id not in self._items]
        if missing:
            self._compute(list({p.chunk_id: p for p in missing}.values()))
        with self._lock:
            out = []
            for p in passages:
                self._items.move_to_end(p.chunk_id)
                out.append(self._items[p.chunk_id])
            return out

    def warm(self, passages: list[RetrievedPassage]) -> None:
        self.get(passages)

    def __len__(self) -> int:
        return len(self._items)

    def _compute(self, passages: list[RetrievedPassage]) -> None:
        spans = [sentence_spans(p.text) for p in passages]
        texts: list[str] = []
        for p, sp in zip(passages, spans, strict=True):
            texts += [index_text(p.title, p.section, p.text), heading_text(p)]
            texts += [embedding_text(p, sp, j) for j in range(len(sp))]
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32) if texts else np.zeros((0, self.embedder.dim))
        i = 0
        with self._lock:
            for p, sp in zip(passages, spans, strict=True):
                block = vectors[i + 2 : i + 2 + len(sp)]
                self._items[p.chunk_id] = PassageVectors(sp, block, vectors[i + 1], vectors[i])
                i += 2 + len(sp)
            while len(self._items) > self._max:
                self._items.popitem(last=False)


# --------------------------------------------------------------------------------------------------
# The learned scorers
# --------------------------------------------------------------------------------------------------


class EvidenceModel(BaseModel):
    """The shipped scorers and the sentence threshold, with how they were trained."""

    version: str
    passage: LinearScorer
    sentence: LinearScorer
    answer_threshold: float = Field(description="A sentence scoring below this is not shown as an answer (without an "
                                    "answerability head; with one, the head decides).")
    embedder: str = Field(default="all-MiniLM-L6-v2", description="The embedder the scorers were trained with.")
    answerable: LinearScorer | None = Field(default=None, description="Question-level head: do the chosen sentences answer it?")
    answerable_threshold: float = Field(default=0.5, description="Below this, the chosen sentences are not shown as an answer.")
    gate: float | None = Field(default=None, description="The evidence gate (best passage cosine) the answerability head "
                               "was trained behind; it replaces the answer settings' gate when evidence-first answers are on.")
    candidates: int = Field(default=25, description="Hybrid-search candidates reranked per question.")
    max_quotes: int = Field(default=3)
    quote_margin: float = Field(default=0.25, description="Further quotes must score within this of the best.")
    reader_weight: float | None = Field(default=None, description="With the reader (`core.answering.reader`): the "
                                        "weight of its log-odds added to the sentence scorer's for the sentences it "
                                        "reads; None: no reader.")
    reader_reads: int = Field(default=8, description="How many of the best sentences the reader reads.")
    report: dict[str, object] = Field(default_factory=dict)

    def for_embedder(self, name: str) -> EvidenceModel:
        """These scorers for an embedder called `name`: the answerability head and its gate are calibrated
        on the training embedder's cosines, so with another (a test's hashing embedder) passages keep the
        hybrid order and the decision falls back to the sentence threshold and the topic-word check."""
        if name == self.embedder:
            return self
        # The reranker's cosine weights mean nothing on another embedder's vectors: keep the hybrid order.
        names = self.passage.features
        hybrid = LinearScorer(features=names, weights=[float(n == "hybrid_rank") for n in names], bias=0.0,
                              mean=[0.0] * len(names), scale=[1.0] * len(names))
        return self.model_copy(update={"answerable": None, "gate": None, "passage": hybrid, "reader_weight": None})

    @classmethod
    def load(cls, path: Path = EVIDENCE_MODEL) -> EvidenceModel:
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise CQAError(
                f"The evidence scorers file {str(path)!r} cannot be read ({exc}). Restore it from the repository "
                "or retrain it: python scripts/train_evidence.py"
            ) from exc


@dataclass
class Scored:
    passage: RetrievedPassage
    vectors: PassageVectors
    sentence_cos: np.ndarray
    heading_cos: float
    passage_cos: float
    rank: int
    score: float = 0.0


class EvidenceSelector:
    """Reranks passages and selects answer sentences; one per process, thread-safe."""

    def __init__(self, embedder: Embedder, model: EvidenceModel | None = None, cache: SentenceCache | None = None,
                 scope: ScopeIndex | None = None, reader: SentenceReader | None = None) -> None:
        self.model = model or EvidenceModel.load()
        self.cache = cache or SentenceCache(embedder)
        self.scope = scope  # what each document says it does not cover (`core.answering.scope`)
        if self.model.reader_weight is not None and reader is None:
            raise CQAError("These evidence scorers were trained with the reader (data/answering/reader.safetensors), "
                           "and none was given; build the selector with core.services.build_selector.")
        self.reader = reader

    @property
    def candidates(self) -> int:
        return self.model.candidates

    @property
    def gate(self) -> float | None:
        return self.model.gate if self.model.answerable is not None else None

    def embed_query(self, text: str) -> list[float]:
        return self.cache.embedder.embed_query(text)

    def rank(self, question: str, query_vector: list[float], passages: list[RetrievedPassage]) -> list[Scored]:
        """`passages` (in hybrid order) with their cosine and reranker score, best first (ties keep the
        hybrid order)."""
        q = np.asarray(query_vector, dtype=np.float32)
        cues = QuestionCues.of(question)
        scored = []
        for rank, (p, vec) in enumerate(zip(passages, self.cache.get(passages), strict=True)):
            sentence_cos = vec.sentences @ q if len(vec.spans) else np.zeros(0)
            scored.append(Scored(p, vec, sentence_cos, float(vec.heading @ q), float(vec.passage @ q), rank))
        if scored:
            for s, v in zip(scored, self.model.passage.score(passage_matrix(scored, cues)), strict=True):
                s.score = float(v)
        return sorted(scored, key=lambda s: (-s.score, s.rank))

    def rescore(self, question: str, query_vector: list[float], passages: list[RetrievedPassage]) -> list[Scored]:
        """`passages` as already ranked (their `rerank_score` kept), ready for `select`."""
        q = np.asarray(query_vector, dtype=np.float32)
        out = []
        for rank, (p, vec) in enumerate(zip(passages, self.cache.get(passages), strict=True)):
            sentence_cos = vec.sentences @ q if len(vec.spans) else np.zeros(0)
            out.append(Scored(p, vec, sentence_cos, float(vec.heading @ q), float(vec.passage @ q), rank,
                              p.rerank_score if p.rerank_score is not None else 0.0))
        return out

    def select(self, question: str, scored: list[Scored]) -> list[Quote]:
        """The sentences that answer, best first, numbered by their passage's position in `scored`
        ([] when none does: see `choose` for why)."""
        selection = self.choose(question, scored)
        return [] if selection.gap else selection.quotes

    def choose(self, question: str, scored: list[Scored]) -> Selection:
        """The best sentences and whether they answer `question`. With a trained answerability head the
        decision is the head's (plus the dose, value and population checks of `answer_gap`); without one,
        the sentence threshold and the topic-word check decide."""
        if not any(s.vectors.spans for s in scored):
            return Selection([], None, "no sentence was found in the passages")
        probs = self.model.sentence.score(sentence_matrix(question, scored))
        # A guideline that says it does not cover what the question is about is not evidence for it.
        excluded = self._exclusions(question, scored)
        owner = np.asarray([s.passage.doc_id in excluded for s in scored for _ in s.vectors.spans], dtype=bool)
        if excluded:
            probs = np.where(owner, -1.0, probs)
        read_best = 0.0
        if self.reader is not None and self.model.reader_weight is not None:
            probs, read_best = self._read(question, scored, probs)
        floor = 0.0 if self.model.answerable is not None else self.model.answer_threshold
        quotes = pick_quotes(scored, probs, floor, self.model.max_quotes, self.model.quote_margin)
        if not quotes:
            if excluded:
                scope = excluded[next(s.passage.doc_id for s in scored if s.passage.doc_id in excluded)]
                return Selection([], None, f'"{scope.title}" says it does not cover {scope.item}', scope)
            return Selection([], None, "no sentence scores as an answer")
        said = [q.sentence for q in quotes]
        cited = [cited_text(scored[q.n - 1].passage) for q in quotes]
        missing = unaddressed_terms(question, " ".join(said), cited)
        if self.model.answerable is None:
            if missing:
                named = unmentioned(question, said, cited) or missing
                return Selection(quotes, None, f"the passages found do not mention {', '.join(named)}")
            return Selection(quotes, None, answer_gap(question, said, cited))
        if excluded:  # the head reads the passages that remain evidence
            row = answerability_row(question, [s for s in scored if s.passage.doc_id not in excluded], probs[~owner],
                                    said, cited)
        else:
            row = answerability_row(question, scored, probs, said, cited)
        if self.model.answerable.features[-1:] == list(READER_FEATURES):
            row.append(read_best)
        confidence = float(self.model.answerable.score(np.asarray([row]))[0])
        gap = answer_gap(question, said, cited)
        if gap is None and confidence < self.model.answerable_threshold:
            terms = unmentioned(question, said, cited)
            gap = (f"the passages found do not mention {', '.join(terms)}" if terms
                   else f"the closest sentences do not match it closely enough (confidence {confidence:.2f})")
        return Selection(quotes, round(confidence, 4), gap)

    def _read(self, question: str, scored: list[Scored], probs: np.ndarray) -> tuple[np.ndarray, float]:
        """The reader's pass over the best sentences: their scores with the reader's added, and the
        reader's best score (an answerability head feature)."""
        assert self.reader is not None and self.model.reader_weight is not None
        idx = read_order(probs, self.model.reader_reads)
        if not len(idx):
            return probs, 0.0
        texts = sentence_texts(scored)
        reads = self.reader.score(question, [texts[k] for k in idx])
        return reread(probs, idx, reads, self.model.reader_weight), float(reads.max())

    def _exclusions(self, question: str, scored: list[Scored]) -> dict[str, Exclusion]:
        """The documents among `scored` that say they do not cover what `question` is about."""
        if self.scope is None:
            return {}
        out: dict[str, Exclusion] = {}
        for doc_id in dict.fromkeys(s.passage.doc_id for s in scored):
            found = self.scope.excluded(question, doc_id)
            if found is not None:
                out[doc_id] = found
        return out


@dataclass
class Selection:
    """The chosen sentences and the verdict on them."""

    quotes: list[Quote]
    confidence: float | None  # the answerability head's probability (None without a head)
    gap: str | None  # why the quotes do not answer the question, or None when they do
    out_of_scope: Exclusion | None = None  # the scope statement that ruled every passage out


class SentenceReader(Protocol):
    """What the selector needs of a reader (`core.answering.reader.Reader`)."""

    def score(self, question: str, sentences: list[str]) -> np.ndarray: ...


READER_FEATURES = ("reader_best",)  # appended to ANSWERABLE_FEATURES when the scorers use the reader


def sentence_texts(scored: list[Scored]) -> list[str]:
    """Every sentence of `scored` as embedded and read ("heading: sentence"), in `sentence_matrix` order."""
    return [embedding_text(s.passage, s.vectors.spans, j) for s in scored for j in range(len(s.vectors.spans))]


def read_order(probs: np.ndarray, n: int) -> np.ndarray:
    """The indices of the `n` best-scoring sentences the reader reads (not those ruled out, scored -1)."""
    order = np.argsort(-probs, kind="stable")[:n]
    return order[probs[order] >= 0.0]


def reread(probs: np.ndarray, idx: np.ndarray, reads: np.ndarray, weight: float) -> np.ndarray:
    """Sentence scores after the reader: for the sentences it read, the scorer's log-odds plus `weight`
    times the reader's; every sentence it did not read stays below all those it read."""
    eps = 1e-6
    p = np.clip(probs[idx], eps, 1 - eps)
    r = np.clip(reads, eps, 1 - eps)
    logit = np.log(p / (1 - p)) + weight * np.log(r / (1 - r))
    out = probs.copy()
    out[idx] = 1.0 / (1.0 + np.exp(-logit))
    rest = np.ones(len(probs), dtype=bool)
    rest[idx] = False
    rest &= probs >= 0.0
    out[rest] = np.minimum(probs[rest], max(float(out[idx].min()) - eps, 0.0))
    return out


def cited_text(p: RetrievedPassage) -> str:
    return f"{p.title} {p.section_label}\n{p.text}"


def pick_quotes(scored: list[Scored], probs: np.ndarray, threshold: float, max_quotes: int, margin: float) -> list[Quote]:
    """Up to `max_quotes` sentences scoring at least `threshold` and within `margin` of the best, best
    first, a lead-in with its list; numbered by their passage's position in `scored`."""
    rows = [(i, span) for i, s in enumerate(scored) for span in s.vectors.spans]
    if not rows:
        return []
    order = sorted(range(len(rows)), key=lambda k: -probs[k])
    best = float(probs[order[0]])
    if best < threshold:
        return []
    quotes: list[Quote] = []
    for k in order:
        if len(quotes) >= max_quotes or probs[k] < max(threshold, best - margin):
            break
        i, span = rows[k]
        spans = scored[i].vectors.spans
        span = quoted_span(scored[i].passage.text, spans, spans.index(span))
        p = scored[i].passage
        overlap = next((n for n, q in enumerate(quotes) if q.n == i + 1 and span.start < q.char_end and q.char_start < span.end), None)
        if overlap is not None:
            q = quotes[overlap]
            if span.table_row and q.table_row and span.end > q.char_end:  # another row of a table already quoted
                quotes[overlap] = q.model_copy(update={"sentence": p.text[q.char_start : span.end], "char_end": span.end})
            continue  # an item already quoted with its lead-in
        quotes.append(Quote(n=i + 1, sentence=p.text[span.start : span.end], chunk_id=p.chunk_id,
                            char_start=span.start, char_end=span.end, score=round(float(probs[k]), 4),
                            table_row=span.table_row))
    return quotes


ANSWERABLE_FEATURES = (
    "best_sentence", "top3_sentences", "best_passage", "passage_cos", "sentence_cos", "missing_in_quoted",
    "missing_in_evidence", "topic_terms", "cues_met", "gap", "missing_in_quoted_count", "acronyms_missing",
    "drugs_missing",
)
# Drug names by their WHO INN stems (-pril, -sartan, -gliptin, -xaban, -grel, -plase...), with the common
# names of `core.answering.lexicon` (`named_drugs`): a question naming a drug that the quoted passages
# never mention is usually about guidance they do not give.
_INN_DRUG = re.compile(
    r"\b\w+(?:pril|sartan|olol|dipine|statin|azole|cillin|mycin|cycline|floxacin|gliflozin|gliptin|glutide|formin|"
    r"parin|xaban|gatran|grel|plase|afil|faxine|oxetine|pramine|triptyline|lukast|phylline|sone|olone|terol|tropium|"
    r"prazole|mab|nib)\b", re.I)
# Abbreviations the question uses (DVT, UTI, NSTEMI, SGLT2): specific, and too short for the topic words.
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]{1,5}\b")


def _missing_terms(question: str, said: list[str], cited: list[str]) -> list[str]:
    return missing_terms(question, " ".join(said) + "\n" + "\n".join(cited))


def unmentioned(question: str, said: list[str], cited: list[str]) -> list[str]:
    """The topic words the clinician typed that the quoted passages do not mention, as typed: the reason a
    refusal gives. `question` is the text as searched; the expansions the search added are not named
    ("HbA1c target on gliclazide?" lacks gliclazide, not "glycated, haemoglobin"), and a typed word
    counts as mentioned by its expansions as everywhere else ("HTN" by hypertension)."""
    typed = default_vocabulary().typed(question)
    out = []
    for term in _missing_terms(typed, said, cited):
        m = re.search(rf"\b{re.escape(term)}\b", typed, re.I)
        out.append(m.group(0) if m else term)
    return out


def answerability_row(question: str, scored: list[Scored], probs: np.ndarray, said: list[str], cited: list[str]) -> list[float]:
    """Question-level features of the answerability head (ANSWERABLE_FEATURES): how well the best
    sentences score, how close the passages are, and how many of the question's topic words the
    quoted passages (and all the passages) leave unmentioned; a question asking for a dose, value,
    time, drug or referral wants its best sentence to hold one."""
    cues = QuestionCues.of(question)
    terms = topic_terms(question)
    top = np.sort(probs)[::-1]
    evidence = " ".join(f"{heading_text(s.passage)}\n{s.passage.text}" for s in scored)
    in_evidence = _stems(evidence)
    asked = sum([cues.dose, cues.number, cues.when, cues.which, cues.refer])
    met = sum(_cues(cues, said[0])) if said else 0.0
    missing = len(_missing_terms(question, said, cited))
    not_found = missing_terms(question, in_evidence)
    quoted = " ".join(said) + "\n" + "\n".join(cited)
    return [
        float(top[0]) if len(top) else 0.0,
        float(top[:3].mean()) if len(top) else 0.0,
        max((s.score for s in scored), default=0.0),
        max((s.passage_cos for s in scored), default=0.0),
        max((float(s.sentence_cos.max()) for s in scored if s.sentence_cos.size), default=0.0),
        missing / len(terms) if terms else 0.0,
        len(not_found) / len(terms) if terms else 0.0,
        min(len(terms), 8) / 8,
        met / asked if asked else 1.0,
        float(answer_gap(question, said, cited) is not None),
        min(missing, 3) / 3,
        _acronyms_missing(question, quoted),
        _drugs_missing(question, quoted),
    ]


def _drugs_missing(question: str, text: str) -> float:
    drugs = named_drugs(question)
    if not drugs:
        return 0.0
    lowered = text.lower()
    return sum(not re.search(rf"\b{d}", lowered) for d in drugs) / len(drugs)


def _acronyms_missing(question: str, text: str) -> float:
    """Share of the question's abbreviations that `text` says neither as such nor spelt out ("HTN" is
    said by "hypertension": `core.answering.vocabulary`)."""
    acronyms = set(_ACRONYM.findall(question))
    if not acronyms:
        return 0.0
    stand_ins = default_vocabulary().stand_ins(" ".join(acronyms))
    stems = _stems(text)
    return sum(not re.search(rf"\b{re.escape(a)}\b", text, re.I)
               and not any(says(e, stems) for e in stand_ins.get(a.lower(), ())) for a in acronyms) / len(acronyms)


def passage_features(s: Scored, cues: QuestionCues) -> list[float]:
    """The candidate's own features (see `passage_matrix` for the full row)."""
    text = s.passage.text
    best_cue = 0.0
    for span in s.vectors.spans:
        best_cue = max(best_cue, sum(_cues(cues, text[span.start : span.end])))
    top = np.sort(s.sentence_cos)[-2:] if s.sentence_cos.size else np.asarray([s.passage_cos])
    return [
        1.0 / (1.0 + s.rank),
        s.passage_cos,
        float(top[-1]),
        _overlap(cues.stems, heading_text(s.passage)),
        _overlap(cues.stems, text),
        min(best_cue, 2.0),
        s.heading_cos,
        float(top.mean()),
    ]


def passage_matrix(scored: list[Scored], cues: QuestionCues) -> np.ndarray:
    """One row of PASSAGE_FEATURES per candidate of one question."""
    own = np.asarray([passage_features(s, cues) for s in scored], dtype=np.float64).reshape(-1, len(_OWN))
    if not len(own):
        return np.zeros((0, len(PASSAGE_FEATURES)))
    return np.hstack([own, own[:, 1:] - own[:, 1:].max(axis=0)])


def sentence_features(sentence: str, cos_sentence: float, cos_heading: float, heading: str, cues: QuestionCues,
                      passage_score: float) -> list[float]:
    return [
        cos_sentence,
        cos_heading,
        _overlap(cues.stems, sentence),
        _overlap(cues.stems, heading),
        *_cues(cues, sentence),
        float(len(sentence.split()) < 5),
        passage_score,
    ]


def sentence_matrix(question: str, scored: list[Scored]) -> np.ndarray:
    """One row of SENTENCE_FEATURES per sentence of `scored` passages, in passage then span order."""
    cues = QuestionCues.of(question)
    rows = []
    for s in scored:
        heading = heading_text(s.passage)
        for j in range(len(s.vectors.spans)):
            text = scoring_text(s.passage.text, s.vectors.spans, j)
            rows.append(sentence_features(text, float(s.sentence_cos[j]), s.heading_cos, heading, cues, s.score))
    own = np.asarray(rows, dtype=np.float64).reshape(-1, len(_SENTENCE_OWN))
    if not len(own):
        return np.zeros((0, len(SENTENCE_FEATURES)))
    picks = [0, 2, 10]  # cosine, lexical overlap, passage score: relative to the best sentence of the question
    return np.hstack([own, own[:, picks] - own[:, picks].max(axis=0)])
