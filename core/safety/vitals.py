"""Vital signs in a chat message: the numbers people type, read against published thresholds.

One layer of the pre-answer emergency screen (phrase rules and a learned classifier are others). It
parses "sats 85%", "bp is 70 over 40", "102.4F", "BM reads HI", "E2V2M4" and the patient's age, then
applies the thresholds in `data/triage/vitals.yaml` (NEWS2 for adults, NICE/PALS/APLS limits by age for
children, glucose, ketones, potassium, GCS). Every threshold is data; this module only reads numbers
and compares. docs/vitals.md lists what is parsed and what is not.

Design choices that matter for safety:
- A value outside the plausible range ("SpO2 120", "temp 3.9") is reported in `rejected` with a note and
  never escalated: escalating on a typo teaches users to ignore the screen.
- An unstated age is read as an adult, so NEWS2 applies; an age word ("my baby") is a range, and a rule
  for only part of that range fires at no more than `uncertain_age_level`.
- A knowledge question ("at what glucose is DKA diagnosed, 11?") still gets findings and a level, but
  `question_only` is set so the caller can answer instead of escalating.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from core.errors import CQAError
from core.settings import REPO_ROOT

DEFAULT_VITALS_PATH = REPO_ROOT / "data" / "triage" / "vitals.yaml"

Level = Literal["emergent", "urgent"]
Measure = Literal[
    "spo2", "heart_rate", "respiratory_rate", "blood_pressure", "temperature", "glucose", "ketones", "gcs",
    "potassium", "consciousness", "oxygen",
]
# What a threshold compares: a measure, or one half of a blood pressure.
Quantity = Literal[
    "spo2", "heart_rate", "respiratory_rate", "systolic_bp", "diastolic_bp", "temperature", "glucose", "ketones",
    "gcs", "potassium", "consciousness", "oxygen",
]
News2Parameter = Literal["respiratory_rate", "spo2", "systolic_bp", "heart_rate", "temperature", "consciousness", "oxygen"]
Op = Literal["<", "<=", ">", ">="]

_RANK: dict[Level | None, int] = {None: 0, "urgent": 1, "emergent": 2}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_SYMBOL = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_NAME: dict[str, str] = {
    "spo2": "SpO2", "heart_rate": "HR", "respiratory_rate": "RR", "systolic_bp": "systolic BP",
    "diastolic_bp": "diastolic BP", "blood_pressure": "BP", "temperature": "temperature", "glucose": "glucose",
    "ketones": "ketones", "gcs": "GCS", "potassium": "K+", "consciousness": "consciousness", "oxygen": "oxygen",
}
CANONICAL_UNIT: dict[str, str] = {
    "spo2": "%", "heart_rate": "/min", "respiratory_rate": "/min", "blood_pressure": "mmHg", "systolic_bp": "mmHg",
    "diastolic_bp": "mmHg", "temperature": "°C", "glucose": "mmol/L", "ketones": "mmol/L", "gcs": "/15",
    "potassium": "mmol/L", "consciousness": "ACVPU", "oxygen": "",
}
# Counted in whole numbers, so a NEWS2 band "> 24" reads better as "≥ 25".
_WHOLE = {"spo2", "heart_rate", "respiratory_rate", "systolic_bp", "diastolic_bp", "gcs", "consciousness", "oxygen"}
_ACVPU = "ACVPU"
_QUANTITY_OF: dict[Measure, Quantity] = {
    "spo2": "spo2", "heart_rate": "heart_rate", "respiratory_rate": "respiratory_rate", "blood_pressure": "systolic_bp",
    "temperature": "temperature", "glucose": "glucose", "ketones": "ketones", "gcs": "gcs", "potassium": "potassium",
    "consciousness": "consciousness", "oxygen": "oxygen",
}
_NEWS2_OF: dict[Quantity, News2Parameter] = {q: q for q in get_args(News2Parameter)}
_ADULT_YEARS = 16.0


class VitalsConfigError(CQAError):
    """vitals.yaml is invalid; the message names the file and the field."""


# --------------------------------------------------------------------------------------------------
# Thresholds file (what the YAML may say)
# --------------------------------------------------------------------------------------------------

_AGE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(day|week|month|year)s?\s*$")
_YEARS_PER = {"day": 1 / 365.25, "week": 7 / 365.25, "month": 1 / 12, "year": 1.0}


def _age_years(value: Any) -> Any:
    if isinstance(value, str):
        m = _AGE_TEXT.match(value)
        if m is None:
            raise ValueError(f"age {value!r} must look like '28 days', '3 months' or '16 years'")
        return float(m.group(1)) * _YEARS_PER[m.group(2)]
    return value


AgeYears = Annotated[float, BeforeValidator(_age_years), Field(ge=0, le=130)]


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regex {pattern!r}: {exc}") from exc
    return pattern


Regex = Annotated[str, BeforeValidator(_check_regex)]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=5, description="Citation shown in docs and reasons.")
    url: str | None = None


class Band(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upto: float | None = Field(default=None, description="Highest value in the band (inclusive); none for the last band.")
    points: int = Field(ge=0, le=3)


class News2Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    age_from: AgeYears = Field(description="NEWS2 is validated for adults only.")
    bands: dict[News2Parameter, list[Band]]
    emergent_at: int = Field(ge=1, le=20)
    urgent_at: int = Field(ge=1, le=20)
    single_red_points: int = Field(ge=1, le=3)
    single_red_level: Level

    @model_validator(mode="after")
    def _bands_ascend(self) -> News2Config:
        missing = set(get_args(News2Parameter)) - set(self.bands)
        if missing:
            raise ValueError(f"bands missing for {sorted(missing)}")
        for name, bands in self.bands.items():
            uppers = [b.upto for b in bands[:-1] if b.upto is not None]
            if not bands or bands[-1].upto is not None or len(uppers) != len(bands) - 1:
                raise ValueError(f"bands.{name}: every band but the last needs `upto`; the last has none")
            if uppers != sorted(set(uppers)):
                raise ValueError(f"bands.{name}: `upto` must increase")
        if self.urgent_at > self.emergent_at:
            raise ValueError("urgent_at must not exceed emergent_at")
        return self


class AgeLimited(BaseModel):
    age_from: AgeYears | None = Field(default=None, description="Inclusive.")
    age_before: AgeYears | None = Field(default=None, description="Exclusive; none = adults too (and unknown age).")


class ThresholdRule(AgeLimited):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    measure: Quantity
    op: Op
    value: float
    plus_per_year: float = Field(default=0.0, description="Added per year of age (PALS: 70 + 2 × age).")
    level: Level | None = Field(description="None = flag only: named in the reason and matched_rules, no level.")
    source: str
    label: str = Field(min_length=3, description="Shown in reasons and docs.")
    tag: str | None = Field(default=None, description="Groups rules for combinations (`tagged`).")


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    measure: Quantity
    op: Op
    value: float


class Combination(AgeLimited):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    level: Level
    source: str
    label: str = Field(min_length=3)
    all_of: list[Condition] = Field(default_factory=list)
    any_of: list[Condition] = Field(default_factory=list)
    phrases: list[list[str]] = Field(default_factory=list, description="Every group needs one phrase; '*' = any word.")
    tagged: str | None = None
    at_least: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _has_condition(self) -> Combination:
        if not (self.all_of or self.any_of or self.tagged):
            raise ValueError("needs all_of, any_of or tagged")
        if (self.tagged is None) != (self.at_least is None):
            raise ValueError("tagged and at_least go together")
        return self


class PatternLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: int = Field(ge=0, le=4)
    pattern: Regex


class QuestionCues(BaseModel):
    model_config = ConfigDict(extra="forbid")
    asks: list[Regex] = Field(min_length=1, description="The message is a question.")
    about_threshold: list[Regex] = Field(min_length=1, description="It asks about a threshold, target or criterion.")
    person: list[Regex] = Field(min_length=1, description="It presents a person: then it is never question_only.")


@dataclass(frozen=True)
class _Compiled:
    consciousness: list[tuple[int, re.Pattern[str]]]
    oxygen: list[tuple[int, re.Pattern[str]]]
    asks: list[re.Pattern[str]]
    about_threshold: list[re.Pattern[str]]
    person: list[re.Pattern[str]]
    phrases: dict[str, list[re.Pattern[str]]]
    age_words: re.Pattern[str] | None
    rules_for: dict[str, list[ThresholdRule]]


class VitalThresholds(BaseModel):
    """data/triage/vitals.yaml, validated. `load()` gives an error that names the field."""

    model_config = ConfigDict(extra="forbid")
    version: str
    sources: dict[str, Source]
    news2: News2Config
    rules: list[ThresholdRule] = Field(min_length=1)
    combinations: list[Combination] = Field(default_factory=list)
    age_words: dict[str, tuple[AgeYears, AgeYears]] = Field(default_factory=dict)
    uncertain_age_level: Level = "urgent"
    plausible: dict[Quantity, tuple[float, float]]
    glucose_unitless_mg_dl_above: float = Field(gt=20, lt=60)
    glucose_meter_hi: float = Field(gt=20, lt=60)
    glucose_meter_lo: float = Field(gt=0, lt=3)
    consciousness: list[PatternLevel] = Field(default_factory=list)
    oxygen: list[PatternLevel] = Field(default_factory=list)
    question: QuestionCues
    _compiled: _Compiled = PrivateAttr()

    @model_validator(mode="after")
    def _references(self) -> VitalThresholds:
        ids = [r.id for r in self.rules] + [c.id for c in self.combinations]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids {dupes}")
        cited = [("news2", self.news2.source)] + [(r.id, r.source) for r in self.rules] + [(c.id, c.source) for c in self.combinations]
        unknown = [f"{who}: {src!r}" for who, src in cited if src not in self.sources]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; add them under `sources`")
        needed = {"spo2", "heart_rate", "respiratory_rate", "systolic_bp", "diastolic_bp", "temperature", "glucose", "ketones", "gcs", "potassium"}
        if needed - set(self.plausible):
            raise ValueError(f"plausible ranges missing for {sorted(needed - set(self.plausible))}")
        return self

    def model_post_init(self, context: Any, /) -> None:
        flags = re.IGNORECASE
        words = sorted(self.age_words, key=len, reverse=True)
        # "my baby", "the newborn"; not "had a baby" (the patient is the mother).
        age_words = (
            re.compile(r"(?<!had )(?<!having )(?<!birth to )\b(?:my|our|the|this|his|her|their)\s+("
                       + "|".join(re.escape(w).replace(r"\ ", r"\s*") for w in words) + r")\b", flags)
            if words else None
        )
        self._compiled = _Compiled(
            consciousness=[(p.level, re.compile(p.pattern, flags)) for p in self.consciousness],
            oxygen=[(p.level, re.compile(p.pattern, flags)) for p in self.oxygen],
            asks=[re.compile(p, flags) for p in self.question.asks],
            about_threshold=[re.compile(p, flags) for p in self.question.about_threshold],
            person=[re.compile(p, flags) for p in self.question.person],
            phrases={c.id: [_phrase_group(g) for g in c.phrases] for c in self.combinations},
            age_words=age_words,
            rules_for={q: [r for r in self.rules if r.measure == q] for q in get_args(Quantity)},
        )

    @classmethod
    def load(cls, path: Path | str = DEFAULT_VITALS_PATH) -> VitalThresholds:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise VitalsConfigError(f"{path.name}: cannot read: {exc}") from exc
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            raise VitalsConfigError("\n".join(_describe(path.name, data, err) for err in exc.errors())) from exc


def _describe(name: str, data: Any, err: Any) -> str:
    """'vitals.yaml: rules[3] (id 'gcs_severe').level: must be emergent|urgent'."""
    parts: list[str] = []
    node = data
    for key in err["loc"]:
        if isinstance(key, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{key}]"]
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and "id" in node:
                parts[-1] += f" (id {node['id']!r})"
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "literal_error":
        msg = "must be " + "|".join(re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", "")))
    return f"{name}: {'.'.join(parts) or '(top level)'}: {msg}"


_NEGATION = re.compile(r"\b(no|not|isn't|wasn't|never|denies|without|nil)\b[^.;,!?]{0,15}$", re.IGNORECASE)


def _phrase_group(phrases: list[str]) -> re.Pattern[str]:
    alts = [re.escape(p).replace(r"\*", r"\w+") for p in phrases]
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


def _found(pattern: re.Pattern[str], text: str) -> bool:
    """A hit not negated just before it ("no chest pain")."""
    return any(not _NEGATION.search(text[max(0, m.start() - 20): m.start()]) for m in pattern.finditer(text))


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


class VitalFinding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    measure: Measure
    value: float | None = Field(description="As written (systolic for BP); None for a meter 'HI'/'LO' or a word.")
    unit: str | None = Field(description="As written, if any.")
    text: str = Field(description="The exact substring of the message.")
    start: int
    end: int
    normalised: float = Field(description="In the canonical unit (°C, mmol/L, ...); ACVPU/oxygen as ordinals.")
    canonical_unit: str
    diastolic: float | None = None
    category: str | None = Field(default=None, description="'HI'/'LO' meter, ACVPU letter, 'air'/'oxygen'.")
    role: Literal["reading", "target"] = Field(default="reading", description="A target ('aim for sats 94') is never escalated.")
    note: str | None = None
    points: int | None = Field(default=None, description="NEWS2 points (adults).")
    level: Level | None = None
    rules: list[str] = Field(default_factory=list, description="Ids of the rules this value fired.")
    reason: str = ""

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


class RejectedValue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    measure: Measure
    text: str
    start: int
    end: int
    note: str


class VitalsReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    findings: list[VitalFinding] = Field(default_factory=list)
    rejected: list[RejectedValue] = Field(default_factory=list)
    age_years: float | None = None
    age_text: str | None = None
    age_range_years: tuple[float, float] | None = Field(default=None, description="For an age word ('my baby').")
    news2: int | None = Field(default=None, description="Partial NEWS2 over the parameters given (adults only).")
    news2_parameters: int = Field(default=0, description="How many of the 7 NEWS2 parameters were given.")
    matched_rules: list[str] = Field(default_factory=list)
    level: Level | None = None
    explanation: str = ""
    question_only: bool = Field(default=False, description="A knowledge question presenting nobody: the caller may answer rather than escalate.")


# --------------------------------------------------------------------------------------------------
# Parsing: labelled values, then unit-only values, then age
# --------------------------------------------------------------------------------------------------

_NUM = r"\d{1,4}(?:[.,]\d{1,2})?"
_FILLER_WORDS = (
    r"is|was|are|were|of|at|now|reads?|reading|readings|only|about|around|approx(?:imately)?|roughly|just|still|"
    r"currently|been|has|had|have|down|up|dropped|fell|fallen|gone|went|risen|rose|climbed|increased|decreased|to|"
    r"level|levels|came|back|measured|measuring|recorded|checked|showing|shows|showed|says|said|sitting|running|"
    r"over|under|below|above|less|more|greater|than|then|target|targets|goal|aim|this|morning|today|tonight|"
    r"last|night|earlier|on|the|meter|machine|monitor"
)
_TIGHT_GAP = rf"(?P<gap>(?:[\s:=~≈>≥<≤(\-–]|'s\b|’s\b|\b(?:{_FILLER_WORDS})\b){{0,24}}?)"
# Only in knowledge questions, where a finding is never escalated by the caller.
_LOOSE_GAP = r"(?P<gap>[^\d.;!?\n]{0,40}?)"
_TARGET_WORDS = re.compile(r"\b(target|targets|goal|aim|aiming|keep|maintain|titrate)\b", re.IGNORECASE)

_LABELS: dict[Measure, str] = {
    "spo2": r"spo2|sp02|sao2|o2\s*sat(?:uration)?s?|oxygen\s*sat(?:uration)?s?|oxygen\s+levels?|o2\s+levels?|"
            r"pulse\s*ox(?:imetry|imeter)?|sats?|saturations?|saturating|satting|sating|oxygen|o2",
    # "2 hr 30" is a duration; "T" is a temperature only in capitals ("don't 38" is not).
    "heart_rate": r"heart\s*rate|heart\s*beat|(?<!\d\s)(?<!\d)hr|pulse\s+rate|pulse|tachycardic|tachy|bradycardic|brady",
    "respiratory_rate": r"rr|resp(?:iratory)?\.?\s*rate|resps|respirations|breathing\s+rate|resp|tachypn(?:o|e|oe)ic",
    "blood_pressure": r"blood\s*pressure|bp|b/p|nibp|systolic(?:\s+bp|\s+blood\s+pressure)?|sbp",
    "temperature": r"temperature|temps?|tmax|t\s*max|(?-i:T)|fever|febrile|pyrexi(?:al|a)|tympanic|axillary|spiking|spiked|hypothermic",
    "glucose": r"blood\s+glucose|blood\s+sugars?|glucose|sugars?|bms?|b\.m\.|cbg|bg|bsl|bgl|capillary\s+glucose|"
               r"finger\s*prick|finger\s*stick|glucometer",
    "ketones": r"(?<!urine )(?<!urinary )(?:blood\s+|capillary\s+|serum\s+)?ketones?|bhb|beta[\s-]?hydroxybutyrate",
    "gcs": r"gcs|glasgow\s+coma\s+(?:scale|score)|glasgow",
    "potassium": r"(?<!vitamin )(?:serum\s+)?(?:potassium|k\+|k)",
}
# A label followed only by these with no number is a different word: "breathing 35 times a minute" needs the unit.
_UNIT_ONLY_LABELS: dict[Measure, str] = {"respiratory_rate": r"breathing|breaths"}

_UNITS: dict[Measure, str] = {
    "spo2": r"%|percent\b|per\s*cent\b|pc\b",
    "heart_rate": r"bpm\b|beats?\s*(?:per|/|a|an)\s*min(?:ute)?\b|/\s*min\b|b/min\b|per\s+min(?:ute)?\b",
    "respiratory_rate": r"(?:breaths?|times|resps?)?\s*(?:per|/|a|an)\s*min(?:ute)?\b|breaths?\b|bpm\b|rpm\b",
    "blood_pressure": r"mm\s*hg\b",
    "temperature": r"°\s*[cf]\b|º\s*[cf]\b|°|º|degrees?(?:\s+(?:c|f|celsius|centigrade|fahrenheit)\b)?|deg\s*[cf]?\b|celsius\b|centigrade\b|fahrenheit\b|[cf]\b",
    "glucose": r"mmol\s*/\s*l\b|mmol\b|mm\b|mg\s*/\s*dl\b|mgs?\s*/\s*dl\b|mg\s+per\s+dl\b|mg%",
    "ketones": r"mmol\s*/\s*l\b|mmol\b",
    "gcs": r"/\s*15\b|out\s+of\s+15\b",
    "potassium": r"mmol\s*/\s*l\b|mmol\b|meq\s*/\s*l\b|meq\b",
}
# Numbers followed by these are doses, durations, times or counts, not vital signs.
_NOT_A_VITAL_UNIT = re.compile(
    r"^\s*(?:mg\b(?!\s*/)|mcg|µg|micrograms?|g\b|grams?|kg|ml|mls|l\b|litres?|liters?|lpm|units?|iu\b|tabs?\b|tablets?|"
    r"puffs?|doses?|mins?\b|minutes?|secs?\b|seconds?|hrs?\b|hours?|days?|weeks?|wks?\b|months?|mths?|years?|yrs?\b|yo\b|"
    r"y/o|am\b|pm\b|o'?clock|times\b|x\b|people|patients|episodes|kids|children|steps|cm\b|mm\b(?!ol)|feet|ft\b|miles?|km\b|"
    r"th\b|st\b|nd\b|rd\b|degrees?|deg\b|°|spoons?|teaspoons?|tsp|cubes?|lumps?|sachets?|packets?|cups?|slices?|biscuits?|sweets?|drinks?|cans?)",
    re.IGNORECASE,
)
_VALUE: dict[Measure, str] = {
    "blood_pressure": r"(?P<v1>\d{2,3})(?:\s*(?:/|\\|over)\s*(?P<v2>\d{2,3}))?",
    "gcs": r"(?:e(?P<e>[1-4])\s*v(?P<v>[1-5])\s*m(?P<m>[1-6])|(?P<v1>\d{1,2})(?:\s*(?:-|–|to)\s*(?P<v2>\d{1,2}))?)",
    "glucose": rf"(?:[\"']?(?P<meter>hi|lo)\b[\"']?|(?P<v1>{_NUM})(?:\s*(?:-|–|to)\s*(?P<v2>{_NUM}))?)",
}
_RANGE_VALUE = rf"(?P<v1>{_NUM})(?:\s*(?:-|–|to)\s*(?P<v2>{_NUM}))?"


def _labelled(measure: Measure, label: str, gap: str) -> re.Pattern[str]:
    value = _VALUE.get(measure, _RANGE_VALUE)
    unit = _UNITS.get(measure)
    unit_part = rf"(?:\s*(?P<unit>{unit}))?" if unit else ""
    return re.compile(rf"(?<![\w+])(?P<label>{label})(?![\w]){gap}(?<![\d.,]){value}(?![\d]){unit_part}", re.IGNORECASE)


# GCS before BP ("GCS 8/15" is not a pressure), SpO2 before HR ("pulse ox 88").
_ORDER: list[Measure] = ["gcs", "spo2", "blood_pressure", "temperature", "heart_rate", "respiratory_rate", "glucose", "ketones", "potassium"]
_TIGHT: list[tuple[Measure, re.Pattern[str], bool]] = [
    (m, _labelled(m, _LABELS[m], _TIGHT_GAP), False) for m in _ORDER
] + [(m, _labelled(m, lab, _TIGHT_GAP), True) for m, lab in _UNIT_ONLY_LABELS.items()]
_LOOSE: list[tuple[Measure, re.Pattern[str], bool]] = [
    (m, _labelled(m, _LABELS[m], _LOOSE_GAP), False) for m in _ORDER
]
_DIGIT = re.compile(r"\d")
_DATE_OR_TIME_REST = re.compile(r"\s*[/:]\s*\d|[.,]\d")
_FIO2_BEFORE = re.compile(r"\b(on|at|via|with)\s*$", re.IGNORECASE)

_BARE: list[tuple[Measure, re.Pattern[str]]] = [
    ("gcs", re.compile(r"(?<![\w])e(?P<e>[1-4])\s*v(?P<v>[1-5])\s*m(?P<m>[1-6])(?![\w])", re.IGNORECASE)),
    ("blood_pressure", re.compile(r"(?<![\w/.:-])(?P<v1>\d{2,3})\s*(?:/|over)\s*(?P<v2>\d{2,3})(?![\d/])(?:\s*(?P<unit>mm\s*hg\b))?", re.IGNORECASE)),
    ("temperature", re.compile(rf"(?<![\w.,])(?P<v1>\d{{2,3}}(?:[.,]\d{{1,2}})?)\s*(?P<unit>{_UNITS['temperature']})", re.IGNORECASE)),
    ("heart_rate", re.compile(r"(?<![\w.,])(?P<v1>\d{2,3})\s*(?P<unit>bpm\b|beats?\s*(?:per|/|a|an)\s*min(?:ute)?\b)", re.IGNORECASE)),
    ("respiratory_rate", re.compile(r"(?<![\w.,])(?P<v1>\d{1,3})\s*(?P<unit>breaths?\s*(?:per|/|a|an)\s*min(?:ute)?\b)", re.IGNORECASE)),
]
_AMBIENT = re.compile(
    r"\b(outside|outdoors|indoors|weather|room|heat\s*wave|sun|oven|water|bath|shower|fridge|freezer|angle|tilt|"
    r"head\s+of\s+(?:the\s+)?bed|elevat\w*|incline|flex\w*|rotat\w*|car|house|climate|forecast)\b",
    re.IGNORECASE,
)
_TEMP_EXPLICIT_UNIT = re.compile(r"°|º|celsius|centigrade|fahrenheit|deg", re.IGNORECASE)

_AGE_UNIT = r"(?P<u>days?|d|weeks?|wks?|wk|w|months?|mths?|mth|mos?|years?|yrs?|yr|y)"
_AGE_PATTERNS: list[re.Pattern[str]] = [
    re.compile(rf"(?<![\w.])(?P<n>\d{{1,3}}(?:\.\d)?)\s*-?\s*{_AGE_UNIT}\s*-?\s*(?:old|of\s+age)\b", re.IGNORECASE),
    re.compile(r"(?<![\w.])(?P<n>\d{1,3})\s*(?P<u>yo|y/o|y\.o\.?)(?![\w])", re.IGNORECASE),
    re.compile(rf"\b(?:aged?|age:)\s*(?P<n>\d{{1,3}}(?:\.\d)?)\s*(?:{_AGE_UNIT}\b)?", re.IGNORECASE),
    re.compile(
        rf"\b(?:baby|infant|son|daughter|child|toddler|newborn|kid|boy|girl|he|she)\s*(?:is|was|'s|’s|turned|just\s+turned)\s+"
        rf"(?:only\s+|just\s+|nearly\s+|almost\s+|about\s+)?(?P<n>\d{{1,3}}(?:\.\d)?)\s*{_AGE_UNIT}\b"
        r"(?!\s+(?:ago|post|after|since|pregnant|gestation|into|of\s+treatment|postpartum))",
        re.IGNORECASE,
    ),
    # "patient is 45," / "she's 3 and": a bare number after a person, ended by punctuation or a joining word.
    re.compile(
        r"\b(?:patient|pt|he|she|man|woman|lady|gentleman|husband|wife|partner|dad|mum|mom|father|mother|son|daughter|"
        r"child|boy|girl)\s*(?:is|'s|’s|aged)\s+(?:only\s+|just\s+)?(?P<n>\d{1,3})(?![.,]\d)(?=\s*(?:[,.;)]|$|\s+(?:and|with|who|has|but)\b))",
        re.IGNORECASE,
    ),
    # "72F", "72 M", "72f"; lower-case m only at the start ("30m" elsewhere is minutes or metres).
    re.compile(r"(?<![\w.])(?P<n>\d{1,3})\s?(?P<u>[FM])\b|(?<![\w.])(?P<n2>\d{1,3})(?P<u2>f)\b|^\s*(?P<n3>\d{1,3})(?P<u3>m)\b"),
]


@dataclass
class _Raw:
    """A value before plausibility and thresholds."""

    measure: Measure
    match: re.Match[str]
    value: float | None
    unit: str | None
    value2: float | None = None
    meter: str | None = None
    role: Literal["reading", "target"] = "reading"


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < b and a < span[1] for a, b in taken)


def _is_target(message: str, m: re.Match[str]) -> bool:
    # Same clause only: "target sats 88-92%, his sats are 85%" has one target and one reading.
    clause_start = max(message.rfind(c, 0, m.start()) for c in ".,;!?\n")
    before = message[max(clause_start + 1, m.start() - 30): m.start()]
    return bool(_TARGET_WORDS.search(before) or _TARGET_WORDS.search(m.groupdict().get("gap") or ""))


def _after_ok(message: str, m: re.Match[str], has_unit: bool) -> bool:
    """Not a date ("12/03/2024"), a time ("20:30"), a dose ("300 mg") or a duration ("2 weeks")."""
    rest = message[m.end():]
    if _DATE_OR_TIME_REST.match(rest):
        return False
    return has_unit or not _NOT_A_VITAL_UNIT.match(rest)


def _scan_labelled(message: str, question_like: bool, taken: list[tuple[int, int]]) -> Iterator[_Raw]:
    # Without a digit only a meter's "HI"/"LO" can be a value: most knowledge questions stop here.
    has_digit = _DIGIT.search(message) is not None
    passes = [_TIGHT] + ([_LOOSE] if question_like else [])
    for patterns in passes:
        for measure, pattern, needs_unit in patterns:
            if not has_digit and measure != "glucose":
                continue
            for m in pattern.finditer(message):
                if _overlaps(m.span(), taken):
                    continue
                raw = _raw_from(measure, m, message)
                if raw is None or (needs_unit and not raw.unit) or not _after_ok(message, m, bool(raw.unit)):
                    continue
                taken.append(m.span())
                yield raw


def _raw_from(measure: Measure, m: re.Match[str], message: str) -> _Raw | None:
    g = m.groupdict()
    role: Literal["reading", "target"] = "target" if _is_target(message, m) else "reading"
    unit = g.get("unit")
    if measure == "gcs" and g.get("e"):
        return _Raw(measure, m, float(int(g["e"]) + int(g["v"]) + int(g["m"])), None, role=role)
    if measure == "glucose" and g.get("meter"):
        return _Raw(measure, m, None, None, meter=g["meter"].upper(), role=role)
    if g.get("v1") is None:
        return None
    if measure == "spo2" and g["label"].lower() in ("oxygen", "o2") and _fio2(message, m, _num(g["v1"])):
        return None
    v2 = _num(g["v2"]) if g.get("v2") else None
    return _Raw(measure, m, _num(g["v1"]), unit, value2=v2, role=role)


def _fio2(message: str, m: re.Match[str], value: float) -> bool:
    """'on oxygen 40%', 'O2 28%' are inspired oxygen, not saturation; nobody types a saturation that low as 'oxygen'."""
    return value < 70 or _FIO2_BEFORE.search(message[max(0, m.start() - 6): m.start()]) is not None


def _scan_bare(message: str, taken: list[tuple[int, int]]) -> Iterator[_Raw]:
    for measure, pattern in _BARE if _DIGIT.search(message) else []:
        for m in pattern.finditer(message):
            if _overlaps(m.span(), taken) or not _after_ok(message, m, True):
                continue
            role: Literal["reading", "target"] = "target" if _is_target(message, m) else "reading"
            if measure == "gcs":
                taken.append(m.span())
                yield _Raw(measure, m, float(int(m["e"]) + int(m["v"]) + int(m["m"])), None, role=role)
                continue
            raw = _Raw(measure, m, _num(m.group("v1")), m.group("unit"), role=role)
            if measure == "blood_pressure":
                raw.value2 = _num(m.group("v2"))
                # A bare "x/y" is a pressure only if it looks like one (not "24/7", "1/2", "GCS 14/15").
                if raw.value is None or raw.value < 60 or raw.value2 < 30 or raw.value <= raw.value2:
                    continue
            elif measure == "temperature" and not _bare_temperature_ok(message, m, raw):
                continue
            taken.append(m.span())
            yield raw


def _bare_temperature_ok(message: str, m: re.Match[str], raw: _Raw) -> bool:
    """'38.6 degrees' and '102.4F' are temperatures; '30 degrees head up', '35 degrees outside' and '72F' are not."""
    sentence_start = max(message.rfind(c, 0, m.start()) for c in ".;!?\n") + 1
    sentence_end = min((i for i in (message.find(c, m.end()) for c in ".;!?\n") if i >= 0), default=len(message))
    if _AMBIENT.search(message[sentence_start:sentence_end]):
        return False
    value, unit = raw.value or 0.0, (raw.unit or "").strip().lower()
    fahrenheit = unit.endswith("f") or "fahrenheit" in unit or (value >= 77 and not unit.endswith("c"))
    if fahrenheit:
        # Below 95 a bare F is an age and sex ("72F"), left for the age reader.
        return 95 <= value <= 110
    if _TEMP_EXPLICIT_UNIT.search(unit) and "deg" not in unit:
        return 25 <= value <= 45
    return 35 <= value <= 43


def _scan_words(message: str, c: _Compiled, taken: list[tuple[int, int]]) -> Iterator[_Raw]:
    """Consciousness (ACVPU) and air/oxygen, for NEWS2."""
    tables: list[tuple[Measure, list[tuple[int, re.Pattern[str]]]]] = [
        ("consciousness", c.consciousness), ("oxygen", c.oxygen)
    ]
    for measure, table in tables:
        best: tuple[int, re.Match[str]] | None = None
        for level, pattern in table:
            for m in pattern.finditer(message):
                if _NEGATION.search(message[max(0, m.start() - 20): m.start()]) or _overlaps(m.span(), taken):
                    continue
                if best is None or level > best[0]:
                    best = (level, m)
        if best is not None:
            taken.append(best[1].span())
            yield _Raw(measure, best[1], None, None, value2=float(best[0]))


@dataclass(frozen=True)
class _Age:
    years: float | None
    text: str | None
    low: float
    high: float  # exclusive; equal to low for a stated age
    span: tuple[int, int] | None


_UNKNOWN_AGE = _Age(None, None, _ADULT_YEARS, float("inf"), None)


def _read_age(message: str, thresholds: VitalThresholds, c: _Compiled, taken: list[tuple[int, int]]) -> _Age:
    hits: list[tuple[int, _Age]] = []
    for pattern in _AGE_PATTERNS if _DIGIT.search(message) else []:
        for m in pattern.finditer(message):
            if _overlaps(m.span(), taken):
                continue
            g = m.groupdict()
            n = g.get("n") or g.get("n2") or g.get("n3")
            unit = (g.get("u") or g.get("u2") or g.get("u3") or "y").lower()
            if n is None:
                continue
            per = {"d": "day", "w": "week", "m": "month"}.get(unit[0], "year")
            per = "year" if unit in ("m", "f") or unit.startswith("y") else per
            per = "month" if unit.startswith("mo") or unit.startswith("mth") else per
            years = float(n) * _YEARS_PER[per]
            if years <= 125:
                hits.append((m.start(), _Age(years, m.group(0).strip(), years, years, m.span())))
    if hits:
        return min(hits, key=lambda h: h[0])[1]
    words = c.age_words
    w = words.search(message) if words is not None else None
    if w is not None:
        word = "".join(w.group(1).split()).lower()
        key = next(k for k in thresholds.age_words if k.replace(" ", "").lower() == word)
        low, high = thresholds.age_words[key]
        return _Age(None, w.group(0), low, high, w.span())
    return _UNKNOWN_AGE


def _question_only(message: str, c: _Compiled) -> bool:
    return (
        any(p.search(message) for p in c.asks)
        and any(p.search(message) for p in c.about_threshold)
        and not any(p.search(message) for p in c.person)
    )


# --------------------------------------------------------------------------------------------------
# Plausibility and units
# --------------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def _normalise(raw: _Raw, thresholds: VitalThresholds) -> tuple[float, float | None, str | None] | str:
    """(canonical value, diastolic, note), or why the value was rejected."""
    lo_hi = thresholds.plausible
    m, v, unit = raw.measure, raw.value, (raw.unit or "").strip().lower()

    def within(q: Quantity, x: float) -> bool:
        return lo_hi[q][0] <= x <= lo_hi[q][1]

    if m in ("consciousness", "oxygen"):
        return (raw.value2 or 0.0, None, None)
    if m == "glucose" and raw.meter is not None:
        above = raw.meter == "HI"
        value = thresholds.glucose_meter_hi if above else thresholds.glucose_meter_lo
        return (value, None, f"meter reads {raw.meter}: {'above' if above else 'below'} {_fmt(value)} mmol/L")
    assert v is not None
    if m == "blood_pressure":
        d = raw.value2
        if not within("systolic_bp", v) or (d is not None and (not within("diastolic_bp", d) or d >= v)):
            return f"BP {_fmt(v)}{'/' + _fmt(d) if d is not None else ''} is not a possible blood pressure"
        return (v, d, None if d is not None else "systolic only")
    if m == "temperature":
        if unit.endswith("f") or "fahrenheit" in unit or (not unit.endswith("c") and 77 <= v <= 113):
            c = (v - 32) * 5 / 9
            if within("temperature", c):
                return (round(c, 1), None, f"{_fmt(v)} °F = {_fmt(round(c, 1))} °C")
            return f"temperature {_fmt(v)} °F is not possible"
        if within("temperature", v):
            return (v, None, None)
        if within("temperature", v * 10):
            return f"temperature {_fmt(v)} is not possible (did you mean {_fmt(v * 10)}?)"
        return f"temperature {_fmt(v)} is not possible"
    if m == "glucose":
        mg = "mg" in unit or (not unit and v > thresholds.glucose_unitless_mg_dl_above)
        if "mmol" in unit or unit == "mm":
            if within("glucose", v):
                return (v, None, None)
            return f"glucose {_fmt(v)} mmol/L is not possible; probably mg/dL (= {_fmt(v / 18)} mmol/L)"
        if mg:
            mmol = round(v / 18, 1)
            if within("glucose", mmol):
                note = f"{_fmt(v)} mg/dL = {_fmt(mmol)} mmol/L" + ("" if unit else " (no unit: read as mg/dL)")
                return (mmol, None, note)
            return f"glucose {_fmt(v)} is not possible in mmol/L or mg/dL"
        return (v, None, None) if within("glucose", v) else f"glucose {_fmt(v)} is not possible"
    q = _QUANTITY_OF[m]
    if within(q, v):
        return (v, None, None)
    lo, hi = lo_hi[q]
    side = f"> {_fmt(hi)}" if v > hi else f"< {_fmt(lo)}"
    return f"{_NAME[m]} {_fmt(v)} is not possible ({_NAME[m]} {side})"


# --------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------


def _quantities(f: VitalFinding) -> dict[Quantity, float]:
    if f.measure == "blood_pressure":
        out: dict[Quantity, float] = {"systolic_bp": f.normalised}
        if f.diastolic is not None:
            out["diastolic_bp"] = f.diastolic
        return out
    return {_QUANTITY_OF[f.measure]: f.normalised}


def _age_fit(rule: AgeLimited, age: _Age) -> Literal["all", "part", "none"]:
    lo = rule.age_from if rule.age_from is not None else 0.0
    hi = rule.age_before if rule.age_before is not None else float("inf")
    if age.low == age.high:
        return "all" if lo <= age.low < hi else "none"
    if lo <= age.low and age.high <= hi:
        return "all"
    return "part" if age.low < hi and age.high > lo else "none"


def _cap(level: Level, fit: str, thresholds: VitalThresholds) -> Level:
    if fit == "part" and _RANK[level] > _RANK[thresholds.uncertain_age_level]:
        return thresholds.uncertain_age_level
    return level


def _band_text(quantity: str, bands: list[Band], i: int) -> str:
    whole = quantity in _WHOLE
    unit = CANONICAL_UNIT[quantity]
    unit = f" {unit}" if unit and unit != "/min" else ""
    if i == 0:
        return f"≤ {_fmt(bands[0].upto or 0)}{unit}"
    prev = bands[i - 1].upto or 0
    if bands[i].upto is None:
        return (f"≥ {_fmt(prev + 1)}" if whole else f"> {_fmt(prev)}") + unit
    return (f"{_fmt(prev + 1)}–{_fmt(bands[i].upto or 0)}" if whole else f"{_fmt(prev)}–{_fmt(bands[i].upto or 0)}") + unit


def _news2_points(quantity: News2Parameter, value: float, cfg: News2Config) -> tuple[int, str]:
    bands = cfg.bands[quantity]
    for i, band in enumerate(bands):
        if band.upto is None or value <= band.upto:
            return band.points, _band_text(quantity, bands, i)
    raise AssertionError("the last band has no upto")  # the validator guarantees it


def _value_text(quantity: str, value: float, f: VitalFinding) -> str:
    if quantity == "consciousness":
        return f"consciousness {f.category}"
    if quantity == "oxygen":
        return f"on {f.category}"
    unit = {"/min": "", "/15": "/15"}.get(CANONICAL_UNIT[quantity], f" {CANONICAL_UNIT[quantity]}")
    return f"{_NAME[quantity]} {_fmt(value)}{unit}"


def _apply_rules(
    findings: list[VitalFinding], age: _Age, thresholds: VitalThresholds, c: _Compiled
) -> dict[str, tuple[Level | None, VitalFinding, Quantity]]:
    fired: dict[str, tuple[Level | None, VitalFinding, Quantity]] = {}
    for f in findings:
        if f.role != "reading":
            continue
        explained: set[str] = set()
        for quantity, value in _quantities(f).items():
            for rule in c.rules_for[quantity]:
                fit = _age_fit(rule, age)
                if fit == "none":
                    continue
                limit = rule.value + rule.plus_per_year * (age.low if age.years is None else age.years)
                if not _OPS[rule.op](value, limit):
                    continue
                level = _cap(rule.level, fit, thresholds) if rule.level is not None else None
                fired.setdefault(rule.id, (level, f, quantity))
                f.rules.append(rule.id)
                # Rules are listed most severe first; the reason names only the first per quantity.
                if _RANK[level] > _RANK[f.level] or quantity not in explained:
                    age_note = ", age not given" if fit == "part" else ""
                    f.reason = _join(f.reason, f"{_value_text(quantity, value, f)}: {rule.label}{age_note}")
                    explained.add(quantity)
                f.level = _max_level(f.level, level)
    return fired


def _apply_news2(findings: list[VitalFinding], age: _Age, thresholds: VitalThresholds) -> tuple[int | None, int, list[VitalFinding]]:
    cfg = thresholds.news2
    if age.low < cfg.age_from:
        return None, 0, []
    best: dict[News2Parameter, tuple[int, VitalFinding]] = {}
    for f in findings:
        if f.role != "reading":
            continue
        values: dict[News2Parameter, float] = {}
        for quantity, value in _quantities(f).items():
            if (parameter := _NEWS2_OF.get(quantity)) is not None:
                values[parameter] = value
        if f.measure == "gcs":
            values["consciousness"] = 0.0 if f.normalised >= 15 else 1.0
        for quantity, value in values.items():
            points, band = _news2_points(quantity, value, cfg)
            f.points = max(f.points or 0, points)
            if points:
                tag = "NEWS2 red" if points >= cfg.single_red_points else f"NEWS2 {points}"
                shown = _value_text(quantity, value, f) if f.measure != "gcs" else f"GCS {_fmt(f.normalised)} < 15, scored as new confusion"
                comparison = "" if quantity in ("consciousness", "oxygen") or f.measure == "gcs" else f" {band}"
                f.reason = _join(f"{shown}{comparison}, {tag}", f.reason)
            if quantity not in best or points > best[quantity][0]:
                best[quantity] = (points, f)
        if f.points is not None and f.points >= cfg.single_red_points:
            f.level = _max_level(f.level, cfg.single_red_level)
    if not best:
        return None, 0, []
    return sum(p for p, _ in best.values()), len(best), [f for p, f in best.values() if p]


def _apply_combinations(
    message: str, findings: list[VitalFinding], fired: dict[str, tuple[Level | None, VitalFinding, Quantity]], age: _Age,
    thresholds: VitalThresholds, c: _Compiled,
) -> list[tuple[Combination, Level, list[VitalFinding]]]:
    readings = [f for f in findings if f.role == "reading"]
    out: list[tuple[Combination, Level, list[VitalFinding]]] = []

    def holding(c: Condition) -> list[VitalFinding]:
        return [f for f in readings if (v := _quantities(f).get(c.measure)) is not None and _OPS[c.op](v, c.value)]

    for combo in thresholds.combinations:
        fit = _age_fit(combo, age)
        if fit == "none":
            continue
        used: list[VitalFinding] = []
        ok = True
        for cond in combo.all_of:
            hits = holding(cond)
            ok, used = ok and bool(hits), used + hits[:1]
        if combo.any_of:
            hits = [f for cond in combo.any_of for f in holding(cond)]
            ok, used = ok and bool(hits), used + hits[:1]
        if combo.phrases:
            ok = ok and all(_found(p, message) for p in c.phrases[combo.id])
        if combo.tagged is not None:
            tagged = {(q, id(f)): f for rid, (_, f, q) in fired.items() if _rule(thresholds, rid).tag == combo.tagged}
            ok = ok and len({q for q, _ in tagged}) >= (combo.at_least or 1)
            used += list(tagged.values())
        if ok:
            out.append((combo, _cap(combo.level, fit, thresholds), list({id(f): f for f in used}.values())))
    return out


def _rule(thresholds: VitalThresholds, rule_id: str) -> ThresholdRule:
    return next(r for r in thresholds.rules if r.id == rule_id)


def _max_level(a: Level | None, b: Level | None) -> Level | None:
    return a if _RANK[a] >= _RANK[b] else b


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a and b else a or b


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def read_vitals(message: str, thresholds: VitalThresholds) -> VitalsReport:
    """Parse the vital signs in `message` and apply `thresholds`. Never raises on odd input."""
    c = thresholds._compiled  # once: pydantic's private-attribute lookup is slow on a hot path
    question_only = _question_only(message, c)
    taken: list[tuple[int, int]] = []
    raws = list(_scan_labelled(message, question_only, taken))
    raws += _scan_bare(message, taken)
    raws += _scan_words(message, c, taken)
    age = _read_age(message, thresholds, c, taken)

    findings: list[VitalFinding] = []
    rejected: list[RejectedValue] = []
    for raw in sorted(raws, key=lambda r: r.match.start()):
        for item in _to_findings(raw, thresholds):
            if isinstance(item, VitalFinding):
                findings.append(item)
            else:
                rejected.append(item)

    if question_only and _TARGET_WORDS.search(message):
        # "What BP target for over-80s, 150/90?": in a question about a target every number is one.
        for f in findings:
            f.role = "target"
    fired = _apply_rules(findings, age, thresholds, c)
    news2, n_params, news2_findings = _apply_news2(findings, age, thresholds)
    combos = _apply_combinations(message, findings, fired, age, thresholds, c)

    level: Level | None = None
    matched = list(fired)
    for lvl, _, _ in fired.values():
        level = _max_level(level, lvl)
    news2_level: Level | None = None
    if news2 is not None:
        cfg = thresholds.news2
        news2_level = "emergent" if news2 >= cfg.emergent_at else "urgent" if news2 >= cfg.urgent_at else None
        if any((f.points or 0) >= cfg.single_red_points for f in news2_findings):
            news2_level = _max_level(news2_level, cfg.single_red_level)
            matched.append("news2_single_red")
        if news2 >= cfg.urgent_at:
            matched.append("news2_aggregate_emergent" if news2 >= cfg.emergent_at else "news2_aggregate_urgent")
        level = _max_level(level, news2_level)
    for combo, lvl, _ in combos:
        level = _max_level(level, lvl)
        matched.append(combo.id)

    return VitalsReport(
        findings=findings,
        rejected=rejected,
        age_years=age.years,
        age_text=age.text,
        age_range_years=(age.low, age.high) if age.text is not None and age.years is None else None,
        news2=news2,
        news2_parameters=n_params,
        matched_rules=matched,
        level=level,
        explanation=_explain(findings, news2, n_params, news2_level, combos, level, age),
        question_only=question_only,
    )


def _to_findings(raw: _Raw, thresholds: VitalThresholds) -> list[VitalFinding | RejectedValue]:
    m = raw.match
    text, start, end = m.group(0), m.start(), m.end()
    values: list[float | None] = [raw.value] if raw.measure == "blood_pressure" or raw.value2 is None or raw.value is None else [raw.value, raw.value2]
    if raw.measure in ("consciousness", "oxygen"):
        values = [None]
    out: list[VitalFinding | RejectedValue] = []
    for v in values:
        one = _Raw(raw.measure, m, v, raw.unit, raw.value2 if raw.measure in ("blood_pressure", "consciousness", "oxygen") else None,
                   raw.meter, raw.role)
        result = _normalise(one, thresholds)
        if isinstance(result, str):
            out.append(RejectedValue(measure=raw.measure, text=text, start=start, end=end, note=result))
            continue
        normalised, diastolic, note = result
        category = raw.meter
        if raw.measure == "consciousness":
            category = _ACVPU[int(normalised)]
        elif raw.measure == "oxygen":
            category = "oxygen" if normalised else "air"
        out.append(VitalFinding(
            value=v, unit=raw.unit.strip() if raw.unit else None, normalised=normalised,
            canonical_unit=CANONICAL_UNIT[raw.measure], diastolic=diastolic, category=category, role=raw.role,
            note=note, measure=raw.measure, text=text, start=start, end=end,
        ))
    return out


def _explain(
    findings: list[VitalFinding], news2: int | None, n_params: int, news2_level: Level | None,
    combos: list[tuple[Combination, Level, list[VitalFinding]]], level: Level | None, age: _Age,
) -> str:
    if not findings:
        return ""
    shown = [f for f in findings if f.level is not None or f.rules or (news2_level is not None and f.points)]
    parts = [f"'{f.text}' ({f.reason})" for f in shown]
    # "possible DKA" makes "at risk of DKA" redundant: show the combinations at the highest level only.
    top = max((_RANK[lvl] for _, lvl, _ in combos), default=0)
    parts += [combo.label for combo, lvl, _ in combos if _RANK[lvl] == top]
    text = "vital signs: " + (" + ".join(parts) if parts else "nothing above a threshold")
    if news2 is not None:
        text += f"; NEWS2 {news2} from {n_params} of 7 parameters"
    if age.text is not None:
        text += f"; age from '{age.text}'"
    return text + (f" → {level}" if level else "")
