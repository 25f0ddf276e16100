"""How an evaluation case's expectations are checked: does a text hold an expected fact, does a
passage come from the expected source (file, section heading, page)? Used by `core.eval` and by the
evidence scorers' training script, so both judge the same way."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.schema import RetrievedPassage

_DASHES = str.maketrans({"–": "-", "—": "-", "−": "-", "’": "'", "‘": "'", "\u00a0": " ", "µ": "micro"})
_SPACE = re.compile(r"\s+")
# "0.5mg" and "0.5 mg", "140/90mmHg" and "140/90 mmHg" are the same fact.
_NUMBER_UNIT = re.compile(r"(\d)\s+(?=[a-z%°])")


def normalise_fact_text(text: str) -> str:
    text = _SPACE.sub(" ", text.translate(_DASHES).lower().replace("mcg", "microg").replace("micrograms", "microg"))
    text = text.replace("microgram", "microg")
    return _NUMBER_UNIT.sub(r"\1", text).strip()


def contains_fact(text: str, fact: str) -> bool:
    """`fact` appears in `text`, ignoring case, spacing, dash style and "mcg"/"micrograms"."""
    needle = normalise_fact_text(fact)
    return bool(needle) and needle in normalise_fact_text(text)


def _heading(text: str) -> str:
    return _SPACE.sub(" ", text.lower().lstrip("# ").strip())


def holds_source(passage: RetrievedPassage, source: Mapping[str, Any]) -> bool:
    """The passage is from the source's file, on its page (when given) and under its section heading
    (when given; any heading of the passage's path, so a subsection counts)."""
    if passage.file_name != source.get("file"):
        return False
    page = source.get("page")
    if page is not None and passage.page != page:
        return False
    section = source.get("section")
    return not section or section_matches(passage.section, str(section))


def section_matches(headings: list[str], expected: str) -> bool:
    """One heading of a passage's path is the expected section (numbering or case may differ)."""
    want = _heading(expected)
    for h in headings:
        have = _heading(h)
        if have == want or have.endswith(want) or (len(have) > 8 and want.endswith(have)):
            return True
    return False
