"""The hook where escalation and refusal rules plug into the answer pipeline.

The pipeline calls `SafetyRules.check` before retrieval and honours its decision: an escalation is
prefixed to whatever follows and wins over every refusal; a refusal without escalation stops the
pipeline. `core.safety.rules.RuleSet` is the real implementation (rules in `data/rules/*.yaml`).
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field

from core.answers import Escalation, Refusal


class RuleMatch(BaseModel):
    """Why one rule fired, in the user's own words."""

    rule: str
    kind: Literal["escalate", "refuse", "clarify", "injection"]
    triggers: list[str] = Field(default_factory=list, description="Substrings of the original message that matched.")
    spans: list[tuple[int, int]] = Field(default_factory=list, description="[start, end) of each trigger in the message.")
    explanation: str = Field(default="", description="\"<rule description>: 'a' + 'b'\"")


class SafetyDecision(BaseModel):
    escalation: Escalation | None = None
    refusal: Refusal | None = None
    rule_set_version: str = "none"
    clarify: str | None = Field(
        default=None, description="A clarifying question (also given as a 'needs_clarification' refusal)."
    )
    injection: bool = Field(
        default=False, description="The message tries to change instructions; it is still treated as data."
    )
    pii: list[str] = Field(default_factory=list, description="Kinds of patient identifiers found, for a UI warning.")
    matched_rules: list[str] = Field(default_factory=list, description="Ids of every rule that fired.")
    matches: list[RuleMatch] = Field(default_factory=list, description="Each fired rule with its triggers, in rule order.")


class SafetyRules(Protocol):
    def check(self, message: str) -> SafetyDecision: ...


class NoSafetyRules:
    """No rules loaded: every message passes. Recorded as rule set 'none' on each answer."""

    def check(self, message: str) -> SafetyDecision:
        return SafetyDecision()
