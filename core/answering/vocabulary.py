"""How clinicians type, and what a guideline writes instead.

Questions say "amox", "HTN", "U&Es", "Pradaxa", "EpiPen", "blood thinner" and "water tablet"; guidelines
say amoxicillin, hypertension, urea and electrolytes, dabigatran, adrenaline auto-injector, anticoagulant
and diuretic. `data/answering/clinical_synonyms.json` is a general clinical vocabulary (about 770
abbreviations and clipped forms, 500 brand and US drug names, 270 lay terms), written from general
knowledge by someone who had seen neither the library nor any question set, so it is not fitted to
either. It is used in two places:

- the search query gets the expansions of the terms it uses ("amox dose CAP" is searched as
  "amox dose CAP (amoxicillin; community acquired pneumonia)"), `expand`;
- a question word counts as mentioned by a passage that says one of its expansions ("Pradaxa" by
  "dabigatran"; both words of "blood thinner" by "anticoagulant"), `stand_ins`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from core.answering.lexicon import _STOP
from core.settings import REPO_ROOT

SYNONYMS = REPO_ROOT / "data" / "answering" / "clinical_synonyms.json"
_SECTIONS = ("abbreviations", "drug_names", "lay_terms")
_TOKEN = re.compile(r"[a-z0-9](?:[a-z0-9&+/'-]*[a-z0-9+])?", re.I)
_MAX_WORDS = 3


@dataclass(frozen=True)
class Match:
    key: str
    words: tuple[str, ...]  # the question's words that make up the key
    expansions: tuple[str, ...]


class Vocabulary:
    """Clinical synonyms: key (lower case, 1-3 words) -> what a guideline would write."""

    def __init__(self, entries: dict[str, list[str]], ambiguous: set[str] | frozenset[str] = frozenset()) -> None:
        # A term with several meanings stands for its first, the commonest in UK hospital use ("mg":
        # milligram, not magnesium; "pt": patient, not prothrombin time).
        amb = {a.lower() for a in ambiguous}
        self._entries = {k.lower(): tuple(v[:1] if k.lower() in amb else v) for k, v in entries.items() if v}

    @classmethod
    def load(cls, path: Path = SYNONYMS) -> Vocabulary:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries: dict[str, list[str]] = {}
        for section in _SECTIONS:
            for key, values in data.get(section, {}).items():
                entries.setdefault(key.lower(), [])
                entries[key.lower()] += [v for v in values if v not in entries[key.lower()]]
        return cls(entries, set(data.get("ambiguous", [])))

    def __len__(self) -> int:
        return len(self._entries)

    def matches(self, text: str) -> list[Match]:
        """The vocabulary's terms in `text`, longest first at each position, without overlaps. A plural
        ("EpiPens", "nebs") matches its singular. A term that is also an everyday function word ("as",
        "on", "it", "all") counts only in capitals (AS, ON, IT, ALL)."""
        # One tokenisation: lower-casing first can change a word's length ("İ"), and two lists could
        # then disagree on where each word is.
        original = [m.group() for m in _TOKEN.finditer(text)]
        typed = [w.lower() for w in original]
        out: list[Match] = []
        i = 0
        while i < len(typed):
            for n in range(min(_MAX_WORDS, len(typed) - i), 0, -1):
                words = tuple(typed[i : i + n])
                key = self._key(" ".join(words))
                if key is not None and (n > 1 or words[0] not in _STOP or original[i].isupper()):
                    out.append(Match(key, words, self._entries[key]))
                    i += n
                    break
            else:
                i += 1
        return out

    def _key(self, phrase: str) -> str | None:
        if phrase in self._entries:
            return phrase
        if len(phrase) > 3 and phrase.endswith("s") and phrase not in _STOP and phrase[:-1] in self._entries:
            return phrase[:-1]
        return None

    def expand(self, query: str) -> str:
        """`query` followed by the expansions of its terms that it does not already say."""
        lowered = query.lower()
        extra: list[str] = []
        for m in self.matches(query):
            extra += [e for e in m.expansions if e not in lowered and e not in extra]
        return f"{query} ({'; '.join(extra)})" if extra else query

    def typed(self, text: str) -> str:
        """`text` without the expansions `expand` appended: the question as the clinician typed it."""
        cut = text.rfind(" (")
        return text[:cut] if cut > 0 and text.endswith(")") and self.expand(text[:cut]) == text else text

    def stand_ins(self, text: str) -> dict[str, list[str]]:
        """For each word of `text` that is part of a vocabulary term, the expansions that stand in for it."""
        out: dict[str, list[str]] = {}
        for m in self.matches(text):
            for word in m.words:
                out.setdefault(word, []).extend(m.expansions)
        return out


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    try:
        return Vocabulary.load()
    except (OSError, ValueError):  # a missing or broken file leaves questions as they are typed
        return Vocabulary({})
