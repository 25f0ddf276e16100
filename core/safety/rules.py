"""Escalation, refusal and clarification rules: YAML files validated by pydantic, compiled once,
checked against every message before retrieval.

The vocabulary (synonyms, negation words, history and presentation cues, misspellings, irregular
word forms, common words) is data in `data/rules/*.yaml`; this module only knows how to combine it.
docs/safety.md describes the format.

A rule fires when one of its `match` clauses holds. A clause is a list of groups that must all be
found in the message (co-occurrence, possibly in different sentences); a group is a phrase, a `re:`
regex, an `@name` synonym set, or a list of those (any one). Phrases match on normalised text
(`core.safety.rule_text`: misspellings fixed, every word stemmed), so "ending my life" finds "end my life".
Each hit is judged inside its own sentence: it does not count when negated ("no chest pain",
"denies seizures") or historical ("stroke in 2015") without a current cue ("now", "again").
Escalation hits also need their sentence to present someone ("my father has", "I am", "6 week old")
or not to read as a knowledge question, so that "what are the ECG criteria for STEMI?" is answered.
Every fired rule records its triggers: the matched words as the user wrote them.

This module is the compiled `RuleSet`. The other jobs have their own modules: `rule_schema` (what a
file may say), `rule_loading` (YAML with line numbers), `rule_matching` (phrases found per sentence),
`safety_set` (scoring the screen on labelled messages), `rule_files` (where the files live, saving).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml

from core.answers import Escalation, Refusal
from core.safety.decision import RuleMatch, SafetyDecision, SafetyRules
from core.safety.pii import find_identifiers
from core.safety.rule_loading import _check_rule, _line_of, _parse, read_sources
from core.safety.rule_matching import (
    _CLAUSE_END,
    _NEVER,
    _SPACES,
    _WORD,
    _CompiledRule,
    _constant,
    _Context,
    _counted,
    _firing_clause,
    _hits,
    _Matcher,
    _phrase_regex,
    _SentenceContext,
    _spans,
    _stemmed_phrase_regex,
)
from core.safety.rule_schema import CONFIG_FILE, Rule, RuleError, RuleFile, RulesConfig
from core.safety.rule_text import (
    Sentence,
    SpellingFixer,
    basic_normalise,
    mapped_normalise,
    split_sentences,
    stem,
    words_of,
)
from core.safety.safety_set import CaseResult, SafetyCase, SafetyReport, outcome


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
        self._context: Callable[[str], _Context] = functools.lru_cache(maxsize=64)(self._build_context)
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

    def _build_context(self, message: str) -> _Context:
        """Per-message work every rule shares. `check`, `cues` and `is_guideline_question` each need it
        for the same message, one after the other, so the last few are kept (`self._context`); nothing
        mutates a built context."""
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
        treatment for DKA?"): the learned layer of the screen does not escalate it (core.safety.triage)."""
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
        """Score `cases` with these rules, or with a whole `screen` built on them (core.safety.triage)."""
        results = []
        for case in cases:
            decision = (screen or self).check(case.message)
            got = outcome(decision)
            results.append(CaseResult(
                id=case.id, message=case.message, expect=case.expect, got=got, passed=got == case.expect,
                cls=case.cls, rules=decision.matched_rules,
            ))
        return SafetyReport(results=results)
