"""Citation verification: is each sentence of an answer said by the passages it cites?

Pure Python and deterministic, no model: it runs on every answer before it is shown, so it must be
fast and explainable. It is deliberately strict, because a wrong dose shown as grounded is the worst
outcome; docs/citation-verification.md defines the score and how the threshold was calibrated.

A sentence is supported by a cited passage when one stretch of it (a passage sentence, alone, with
the lead-in or heading it falls under, or with the sentence before it when it does not name its own
drug) passes all four checks:

- coverage: the weighted share of the sentence's content words and numbers found there is at least
  `SUPPORT_THRESHOLD`;
- numbers: every number is there with the same unit and direction ("below 92%", "4.5 mmol/L or
  less"), and a dose keeps its drug, route and frequency ("aspirin 75 mg" is not "clopidogrel 75 mg",
  "1 mg IM" is not "1 mg IV", "90 mg twice daily" is not "90 mg once daily");
- key terms: every drug name, drug class, route (IM, IV, ...), special population (children,
  pregnancy, ...) and score code (PHQ-9, CURB-65) is there;
- contradictions: the sentence and that stretch agree on negation ("not", "no", "without", "never",
  "avoid", "contraindicated"), do not swap opposite verbs ("continue" where the passage says "pause")
  and do not reverse an order ("glucose before thiamine" where it says "thiamine before glucose").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, Field

from core.answering.claims import _analyse, _Text
from core.answering.lexicon import _GENERIC_STEMS, _NO_CLAIM_STEMS, _OPPOSITES, _POLAR, _PREFIX, _weight
from core.answering.markers import (
    MARKER,
    CitedSentence,
    _marker_numbers,
    cited_numbers,
    has_marker,
    parse_cited,
    strip_markers,
)
from core.answering.numbers import _normalise, _Number
from core.answering.sentences import _HEADING, _LINE_ENDS_SENTENCE, split_sentences
from core.answers import SentenceCheck

# The check's public names, including those of the parts it reads answers with (sentences, markers),
# so callers need one import.
__all__ = [
    "MARKER",
    "SUPPORT_THRESHOLD",
    "CitedSentence",
    "Support",
    "Verification",
    "cited_numbers",
    "has_marker",
    "parse_cited",
    "split_sentences",
    "strip_markers",
    "support_score",
    "verify",
]

# Calibrated by scripts/calibrate_citations.py: on the calibration half of tests/data/citation_support.jsonl,
# the threshold with the highest recall whose precision of "supported" is at least 0.95.
SUPPORT_THRESHOLD: float = 0.80




class Support(BaseModel):
    """How well one passage supports one sentence, measured on the passage stretch that fits best."""

    score: float = Field(description="Weighted share of the sentence's words and numbers found (0-1).")
    numbers_ok: bool
    missing_numbers: list[str] = Field(default_factory=list, description="Numbers absent from the passage.")
    misplaced_numbers: list[str] = Field(
        default_factory=list,
        description="Numbers in the passage, but for another drug, route, frequency or direction, or elsewhere.",
    )
    apart_numbers: list[str] = Field(
        default_factory=list, description="Numbers the sentence states together but the passage states apart."
    )
    terms_ok: bool
    missing_terms: list[str] = Field(default_factory=list, description="Drugs, routes or score codes not found.")
    negation_ok: bool
    negation_note: str = ""
    conflicts: list[str] = Field(default_factory=list, description="Opposite verbs or reversed order.")
    specific: bool = Field(description="Something beyond generic words (give, patient, ...) was matched.")
    matched: list[str] = Field(default_factory=list, description="Sentence content words found.")
    unmatched: list[str] = Field(default_factory=list, description="Sentence content words not found.")
    best_quote: str = Field(description="The passage sentence(s) that best support the sentence.")

    def passes(self, threshold: float = SUPPORT_THRESHOLD) -> bool:
        return (
            self.score >= threshold
            and self.numbers_ok
            and self.terms_ok
            and self.negation_ok
            and not self.conflicts
            and self.specific
        )

    def problems(self, label: str, threshold: float = SUPPORT_THRESHOLD) -> list[str]:
        """Why this passage does not support the sentence, in words a clinician can act on."""
        out = [f"{n} is not in {label}" for n in self.missing_numbers]
        out += [f"{n} is in {label}, but not as this sentence uses it" for n in self.misplaced_numbers]
        out += [f"{n} are not stated together in {label}" for n in self.apart_numbers]
        out += [f"{t} is not in {label}" for t in self.missing_terms]
        if not self.negation_ok:
            out.append(f"{self.negation_note} ({label})")
        out += [f"{c} ({label})" for c in self.conflicts]
        if not self.specific:
            out.append(f"only generic words match {label}" if self.matched else f"nothing in {label} matches")
        elif self.score < threshold:
            out.append(f"weak support from {label} (score {self.score:.2f} < {threshold:.2f})")
        return out


class Verification(BaseModel):
    """The verdict on a whole answer."""

    sentences: list[SentenceCheck] = Field(default_factory=list)
    cited_ok: dict[int, bool] = Field(
        default_factory=dict, description="Cited passage n supports at least one sentence citing it."
    )
    all_supported: bool = Field(description="Every sentence is supported and at least one makes a clinical claim.")
    quotes: dict[int, str] = Field(default_factory=dict, description="Best-supporting quote per cited passage.")


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Window:
    """One stretch of a passage that a single claim may rest on."""

    quote: str
    words: dict[str, str]  # stem -> word, over the whole stretch
    prefixes: frozenset[str]
    key_words: frozenset[str] | None  # where drugs must be found, if narrower than `words`
    anchor: frozenset[str] | None  # for a sentence read with the one before: its own words
    numbers: tuple[_Number, ...]
    clauses: tuple[tuple[_Number, ...], ...]  # numbers stated together
    context_numbers: tuple[_Number, ...]  # numbers of a lead-in, which go with every clause
    codes: frozenset[str]
    negations: tuple[frozenset[str], ...]
    orders: frozenset[tuple[str, str]]

    def has(self, stem: str, fuzzy: bool = True) -> bool:
        return _found(stem, self.words, self.prefixes, fuzzy)

    def usable_for(self, claim: _Text) -> bool:
        """A sentence read with the one before it must itself say part of the claim."""
        if self.anchor is None:
            return True
        specific = [s for s in claim.words if s not in _GENERIC_STEMS]
        return any(s in self.anchor for s in specific) or any(n.found_in(self.numbers) for n in claim.numbers)

    def has_key_term(self, stem: str) -> bool:
        if self.key_words is None:
            return self.has(stem, fuzzy=False)
        return stem in self.key_words or any(
            len(stem) >= _PREFIX and k[:_PREFIX] == stem[:_PREFIX] for k in self.key_words
        )


def _found(stem: str, words: dict[str, str], prefixes: frozenset[str], fuzzy: bool = True) -> bool:
    """Exact stem, a shared 8-letter prefix, or (for ordinary words) a shared prefix of 5+ letters
    covering three quarters of the shorter word ("resolve" ~ "resolution")."""
    if stem in words or (len(stem) >= _PREFIX and stem[:_PREFIX] in prefixes):
        return True
    return fuzzy and len(stem) >= 5 and any(_close(stem, w) for w in words if w[:5] == stem[:5])


def _close(a: str, b: str) -> bool:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n >= 5 and n >= 0.75 * min(len(a), len(b))


@lru_cache(maxsize=256)
def _windows(passage: str) -> tuple[tuple[_Window, ...], tuple[_Number, ...]]:
    """The stretches of a passage a claim may rest on: each sentence alone; each sentence with the
    lead-in ("...:") or heading it falls under; and each sentence with the one before it, for
    guideline style that names the drug once ("Offer metformin. Start at 500 mg once daily."): there
    the numbers, negations and (if the sentence names a drug of its own) drugs must come from the
    sentence itself."""
    sentences = split_sentences(passage)
    parts = [_analyse(s) for s in sentences]
    windows: list[_Window] = []
    context: int | None = None
    for i, s in enumerate(sentences):
        windows.append(_window(sentences, parts, i))
        if context is not None:
            windows.append(_window(sentences, parts, i, context=context))
        if i > 0 and i - 1 != context:
            windows.append(_window(sentences, parts, i, previous=i - 1))
        if _is_lead_in(s):
            context = i
    return tuple(windows), tuple(n for p in parts for n in p.numbers)


def _is_lead_in(sentence: str) -> bool:
    """ "Measure mast cell tryptase:", "3.3 Corticosteroids", "Croup in children: treatment"."""
    s = sentence.rstrip()
    short_title = not _LINE_ENDS_SENTENCE.search(s) and not re.search(r"\d", s) and len(s.split()) <= 10
    return s.endswith(":") or bool(_HEADING.match(s)) or (short_title and s[:1].isupper())


def _window(
    sentences: list[str], parts: list[_Text], i: int, context: int | None = None, previous: int | None = None
) -> _Window:
    anchor = parts[i]
    order = [j for j in (context, previous) if j is not None] + [i]
    extra = parts[order[0]] if len(order) > 1 else None
    words = {**(extra.words if extra else {}), **anchor.words}
    clauses: dict[int, list[_Number]] = {}
    lead_in: list[_Number] = []
    for n, c in zip(anchor.numbers, anchor.passage_clauses, strict=True):
        (lead_in if c < 0 else clauses.setdefault(c, [])).append(n)
    context_numbers = (extra.numbers if extra and context is not None else ()) + tuple(lead_in)
    negations = anchor.negations + (extra.negations if extra else ())
    return _Window(
        quote=" ".join(sentences[j] for j in order),
        words=words,
        prefixes=frozenset(s[:_PREFIX] for s in words if len(s) >= _PREFIX),
        key_words=frozenset(anchor.words) if previous is not None and anchor.drugs else None,
        anchor=frozenset(anchor.words) if previous is not None else None,
        numbers=anchor.numbers + (extra.numbers if extra and context is not None else ()),
        clauses=tuple(tuple(c) for c in clauses.values()),
        context_numbers=context_numbers,
        codes=anchor.codes | (extra.codes if extra else frozenset()),
        negations=negations,
        orders=anchor.orders | (extra.orders if extra else frozenset()),
    )


def support_score(sentence: str, passage: str, threshold: float = SUPPORT_THRESHOLD) -> Support:
    """How well `passage` supports `sentence` (citation markers in the sentence are ignored).

    The score is the weighted share of the sentence's content words, numbers and codes found in one
    stretch of the passage (a sentence, alone, with its lead-in or heading, or with the sentence before
    it); the other checks apply to that same stretch. The stretch reported is the best one that passes
    at `threshold`, else the one with the highest score.
    """
    claim = _analyse(" ".join(MARKER.sub(" ", sentence).split()))
    windows, passage_numbers = _windows(passage)
    if not windows:
        return _unsupported(claim)
    candidates = [_support_in(claim, w, passage_numbers) for w in windows if w.usable_for(claim)]
    if not candidates:
        return _unsupported(claim)
    passing = [s for s in candidates if s.passes(threshold)]
    return max(passing or candidates, key=_rank)


def _rank(s: Support) -> tuple[float, bool, int]:
    gates = s.numbers_ok and s.terms_ok and s.negation_ok and not s.conflicts
    return (round(s.score, 6), gates, -len(s.best_quote))


def _support_in(claim: _Text, window: _Window, passage_numbers: tuple[_Number, ...]) -> Support:
    matched = [s for s in claim.words if window.has_key_term(s) or (s not in claim.key_terms and window.has(s))]
    unmatched = [s for s in claim.words if s not in matched]
    numbers_here = [n for n in claim.numbers if n.found_in(window.numbers)]
    codes_here = claim.codes & window.codes
    total = sum(_weight(s) for s in claim.words) + len(claim.numbers) + len(claim.codes)
    got = sum(_weight(s) for s in matched) + len(numbers_here) + len(codes_here)
    missing = [n for n in claim.numbers if n not in numbers_here]
    missing_terms = sorted(claim.words[s] for s in claim.key_terms if s in unmatched)
    missing_terms += sorted(c.upper() for c in claim.codes - codes_here)
    apart = _not_together(claim, window, numbers_here)
    return Support(
        score=got / total if total else 0.0,
        numbers_ok=not missing and not apart,
        missing_numbers=[n.text for n in missing if not n.value_in(passage_numbers)],
        misplaced_numbers=[n.text for n in missing if n.value_in(passage_numbers)],
        apart_numbers=apart,
        terms_ok=not missing_terms,
        missing_terms=missing_terms,
        negation_ok=not (note := _negation_note(claim, window)),
        negation_note=note,
        conflicts=_conflicts(claim, window, unmatched),
        specific=bool(numbers_here or codes_here or any(_weight(s) == 1.0 for s in matched)),
        matched=[claim.words[s] for s in matched],
        unmatched=[claim.words[s] for s in unmatched],
        best_quote=window.quote,
    )


def _not_together(claim: _Text, window: _Window, found: list[_Number]) -> list[str]:
    """Numbers that one clause of the claim states together but the passage states apart: "aged 1 to 9
    years ... 300 mg" where 300 mg is the dose for under 1 year."""
    groups: dict[int, list[_Number]] = {}
    for n, c in zip(claim.numbers, claim.claim_clauses, strict=True):
        if n in found:
            groups.setdefault(c, []).append(n)
    apart = []
    for group in groups.values():
        if len(group) > 1 and not any(
            all(n.found_in(clause + window.context_numbers) for n in group) for clause in window.clauses
        ):
            apart.append(" and ".join(n.text for n in group))
    return apart


def _negation_note(claim: _Text, window: _Window) -> str:
    """A passage negation counts only if it applies to words of the claim ("do not have diabetes" does
    not bear on "amlodipine can be increased"); any negation in the claim counts."""
    claim_numbers = {n.key for n in claim.numbers}
    claim_prefixes = frozenset(s[:_PREFIX] for s in claim.words if len(s) >= _PREFIX)

    def bears_on_claim(item: str) -> bool:
        if item.startswith("#"):
            return item in claim_numbers
        return item not in _GENERIC_STEMS and _found(item, claim.words, claim_prefixes)

    passage_negated = any(any(bears_on_claim(item) for item in scope) for scope in window.negations)
    if claim.negations and not passage_negated:
        return "negation mismatch: the sentence says 'not' (or 'no', 'avoid', 'without') but the passage does not"
    if passage_negated and not claim.negations:
        return "negation mismatch: the passage says 'not' (or 'no', 'avoid', 'without') but the sentence does not"
    return ""


def _conflicts(claim: _Text, window: _Window, unmatched: list[str]) -> list[str]:
    out = []
    for stem in unmatched:
        for opposite in sorted(_OPPOSITES.get(stem, frozenset()) & window.words.keys()):
            out.append(f"says '{claim.words[stem]}' where the passage says '{window.words[opposite]}'")
    for first, second in sorted(claim.orders):
        if (second, first) in window.orders and (first, second) not in window.orders:
            out.append(
                f"puts {claim.words.get(first, first)} before {claim.words.get(second, second)}; the passage does the reverse"
            )
    return out


def _unsupported(claim: _Text) -> Support:
    return Support(
        score=0.0,
        numbers_ok=not claim.numbers,
        missing_numbers=[n.text for n in claim.numbers],
        terms_ok=not claim.key_terms,
        missing_terms=sorted(claim.words[s] for s in claim.key_terms),
        negation_ok=True,
        specific=False,
        unmatched=list(claim.words.values()),
        best_quote="",
    )


def _is_claim(text: str) -> bool:
    """False for sentences such as "Check the full guideline." that assert nothing clinical."""
    analysed = _analyse(text)
    if analysed.numbers or analysed.codes:
        return True
    if any(stem not in _NO_CLAIM_STEMS for stem in analysed.words):
        return True
    return not analysed.words and bool(_POLAR.search(_normalise(text)))


# --------------------------------------------------------------------------------------------------
# Verification of a whole answer
# --------------------------------------------------------------------------------------------------

def verify(text: str, passages: list[tuple[int, str]], threshold: float = SUPPORT_THRESHOLD) -> Verification:
    """Check every sentence of `text` against the numbered passages it cites.

    A sentence is supported when one cited passage supports all of it. A sentence citing several
    passages may combine facts ("Give X [1] and Y [2]." or "Give X and Y [1][2]."): then each part
    (split at its own markers, or else at ";", ", and", "then", "plus") must be supported by one of
    the passages cited for it. A citation to a number not among `passages` makes the sentence
    unsupported, as does a sentence without citations. Sentences that make no clinical claim
    ("Check the full guideline.") are supported, with the problem "no clinical claim".
    """
    sources = dict(passages)
    checks: list[SentenceCheck] = []
    cited_ok: dict[int, bool] = {}
    quotes: dict[int, tuple[tuple[bool, float], str]] = {}

    def record(n: int, support: Support, used: bool) -> None:
        cited_ok[n] = cited_ok.get(n, False) or used
        key = (used, support.score)
        if n not in quotes or key > quotes[n][0]:
            quotes[n] = (key, support.best_quote)

    claims = 0
    for cited in parse_cited(text):
        unknown = [n for n in cited.citations if n not in sources]
        problems = [f"[{n}] was not among the sources" for n in unknown]
        for n in unknown:
            cited_ok[n] = False
        if not _is_claim(cited.text):
            checks.append(_check(cited, not unknown, 0.0, ["no clinical claim", *problems]))
            continue
        claims += 1
        if not cited.citations:
            checks.append(_check(cited, False, 0.0, ["no citation"]))
            continue
        valid = [n for n in cited.citations if n in sources]
        supports = {n: support_score(cited.text, sources[n], threshold) for n in valid}
        for n, support in supports.items():
            record(n, support, support.passes(threshold))
        supported = any(s.passes(threshold) for s in supports.values())
        score = max((s.score for s in supports.values()), default=0.0)
        if not supported and len(valid) > 1:
            used, part_score, part_problems = _check_parts(cited, sources, threshold)
            supported, score = not part_problems, max(score, part_score)
            problems += part_problems
            for n, support in used if supported else []:
                record(n, support, True)
        elif not supported:
            for n in valid:
                problems += supports[n].problems(f"[{n}]", threshold)
        checks.append(_check(cited, supported and not unknown, score, problems))
    return Verification(
        sentences=checks,
        cited_ok=cited_ok,
        all_supported=claims > 0 and all(c.supported for c in checks),
        quotes={n: quote for n, (_, quote) in quotes.items()},
    )


_PART_BREAK = re.compile(r";|,\s*(?:and|then|plus)?\s+|\s+(?:and then|then|plus|and)\s+")


def _check_parts(
    cited: CitedSentence, sources: dict[int, str], threshold: float
) -> tuple[list[tuple[int, Support]], float, list[str]]:
    """Each part of a sentence citing several passages must be supported by one passage cited for it.

    Returns the passages that supported a part, the weakest part's score, and the problems."""
    used: list[tuple[int, Support]] = []
    problems: list[str] = []
    scores: list[float] = []
    for part, citations in _parts(cited, set(sources)):
        supports = {n: support_score(part, sources[n], threshold) for n in citations}
        best = max(supports, key=lambda n: (supports[n].passes(threshold), supports[n].score))
        scores.append(supports[best].score)
        if supports[best].passes(threshold):
            used.append((best, supports[best]))
        else:
            problems += [f"'{part}': {p}" for p in supports[best].problems(f"[{best}]", threshold)]
    return used, min(scores, default=0.0), problems


def _parts(cited: CitedSentence, known: set[int]) -> list[tuple[str, list[int]]]:
    """Split at the sentence's own markers if it has some before its end, else at clause breaks;
    a fragment with fewer than two content words and no number joins the part before it."""
    valid = [n for n in cited.citations if n in known]
    markers = list(MARKER.finditer(cited.raw))
    inner = [m for m in markers if MARKER.sub("", cited.raw[m.end() :]).strip(" .;:!?,")]
    pieces: list[tuple[str, list[int]]] = []
    if inner:
        start = 0
        for m in markers:
            numbers = [n for n in _marker_numbers(m.group(1)) if n in known]
            segment = cited.raw[start : m.start()]
            if segment.strip(" ,;.") or not pieces:
                pieces.append((segment, numbers))
            else:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + numbers)
            start = m.end()
    else:
        pieces = [(p, valid) for p in _PART_BREAK.split(cited.text)]
    parts: list[tuple[str, list[int]]] = []
    for text, numbers in pieces:
        analysed = _analyse(text)
        if parts and len(analysed.words) < 2 and not analysed.numbers:
            parts[-1] = (f"{parts[-1][0]} {text}", parts[-1][1])
        elif numbers:
            parts.append((text, numbers))
    cleaned = [(re.sub(r"^(?:and|then|plus)\s+", "", " ".join(t.split()).strip(" ,;")), n) for t, n in parts]
    return [(t, n) for t, n in cleaned if t.strip(" .")]


def _check(cited: CitedSentence, supported: bool, score: float, problems: list[str]) -> SentenceCheck:
    return SentenceCheck(
        text=cited.text, citations=cited.citations, supported=supported, score=score, problems=problems
    )
