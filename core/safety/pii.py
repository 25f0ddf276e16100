"""Likely patient identifiers in a message: names with titles or dates of birth, NHS numbers
(mod-11 checked), record numbers, phone numbers, emails, postcodes and street addresses.

Used to warn the clinician, and to redact before anything is stored. Deliberately cautious: a missed
identifier is worse than a needless warning, but a bare clinical number (BP 186/124, eGFR 40) must
not be flagged.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

IdentifierKind = Literal["NAME", "DOB", "NHS_NUMBER", "MRN", "PHONE", "EMAIL", "POSTCODE", "ADDRESS"]

_DATE = r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)?\d{2}|\d{1,2}(?:st|nd|rd|th)?\s+[A-Za-z]{3,9}\.?\s+(?:19|20)\d{2})"
_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"

# Order matters: earlier kinds win where spans overlap.
_PATTERNS: list[tuple[IdentifierKind, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("DOB", re.compile(rf"(?i:\b(?:dob|d\.o\.b\.?|date of birth|born(?: on)?)\s*[:\-]?\s*){_DATE}")),
    ("MRN", re.compile(r"(?i)\b(?:mrn|hospital (?:number|no\.?)|record (?:number|no\.?)|patient id|unit (?:number|no\.?))"
                       r"\s*[:#]?\s*[A-Z]{0,3}\d{5,10}\b")),
    ("NHS_NUMBER", re.compile(r"(?<![\d/.])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\d/.])")),
    ("PHONE", re.compile(r"(?<![\d/])(?:\+44\s?\(?0?\)?\s?|0)(?:\d\s?){9,10}(?![\d/])")),
    ("POSTCODE", re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b")),
    ("ADDRESS", re.compile(r"(?i:\b\d{1,4}[a-z]?\s+)" + _NAME_WORD + r"(?:\s+" + _NAME_WORD + r")?\s+"
                           r"(?i:street|st|road|rd|avenue|ave|lane|ln|close|drive|dr|way|crescent|court|place|gardens|terrace)\b")),
    ("NAME", re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Master)\.?\s+{_NAME_WORD}(?:\s+{_NAME_WORD})?"
                        rf"|(?i:\b(?:name|patient|pt)\s*(?:is|:)\s*){_NAME_WORD}\s+{_NAME_WORD}"
                        rf"|\b{_NAME_WORD}\s+{_NAME_WORD}(?=,?\s+(?i:dob|d\.o\.b|date of birth|born))")),
]


class Identifier(BaseModel):
    kind: IdentifierKind
    span: tuple[int, int]
    text: str


def nhs_number_valid(digits: str) -> bool:
    """The NHS number mod-11 check digit (weights 10..2 over the first nine digits)."""
    d = [int(c) for c in digits if c.isdigit()]
    if len(d) != 10 or len(set(d)) == 1:
        return False
    check = 11 - sum(w * x for w, x in zip(range(10, 1, -1), d[:9], strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == d[9]


def find_identifiers(text: str) -> list[Identifier]:
    found: list[Identifier] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if kind == "NHS_NUMBER" and not nhs_number_valid(m.group()):
                continue
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append(m.span())
            found.append(Identifier(kind=kind, span=m.span(), text=m.group()))
    return sorted(found, key=lambda i: i.span)


def redact(text: str) -> str:
    """Replace each identifier with its kind in brackets: 'Mr John Smith' → '[NAME]'."""
    for ident in reversed(find_identifiers(text)):
        s, e = ident.span
        text = text[:s] + f"[{ident.kind}]" + text[e:]
    return text
