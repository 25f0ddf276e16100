"""The hook where escalation and refusal rules plug into the answer pipeline.

The rules themselves (red flags, scope, unsafe requests) are a separate piece of work; the
pipeline already calls `SafetyRules.check` before retrieval and honours its decision, so
escalation will take precedence over everything once rules are loaded.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from core.answers import Escalation, Refusal


class SafetyDecision(BaseModel):
    escalation: Escalation | None = None
    refusal: Refusal | None = None
    rule_set_version: str = "none"


class SafetyRules(Protocol):
    def check(self, message: str) -> SafetyDecision: ...


class NoSafetyRules:
    """No rules loaded: every message passes. Recorded as rule set 'none' on each answer."""

    def check(self, message: str) -> SafetyDecision:
        return SafetyDecision()
