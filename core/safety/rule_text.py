"""Text as the safety rules see it: normalised, spelling-corrected, stemmed, split into sentences,
with every token still pointing at its characters in the original message.

The rules match on this text; the offsets let an escalation quote the user's own words ("can't lift
his right arm") rather than the normalised form ("can't lift hi right arm").
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": '"', "”": '"', "–": "-", "—": "-"})
_BOUNDARY = re.compile(r"(?<!\d)[.](?!\d)|[,;:!?()\"\[\]]|\s-\s|\s-$|^-\s")
_HYPHEN = re.compile(r"(?<=[a-z])-(?=[a-z])")
_SPACES = re.compile(r"\s+")
_NEWLINES = re.compile(r"\s*\n\s*")
_WORD = re.compile(r"[a-z][a-z']+")
_LINE_BREAK = "¶"  # a token of its own: a line break always ends a sentence
_SENTENCE_END = frozenset({".", "!", "?", _LINE_BREAK})
_ABBREVIATIONS = frozenset({"eg", "ie", "etc", "mr", "mrs", "ms", "dr", "prof", "vs", "approx", "st", "no", "wk", "wks"})
_VOWELS = frozenset("aeiouy")


def basic_normalise(text: str) -> str:
    """Lowercase, unify quotes, split punctuation into its own tokens, collapse spaces."""
    text = text.translate(_APOSTROPHES).lower()
    text = _HYPHEN.sub(" ", text)
    text = _BOUNDARY.sub(lambda m: f" {m.group().strip() or ','} ", text)
    return " " + _SPACES.sub(" ", text).strip() + " "


# --------------------------------------------------------------------------------------------------
# Text that remembers where each character came from
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedText:
    """`text[i]` came from `original[starts[i]:ends[i]]` (a replacement maps to the whole match)."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def of(cls, original: str) -> MappedText:
        chars: list[str] = []
        starts: list[int] = []
        for i, ch in enumerate(original.translate(_APOSTROPHES)):
            low = ch.lower()  # may be longer than one character ("İ")
            chars += low
            starts += [i] * len(low)
        return cls("".join(chars), tuple(starts), tuple(s + 1 for s in starts))

    def sub(self, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str]) -> MappedText:
        text, starts, ends = [], list[int](), list[int]()
        last = 0
        for m in pattern.finditer(self.text):
            new = repl(m)
            if new == m.group():
                continue
            text.append(self.text[last:m.start()])
            starts += self.starts[last:m.start()]
            ends += self.ends[last:m.start()]
            s = self.starts[m.start()] if m.start() < len(self.starts) else (self.ends[-1] if self.ends else 0)
            e = max(self.ends[m.start():m.end()], default=s)
            text.append(new)
            starts += [s] * len(new)
            ends += [e] * len(new)
            last = m.end()
        if not text:
            return self
        text.append(self.text[last:])
        starts += self.starts[last:]
        ends += self.ends[last:]
        return MappedText("".join(text), tuple(starts), tuple(ends))

    def tokens(self) -> list[tuple[str, int, int]]:
        """(token, original start, original end) for every space-separated token."""
        return [(m.group(), self.starts[m.start()], max(self.ends[m.start():m.end()]))
                for m in re.finditer(r"\S+", self.text)]


_SPLIT_AT = re.compile(r"(?:\s*\n\s*)+")


def mapped_normalise(message: str) -> MappedText:
    """`basic_normalise` that keeps offsets; a line break also ends a sentence."""
    text = MappedText.of(message)
    text = text.sub(_SPLIT_AT, lambda m: f" {_LINE_BREAK} ")
    text = text.sub(_HYPHEN, lambda m: " ")
    return text.sub(_BOUNDARY, lambda m: f" {m.group().strip() or ','} ")


# --------------------------------------------------------------------------------------------------
# Stemming: one word form for "swelling / swells / swollen", "end / ending", "collapse / collapsed"
# --------------------------------------------------------------------------------------------------


def _undouble(stem: str) -> str:
    # "stopped" → "stop", "slurred" → "slur", but "fitted" stays "fitt": a 3-letter result ("fit",
    # as in "fit and well") would merge different words.
    if len(stem) >= 5 and stem[-1] == stem[-2] and stem[-1] not in "lsz" + "aeiou":
        return stem[:-1]
    return stem


def _strip_e(stem: str) -> str:
    # "collapse" / "collapsed" → "collaps"; never to 3 letters ("notes" must not become "not").
    return stem[:-1] if len(stem) >= 5 and stem.endswith("e") and not stem.endswith("ee") else stem


def stem(word: str, lemmas: dict[str, str] | None = None, keep: frozenset[str] = frozenset()) -> str:
    """A small suffix stemmer for English clinical text, applied to message and rule words alike.

    Deliberately conservative: a stem is never shorter than 3 letters, so common short words keep
    their identity; irregular forms ("swollen", "bled") come from `lemmas` (config.yaml)."""
    if word.endswith("'s"):
        word = word[:-2]
    elif word.endswith("s'"):
        word = word[:-1]
    if lemmas and word in lemmas:
        return lemmas[word]
    if len(word) < 4 or word in keep or not word.isalpha():
        return word
    for suffix, repl, min_stem in (("iness", "y", 3), ("ness", "", 4), ("ily", "y", 3), ("ly", "", 4),
                                   ("ies", "y", 3), ("ied", "y", 3), ("ing", "", 3), ("ed", "", 3)):
        if word.endswith(suffix):
            base = word[: -len(suffix)]
            if len(base) >= min_stem and _VOWELS & set(base) and not (suffix == "ed" and base.endswith("e")):
                return _strip_e(_undouble(base) + repl) if repl == "" else base + repl
            return word
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        # A plural may hide another suffix: "endings" → "ending" → "end".
        return stem(word[:-1], lemmas, keep)
    return _strip_e(word)


# --------------------------------------------------------------------------------------------------
# Spelling tolerance
# --------------------------------------------------------------------------------------------------


def _deletes(word: str, n: int) -> set[str]:
    out, frontier = {word}, {word}
    for _ in range(n):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


_SHORT = 6  # up to this length only swaps and missing letters are corrected
_DOUBLED = re.compile(r"(.)\1+")


def sound_key(word: str) -> str:
    """Spelling-insensitive form for counting edits: "ph" as "f", doubled letters as one."""
    return _DOUBLED.sub(r"\1", word.replace("ph", "f"))


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal-string-alignment distance (a swap of neighbours counts as one edit), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@dataclass
class SpellingFixer:
    """Corrects a word to the nearest word the rules use, tolerating more edits in longer words.

    - shorter than `min_length`: never corrected;
    - `min_length` letters: only a swap of two neighbouring letters ("pian" → "pain"), because one
      changed letter turns too many short words into others ("main" → "pain");
    - up to 6 letters: a swap or one missing letter ("swolen", "havin"), not a changed or extra
      letter ("while" is not "whole", "could" is not "cold");
    - up to `two_edits_from - 1` letters: one edit; longer: two ("unconsious" → "unconscious");
    - edits are counted on a sound-alike key (doubled letters as one, "ph" as "f"), so "elefant" →
      "elephant" and "breathles" → "breathless" cost nothing;
    - the first letter must agree (typos rarely change it), and a word that the rules know, a
      common English word, or an inflection of a known word is never corrected.
    """

    targets: Iterable[str]
    known: frozenset[str]
    known_stems: frozenset[str]
    known_prefixes: tuple[str, ...]
    stem: Callable[[str], str]
    min_length: int = 4
    two_edits_from: int = 10
    _index: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for t in set(self.targets):
            for d in _deletes(sound_key(t), self._allowed(len(t))):
                self._index.setdefault(d, set()).add(t)

    def _allowed(self, n: int) -> int:
        if n < self.min_length:
            return 0
        return 2 if n >= self.two_edits_from else 1

    def fix(self, word: str) -> str:
        if word in self._cache:
            return self._cache[word]
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[word] = fixed = self._fix(word)
        return fixed

    def _fix(self, word: str) -> str:
        limit = self._allowed(len(word))
        if (not limit or word in self.known or not word.isalpha() or self.stem(word) in self.known_stems
                or word.startswith(self.known_prefixes)):
            return word
        key = sound_key(word)
        found = {t for d in _deletes(key, limit) for t in self._index.get(d, ())}
        best: list[tuple[int, str]] = []
        for t in found:
            if t[0] != word[0]:
                continue
            t_key = sound_key(t)
            swap = len(t) == len(word) and sorted(t) == sorted(word) and edit_distance(word, t, 1) == 1
            if len(word) == self.min_length and not swap:
                continue
            missing = len(t) == len(word) + 1 and edit_distance(word, t, 1) == 1
            if len(word) <= _SHORT and not (swap or missing or t_key == key):
                continue
            d = edit_distance(key, t_key, limit)
            if d <= limit:
                best.append((d, t))
        if not best:
            return word
        best.sort(key=lambda x: (x[0], abs(len(x[1]) - len(word)), x[1]))
        return best[0][1]


# --------------------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------------------


@dataclass
class Sentence:
    """One sentence: its surface tokens (normalised, spelling-corrected) and their stems, joined with
    single spaces and padded with one space at each end, plus each token's original span."""

    surface: str
    stemmed: str
    spans: list[tuple[int, int]]
    surface_at: list[int]
    stemmed_at: list[int]
    stem_words: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tokens: list[tuple[str, str, int, int]]) -> Sentence:
        surface, stemmed, s_at, t_at = [" "], [" "], [], []
        s_len = t_len = 1
        for tok, st, _, _ in tokens:
            s_at.append(s_len)
            t_at.append(t_len)
            surface.append(tok + " ")
            stemmed.append(st + " ")
            s_len += len(tok) + 1
            t_len += len(st) + 1
        return cls("".join(surface), "".join(stemmed), [(a, b) for _, _, a, b in tokens], s_at, t_at,
                   frozenset(st for _, st, _, _ in tokens))

    def tokens_at(self, start: int, end: int, stemmed: bool) -> tuple[int, int]:
        """Token range [i, j] covered by the character range of a hit in one of the two texts."""
        at = self.stemmed_at if stemmed else self.surface_at
        text = self.stemmed if stemmed else self.surface
        while start < end and text[start] == " ":
            start += 1
        while end > start and text[end - 1] == " ":
            end -= 1
        i = max(bisect_right(at, start) - 1, 0)
        return i, max(i, bisect_left(at, end) - 1)

    def surface_range(self, i: int, j: int) -> tuple[int, int]:
        end = self.surface.index(" ", self.surface_at[j])
        return self.surface_at[i], end

    def original_range(self, i: int, j: int) -> tuple[int, int]:
        return self.spans[i][0], max(e for _, e in self.spans[i:j + 1])


def split_sentences(tokens: list[tuple[str, str, int, int]]) -> list[Sentence]:
    """Split at ". ! ?" and line breaks, but not after an abbreviation ("e.g.", "Dr."): a fragment such
    as "crushing chest pain" cut from a guideline question would read as a presentation."""
    out: list[Sentence] = []
    current: list[tuple[str, str, int, int]] = []
    for tok in tokens:
        if tok[0] == "." and current and (len(current[-1][0]) == 1 or current[-1][0] in _ABBREVIATIONS):
            current.append(tok)
        elif tok[0] in _SENTENCE_END:
            if current:
                out.append(Sentence.of(current))
            current = []
        else:
            current.append(tok)
    if current:
        out.append(Sentence.of(current))
    return out


def words_of(phrases: Iterable[str], keep_wildcards: bool = False) -> set[str]:
    """The plain words of rule phrases (not regexes or synonym references); wildcard words ("wheez*")
    are left out unless `keep_wildcards`."""
    words = {w for p in phrases if not p.startswith(("re:", "@")) for w in basic_normalise(p).split()}
    return {w for w in words if _WORD.fullmatch(w.rstrip("*")) and (keep_wildcards or "*" not in w)}
