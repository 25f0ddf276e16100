"""Citation markers: the one syntax every reader of an answer shares ([1], [1; 2], [1-3], [ref 1], [Source 2])."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from core.answering.sentences import split_sentences


class CitedSentence(BaseModel):
    """One sentence of an answer with its [n] markers taken out."""

    text: str = Field(description="The sentence without citation markers.")
    citations: list[int] = Field(default_factory=list, description="Cited passage numbers, in order, deduplicated.")
    raw: str = Field(description="The sentence as the model wrote it.")

_LABEL = r"(?:(?:source|passage|ref|reference|doc|document|citation)s?\s*(?:no\.?|#)?\s*)?"
# The one definition of a citation marker: the pipeline's format check, the verifier and the screen
# all read answers with it, so `[1; 2]` or `[ref 1]` cannot verify in one place and fail in another.
MARKER = re.compile(
    rf"\[\s*{_LABEL}(\d{{1,3}}(?:\s*(?:[,;&\-–]|and)\s*{_LABEL}\d{{1,3}})*)\s*\]",
    re.IGNORECASE,
)
_MARKER_AND_SPACE = re.compile(r"\s*" + MARKER.pattern, re.IGNORECASE)
_MAX_RANGE = 20


def parse_cited(text: str) -> list[CitedSentence]:
    """Sentences of an answer with their citations: [1], [1,2], [1][2], [1-3], [Source 1], [passage 2]."""
    out = []
    for raw in split_sentences(text):
        citations: list[int] = []
        for m in MARKER.finditer(raw):
            citations += [n for n in _marker_numbers(m.group(1)) if n not in citations]
        clean = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub(" ", raw))
        out.append(CitedSentence(text=" ".join(clean.split()), citations=citations, raw=raw))
    return out


def has_marker(text: str) -> bool:
    return MARKER.search(text) is not None


def cited_numbers(text: str) -> list[int]:
    """Every passage number the markers of `text` name, in order ([1-3] names 1, 2 and 3)."""
    return [n for m in MARKER.finditer(text) for n in _marker_numbers(m.group(1))]


def strip_markers(text: str) -> str:
    """`text` without its citation markers (nor the space before each)."""
    return _MARKER_AND_SPACE.sub("", text)


def _marker_numbers(inner: str) -> list[int]:
    tokens = re.findall(r"\d+|-", inner.replace("–", "-"))
    numbers: list[int] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "-":
            i += 1
            continue
        n = int(tokens[i])
        if i + 2 < len(tokens) and tokens[i + 1] == "-" and tokens[i + 2] != "-":
            last = int(tokens[i + 2])
            numbers += list(range(n, last + 1)) if 0 < last - n <= _MAX_RANGE else [n, last]
            i += 3
        else:
            numbers.append(n)
            i += 1
    return numbers
