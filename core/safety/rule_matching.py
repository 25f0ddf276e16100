"""How a compiled rule finds its phrases in a message: regexes over normalised text, sentence by sentence,
with negation and history judged per hit."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from core.safety.rule_schema import Rule
from core.safety.rule_text import (
    Sentence,
    basic_normalise,
)

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
