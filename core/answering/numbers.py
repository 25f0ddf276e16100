"""Numbers in clinical text: one spelling for what clinicians write several ways, then value, unit and
direction, and a dose bound to its drug, route and frequency."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from core.answering.lexicon import _ROUTES, _is_drug, _stem

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
