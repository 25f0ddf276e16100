"""What a guideline says it does not cover, and whether a question is about that.

Guidelines state their own scope: "It does not cover hypertension in pregnancy, hypertension in
children, or ...". A question about one of those ("BP target for a 10 year old with hypertension") is
not answered by that guideline, however well one of its sentences matches: the guideline itself says
so. This is the guideline's own evidence, not a list the team keeps: the exclusions are read from the
scope statements of each document in the library, and a question is matched against them by its
words.

- **Where exclusions are read:** sentences of a scope-like section ("Scope", "Introduction", "Who this
  guideline is for"...) or any sentence naming "this guideline", that say "does not cover", "does not
  apply to", "is outside the scope", "is not covered by"...; the listed items are split at commas, "or"
  and "and" ("hospital-acquired pneumonia (onset 48 hours or more after admission)" keeps its
  parenthesis out of the item).
- **When a question is about an item:** every word of the item that is not already in the document's
  title is in the question (word stems, so "pregnant" matches "pregnancy"; numbers exactly, so "type 2
  diabetes" is not "type 1 diabetes"). "Chest pain in children" against the chest pain guideline needs
  "children" in the question, not "chest pain".
- **Questions about coverage** ("does the CAP guideline apply to immunocompromised patients?") are left
  alone: the scope sentence is then the answer, and the selection may quote it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_SCOPE_HEADING = re.compile(
    r"\b(scope|introduction|overview|purpose|about this guideline|who (?:it|this (?:guideline|guidance)) is for|"
    r"applicab\w*|population|coverage)\b", re.I)
_AFTER = re.compile(
    r"\b(?:does|do|will)\s+not\s+(?:cover|include|address|apply\s+to|deal\s+with)\b|\bdoesn't\s+(?:cover|apply\s+to)\b|"
    r"\bis\s+not\s+(?:for|intended\s+for)\b|\bexcludes\b", re.I)
_BEFORE = re.compile(
    r"\b(?:is|are)\s+(?:outside\s+(?:the\s+)?scope|not\s+covered(?:\s+(?:by|in)\s+this\s+guideline)?|"
    r"excluded\s+from\s+this\s+guideline|not\s+included\s+in\s+this\s+guideline)\b", re.I)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?](?!\d)|$)")
_PAREN = re.compile(r"\s*\([^()]*\)")
_SPLIT = re.compile(r"\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+")
_CONTINUES = re.compile(r"(?:who|which|that|whose|where|beyond|unless|except)\b", re.I)
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_STOP = frozenset(
    """a an the of in on at to for by with who which that whose are is be been those people person patients patient
    this guideline guidance it its their they these any all other such as from into than who's someone""".split())
_STEM = 6
_COVERS = re.compile(r"\b(?:covers|is for|applies to|is intended for)\b", re.I)
# "covers ... sepsis in non-pregnant adults": whoever the "non-" leaves out is not covered.
_NON = re.compile(r"\bnon-([a-z]{4,})\s+(adults?|people|patients|women|men|children|persons?)\b", re.I)
_AGES_BETWEEN = re.compile(r"\baged (\d{1,2})(?: years)? (?:to|-|–) (\d{1,2}) years\b", re.I)
_AGES_OVER = re.compile(r"\b(?:aged )?(\d{1,2}) years? (?:and|or) (?:over|older|above)\b|\baged (\d{1,2}) (?:and|or) (?:over|older)\b", re.I)
_AGES_UNDER = re.compile(r"\b(?:aged )?(?:under|younger than|below)(?: the age of)? (\d{1,2})(?: years)?\b", re.I)
# A patient's age in the question: "a 7 year old", "7yo", "aged 7", "55M", "9-month-old", "3 weeks old".
_AGE_YEARS = re.compile(r"\b(\d{1,3})\s*-?\s*(?:years?|yrs?|y)\s*-?\s*(?:old|o)\b|\b(\d{1,3})\s*y/?o\b|\baged?\s+(\d{1,3})\b", re.I)
_AGE_SEX = re.compile(r"\b(\d{2})\s?[MF]\b")
_AGE_YOUNG = re.compile(r"\b(\d{1,2})\s*-?\s*(months?|mo|weeks?|wks?|days?)\s*-?\s*old\b", re.I)
_PER_YEAR = {"m": 12.0, "w": 52.0, "d": 365.0}
# "Does the guideline cover / apply to ...?": the scope sentence answers it, so no veto. Asked of the
# guidance itself: "antibiotic cover for aspiration pneumonia" or "what does treatment include" are not.
_ASKS_COVERAGE = re.compile(
    r"\b(?:guidelines?|guidance|protocol|policy|pathway|it)\b[^?.!]*\b(?:cover|covers|covered|apply|applies|applicable|"
    r"include[sd]?|exclude[sd]?)\b|\bscope\b|\b(?:covered|excluded) by\b", re.I)


@dataclass(frozen=True)
class Exclusion:
    """One thing a document says it does not cover, with the sentence that says so."""

    title: str  # the document's
    item: str
    sentence: str
    chunk_id: str
    distinct: tuple[str, ...]  # the item's word stems not already in the document's title
    ages: tuple[float, float] | None = None  # for the ages it covers: a question about an age outside [min, max)


def _stem(token: str) -> str:
    # A compound keeps its parts ("hospital-acquired" is not "hospital"); numbers are kept whole.
    return "_".join(p if p.isdigit() else p[:_STEM] for p in token.split("-") if p)


def _stems(text: str) -> list[str]:
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def _question_stems(question: str) -> set[str]:
    """The question's stems, plus each pair of neighbouring words as a compound ("hospital acquired")."""
    words = [w for w in _TOKEN.findall(question.lower()) if w not in _STOP]
    stems = [_stem(w) for w in words]
    return set(stems) | {f"{a}_{b}" for a, b in zip(stems, stems[1:], strict=False)}


def exclusions(title: str, section: list[str], text: str, chunk_id: str = "") -> list[Exclusion]:
    """The exclusions stated in one passage (empty for most passages)."""
    in_scope_section = any(_SCOPE_HEADING.search(h) for h in section)
    title_stems = set(_stems(title))
    out: list[Exclusion] = []
    for m in _SENTENCE.finditer(text):
        sentence = m.group().strip()
        if not in_scope_section and "this guideline" not in sentence.lower():
            continue
        if _COVERS.search(sentence):
            for non in _NON.finditer(sentence):
                distinct = tuple(dict.fromkeys(st for st in _stems(non.group(1)) if st not in title_stems))
                if distinct:
                    out.append(Exclusion(title, f"{non.group(1).lower()} {non.group(2).lower()}", sentence, chunk_id, distinct))
        after = _AFTER.search(sentence)
        before = None if after else _BEFORE.search(sentence)
        if after:
            listed = sentence[after.end():]
        elif before:
            listed = sentence[: before.start()]
        else:
            continue
        listed = _PAREN.sub("", listed.split(";")[0]).strip().rstrip(".")
        items: list[str] = []
        for part in (p.strip() for p in _SPLIT.split(listed)):
            if not part:
                continue
            if items and _CONTINUES.match(part):
                items[-1] = f"{items[-1]}, {part}"
            else:
                items.append(part)
        for item in items:
            stems = _stems(item)
            distinct = tuple(dict.fromkeys(s for s in stems if s not in title_stems))
            if distinct and all(s.isdigit() for s in distinct):
                # Only a number is left ("type 1 diabetes" in a type 2 diabetes guideline): "1" alone would
                # match "metformin 1 g", so the number must come with the word before it ("type 1").
                distinct = _anchored(stems)
            if distinct:
                out.append(Exclusion(title, item, sentence, chunk_id, distinct))
    return out


def _anchored(stems: list[str]) -> tuple[str, ...]:
    """The item's numbers joined to their neighbouring word, as `_question_stems` joins neighbours."""
    return tuple(f"{stems[i - 1]}_{s}" if i else f"{s}_{stems[i + 1]}" for i, s in enumerate(stems)
                 if s.isdigit() and len(stems) > 1)


def age_range(title: str, section: list[str], text: str, chunk_id: str = "") -> list[Exclusion]:
    """The ages a document says it covers ("This guideline covers ... adults aged 18 years and over"), as
    an exclusion of every other age."""
    in_scope_section = any(_SCOPE_HEADING.search(h) for h in section)
    for m in _SENTENCE.finditer(text):
        sentence = m.group().strip()
        if not (in_scope_section or "this guideline" in sentence.lower()) or not _COVERS.search(sentence):
            continue
        between, over, under = _AGES_BETWEEN.search(sentence), _AGES_OVER.search(sentence), _AGES_UNDER.search(sentence)
        if between:
            found, ages = between, (float(between.group(1)), float(between.group(2)) + 1)
        elif over:
            found, ages = over, (float(over.group(1) or over.group(2)), 200.0)
        elif under:
            found, ages = under, (0.0, float(under.group(1)))
        else:
            continue
        return [Exclusion(title, f"patients of that age (it covers those {found.group()})", sentence, chunk_id, (), ages)]
    return []


def question_ages(question: str) -> list[float]:
    """Every age in years the question gives, in order ("a 9-month-old", "7yo", "aged 7", "55M")."""
    ages = [int(m.group(1)) / _PER_YEAR[m.group(2)[0].lower()] for m in _AGE_YOUNG.finditer(question)]
    for pattern in (_AGE_YEARS, _AGE_SEX):
        ages += [float(next(g for g in m.groups() if g)) for m in pattern.finditer(question)]
    return ages


def question_age(question: str) -> float | None:
    """The patient's age in years, when the question gives one (the first it gives)."""
    ages = question_ages(question)
    return ages[0] if ages else None


def asks_about(question: str, exclusion: Exclusion, _stems_of_question: set[str] | None = None,
               _age: float | None = None) -> bool:
    """Whether `question` is about the excluded item: all its distinguishing words are in the question
    (for an age range: the patient's age is outside it). `excluded_by` passes the question's stems and
    age, read once for all the document's items."""
    if exclusion.ages is not None:
        age = question_age(question) if _age is None else _age
        return age is not None and not exclusion.ages[0] <= age < exclusion.ages[1]
    have = _question_stems(question) if _stems_of_question is None else _stems_of_question
    return all(s in have for s in exclusion.distinct)


# Words that name an age group: "asthma in children", "young people under 18".
_AGE_GROUP = frozenset(_stem(w) for w in """child children paediatric pediatric neonates neonatal infants infant babies baby
    toddlers young adolescents teenagers under newborns""".split())
ADULT_AGE = 18.0


def excluded_by(question: str, found: Iterable[Exclusion]) -> Exclusion | None:
    """The first exclusion `question` is about, or None (always None for a question about coverage).

    When the question gives the patient's age and it is one the document covers (or, without a stated
    range, an adult's), an item that only names an age group ("asthma in children") does not apply: "35,
    mother of two children, acute asthma" is about an adult."""
    if _ASKS_COVERAGE.search(question):
        return None
    found = list(found)
    if not found:
        return None
    age = question_age(question)
    if age is not None:
        ranges = [e.ages for e in found if e.ages is not None]
        covered = ranges[0][0] <= age < ranges[0][1] if ranges else age >= ADULT_AGE
        if covered:
            found = [e for e in found if e.ages is not None
                     or not all(s in _AGE_GROUP or s.isdigit() for s in e.distinct)]
    have = _question_stems(question)
    return next((e for e in found if asks_about(question, e, have, age)), None)


def _read(chunks: Iterable[tuple[str, list[str], str, str]]) -> list[Exclusion]:
    found: list[Exclusion] = []
    ages: list[Exclusion] = []
    for title, section, text, chunk_id in chunks:
        found += exclusions(title, section, text, chunk_id)
        if not ages:
            ages = age_range(title, section, text, chunk_id)
    return found + ages


class ScopeIndex:
    """Each document's exclusions, read once from its chunks (a document id names one immutable version,
    so entries never go stale); thread-safe, bounded."""

    def __init__(self, chunks_of: Callable[[str], Iterable[tuple[str, list[str], str, str]]], max_documents: int = 50_000) -> None:
        """`chunks_of(doc_id)` yields (title, section path, text, chunk_id) for every chunk of the document."""
        self._chunks_of = chunks_of
        self._max = max_documents
        self._items: OrderedDict[str, list[Exclusion]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, doc_id: str) -> list[Exclusion]:
        with self._lock:
            if doc_id in self._items:
                self._items.move_to_end(doc_id)
                return self._items[doc_id]
        try:
            chunks = list(self._chunks_of(doc_id))
        except Exception as exc:  # noqa: BLE001 - a store that cannot be read now: no veto, the head still decides
            log.warning("could not read the scope of document %s: %s", doc_id, exc)
            return []
        found = _read(chunks)
        with self._lock:
            self._items[doc_id] = found
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return found

    def remember(self, doc_id: str, chunks: Iterable[tuple[str, list[str], str, str]]) -> None:
        """Read a document's exclusions from chunks already at hand (the start-up warm-up)."""
        found = _read(chunks)
        with self._lock:
            self._items[doc_id] = found
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def excluded(self, question: str, doc_id: str) -> Exclusion | None:
        """What document `doc_id` says it does not cover that `question` is about, or None."""
        if _ASKS_COVERAGE.search(question):
            return None  # before reading the store: a question about coverage is never ruled out
        return excluded_by(question, self.of(doc_id))
