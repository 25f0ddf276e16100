"""Escalation, refusal and clarification rules: YAML files validated by pydantic, compiled once,
checked against every message before retrieval.

The vocabulary (synonyms, negation words, history and presentation cues, misspellings) is data in
`data/rules/*.yaml`; this module only knows how to combine it. docs/safety.md describes the format.

A rule fires when one of its `match` clauses holds. A clause is a list of groups that must all be
found in the message (co-occurrence); a group is a phrase, a `re:` regex, an `@name` synonym set, or
a list of those (any one). A hit does not count when it is negated ("no chest pain", "denies
seizures") or historical ("stroke in 2015") without a current cue ("now", "again") in its sentence.
Escalation rules additionally need a presentation cue ("my father has", "I am", "6 week old") so
that a clinician's knowledge question ("what are the ECG criteria for STEMI?") is not escalated.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import string
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.answers import Escalation, Refusal
from core.errors import CQAError
from core.pii import find_identifiers
from core.safety import SafetyDecision
from core.settings import REPO_ROOT, Settings

BUNDLED_RULES_DIR = REPO_ROOT / "data" / "rules"
CONFIG_FILE = "config.yaml"
SAFETY_CASES = REPO_ROOT / "tests" / "data" / "safety_cases.jsonl"
Expect = Literal["emergent", "urgent", "answer", "refuse", "clarify"]
_PLACEHOLDERS = frozenset({"emergency_number", "crisis_line"})


class RuleError(CQAError):
    """A rule file is invalid; the message names the file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --------------------------------------------------------------------------------------------------
# Models (what the YAML may say)
# --------------------------------------------------------------------------------------------------

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
    fuzzy_terms: list[str] = Field(default_factory=list, description="Key words matched with difflib.")
    fuzzy_ratio: float = Field(default=0.85, ge=0.5, le=1.0)
    fuzzy_min_length: int = Field(default=5, ge=3)
    synonyms: dict[str, list[str]] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Loading with line numbers
# --------------------------------------------------------------------------------------------------


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the deepest YAML node that `loc` (a pydantic error location) reaches."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == key), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _rule_id(node: yaml.Node | None, loc: tuple[int | str, ...]) -> str | None:
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(node, yaml.MappingNode):
        return None
    rules = next((v for k, v in node.value if k.value == "rules"), None)
    if not isinstance(rules, yaml.SequenceNode) or not isinstance(loc[1], int) or loc[1] >= len(rules.value):
        return None
    rule = rules.value[loc[1]]
    if isinstance(rule, yaml.MappingNode):
        return next((str(v.value) for k, v in rule.value if k.value == "id" and isinstance(v, yaml.ScalarNode)), None)
    return None


def _describe(err: Any) -> str:
    if err["type"] == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return "must be " + "|".join(re.findall(r"'([^']*)'", expected))
    return str(err["msg"]).removeprefix("Value error, ")


def _parse(name: str, text: str, model: type[BaseModel]) -> tuple[BaseModel | None, yaml.Node | None, list[str]]:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        return None, None, [f"{name} line {line}: not valid YAML: {getattr(exc, 'problem', exc)}"]
    try:
        return model.model_validate(data or {}), node, []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("str", "list[str]")))
            rule = _rule_id(node, loc)
            field_name = ".".join(str(p) for p in loc[2:] if isinstance(p, str)) if rule is not None else ".".join(map(str, loc))
            where = f"rule {rule!r}: " if rule is not None else ""
            problems.append(f"{name} line {_line_of(node, loc)}: {where}{field_name + ' ' if field_name else ''}{_describe(err)}")
        return None, node, problems


# --------------------------------------------------------------------------------------------------
# Text normalisation and matching
# --------------------------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": '"', "”": '"', "–": "-", "—": "-"})
_BOUNDARY = re.compile(r"(?<!\d)[.](?!\d)|[,;:!?()\"\[\]]|\s-\s|\s-$|^-\s")
_HYPHEN = re.compile(r"(?<=[a-z])-(?=[a-z])")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[a-z][a-z']+")
_CLAUSE_END = re.compile(r" [.,;:!?()] | but | however | although ")


def basic_normalise(text: str) -> str:
    """Lowercase, unify quotes, split punctuation into its own tokens, collapse spaces."""
    text = text.translate(_APOSTROPHES).lower()
    text = _HYPHEN.sub(" ", text)
    text = _BOUNDARY.sub(lambda m: f" {m.group().strip() or ','} ", text)
    return " " + _SPACES.sub(" ", text).strip() + " "


def _phrase_regex(phrase: str) -> str:
    if phrase.startswith("re:"):
        return f"(?:{phrase[3:]})"
    words = basic_normalise(phrase).split()
    body = r"\s+".join(re.escape(w).replace(r"\*", r"[\w']*") for w in words)
    return rf"(?<![\w']){body}(?![\w'])"


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int


@dataclass
class _Matcher:
    regex: re.Pattern[str]

    def hits(self, text: str) -> list[_Hit]:
        return [_Hit(m.start(), m.end()) for m in self.regex.finditer(text)]


@dataclass
class _CompiledRule:
    rule: Rule
    clauses: list[list[_Matcher]]
    unless: _Matcher | None
    message: str


@dataclass
class _Context:
    """Per-message precomputations shared by all rules."""

    text: str
    negation_before: re.Pattern[str]
    negation_after: re.Pattern[str]
    window: int
    history: list[_Hit]
    current: list[_Hit]
    presentation: bool
    clauses: list[tuple[int, int]] = field(default_factory=list)


def _spans(text: str, boundary: re.Pattern[str]) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in boundary.finditer(text):
        out.append((start, m.start() + 1))
        start = m.end() - 1
    out.append((start, len(text)))
    return out


# --------------------------------------------------------------------------------------------------
# The rule set
# --------------------------------------------------------------------------------------------------


class CaseResult(BaseModel):
    id: str
    message: str
    expect: str
    got: str
    passed: bool
    cls: str = Field(default="", description="Safety-set class, or the rule id for a rule example.")
    rules: list[str] = Field(default_factory=list, description="Rules that fired.")


class SafetyCase(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: str
    message: str
    expect: Expect
    cls: str = Field(alias="class")


class RuleSet:
    """Compiled rules; implements the `SafetyRules` protocol."""

    def __init__(self, config: RulesConfig, rules: list[Rule], synonyms: dict[str, list[str]], version: str,
                 sources: dict[str, str]) -> None:
        self.config = config
        self.rules = rules
        self.version = version
        self.sources = sources
        self._synonyms = synonyms
        self._compiled = [self._compile(r) for r in rules]
        c = config
        self._misspell = {basic_normalise(k).strip(): basic_normalise(v).strip() for k, v in c.misspellings.items()}
        self._fuzzy_terms = sorted({t.lower() for t in c.fuzzy_terms})
        self._fuzzy_cache: dict[str, str] = {}
        # A word the rules themselves use is never "corrected" into another ("poison" → "poisoned").
        self._vocabulary = self._words()
        self._neg_before = self._alternation(c.negation_before)
        self._neg_after = self._alternation(c.negation_after)
        self._history = _Matcher(self._alternation(c.history_cues))
        self._current = _Matcher(self._alternation(c.current_cues))
        self._presentation = self._alternation(c.presentation_cues)
        self._knowledge = self._alternation(c.knowledge_cues)
        self._generic = self._alternation(c.generic_subjects)

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Path) -> RuleSet:
        """Read `config.yaml` and every other `*.yaml` in `folder`; raises `RuleError` naming file and line."""
        return cls.from_sources(read_sources(folder))

    @classmethod
    def from_sources(cls, sources: dict[str, str]) -> RuleSet:
        """Build from {file name: YAML text}; the file named config.yaml holds the settings."""
        problems: list[str] = []
        config = RulesConfig()
        synonyms: dict[str, list[str]] = {}
        parsed_files: list[tuple[str, yaml.Node | None, RuleFile]] = []
        for name, text in sources.items():
            is_config = Path(name).name == CONFIG_FILE
            parsed, node, errs = _parse(name, text, RulesConfig if is_config else RuleFile)
            problems += errs
            if isinstance(parsed, RulesConfig):
                config = parsed
                synonyms.update(parsed.synonyms)
            elif isinstance(parsed, RuleFile):
                parsed_files.append((name, node, parsed))
                for key, values in parsed.synonyms.items():
                    if key in synonyms:
                        problems.append(f"{name} line {_line_of(node, ('synonyms', key))}: synonym set {key!r} defined twice")
                    synonyms[key] = values
        rules: list[Rule] = []
        for name, node, rule_file in parsed_files:
            for i, rule in enumerate(rule_file.rules):
                rules.append(rule)
                problems += _check_rule(name, node, i, rule, synonyms, config)
        counts = Counter(r.id for r in rules)
        problems += [f"rule id {rid!r} is used {n} times" for rid, n in counts.items() if n > 1]
        if problems:
            raise RuleError(problems)
        # Hashed by file name, not path: the bundled rules and an unedited data-folder copy share a version.
        named = sorted((Path(n).name, text) for n, text in sources.items())
        digest = hashlib.sha256("".join(f"{n}\n{text}" for n, text in named).encode()).hexdigest()[:10]
        version = f"{config.version}-{digest}" if config.version else digest
        return cls(config, rules, synonyms, version, dict(sources))

    def _alternation(self, phrases: list[str]) -> re.Pattern[str]:
        if not phrases:
            return re.compile(r"(?!x)x")
        return re.compile("|".join(_phrase_regex(p) for p in self._expand(phrases)))

    def _expand(self, phrases: list[str]) -> list[str]:
        out: list[str] = []
        for p in phrases:
            out += self._synonyms[p[1:]] if p.startswith("@") else [p]
        return out

    def _words(self) -> frozenset[str]:
        phrases = [p for values in self._synonyms.values() for p in values]
        phrases += [p for r in self.rules for clause in r.match for g in clause for p in (g if isinstance(g, list) else [g])]
        c = self.config
        phrases += c.negation_before + c.negation_after + c.history_cues + c.current_cues + c.presentation_cues + c.generic_subjects
        phrases += list(c.misspellings.values()) + c.fuzzy_terms
        return frozenset(w.rstrip("*") for p in phrases if not p.startswith(("re:", "@")) for w in basic_normalise(p).split())

    def _compile(self, rule: Rule) -> _CompiledRule:
        clauses = [[_Matcher(self._alternation(g if isinstance(g, list) else [g])) for g in clause] for clause in rule.match]
        unless = _Matcher(self._alternation(rule.unless)) if rule.unless else None
        values = {"emergency_number": self.config.emergency_number, "crisis_line": self.config.crisis_line}
        return _CompiledRule(rule, clauses, unless, rule.message.format_map(values).strip())

    # -- checking -----------------------------------------------------------------------------
    def normalise(self, message: str) -> str:
        """Basic normalisation, then the misspelling map, then fuzzy matching of key words."""
        text = basic_normalise(message)
        for wrong, right in self._misspell.items():
            if wrong in text:
                text = re.sub(rf"(?<![\w']){re.escape(wrong)}(?![\w'])", right, text)
        return _WORD.sub(lambda m: self._fuzzy(m.group()), text)

    def _fuzzy(self, word: str) -> str:
        if len(word) < self.config.fuzzy_min_length or not self._fuzzy_terms or word in self._vocabulary:
            return word
        if word not in self._fuzzy_cache:
            close = difflib.get_close_matches(word, self._fuzzy_terms, n=1, cutoff=self.config.fuzzy_ratio)
            if len(self._fuzzy_cache) > 50_000:
                self._fuzzy_cache.clear()
            # An inflection ("collapse" / "collapsed") is a different word, not a misspelling.
            inflection = bool(close) and (close[0].startswith(word) or word.startswith(close[0]))
            self._fuzzy_cache[word] = close[0] if close and not inflection else word
        return self._fuzzy_cache[word]

    def _is_presentation(self, text: str) -> bool:
        # Missing a red flag is worse than escalating a question: only a message that reads as a
        # guideline question (and describes nobody) is spared.
        if self._presentation.search(self._generic.sub(" ", text)):
            return True
        return not (self.config.knowledge_cues and self._knowledge.search(text))

    def check(self, message: str) -> SafetyDecision:
        text = self.normalise(message)
        ctx = _Context(
            text=text, negation_before=self._neg_before, negation_after=self._neg_after,
            window=self.config.negation_window, history=self._history.hits(text), current=self._current.hits(text),
            presentation=self._is_presentation(text), clauses=_spans(text, _CLAUSE_END),
        )
        fired = [c for c in self._compiled if _fires(c, ctx)]
        decision = SafetyDecision(rule_set_version=self.version, matched_rules=[c.rule.id for c in fired])
        decision.pii = sorted({i.kind for i in find_identifiers(message)})
        escalations = [c for c in fired if c.rule.kind == "escalate"]
        if escalations:
            top = min(escalations, key=lambda c: 0 if c.rule.level == "emergent" else 1)
            assert top.rule.level is not None
            decision.escalation = Escalation(level=top.rule.level, rule=top.rule.id, message=top.message)
        refusals = [c for c in fired if c.rule.kind == "refuse"]
        if refusals:
            top = min(refusals, key=lambda c: 0 if c.rule.reason == "unsafe" else 1)
            assert top.rule.reason is not None
            decision.refusal = Refusal(reason=top.rule.reason, message=top.message)
        clarify = next((c for c in fired if c.rule.kind == "clarify"), None)
        if clarify is not None:
            decision.clarify = clarify.message
            if decision.refusal is None:
                decision.refusal = Refusal(reason="needs_clarification", message=clarify.message)
        decision.injection = any(c.rule.kind == "injection" for c in fired)
        return decision

    # -- testing ------------------------------------------------------------------------------
    def run_examples(self) -> list[CaseResult]:
        """Every rule's own examples: `match` must fire the rule, `no_match` must not."""
        results = []
        for rule in self.rules:
            for i, (msg, should) in enumerate(
                [(m, True) for m in rule.examples.match] + [(m, False) for m in rule.examples.no_match]
            ):
                fired = self.check(msg).matched_rules
                got = rule.id in fired
                results.append(CaseResult(
                    id=f"{rule.id}#{i + 1}", message=msg, expect="match" if should else "no_match",
                    got="match" if got else "no_match", passed=got == should, cls=rule.id, rules=fired,
                ))
        return results

    def evaluate(self, cases: list[SafetyCase]) -> SafetyReport:
        results = []
        for case in cases:
            decision = self.check(case.message)
            got = outcome(decision)
            results.append(CaseResult(
                id=case.id, message=case.message, expect=case.expect, got=got, passed=got == case.expect,
                cls=case.cls, rules=decision.matched_rules,
            ))
        return SafetyReport(results=results)


def read_sources(folder: Path) -> dict[str, str]:
    """{file as shown in errors: YAML text} for every rule file in `folder`."""
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RuleError([f"{folder}: no rule files (*.yaml) found"])
    return {_display(p): p.read_text(encoding="utf-8") for p in files}


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _check_rule(name: str, node: yaml.Node | None, i: int, rule: Rule, synonyms: dict[str, list[str]],
                config: RulesConfig) -> list[str]:
    problems = []
    groups: list[tuple[tuple[int | str, ...], Group]] = [
        (("rules", i, "match", c, g), grp) for c, clause in enumerate(rule.match) for g, grp in enumerate(clause)
    ]
    groups += [(("rules", i, "unless", u), p) for u, p in enumerate(rule.unless)]
    for loc, group in groups:
        for p in group if isinstance(group, list) else [group]:
            where = f"{name} line {_line_of(node, loc)}: rule {rule.id!r}:"
            if p.startswith("@") and p[1:] not in synonyms:
                problems.append(f"{where} unknown synonym set {p!r}")
            elif p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as exc:
                    problems.append(f"{where} bad regex {p[3:]!r}: {exc}")
    return problems


def _fires(c: _CompiledRule, ctx: _Context) -> bool:
    if c.rule.needs_presentation and not ctx.presentation:
        return False
    if c.unless is not None and c.unless.regex.search(ctx.text):
        return False
    return any(all(_found(m, c.rule, ctx) for m in clause) for clause in c.clauses)


def _found(m: _Matcher, rule: Rule, ctx: _Context) -> bool:
    for hit in m.hits(ctx.text):
        if rule.negatable and _negated(hit, ctx):
            continue
        if rule.historical and _historical(hit, ctx):
            continue
        return True
    return False


def _negated(hit: _Hit, ctx: _Context) -> bool:
    before = ctx.text[: hit.start]
    clause_start = max((m.end() - 1 for m in _CLAUSE_END.finditer(before)), default=0)
    window = " " + " ".join(before[clause_start:].split()[-ctx.window:]) + " " if ctx.window else " "
    if ctx.negation_before.search(window):
        return True
    after = ctx.text[hit.end:]
    clause_end = next((m.start() + 1 for m in _CLAUSE_END.finditer(after)), len(after))
    return bool(ctx.negation_after.search(" " + " ".join(after[:clause_end].split()[:2]) + " "))


def _historical(hit: _Hit, ctx: _Context) -> bool:
    start, end = next(((s, e) for s, e in ctx.clauses if s <= hit.start < e), (0, len(ctx.text)))

    def inside(hits: list[_Hit]) -> bool:
        return any(start <= h.start < end for h in hits)

    return inside(ctx.history) and not inside(ctx.current)


def outcome(decision: SafetyDecision) -> Expect:
    """The label a decision gets in the safety set."""
    if decision.escalation is not None:
        return decision.escalation.level
    if decision.refusal is not None and decision.refusal.reason in ("out_of_scope", "unsafe"):
        return "refuse"
    if decision.clarify:
        return "clarify"
    return "answer"


# --------------------------------------------------------------------------------------------------
# Evaluation on the safety set
# --------------------------------------------------------------------------------------------------


def load_cases(path: Path) -> list[SafetyCase]:
    return [SafetyCase.model_validate(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class SafetyReport(BaseModel):
    results: list[CaseResult]

    def _rate(self, num: int, den: int) -> float:
        return num / den if den else 0.0

    @property
    def missed_emergent(self) -> list[CaseResult]:
        return [r for r in self.results if r.expect == "emergent" and r.got != "emergent"]

    def metrics(self) -> dict[str, float]:
        esc = ("emergent", "urgent")
        r = self.results
        expected_esc = [x for x in r if x.expect in esc]
        predicted_esc = [x for x in r if x.got in esc]
        controls = [x for x in r if x.cls in ("control", "negated", "historical")]
        answerable = [x for x in r if x.expect == "answer"]
        refusals = [x for x in r if x.expect == "refuse"]
        return {
            "escalation_recall": self._rate(sum(x.got in esc for x in expected_esc), len(expected_esc)),
            "escalation_precision": self._rate(sum(x.expect in esc for x in predicted_esc), len(predicted_esc)),
            "level_accuracy": self._rate(sum(x.got == x.expect for x in expected_esc), len(expected_esc)),
            "missed_emergent": float(len(self.missed_emergent)),
            "over_escalation_controls": self._rate(sum(x.got in esc for x in controls), len(controls)),
            "refusal_accuracy": self._rate(sum(x.got == "refuse" for x in refusals), len(refusals)),
            "false_refusal_answerable": self._rate(sum(x.got != "answer" for x in answerable), len(answerable)),
            "accuracy": self._rate(sum(x.passed for x in r), len(r)),
        }

    def by_class(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for cls in sorted({x.cls for x in self.results}):
            xs = [x for x in self.results if x.cls == cls]
            got = Counter(x.got for x in xs)
            rows.append({"class": cls, "n": len(xs), "passed": sum(x.passed for x in xs),
                         "accuracy": round(self._rate(sum(x.passed for x in xs), len(xs)), 3),
                         **{k: got.get(k, 0) for k in ("emergent", "urgent", "answer", "refuse", "clarify")}})
        return rows

    def table(self) -> str:
        head = f"{'class':<14}{'n':>5}{'pass':>6}{'acc':>7}{'emerg':>7}{'urgent':>7}{'answer':>7}{'refuse':>7}{'clarify':>8}"
        lines = [head, "-" * len(head)]
        for row in self.by_class():
            lines.append(
                f"{row['class']!s:<14}{row['n']!s:>5}{row['passed']!s:>6}{row['accuracy']!s:>7}{row['emergent']!s:>7}"
                f"{row['urgent']!s:>7}{row['answer']!s:>7}{row['refuse']!s:>7}{row['clarify']!s:>8}"
            )
        lines.append("")
        lines += [f"{k:<28}{v:.3f}" if k != "missed_emergent" else f"{k:<28}{int(v)}" for k, v in self.metrics().items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Where the rules live
# --------------------------------------------------------------------------------------------------


def rules_dir(settings: Settings) -> Path:
    """The admin-edited copy under the data folder if there is one, else the bundled rules."""
    edited = settings.data_dir / "rules"
    return edited if (edited / CONFIG_FILE).is_file() else BUNDLED_RULES_DIR


def editable_rules_dir(settings: Settings) -> Path:
    """The data-folder copy, created from the bundled rules on first edit."""
    edited = settings.data_dir / "rules"
    if not (edited / CONFIG_FILE).is_file():
        edited.mkdir(parents=True, exist_ok=True)
        for f in sorted(BUNDLED_RULES_DIR.glob("*.yaml")):
            (edited / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return edited


def load_rules(settings: Settings) -> RuleSet:
    return RuleSet.load(rules_dir(settings))


def save_rule_file(settings: Settings, file_name: str, text: str) -> Path:
    """Validate the whole rule set with `text` as `file_name`, then write it atomically to the
    data-folder copy, keeping the previous version as `<file>.bak-<timestamp>`. Raises `RuleError`."""
    folder = editable_rules_dir(settings)
    sources = read_sources(folder)
    key = next((k for k in sources if Path(k).name == file_name), str(folder / file_name))
    RuleSet.from_sources({**sources, key: text})
    target = folder / Path(file_name).name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        shutil.copy2(target, target.with_name(f"{target.name}.bak-{stamp}"))
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target
