"""What a sentence claims, read for the citation check: its content words, numbers and doses,
negations and orders, clause by clause."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from core.answering.lexicon import (
    _GENERIC_STEMS,
    _NEGATES_BEFORE,
    _NEGATION,
    _NOT_NEGATION,
    _ORDER,
    _POPULATIONS,
    _ROUTES,
    _STOP,
    _WORD,
    _is_key_term,
    _stem,
)
from core.answering.numbers import _CLAUSE_BREAK, _CODE, _NUMBER, _PASSAGE_CLAUSE, _normalise, _Number, _numbers


@dataclass(frozen=True)
class _Text:
    """A sentence or passage stretch reduced to what the checks compare."""

    words: dict[str, str]  # stem -> the word as written
    numbers: tuple[_Number, ...]
    claim_clauses: tuple[int, ...]  # clause of each number, split finely (for a claim)
    passage_clauses: tuple[int, ...]  # clause of each number, split at ";" (for a passage)
    codes: frozenset[str]
    key_terms: frozenset[str]  # stems
    negations: tuple[frozenset[str], ...]  # the words each "not"/"no"/"avoid" applies to
    orders: frozenset[tuple[str, str]]  # (first, second) from "X before Y" and "Y after X"

    @property
    def drugs(self) -> frozenset[str]:
        return frozenset(s for s in self.key_terms if self.words[s] not in _ROUTES | _POPULATIONS)


@lru_cache(maxsize=4096)
def _analyse(text: str) -> _Text:
    norm = _normalise(text)
    numbers = _numbers(norm)
    codes = frozenset(m.group(1).replace("-", "") for m in _CODE.finditer(norm))
    rest = _CODE.sub(" ", _NUMBER.sub(" ", norm))
    words: dict[str, str] = {}
    key_terms: set[str] = set()
    for raw in _WORD.findall(rest):
        word = raw.removesuffix("'s")
        if word in _STOP or len(word) < 2 or _NEGATION.fullmatch(word):
            continue  # negation words ("avoid", "contraindicated") are left to the negation check
        stem = _stem(word)
        words.setdefault(stem, word)
        if _is_key_term(word):
            key_terms.add(stem)
    return _Text(
        words,
        numbers,
        tuple(len(_CLAUSE_BREAK.findall(norm[: n.start])) for n in numbers),
        tuple(_passage_clause(norm, n.start) for n in numbers),
        codes,
        frozenset(key_terms),
        _negations(norm, numbers),
        _orders(rest),
    )


def _passage_clause(norm: str, position: int) -> int:
    """Clause of a passage sentence a number sits in; -1 for a lead-in before ":" that heads them all."""
    colon = norm.find(":")
    if 0 <= colon and position < colon and ";" in norm[colon:]:
        return -1
    return len(_PASSAGE_CLAUSE.findall(norm[:position]))


def _content_stems(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text) if w not in _STOP and len(w) > 1]


_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[;:,()]|(?<!\d)\.(?!\d)")
_BREAK_WORDS = frozenset("and or then plus but if unless when while until because".split())


def _negations(norm: str, numbers: tuple[_Number, ...]) -> tuple[frozenset[str], ...]:
    """What each negation cue applies to: up to 6 words or numbers after it in its clause, and for
    "not"/"never"/"avoided"/"contraindicated" up to 3 before it. A cue whose clause holds nothing
    specific ("Avoid if ...", "Do not take more than ...") applies to the whole sentence."""
    norm = _NOT_NEGATION.sub(lambda m: " " * len(m.group(0)), norm)
    items: list[tuple[int, str]] = [(n.start, n.key) for n in numbers]
    spans = [(n.start, n.end) for n in numbers]
    for m in _TOKEN.finditer(norm):
        if not any(a <= m.start() < b for a, b in spans):
            items.append((m.start(), m.group(0)))
    tokens = [t for _, t in sorted(items)]
    content = [_stem(t) if t[0].isalpha() else t for t in tokens if _is_content(t)]
    scopes = []
    for i, token in enumerate(tokens):
        if not _NEGATION.fullmatch(token):
            continue
        after = _clause_content(tokens[i + 1 :])[:6]
        before = _clause_content(tokens[:i][::-1])[:3] if _NEGATES_BEFORE.fullmatch(token) else []
        scope = set(after + before)
        if not any(s.startswith("#") or s not in _GENERIC_STEMS for s in scope):
            scope = set(content)
        scopes.append(frozenset(scope))
    return tuple(scopes)


def _is_content(token: str) -> bool:
    return token.startswith("#") or (token[0].isalpha() and token not in _STOP and len(token) > 1)


def _clause_content(tokens: list[str]) -> list[str]:
    out = []
    for t in tokens:
        if t in _BREAK_WORDS or not (t[0].isalpha() or t.startswith("#")):
            break
        if _is_content(t):
            out.append(t if t.startswith("#") else _stem(t))
    return out


def _orders(rest: str) -> frozenset[tuple[str, str]]:
    pairs = set()
    for m in _ORDER.finditer(rest):
        left = [s for s in _content_stems(rest[max(0, m.start() - 40) : m.start()])[-3:] if s not in _GENERIC_STEMS]
        right = [s for s in _content_stems(rest[m.end() : m.end() + 40])[:3] if s not in _GENERIC_STEMS]
        if left and right:
            pairs.add((left[-1], right[0]) if m.group(1) == "before" else (right[0], left[-1]))
    return frozenset(pairs)
