"""The emergency screen every message passes before anything else: three layers, each explainable.

1. **Rules** (`core.safety.rules`, `data/rules/*.yaml`): normalised phrase rules an admin edits.
2. **Vital signs** (`core.vitals`, `data/triage/vitals.yaml`): numbers people type, against published
   thresholds (NEWS2, paediatric limits, glucose, ketones, potassium, GCS).
3. **Learned classifier** (`core.emergency_classifier`, `data/triage/classifier.json`): MiniLM
   embeddings + logistic regression trained on a team-written corpus of 88 emergency categories.

The first layer that escalates names itself, the words or values that triggered it and why
(`Escalation.layer`, `.triggers`, `.explanation`); refusals, clarifications and identifier warnings
still come from the rules. A guideline question ("What is the first-line treatment for DKA?") is not an
emergency in front of someone: the rules' presentation cues decide that for the classifier too.
"""

from __future__ import annotations

import string
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.answers import Escalation
from core.errors import CQAError
from core.library.embedding import Embedder
from core.safety.decision import SafetyDecision
from core.safety.emergency_classifier import CLASSIFIER_FILE, EmergencyClassifier, EmergencyScreen
from core.safety.rule_files import rules_dir
from core.safety.rules import RuleSet
from core.safety.vitals import DEFAULT_VITALS_PATH, VitalThresholds, read_vitals
from core.settings import REPO_ROOT, Settings

SCREEN_CONFIG = REPO_ROOT / "data" / "triage" / "screen.yaml"
_PLACEHOLDERS = {"why", "emergency_number"}


class ScreenConfig(BaseModel):
    """`data/triage/screen.yaml`: which layers run and what an escalation from them says."""

    model_config = ConfigDict(extra="forbid")
    vitals: bool = Field(default=True, description="Run the vital-signs layer.")
    classifier: bool = Field(default=True, description="Run the learned classifier layer.")
    emergent_message: str = Field(min_length=10)
    urgent_message: str = Field(min_length=10)

    @field_validator("emergent_message", "urgent_message")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        used = {f for _, f, _, _ in string.Formatter().parse(value) if f}
        if used - _PLACEHOLDERS:
            raise ValueError(f"unknown placeholder(s) {sorted(used - _PLACEHOLDERS)}; allowed: {sorted(_PLACEHOLDERS)}")
        return " ".join(value.split())

    @classmethod
    def load(cls, path: Path = SCREEN_CONFIG) -> ScreenConfig:
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise CQAError(f"The emergency screen settings {path.name!r} are invalid: {exc}") from exc


class LayeredScreen:
    """Implements the `SafetyRules` protocol: rules, then vital signs, then the classifier."""

    def __init__(self, rules: RuleSet, config: ScreenConfig, vitals: VitalThresholds | None,
                 classifier: EmergencyScreen | None) -> None:
        self.rules = rules
        self.config = config
        self.vitals = vitals if config.vitals else None
        self.classifier = classifier if config.classifier else None
        layers = ["rules", *(["vitals"] if self.vitals else []), *(["classifier"] if self.classifier else [])]
        model = f"+clf-{classifier.model.version}" if self.classifier and classifier else ""
        self.version = f"{rules.version}{model}"
        self.layers = layers

    def check(self, message: str) -> SafetyDecision:
        decision = self.rules.check(message)
        decision.rule_set_version = self.version
        if decision.escalation:
            return decision
        escalation = self._vitals(message)
        if (escalation is None or escalation.level == "urgent") and self.classifier is not None:
            declined = decision.refusal is not None or decision.clarify is not None or decision.injection
            escalation = self._classify(message, declined) or escalation
        if escalation is None:
            return decision
        return decision.model_copy(update={
            "escalation": escalation, "matched_rules": [*decision.matched_rules, escalation.rule]})

    def _message(self, level: str, why: str) -> str:
        template = self.config.emergent_message if level == "emergent" else self.config.urgent_message
        return template.format(why=why, emergency_number=self.rules.config.emergency_number)

    def _vitals(self, message: str) -> Escalation | None:
        if self.vitals is None:
            return None
        report = read_vitals(message, self.vitals)
        if report.level is None or report.question_only:
            return None
        triggers = [f.text for f in report.findings if f.level]
        explanation = report.explanation or "vital signs: " + " + ".join(f"'{t}'" for t in triggers)
        return Escalation(level=report.level, rule="vital_signs", message=self._message(report.level, explanation),
                          layer="vitals", triggers=triggers, explanation=explanation)

    def _classify(self, message: str, declined: bool) -> Escalation | None:
        assert self.classifier is not None
        if self.rules.is_guideline_question(message):
            return None
        verdict = self.classifier.verdict(message, declined)
        if not verdict.escalate:
            return None
        topic = verdict.category.replace("_", " ")
        explanation = (f"learned classifier: '{verdict.trigger}' reads as an emergency happening now "
                       f"(probability {verdict.probability:.2f}; closest training category: {topic})")
        return Escalation(level="emergent", rule=f"classifier:{verdict.category}",
                          message=self._message("emergent", f"this reads like {topic}"), layer="classifier",
                          triggers=[verdict.trigger], explanation=explanation)


def screen_stamp(settings: Settings) -> str:
    """Changes whenever the screen would: a rules file edited, the classifier retrained (cheap: file
    names, sizes and times). UIs key their cached answer service on it."""
    files = [*sorted(rules_dir(settings).glob("*.yaml")), classifier_path(settings)]
    return "|".join(f"{p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in files if p.exists())


def classifier_path(settings: Settings) -> Path:
    """An admin's retrained head (in the data folder) wins over the shipped one."""
    local = settings.data_dir / "triage" / "classifier.json"
    return local if local.exists() else CLASSIFIER_FILE


def build_screen(settings: Settings, rules: RuleSet, embedder: Embedder | None) -> LayeredScreen:
    """The configured screen. The classifier runs only on the embedder it was trained with (a test's
    hashing embedder would make its scores meaningless)."""
    config = ScreenConfig.load()
    vitals = VitalThresholds.load(DEFAULT_VITALS_PATH) if config.vitals else None
    classifier = None
    if config.classifier and embedder is not None:
        model = EmergencyClassifier.load(classifier_path(settings))
        if model.embedder == embedder.name:
            if len(model.head.features) != embedder.dim + len(RuleSet.CUE_NAMES):
                raise CQAError("The emergency classifier was trained on other features than this version computes; "
                               "retrain it on the rules page or with: python -m core.emergency_classifier")
            classifier = EmergencyScreen(embedder, model, rules.cues)
    return LayeredScreen(rules, config, vitals, classifier)
