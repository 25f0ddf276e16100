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
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

from core.answers import SentenceCheck

__all__ = [
    "SUPPORT_THRESHOLD",
    "CitedSentence",
    "Support",
    "Verification",
    "parse_cited",
    "split_sentences",
    "support_score",
    "verify",
]

# Calibrated by scripts/calibrate_citations.py: on the calibration half of tests/data/citation_support.jsonl,
# the threshold with the highest recall whose precision of "supported" is at least 0.95.
SUPPORT_THRESHOLD: float = 0.80


class CitedSentence(BaseModel):
    """One sentence of an answer with its [n] markers taken out."""

    text: str = Field(description="The sentence without citation markers.")
    citations: list[int] = Field(default_factory=list, description="Cited passage numbers, in order, deduplicated.")
    raw: str = Field(description="The sentence as the model wrote it.")


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
# Sentences
# --------------------------------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*•‣▪◦]|\d{1,2}[.)])\s+")
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S.*|\d+(?:\.\d+)+\.?\s+[A-Z][^.!?:;]*)$")
_LINE_ENDS_SENTENCE = re.compile(r"(?:[.!?:;][\"')]*|\])\s*$")
_PUNCT_RUN = re.compile(r"[.!?]+[\"')]*")
_CITE_GROUP = re.compile(r"(?:\s*\[[^\[\]\n]{1,40}\])+")
_WORD_BEFORE = re.compile(r"(?:^|[\s(\[])([A-Za-z][A-Za-z.]*)$")
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "eg", "ie", "approx", "vs", "cf", "incl", "viz", "dr", "mr", "mrs", "ms", "prof", "fig", "ref", "nb"}
)


def split_sentences(text: str) -> list[str]:
    """Split clinical text into sentences; list items and headings are sentences of their own.

    Does not split inside "e.g.", "i.e.", "approx.", "vs.", decimals ("0.5 mg") or after a list number
    ("1."); a citation group after the full stop ("daily. [2] Next") stays with its sentence.
    """
    return [s for block in _blocks(text) for s in _split_block(block)]


def _blocks(text: str) -> list[str]:
    """Join wrapped lines; start a new block at blank lines, list items, headings and finished lines."""
    blocks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            blocks.append(" ".join(current))
            current.clear()

    for line in text.replace("**", "").replace("__", "").splitlines():
        stripped = line.strip()
        bullet = _BULLET.match(stripped)
        if not stripped:
            flush()
        elif bullet or _HEADING.match(stripped):
            flush()
            current.append(stripped[bullet.end() :] if bullet else stripped.lstrip("#").strip())
            if not bullet:
                flush()
        else:
            if current and _LINE_ENDS_SENTENCE.search(current[-1]):
                flush()
            current.append(stripped)
    flush()
    return blocks


_INLINE_ITEM = re.compile(r"(^|[:;.]\s+)\d{1,2}[.)]\s+(?=[A-Z])")


def _split_block(block: str) -> list[str]:
    block = _INLINE_ITEM.sub(r"\1", block)  # "... daily. 2. Repeat ..." and "Steps: 1. Give ..."
    out: list[str] = []
    start = 0
    for m in _PUNCT_RUN.finditer(block):
        if _is_abbreviation(block, m.start()):
            continue
        end = m.end()
        cite = _CITE_GROUP.match(block, end)
        if cite:
            end = cite.end()
        rest = block[end:]
        if not rest.strip():
            break
        nxt = rest.lstrip()[:1]
        if rest[:1].isspace() and (nxt.isupper() or nxt.isdigit() or nxt in "[(\"'"):
            out.append(block[start:end].strip())
            start = end
    tail = block[start:].strip()
    if tail:
        out.append(tail)
    return out


def _is_abbreviation(block: str, dot: int) -> bool:
    m = _WORD_BEFORE.search(block[:dot])
    return m is not None and m.group(1).lower().rstrip(".") in _ABBREVIATIONS


# --------------------------------------------------------------------------------------------------
# Citation markers
# --------------------------------------------------------------------------------------------------

_LABEL = r"(?:(?:source|passage|ref|reference|doc|document|citation)s?\s*(?:no\.?|#)?\s*)?"
# The one definition of a citation marker: the pipeline's format check, the verifier and the screen
# all read answers with it, so `[1; 2]` or `[ref 1]` cannot verify in one place and fail in another.
MARKER = re.compile(
    rf"\[\s*{_LABEL}(\d{{1,3}}(?:\s*(?:[,;&\-–]|and)\s*{_LABEL}\d{{1,3}})*)\s*\]",
    re.IGNORECASE,
)
_MARKER_AND_SPACE = re.compile(r"\s*" + MARKER.pattern, re.IGNORECASE)
_MAX_RANGE = 20


def parse_cited(text: str) -> list[CitedSentence]:
    """Sentences of an answer with their citations: [1], [1,2], [1][2], [1-3], [Source 1], [passage 2]."""
    out = []
    for raw in split_sentences(text):
        citations: list[int] = []
        for m in MARKER.finditer(raw):
            citations += [n for n in _marker_numbers(m.group(1)) if n not in citations]
        clean = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub(" ", raw))
        out.append(CitedSentence(text=" ".join(clean.split()), citations=citations, raw=raw))
    return out


def has_marker(text: str) -> bool:
    return MARKER.search(text) is not None


def cited_numbers(text: str) -> list[int]:
    """Every passage number the markers of `text` name, in order ([1-3] names 1, 2 and 3)."""
    return [n for m in MARKER.finditer(text) for n in _marker_numbers(m.group(1))]


def strip_markers(text: str) -> str:
    """`text` without its citation markers (nor the space before each)."""
    return _MARKER_AND_SPACE.sub("", text)


def _marker_numbers(inner: str) -> list[int]:
    tokens = re.findall(r"\d+|-", inner.replace("–", "-"))
    numbers: list[int] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "-":
            i += 1
            continue
        n = int(tokens[i])
        if i + 2 < len(tokens) and tokens[i + 1] == "-" and tokens[i + 2] != "-":
            last = int(tokens[i + 2])
            numbers += list(range(n, last + 1)) if 0 < last - n <= _MAX_RANGE else [n, last]
            i += 3
        else:
            numbers.append(n)
            i += 1
    return numbers


# --------------------------------------------------------------------------------------------------
# Normalisation: one spelling for things clinicians write several ways
# --------------------------------------------------------------------------------------------------

_CHARS = str.maketrans(
    {"–": "-", "—": "-", "−": "-", "‐": "-", "‑": "-", "·": ".", "’": "'", "‘": "'", "\u00a0": " ", "²": "2"}
)
_NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}  # fmt: skip
_REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (r"(\d),(\d{3})(?!\d)", r"\1\2"),
        (r"≥|=>", " >= "),
        (r"≤|=<", " <= "),
        (r"\b(?:can't|can not|cannot|unable to|not able to)\b", "cannot"),
        (r"\bwon't\b", "will not"),
        (r"n't\b", " not"),
        (r"\bunavailable\b", "not available"),
        (r"\bunsuitable\b", "not suitable"),
        (r"\bper\s*cent\b|\bpercent\b", "%"),
        (r"\btype ([12])\b", r"type\1"),
        (r"\bintramuscular(?:ly)?\b|\bi\.m\.", "im"),
        (r"\bintravenous(?:ly)?\b|\bi\.v\.", "iv"),
        (r"\bsubcutaneous(?:ly)?\b|\bsub-?cut\b|\bs/c\b", "sc"),
        (r"\bby mouth\b|\borally\b|\bper os\b|\bp\.o\.", "oral"),
        (r"\bsub-?lingual(?:ly)?\b", "sublingual"),
        (r"\bnebuli[sz]\w*", "nebulised"),
        (r"\bnorepinephrine\b", "noradrenaline"),
        (r"\bepinephrine\b", "adrenaline"),
        (r"\balbuterol\b", "salbutamol"),
        (r"\bacetaminophen\b", "paracetamol"),
        (r"\bfrusemide\b", "furosemide"),
        (r"\bsulph", "sulf"),
        (r"\bglyceryl trinitrate\b|\bnitroglycerine?\b", "gtn"),
        (r"\bblood pressure\b", "bp"),
        (r"\boxygen saturations?\b|\bo2 sat(?:uration)?s?\b|\bsats\b", "spo2"),
        (r"\bpeak (?:expiratory )?flow\b", "pef"),
        (r"\belectrocardiogram\b|\bekg\b", "ecg"),
        (r"\bemergency department\b|\baccident and emergency\b|\ba&e\b", "ed"),
        (r"\bgeneral practitioner\b", "gp"),
        (r"\bintensive care(?: unit)?\b|\bicu\b|\bitu\b", "critical care"),
        (r"\bx-?rays?\b", "xray"),
        (r"\bproton pump inhibitors?\b", "ppi"),
        (r"\bangiotensin[- ]converting[- ]enzyme\b", "ace"),
        (r"\bangiotensin(?:[- ]ii)? receptor blockers?\b", "arb"),
        (r"\bcalcium[- ]channel blockers?\b", "ccb"),
        (r"\bselective serotonin reuptake inhibitors?\b", "ssri"),
        (r"\bnon-?steroidal anti-?inflammatory drugs?\b", "nsaid"),
        (r"\blow molecular weight heparin\b", "lmwh"),
        (r"\badminister(?:ed|ing|s)?\b|\bgiven\b|\bgave\b|\bgiving\b", "give"),
        (r"\bcommenc\w*|\binitiat\w*", "start"),
        (r"\breceiv(?:e|es|ed|ing)\b", "give"),
        (r"\bkeep(?:s|ing)?\b|\bkept\b", "maintain"),
        (r"\blower(?:s|ed|ing)?\b(?! than)", "reduce"),
        (r"\bpatients?\b|\bpeople\b|\bpersons?\b", "patient"),
        (r"\bonce[- ](?:a|per|each) day\b|\bonce-daily\b|\bo\.?d\.?(?![\w.])|\bq\.?d\.?(?![\w.])", "once daily"),
        (r"\btwice (?:a|per|each) day\b|\bb\.?i?\.?d\.?(?![\w.])", "twice daily"),
        (r"\bthree times (?:a|per|each) day\b|\bt\.?[di]\.?[sd]\.?(?![\w.])", "three times daily"),
        (r"\bfour times (?:a|per|each) day\b|\bq\.?[di]\.?[sd]\.?(?![\w.])", "four times daily"),
        (r"\b(?:per|a|each|every) day\b|/day\b", "daily"),
        (
            r"\bonce\b(?=\s+(?:or twice|daily|weekly|monthly|yearly|annually|every|per|a\s+(?:week|month|year)))",
            "1 times",
        ),
        (r"\btwice\b", "2 times"),
        (r"\bthrice\b", "3 times"),
        (r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", "<number-word>"),
    ]
]


def _normalise(text: str) -> str:
    text = text.translate(_CHARS).lower()
    for pattern, replacement in _REWRITES:
        if replacement == "<number-word>":
            text = pattern.sub(lambda m: _NUMBER_WORDS[m.group(1)], text)
        else:
            text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------------------------------
# Numbers: value, unit and direction must agree; a dose keeps its drug, route and frequency
# --------------------------------------------------------------------------------------------------

_UNITS: dict[str, tuple[str, ...]] = {
    "mg/kg": ("mg/kg", "mg per kg", "milligrams per kilogram"),
    "mcg/kg": ("micrograms/kg", "microgram/kg", "mcg/kg", "micrograms per kg"),
    "units/kg": ("units/kg", "unit/kg", "units per kg", "unit per kg"),
    "ml/kg": ("ml/kg", "ml per kg"),
    "mg/ml": ("mg/ml", "mg per ml"),
    "mg/l": ("mg/l", "mg per litre"),
    "mg/mmol": ("mg/mmol",),
    "mmol/mol": ("mmol/mol",),
    "mmol/l": ("mmol/l", "mmol/litre", "mmol per litre"),
    "micromol/l": ("micromol/l", "umol/l", "µmol/l", "μmol/l", "micromol per litre"),
    "ng/l": ("ng/l", "nanograms per litre"),
    "ml/min/1.73m2": ("ml/min/1.73 m2", "ml/min/1.73m2", "ml/min per 1.73 m2"),
    "ml/min": ("ml/min", "ml/minute", "ml per minute"),
    "l/min": ("l/min", "litres/min", "litres per minute", "liters per minute", "l per minute"),
    "kg/m2": ("kg/m2",),
    "mosm/kg": ("mosm/kg",),
    "/min": (
        "breaths/minute", "breaths/min", "breaths per minute", "beats/minute", "beats/min", "beats per minute",
        "bpm", "/min", "per minute",
    ),
    "mcg": ("micrograms", "microgram", "mcg", "µg", "μg", "ug"),
    "mg": ("milligrams", "milligram", "mg"),
    "g": ("grams", "gram", "g"),
    "kg": ("kilograms", "kilogram", "kg"),
    "ml": ("millilitres", "millilitre", "milliliters", "milliliter", "ml"),
    "l": ("litres", "litre", "liters", "liter", "l"),
    "mmol": ("mmol",),
    "micromol": ("micromol",),
    "mmhg": ("mmhg", "mm hg"),
    "kpa": ("kpa",),
    "%": ("%",),
    "°c": ("°c", "ºc", "° c", "degrees celsius", "degrees c", "degrees"),
    "min": ("minutes", "minute", "mins", "min"),
    "h": ("hours", "hour", "hrs", "hr", "h"),
    "day": ("days", "day"),
    "week": ("weeks", "week", "wks", "wk"),
    "month": ("months", "month"),
    "year": ("years", "year", "yrs", "yr"),
    "s": ("seconds", "second", "secs", "sec"),
    "units": ("units", "unit"),
    "puffs": ("puffs", "puff"),
    "tablets": ("tablets", "tablet"),
    "sprays": ("sprays", "spray"),
    "doses": ("doses", "dose"),
    "times": ("times",),
    "mm": ("mm",),
    "mv": ("mv",),
}  # fmt: skip
_DOSE_UNITS = frozenset({"mg/kg", "mcg/kg", "units/kg", "ml/kg", "mcg", "mg", "g", "ml", "l", "mmol", "units"})
_UNIT_OF = {variant: unit for unit, variants in _UNITS.items() for variant in variants}
_UNIT_ALT = "|".join(re.escape(v) for v in sorted(_UNIT_OF, key=len, reverse=True))
_NUM = r"(?:\d+(?:\.\d+)?|\.\d+)"
_VAL = rf"{_NUM}(?:/{_NUM})?"
_NUMBER = re.compile(rf"(?<![\w.\-/^])({_VAL})(?:\s*(?:-|to)\s*({_VAL}))?(?:\s*({_UNIT_ALT})(?![a-z]))?")
_CODE = re.compile(r"(?<![\w-])([a-z]{2,}-?\d+[a-z\d]*)(?![\w])")
_LT_BEFORE = re.compile(
    r"(?:below|under|less than|lower than|fewer than|<=?|up to|maximum(?: of)?|max\.?|at most|"
    r"no more than|not more than|not exceeding|within|no later than)\s*$"
)
_GT_BEFORE = re.compile(
    r"(?:above|more than|greater than|higher than|>=?|at least|minimum(?: of)?|no less than|not less than|"
    r"exceeding|in excess of|aged over|over the age of)\s*$"
)
# "or more" may follow a closing bracket or a bracketed equivalent: "48 mmol/mol (6.5%) or higher".
_AFTER_BRACKET = r"^\)?\s*(?:\([^()]{0,20}\))?\s*"
_GT_AFTER = re.compile(_AFTER_BRACKET + r"(?:\+|(?:or|and)\s+(?:more|higher|above|over|greater|longer|older)\b)")
_LT_AFTER = re.compile(_AFTER_BRACKET + r"(?:or|and)\s+(?:less|lower|below|under|fewer|shorter|younger)\b")
# Where the words that belong to a dose stop: clause punctuation (not a decimal point) or a conjunction.
_CLAUSE_BREAK = re.compile(r"[;:,()]|(?<!\d)\.(?!\d)|\b(?:and|or|then|plus|but|if|unless|when|while|until|because)\b")
# The drug of a dose may sit before an opening bracket: "clopidogrel (300 mg loading dose ...)".
_DRUG_BREAK = re.compile(r"[;:,)]|(?<!\d)\.(?!\d)|\b(?:and|or|then|plus|but|if|unless|when|while|until|because)\b")
# Numbers in one clause of a sentence must be stated together in the passage; passage clauses end at ";"
# (the separator of parallel items: "aged 1 to 9 years, 600 mg; under 1 year, 300 mg").
_PASSAGE_CLAUSE = re.compile(r";")

Direction = Literal["lt", "gt"] | None


@dataclass(frozen=True)
class _Number:
    value: str
    unit: str | None
    direction: Direction
    text: str
    start: int
    end: int
    drug: str | None = None  # stem of the drug named just before a dose
    route: str | None = None
    times: str | None = None  # "2" for "twice daily"

    def found_in(self, others: tuple[_Number, ...]) -> bool:
        return any(self._agrees(o) for o in others)

    def value_in(self, others: tuple[_Number, ...]) -> bool:
        return any(o.value == self.value and (self.unit is None or o.unit == self.unit) for o in others)

    def _agrees(self, o: _Number) -> bool:
        """Same value and unit; a direction the sentence states ("or more") must be stated alike; drug,
        route and frequency must not differ where both texts give them."""
        return (
            o.value == self.value
            and (self.unit is None or o.unit == self.unit)
            and (self.direction is None or o.direction == self.direction)
            and all(a is None or b is None or a == b for a, b in self._attributes(o))
        )

    def _attributes(self, o: _Number) -> list[tuple[str | None, str | None]]:
        return [(self.drug, o.drug), (self.route, o.route), (self.times, o.times)]

    @property
    def key(self) -> str:
        return f"#{self.value}|{self.unit or ''}"


def _numbers(norm: str) -> tuple[_Number, ...]:
    out: list[_Number] = []
    for m in _NUMBER.finditer(norm):
        value = _canonical_value(m.group(1)) + (f"-{_canonical_value(m.group(2))}" if m.group(2) else "")
        unit = _UNIT_OF.get(m.group(3)) if m.group(3) else None
        before, after = norm[max(0, m.start() - 30) : m.start()], norm[m.end() : m.end() + 20]
        direction: Direction = None
        label = m.group(0).strip()
        patterns: tuple[tuple[re.Pattern[str], re.Pattern[str], Direction], ...] = (
            (_LT_BEFORE, _LT_AFTER, "lt"),
            (_GT_BEFORE, _GT_AFTER, "gt"),
        )
        for before_pattern, after_pattern, name in patterns:
            if said := before_pattern.search(before):
                direction, label = name, f"{said.group(0).strip()} {label}"
                break
            if said := after_pattern.search(after):
                phrase = re.search(r"\+|(?:or|and)\s+\w+", said.group(0))
                direction, label = name, f"{label} {phrase.group(0) if phrase else ''}".replace(" +", "+").strip()
                break
        out.append(_Number(value, unit, direction, label, m.start(), m.end()))
    return tuple(_bind_dose(n, norm, out[i + 1] if i + 1 < len(out) else None) for i, n in enumerate(out))


def _bind_dose(n: _Number, norm: str, following: _Number | None) -> _Number:
    """Attach to a dose the drug named just before it, its route and its frequency."""
    if n.unit not in _DOSE_UNITS:
        return n
    before = _DRUG_BREAK.split(norm[max(0, n.start - 60) : n.start])[-1].split()
    after = _CLAUSE_BREAK.split(norm[n.end : n.end + 60])[0].split()
    drugs = [_stem(w) for w in before[-4:] if _is_drug(w)]
    if not drugs and after[:1] == ["of"] and len(after) > 1 and _is_drug(after[1]):
        drugs = [_stem(after[1])]  # "300 mg of aspirin"
    routes = [w for w in after[:3] if w in _ROUTES] or [w for w in before[-2:] if w in _ROUTES]
    times = None
    if following and following.unit == "times" and not re.search(r"\d|[;,(]", norm[n.end : following.start]):
        times = following.value if following.start - n.end <= 30 else None
    return _Number(
        n.value,
        n.unit,
        n.direction,
        n.text,
        n.start,
        n.end,
        drugs[-1] if drugs else None,
        routes[0] if routes else None,
        times,
    )


def _canonical_value(value: str) -> str:
    parts = []
    for part in value.split("/"):
        try:
            parts.append(format(Decimal(part).normalize(), "f"))
        except InvalidOperation:
            parts.append(part)
    return "/".join(parts)


# --------------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------------

_STOP = frozenset(
    """a an the and or but if then than of to in on at by for with from as is are was were be been being it its
    this that these those there their they them he she his her we you your our i me my do does did done has have
    had having will would should shall can could may might must not no nor never so such any all each every some
    also only which who whom whose what when where while how why into onto up down out over under about after
    before during until within without between above below per via etc more most less least other same both either
    neither very just too whether because since unless although however thus therefore again here s x e g eg ie
    non pre post co vs approx like well even still yet already once through across around along towards upon
    against beyond off away back instead""".split()
)
# Words that say little on their own: they count for less, and a sentence made only of them is too vague.
_GENERIC = frozenset(
    """patient give offer consider use treat treatment manage management dose start continue assess assessment
    review check recommend recommended advise advice need needed require required ensure provide care clinical
    clinically clinician doctor team guideline guidance condition case time usual usually appropriate important
    help support follow arrange take make see include according based local service setting option first initial
    additional drug medicine medication therapy level result example may can should new good early aim feature
    indicate indicates mean means suggest suggests""".split()
)
# A sentence made only of these (and no numbers) makes no clinical claim: "Check the full guideline."
_NO_CLAIM = frozenset(
    """check full guideline guidelines guidance local policy protocol see section source sources passage passages
    reference information detail details further consult read document summary answer question context provided
    provide based following note help hope please additional specific relevant latest current version medical
    advice substitute clinical judgement judgment professional disclaimer always carefully text excerpt list cite
    citation""".split()
)
_ROUTES = frozenset({"im", "iv", "sc", "oral", "nebulised", "sublingual", "rectal", "buccal", "inhaled", "intranasal"})
# Groups for whom doses and thresholds differ: a claim about them needs a passage about them.
_POPULATIONS = frozenset(
    "child children paediatric pediatric infant infants neonate neonates newborn baby babies pregnant pregnancy "
    "breastfeeding".split()
)
# Common drug names and classes; the suffix pattern below catches most others.
_DRUGS = frozenset(
    """adrenaline noradrenaline dopamine dobutamine atropine amiodarone adenosine digoxin verapamil diltiazem
    bisoprolol atenolol propranolol metoprolol labetalol carvedilol sotalol ramipril lisinopril enalapril
    perindopril losartan candesartan valsartan irbesartan amlodipine nifedipine felodipine indapamide
    bendroflumethiazide furosemide bumetanide spironolactone eplerenone doxazosin hydralazine gtn isosorbide
    nicorandil ivabradine aspirin clopidogrel ticagrelor prasugrel dipyridamole warfarin apixaban rivaroxaban
    edoxaban dabigatran heparin enoxaparin dalteparin tinzaparin fondaparinux alteplase tenecteplase atorvastatin
    simvastatin rosuvastatin pravastatin ezetimibe metformin gliclazide glimepiride sitagliptin linagliptin
    alogliptin pioglitazone empagliflozin dapagliflozin canagliflozin liraglutide semaglutide dulaglutide exenatide
    insulin glucagon levothyroxine carbimazole hydrocortisone prednisolone prednisone dexamethasone
    methylprednisolone fludrocortisone beclometasone budesonide fluticasone salbutamol terbutaline ipratropium
    tiotropium salmeterol formoterol montelukast theophylline aminophylline magnesium amoxicillin ampicillin
    flucloxacillin benzylpenicillin phenoxymethylpenicillin penicillin amoxiclav piperacillin tazobactam
    cefalexin cefuroxime ceftriaxone cefotaxime ceftazidime meropenem gentamicin amikacin vancomycin teicoplanin
    clarithromycin erythromycin azithromycin doxycycline tetracycline trimethoprim nitrofurantoin ciprofloxacin
    levofloxacin metronidazole clindamycin rifampicin linezolid fluconazole aciclovir oseltamivir paracetamol
    ibuprofen naproxen diclofenac codeine morphine oxycodone tramadol fentanyl naloxone ondansetron metoclopramide
    cyclizine prochlorperazine omeprazole lansoprazole sertraline citalopram escitalopram fluoxetine paroxetine
    mirtazapine venlafaxine duloxetine amitriptyline lithium diazepam lorazepam midazolam chlordiazepoxide
    haloperidol olanzapine quetiapine risperidone levetiracetam phenytoin valproate lamotrigine carbamazepine
    thiamine pabrinex acetylcysteine chlorphenamine cetirizine loratadine fexofenadine promethazine colchicine
    allopurinol febuxostat gluconate resonium mannitol tranexamic glargine detemir degludec aspart lispro
    glulisine isophane ferrous phytomenadione idarucizumab andexanet prothrombin lidocaine ketamine phenobarbital
    sumatriptan mesalazine methotrexate hydroxychloroquine finasteride tamsulosin oxybutynin
    antibiotic antihistamine corticosteroid steroid antidepressant antipsychotic anticoagulant antiplatelet
    antiemetic antipyretic analgesic bronchodilator benzodiazepine opioid statin diuretic nsaid ssri snri ace arb
    ccb ppi lmwh doac alpha beta thrombolytic crystalloid colloid antiepileptic anticonvulsant sulfonylurea
    antimicrobial antifungal antiviral laxative""".split()
)
_DRUG_SUFFIX = re.compile(
    r"(?:cillin|mycin|micin|floxacin|cycline|pril|sartan|olol|dipine|statin|prazole|azole|parin|xaban|gatran|"
    r"gliflozin|gliptin|glutide|zepam|zolam|oxetine|triptan|profen|tropium|lukast|phylline|codone|thiazide|"
    r"semide|tidine|setron|olone|asone|isone|ortisone|tinib|ciclovir|navir|dronate|teplase|peridol|apine|mab|caine)$"
)
_IRREGULAR = {"taken": "take", "took": "take", "shown": "show", "seen": "see", "chosen": "choose", "written": "write"}
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_PREFIX = 8  # stems sharing this many first letters match ("anaphylactic" ~ "anaphylaxis")
_NEGATION = re.compile(r"\b(?:not|no|never|none|without|avoid\w*|contraindicat\w*|cannot|nor|neither)\b")
# Cues whose negated words may come before them ("X is not available", "X should be avoided").
_NEGATES_BEFORE = re.compile(r"not|never|cannot|avoided|contraindicat\w*")
_NOT_NEGATION = re.compile(r"\b(?:no|not) (?:more|less|later|earlier|sooner|fewer) than\b|\bnot exceeding\b|\bor not\b")
_POLAR = re.compile(r"\b(?:no|not|never|yes)\b")
_ORDER = re.compile(r"\b(before|after)\b")


def _stem(word: str) -> str:
    """Light, consistent stemming: plural, -ed, -ing, -ly and British/American spellings."""
    w = _IRREGULAR.get(word, word)
    w = w.replace("ae", "e").replace("oe", "e").replace("isat", "izat")
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ing") and len(w) > 5:
        w = _undouble(w[:-3])
    elif w.endswith("ed") and len(w) > 3 and not w.endswith("eed"):
        w = _undouble(w[:-2])
    elif w.endswith("s") and len(w) > 3 and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("ly") and len(w) > 6:
        w = w[:-2]
    if w.endswith("is") and len(w) > 5:
        w = w[:-2] + "iz"
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def _undouble(w: str) -> str:
    return w[:-1] if len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz" else w


def _is_key_term(word: str) -> bool:
    singular = word.removesuffix("s")
    return (
        word in _ROUTES
        or word in _POPULATIONS
        or _stem(word) in _DRUG_STEMS
        or (len(word) >= 6 and bool(_DRUG_SUFFIX.search(word) or _DRUG_SUFFIX.search(singular)))
    )


def _is_drug(word: str) -> bool:
    return _is_key_term(word) and word not in _ROUTES and word not in _POPULATIONS


_GENERIC_STEMS = frozenset(_stem(w) for w in _GENERIC)
_DRUG_STEMS = frozenset(_stem(w) for w in _DRUGS)
_NO_CLAIM_STEMS = frozenset(_stem(w) for w in _NO_CLAIM)
_OPPOSITES: dict[str, frozenset[str]] = {
    _stem(word): frozenset(_stem(o) for o in opposites.split())
    for word, opposites in {
        "continue": "stop pause withhold omit discontinue",
        "stop": "continue start",
        "pause": "continue",
        "withhold": "give continue offer",
        "omit": "give continue",
        "start": "stop",
        "increase": "reduce decrease",
        "reduce": "increase",
        "decrease": "increase",
        "give": "withhold omit",
        "offer": "withhold",
        "higher": "reduce",
    }.items()
}


def _weight(stem: str) -> float:
    return 0.3 if stem in _GENERIC_STEMS else 1.0


@dataclass(frozen=True)
class _Text:
    """A sentence or passage stretch reduced to what the checks compare."""

    words: dict[str, str]  # stem -> the word as written
    numbers: tuple[_Number, ...]
    claim_clauses: tuple[int, ...]  # clause of each number, split finely (for a claim)
    passage_clauses: tuple[int, ...]  # clause of each number, split at ";" (for a passage)
    codes: frozenset[str]
    key_terms: frozenset[str]  # stems
    negations: tuple[frozenset[str], ...]  # the words each "not"/"no"/"avoid" applies to
    orders: frozenset[tuple[str, str]]  # (first, second) from "X before Y" and "Y after X"

    @property
    def drugs(self) -> frozenset[str]:
        return frozenset(s for s in self.key_terms if self.words[s] not in _ROUTES | _POPULATIONS)


@lru_cache(maxsize=4096)
def _analyse(text: str) -> _Text:
    norm = _normalise(text)
    numbers = _numbers(norm)
    codes = frozenset(m.group(1).replace("-", "") for m in _CODE.finditer(norm))
    rest = _CODE.sub(" ", _NUMBER.sub(" ", norm))
    words: dict[str, str] = {}
    key_terms: set[str] = set()
    for raw in _WORD.findall(rest):
        word = raw.removesuffix("'s")
        if word in _STOP or len(word) < 2 or _NEGATION.fullmatch(word):
            continue  # negation words ("avoid", "contraindicated") are left to the negation check
        stem = _stem(word)
        words.setdefault(stem, word)
        if _is_key_term(word):
            key_terms.add(stem)
    return _Text(
        words,
        numbers,
        tuple(len(_CLAUSE_BREAK.findall(norm[: n.start])) for n in numbers),
        tuple(_passage_clause(norm, n.start) for n in numbers),
        codes,
        frozenset(key_terms),
        _negations(norm, numbers),
        _orders(rest),
    )


def _passage_clause(norm: str, position: int) -> int:
    """Clause of a passage sentence a number sits in; -1 for a lead-in before ":" that heads them all."""
    colon = norm.find(":")
    if 0 <= colon and position < colon and ";" in norm[colon:]:
        return -1
    return len(_PASSAGE_CLAUSE.findall(norm[:position]))


def _content_stems(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text) if w not in _STOP and len(w) > 1]


_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[;:,()]|(?<!\d)\.(?!\d)")
_BREAK_WORDS = frozenset("and or then plus but if unless when while until because".split())


def _negations(norm: str, numbers: tuple[_Number, ...]) -> tuple[frozenset[str], ...]:
    """What each negation cue applies to: up to 6 words or numbers after it in its clause, and for
    "not"/"never"/"avoided"/"contraindicated" up to 3 before it. A cue whose clause holds nothing
    specific ("Avoid if ...", "Do not take more than ...") applies to the whole sentence."""
    norm = _NOT_NEGATION.sub(lambda m: " " * len(m.group(0)), norm)
    items: list[tuple[int, str]] = [(n.start, n.key) for n in numbers]
    spans = [(n.start, n.end) for n in numbers]
    for m in _TOKEN.finditer(norm):
        if not any(a <= m.start() < b for a, b in spans):
            items.append((m.start(), m.group(0)))
    tokens = [t for _, t in sorted(items)]
    content = [_stem(t) if t[0].isalpha() else t for t in tokens if _is_content(t)]
    scopes = []
    for i, token in enumerate(tokens):
        if not _NEGATION.fullmatch(token):
            continue
        after = _clause_content(tokens[i + 1 :])[:6]
        before = _clause_content(tokens[:i][::-1])[:3] if _NEGATES_BEFORE.fullmatch(token) else []
        scope = set(after + before)
        if not any(s.startswith("#") or s not in _GENERIC_STEMS for s in scope):
            scope = set(content)
        scopes.append(frozenset(scope))
    return tuple(scopes)


def _is_content(token: str) -> bool:
    return token.startswith("#") or (token[0].isalpha() and token not in _STOP and len(token) > 1)


def _clause_content(tokens: list[str]) -> list[str]:
    out = []
    for t in tokens:
        if t in _BREAK_WORDS or not (t[0].isalpha() or t.startswith("#")):
            break
        if _is_content(t):
            out.append(t if t.startswith("#") else _stem(t))
    return out


def _orders(rest: str) -> frozenset[tuple[str, str]]:
    pairs = set()
    for m in _ORDER.finditer(rest):
        left = [s for s in _content_stems(rest[max(0, m.start() - 40) : m.start()])[-3:] if s not in _GENERIC_STEMS]
        right = [s for s in _content_stems(rest[m.end() : m.end() + 40])[:3] if s not in _GENERIC_STEMS]
        if left and right:
            pairs.add((left[-1], right[0]) if m.group(1) == "before" else (right[0], left[-1]))
    return frozenset(pairs)


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
