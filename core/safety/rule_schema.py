"""What a rules file may say: the pydantic models of data/rules/*.yaml (rules, examples, the shared config)."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import CQAError
from core.settings import REPO_ROOT

BUNDLED_RULES_DIR = REPO_ROOT / "data" / "rules"
CONFIG_FILE = "config.yaml"
_PLACEHOLDERS = frozenset({"emergency_number", "crisis_line"})


class RuleError(CQAError):
    """A rule file is invalid; the message names the file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))



Group = str | list[str]


class Examples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: list[str] = Field(default_factory=list, description="Messages this rule must fire on.")
    no_match: list[str] = Field(default_factory=list, description="Messages this rule must not fire on.")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$", description="Recorded on escalated answers.")
    kind: Literal["escalate", "refuse", "clarify", "injection"]
    level: Literal["emergent", "urgent"] | None = Field(default=None, description="Escalations only.")
    reason: Literal["out_of_scope", "unsafe"] | None = Field(default=None, description="Refusals only.")
    description: str = ""
    match: list[list[Group]] = Field(min_length=1, description="Any clause; every group of a clause must be found.")
    unless: list[str] = Field(default_factory=list, description="Phrases that stop the rule (e.g. a stated weight).")
    presentation: bool | None = Field(default=None, description="Needs a presentation cue; default: escalations only.")
    negatable: bool = Field(default=True, description="Negated hits ('no chest pain') do not count.")
    historical: bool = Field(default=True, description="Past hits ('stroke in 2015') do not count without a current cue.")
    message: str = Field(default="", description="Shown to the clinician; may use {emergency_number} and {crisis_line}.")
    examples: Examples = Field(default_factory=Examples)

    @model_validator(mode="after")
    def _kind_fields(self) -> Rule:
        if self.kind == "escalate" and self.level is None:
            raise ValueError("level must be emergent|urgent for an escalation")
        if self.kind == "refuse" and self.reason is None:
            raise ValueError("reason must be out_of_scope|unsafe for a refusal")
        if self.kind != "injection" and not self.message.strip():
            raise ValueError("message is required")
        bad = {f for _, f, _, _ in string.Formatter().parse(self.message) if f} - _PLACEHOLDERS
        if bad:
            raise ValueError(f"message uses unknown placeholder(s) {sorted(bad)}; allowed: {sorted(_PLACEHOLDERS)}")
        return self

    @property
    def needs_presentation(self) -> bool:
        return self.kind == "escalate" if self.presentation is None else self.presentation

    @property
    def n_patterns(self) -> int:
        return sum(len(g) if isinstance(g, list) else 1 for clause in self.match for g in clause)


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    synonyms: dict[str, list[str]] = Field(default_factory=dict, description="Named phrase sets, used as @name.")
    rules: list[Rule] = Field(default_factory=list)


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, description="Optional label prefixed to the content hash.")
    emergency_number: str = Field(default="999", min_length=1)
    crisis_line: str = Field(default="Samaritans on 116 123 (free, 24 hours)", min_length=1)
    negation_window: int = Field(default=3, ge=0, le=10, description="Tokens before a hit searched for a negation.")
    negation_before: list[str] = Field(default_factory=list)
    negation_after: list[str] = Field(default_factory=list, description="Searched in the 2 tokens after a hit.")
    history_cues: list[str] = Field(default_factory=list)
    current_cues: list[str] = Field(default_factory=list)
    presentation_cues: list[str] = Field(default_factory=list)
    knowledge_cues: list[str] = Field(
        default_factory=list,
        description="A message matching one of these and no presentation cue is a guideline question, not a "
        "presentation. Any other message with red-flag features is treated as a presentation (safer default).",
    )
    generic_subjects: list[str] = Field(
        default_factory=list, description="Hypothetical people ('a patient with') removed before looking for presentation cues."
    )
    misspellings: dict[str, str] = Field(default_factory=dict, description="Token → correct word(s).")
    fuzzy_terms: list[str] = Field(
        default_factory=list, description="Extra words that misspellings are corrected to, besides the words the rules use."
    )
    fuzzy_ratio: float = Field(
        default=0.85, ge=0.5, le=1.0, description="Unused since spelling tolerance counts edits; kept so older copies load."
    )
    fuzzy_min_length: int = Field(
        default=4, ge=3, description="Shorter words are never corrected; words of exactly this length only for a swapped pair of letters."
    )
    fuzzy_two_edits_from: int = Field(
        default=10, ge=4, description="Words at least this long may be two edits from a rule word; shorter ones one."
    )
    common_words: list[str] = Field(
        default_factory=list, description="Everyday words never 'corrected' into a rule word ('main' is not 'pain')."
    )
    lemmas: dict[str, str] = Field(
        default_factory=dict, description="Irregular word forms → the form the stemmer gives ('swollen': 'swell')."
    )
    never_stem: list[str] = Field(default_factory=list, description="Words matched only as written, never stemmed.")
    synonyms: dict[str, list[str]] = Field(default_factory=dict)
