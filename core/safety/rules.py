"""Escalation, refusal and clarification rules: YAML files validated by pydantic, compiled once,
checked against every message before retrieval.

The vocabulary (synonyms, negation words, history and presentation cues, misspellings, irregular
word forms, common words) is data in `data/rules/*.yaml`; this module only knows how to combine it.
docs/safety.md describes the format.

A rule fires when one of its `match` clauses holds. A clause is a list of groups that must all be
found in the message (co-occurrence, possibly in different sentences); a group is a phrase, a `re:`
regex, an `@name` synonym set, or a list of those (any one). Phrases match on normalised text
(`core.rule_text`: misspellings fixed, every word stemmed), so "ending my life" finds "end my life".
Each hit is judged inside its own sentence: it does not count when negated ("no chest pain",
"denies seizures") or historical ("stroke in 2015") without a current cue ("now", "again").
Escalation hits also need their sentence to present someone ("my father has", "I am", "6 week old")
or not to read as a knowledge question, so that "what are the ECG criteria for STEMI?" is answered.
Every fired rule records its triggers: the matched words as the user wrote them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.answers import Escalation, Refusal
from core.errors import CQAError
from core.safety.decision import RuleMatch, SafetyDecision, SafetyRules
from core.safety.pii import find_identifiers
from core.safety.rule_text import (
    Sentence,
    SpellingFixer,
    basic_normalise,
    mapped_normalise,
    split_sentences,
    stem,
    words_of,
)
from core.settings import REPO_ROOT, Settings

BUNDLED_RULES_DIR = REPO_ROOT / "data" / "rules"
CONFIG_FILE = "config.yaml"
SAFETY_CASES = REPO_ROOT / "tests" / "data" / "safety_cases.jsonl"
Expect = Literal["emergent", "urgent", "answer", "refuse", "clarify"]
_PLACEHOLDERS = frozenset({"emergency_number", "crisis_line"})
# libyaml parses the rule files ~10x faster; the pure-Python loader gives the same nodes and lines.
_YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        node = yaml.compose(text, Loader=_YAML_LOADER)
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader, C-accelerated when available
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

_CLAUSE_END = re.compile(r" [.,;:!?()-] | but | however | although ")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[a-z][a-z']+")
# "*" between spaces in a rule phrase: up to three words ("can't lift * arm" finds "can't lift arm"
# and "can't lift his right arm"), never across punctuation.
_WILD = r"(?:[^\s,;:!?()\[\]\"-]+\s+){0,3}"
_NEVER = re.compile(r"(?!x)x")


def _phrase_regex(phrase: str) -> str:
    """A cue phrase on the surface text: "*" in a word is any ending, a lone "*" one word."""
    if phrase.startswith("re:"):
        return f"(?:{phrase[3:]})"
    words = basic_normalise(phrase).split()
    body = r"\s+".join(re.escape(w).replace(r"\*", r"[\w']*") for w in words)
    return rf"(?<![\w']){body}(?![\w'])"


def _stemmed_phrase_regex(phrase: str, to_stem: Callable[[str], str]) -> str:
    """A rule phrase on the stemmed text, so that "end my life" also finds "ending my life"."""
    body = ""
    for w in basic_normalise(phrase).split():
        if w == "*":
            body += _WILD
        elif w.endswith("*") and "*" not in w[:-1]:
            body += re.escape(to_stem(w[:-1])) + r"[\w']*\s+"
        else:
            body += re.escape(w if "*" in w else to_stem(w)).replace(r"\*", r"[\w']*") + r"\s+"
    body = body.removesuffix(r"\s+")
    return rf"(?<![\w']){body}(?![\w'])"


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int


@dataclass(frozen=True)
class _Found:
    """A hit that counts: sentence index and token range."""

    sentence: int
    first: int
    last: int


@dataclass
class _Matcher:
    """One group. Plain phrases run on the stemmed text, each only when its anchor word (its longest
    literal word) is in the sentence: running every phrase everywhere cost ~10x the time. `re:`
    patterns run on the surface text."""

    by_anchor: dict[str, list[re.Pattern[str]]]
    always: list[re.Pattern[str]]
    surface: re.Pattern[str] | None

    def hits(self, sentence: Sentence) -> Iterator[tuple[int, int]]:
        candidates = [rx for w in sorted(sentence.stem_words & self.by_anchor.keys()) for rx in self.by_anchor[w]]
        for rx in candidates + self.always:
            for m in rx.finditer(sentence.stemmed):
                yield sentence.tokens_at(m.start(), m.end(), stemmed=True)
        if self.surface is not None:
            for m in self.surface.finditer(sentence.surface):
                yield sentence.tokens_at(m.start(), m.end(), stemmed=False)


@dataclass
class _CompiledRule:
    rule: Rule
    clauses: list[list[_Matcher]]
    unless: _Matcher | None
    message: str


@dataclass
class _SentenceContext:
    """Negation, history and presentation are decided inside each sentence."""

    sentence: Sentence
    history: list[_Hit]
    current: list[_Hit]
    presentation: bool
    clauses: list[tuple[int, int]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.sentence.surface


@dataclass
class _Context:
    """Per-message precomputations shared by all rules."""

    sentences: list[_SentenceContext]
    negation_before: re.Pattern[str]
    negation_after: re.Pattern[str]
    window: int


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
        c = config
        self._lemmas = {k.lower(): v.lower() for k, v in c.lemmas.items()}
        self._no_stem = frozenset(w.lower() for w in c.never_stem)
        # Per-word caches are shared by every session's thread; single dict reads and writes are
        # atomic, and a lost write only means a word is stemmed twice.
        self._stems: dict[str, str] = {}
        self._regexes: dict[str, re.Pattern[str]] = {}
        self._compiled = [self._compile(r) for r in rules]
        self._misspell = [(wrong, re.compile(rf"(?<![\w']){re.escape(wrong)}(?![\w'])"), right) for wrong, right in (
            (basic_normalise(k).strip(), basic_normalise(v).strip()) for k, v in c.misspellings.items())]
        # A word the rules themselves use (or an inflection of one) is never "corrected" into another
        # ("poison" → "poisoned"), nor is a common English word ("main" → "pain").
        # Misspellings are corrected only towards the red-flag vocabulary (the escalation rules' words and
        # fuzzy_terms): a refusal or cue word as a target turns everyday words into others ("count" → "court").
        common = frozenset(w.lower() for w in c.common_words)
        known = self._words() | common
        red_flag_words = words_of(self._expand([p for r in rules if r.kind == "escalate" for clause in r.match
                                                for g in clause for p in (g if isinstance(g, list) else [g])]))
        self._spelling = SpellingFixer(
            targets=[w for w in red_flag_words | {t.lower() for t in c.fuzzy_terms}
                     if len(w) >= c.fuzzy_min_length and w.isalpha() and w not in common],
            known=frozenset(w for w in known if "*" not in w), known_stems=frozenset(self._stem(w.rstrip("*")) for w in known),
            known_prefixes=tuple(sorted(w.rstrip("*") for w in known if w.endswith("*"))), stem=self._stem,
            min_length=c.fuzzy_min_length, two_edits_from=c.fuzzy_two_edits_from,
        )
        self._neg_before = self._alternation(c.negation_before)
        self._neg_after = self._alternation(c.negation_after)
        self._history = self._alternation(c.history_cues)
        self._current = self._alternation(c.current_cues)
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
        """Cue phrases, matched on the surface text (not stemmed: "notes" must never read as "not")."""
        if not phrases:
            return _NEVER
        return re.compile("|".join(_phrase_regex(p) for p in self._expand(phrases)))

    def _matcher(self, phrases: list[str]) -> _Matcher:
        expanded = self._expand(phrases)
        buckets: dict[str, list[str]] = {}
        for p in dict.fromkeys(p for p in expanded if not p.startswith("re:")):
            literal = [self._stem(w) for w in basic_normalise(p).split() if "*" not in w]
            buckets.setdefault(max(literal, key=len) if literal else "", []).append(_stemmed_phrase_regex(p, self._stem))
        compiled = {anchor: [self._regex("|".join(sorted(patterns)))] for anchor, patterns in buckets.items()}
        regexes = [_phrase_regex(p) for p in expanded if p.startswith("re:")]
        return _Matcher(compiled, compiled.pop("", []), self._regex("|".join(regexes)) if regexes else None)

    def _regex(self, pattern: str) -> re.Pattern[str]:
        # Synonym sets recur across rules; compiling each pattern once halves the load time.
        if pattern not in self._regexes:
            self._regexes[pattern] = re.compile(pattern)
        return self._regexes[pattern]

    def _expand(self, phrases: list[str]) -> list[str]:
        out: list[str] = []
        for p in phrases:
            out += self._synonyms[p[1:]] if p.startswith("@") else [p]
        return out

    def _stem(self, word: str) -> str:
        if word not in self._stems:
            if len(self._stems) > 50_000:
                self._stems.clear()
            self._stems[word] = stem(word, self._lemmas, self._no_stem)
        return self._stems[word]

    def _words(self) -> frozenset[str]:
        """Every word the rule files use; wildcard words keep their "*" ("wheez*")."""
        phrases = [p for values in self._synonyms.values() for p in values]
        phrases += [p for r in self.rules for clause in r.match for g in clause for p in (g if isinstance(g, list) else [g])]
        phrases += [p for r in self.rules for p in r.unless]
        c = self.config
        phrases += c.negation_before + c.negation_after + c.history_cues + c.current_cues + c.presentation_cues + c.generic_subjects
        phrases += list(c.misspellings.values()) + c.fuzzy_terms + list(c.lemmas) + list(c.lemmas.values())
        return frozenset(words_of(phrases, keep_wildcards=True))

    def _compile(self, rule: Rule) -> _CompiledRule:
        clauses = [[self._matcher(g if isinstance(g, list) else [g]) for g in clause] for clause in rule.match]
        unless = self._matcher(rule.unless) if rule.unless else None
        values = {"emergency_number": self.config.emergency_number, "crisis_line": self.config.crisis_line}
        return _CompiledRule(rule, clauses, unless, rule.message.format_map(values).strip())

    # -- checking -----------------------------------------------------------------------------
    def normalise(self, message: str) -> str:
        """The message as the rules see it: basic normalisation, the misspelling map, then spelling
        tolerance for the rules' own words; one sentence per line."""
        return "\n".join(s.surface.strip() for s in self.sentences(message))

    def sentences(self, message: str) -> list[Sentence]:
        text = mapped_normalise(message)
        text = text.sub(_SPACES, lambda m: " ")
        # One entry at a time, in file order: "cant breath" → "can't breath" → "can't breathe".
        for wrong, regex, right in self._misspell:
            if wrong in text.text:
                text = text.sub(regex, _constant(right))
        tokens = []
        for tok, start, end in text.tokens():
            surface = self._spelling.fix(tok) if _WORD.fullmatch(tok) else tok
            tokens.append((surface, self._stem(surface), start, end))
        return split_sentences(tokens)

    def corrections(self, message: str) -> dict[str, str]:
        """{words as written: words the rules read} for every change made by the misspellings map or
        the spelling tolerance ("pian": "pain", "cant breath": "can't breathe")."""
        out = {}
        for s in self.sentences(message):
            words = s.surface.split()
            i = 0
            while i < len(words):
                j = i
                while j + 1 < len(words) and s.spans[j + 1] == s.spans[i]:
                    j += 1
                written = message[s.spans[i][0]:s.spans[i][1]]
                read = " ".join(words[i:j + 1])
                if basic_normalise(written).strip() != read:
                    out[written] = read
                i = j + 1
        return out

    def _presents(self, text: str) -> bool:
        return bool(self._presentation.search(self._generic.sub(" ", text)))

    def _context(self, message: str) -> _Context:
        sentences = self.sentences(message)
        own = [self._presents(s.surface) for s in sentences]
        anyone = any(own)
        contexts = []
        for s, presents in zip(sentences, own, strict=True):
            # Missing a red flag is worse than escalating a question: only a sentence that reads as a
            # guideline question, in a message that describes nobody, is spared. A person named in
            # one sentence carries to the others ("My dad is 70. Is chest pain and sweating serious?").
            knowledge = bool(self.config.knowledge_cues) and bool(self._knowledge.search(s.surface))
            contexts.append(_SentenceContext(
                sentence=s, history=_hits(self._history, s.surface), current=_hits(self._current, s.surface),
                presentation=presents or anyone or not knowledge, clauses=_spans(s.surface, _CLAUSE_END),
            ))
        return _Context(contexts, self._neg_before, self._neg_after, self.config.negation_window)

    CUE_NAMES = ("negation_cue", "history_cue", "current_cue", "presents_someone", "guideline_question", "question_mark")

    def cues(self, message: str) -> list[float]:
        """The message's cues in the rules' own vocabulary (config.yaml), as 0/1 features for the learned
        layer of the screen: an embedding barely tells "no chest pain" from "chest pain"."""
        text = basic_normalise(message)
        sentences = self._context(message).sentences
        return [
            float(bool(self._neg_before.search(text))), float(bool(self._history.search(text))),
            float(bool(self._current.search(text))),
            float(any(self._presents(c.sentence.surface) for c in sentences)),
            float(not any(c.presentation for c in sentences)), float(message.strip().endswith("?")),
        ]

    def is_guideline_question(self, message: str) -> bool:
        """The message reads as a question about guidance and presents nobody ("What is the first-line
        treatment for DKA?"): the learned layer of the screen does not escalate it (core.triage)."""
        return not any(c.presentation for c in self._context(message).sentences)

    def check(self, message: str) -> SafetyDecision:
        ctx = self._context(message)
        fired = [(c, clause) for c in self._compiled if (clause := _firing_clause(c, ctx)) is not None]
        matches = [self._match(c, clause, ctx, message) for c, clause in fired]
        decision = SafetyDecision(rule_set_version=self.version, matched_rules=[c.rule.id for c, _ in fired], matches=matches)
        decision.pii = sorted({i.kind for i in find_identifiers(message)})
        escalations = [(c, m) for (c, _), m in zip(fired, matches, strict=True) if c.rule.kind == "escalate"]
        if escalations:
            top, why = min(escalations, key=lambda x: 0 if x[0].rule.level == "emergent" else 1)
            assert top.rule.level is not None
            decision.escalation = Escalation(level=top.rule.level, rule=top.rule.id, message=top.message, layer="rules",
                                             triggers=why.triggers, explanation=why.explanation)
        refusals = [c for c, _ in fired if c.rule.kind == "refuse"]
        if refusals:
            top_refusal = min(refusals, key=lambda c: 0 if c.rule.reason == "unsafe" else 1)
            assert top_refusal.rule.reason is not None
            decision.refusal = Refusal(reason=top_refusal.rule.reason, message=top_refusal.message)
        clarify = next((c for c, _ in fired if c.rule.kind == "clarify"), None)
        if clarify is not None:
            decision.clarify = clarify.message
            if decision.refusal is None:
                decision.refusal = Refusal(reason="needs_clarification", message=clarify.message)
        decision.injection = any(c.rule.kind == "injection" for c, _ in fired)
        return decision

    def _match(self, c: _CompiledRule, clause: list[_Matcher], ctx: _Context, message: str) -> RuleMatch:
        """Every counted hit of the firing clause, as the user wrote it, in message order."""
        ranges = sorted({ctx.sentences[f.sentence].sentence.original_range(f.first, f.last)
                         for m in clause for f in _counted(m, c.rule, ctx)})
        merged: list[tuple[int, int]] = []
        for start, end in ranges:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        triggers = [message[a:b] for a, b in merged]
        label = c.rule.description.strip().rstrip(".") or c.rule.id.replace("_", " ")
        explanation = f"{label}: " + " + ".join(f"'{t}'" for t in triggers)
        return RuleMatch(rule=c.rule.id, kind=c.rule.kind, triggers=triggers, spans=merged, explanation=explanation)

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

    def evaluate(self, cases: list[SafetyCase], screen: SafetyRules | None = None) -> SafetyReport:
        """Score `cases` with these rules, or with a whole `screen` built on them (core.triage)."""
        results = []
        for case in cases:
            decision = (screen or self).check(case.message)
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


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _: value


def _hits(regex: re.Pattern[str], text: str) -> list[_Hit]:
    return [_Hit(m.start(), m.end()) for m in regex.finditer(text)]


def _firing_clause(c: _CompiledRule, ctx: _Context) -> list[_Matcher] | None:
    if c.rule.needs_presentation and not any(s.presentation for s in ctx.sentences):
        return None
    if c.unless is not None and any(True for s in ctx.sentences for _ in c.unless.hits(s.sentence)):
        return None
    return next((clause for clause in c.clauses if all(next(_counted(m, c.rule, ctx), None) for m in clause)), None)


def _counted(m: _Matcher, rule: Rule, ctx: _Context) -> Iterator[_Found]:
    """Hits of one group that count: in a presenting sentence (escalations), not negated, not past."""
    for n, sc in enumerate(ctx.sentences):
        if rule.needs_presentation and not sc.presentation:
            continue
        for first, last in m.hits(sc.sentence):
            hit = _Hit(*sc.sentence.surface_range(first, last))
            if rule.negatable and _negated(hit, sc, ctx):
                continue
            if rule.historical and _historical(hit, sc):
                continue
            yield _Found(n, first, last)


def _negated(hit: _Hit, sc: _SentenceContext, ctx: _Context) -> bool:
    before = sc.text[: hit.start]
    clause_start = max((m.end() - 1 for m in _CLAUSE_END.finditer(before)), default=0)
    window = " " + " ".join(before[clause_start:].split()[-ctx.window:]) + " " if ctx.window else " "
    if ctx.negation_before.search(window):
        return True
    after = sc.text[hit.end:]
    clause_end = next((m.start() + 1 for m in _CLAUSE_END.finditer(after)), len(after))
    return bool(ctx.negation_after.search(" " + " ".join(after[:clause_end].split()[:2]) + " "))


def _historical(hit: _Hit, sc: _SentenceContext) -> bool:
    start, end = next(((s, e) for s, e in sc.clauses if s <= hit.start < e), (0, len(sc.text)))

    def inside(hits: list[_Hit]) -> bool:
        return any(start <= h.start < end for h in hits)

    return inside(sc.history) and not inside(sc.current)



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
