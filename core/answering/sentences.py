"""Splitting answers and guideline passages into sentences: list items, table rows, headings, abbreviations."""

from __future__ import annotations

import re

_BULLET = re.compile(r"^\s*(?:[-*•‣▪◦]|\d{1,2}[.)])\s+")
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S.*|\d+(?:\.\d+)+\.?\s+[A-Z][^.!?:;]*)$")
_LINE_ENDS_SENTENCE = re.compile(r"(?:[.!?:;][\"')]*|\])\s*$")
_PUNCT_RUN = re.compile(r"[.!?]+[\"')]*")
_CITE_GROUP = re.compile(r"(?:\s*\[[^\[\]\n]{1,40}\])+")
_WORD_BEFORE = re.compile(r"(?:^|[\s(\[])([A-Za-z][A-Za-z.]*)$")
_ABBREVIATIONS = frozenset(
    {"e.g", "i.e", "eg", "ie", "approx", "vs", "cf", "incl", "viz", "dr", "mr", "mrs", "ms", "prof", "fig", "ref", "nb"}
)


def split_sentences(text: str) -> list[str]:
    """Split clinical text into sentences; list items and headings are sentences of their own.

    Does not split inside "e.g.", "i.e.", "approx.", "vs.", decimals ("0.5 mg") or after a list number
    ("1."); a citation group after the full stop ("daily. [2] Next") stays with its sentence.
    """
    return [s for block in _blocks(text) for s in _split_block(block)]


def _blocks(text: str) -> list[str]:
    """Join wrapped lines; start a new block at blank lines, list items, headings and finished lines."""
    blocks: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            blocks.append(" ".join(current))
            current.clear()

    for line in text.replace("**", "").replace("__", "").splitlines():
        stripped = line.strip()
        bullet = _BULLET.match(stripped)
        if not stripped:
            flush()
        elif bullet or _HEADING.match(stripped):
            flush()
            current.append(stripped[bullet.end() :] if bullet else stripped.lstrip("#").strip())
            if not bullet:
                flush()
        else:
            if current and _LINE_ENDS_SENTENCE.search(current[-1]):
                flush()
            current.append(stripped)
    flush()
    return blocks


_INLINE_ITEM = re.compile(r"(^|[:;.]\s+)\d{1,2}[.)]\s+(?=[A-Z])")


def _split_block(block: str) -> list[str]:
    block = _INLINE_ITEM.sub(r"\1", block)  # "... daily. 2. Repeat ..." and "Steps: 1. Give ..."
    out: list[str] = []
    start = 0
    for m in _PUNCT_RUN.finditer(block):
        if _is_abbreviation(block, m.start()):
            continue
        end = m.end()
        cite = _CITE_GROUP.match(block, end)
        if cite:
            end = cite.end()
        rest = block[end:]
        if not rest.strip():
            break
        nxt = rest.lstrip()[:1]
        if rest[:1].isspace() and (nxt.isupper() or nxt.isdigit() or nxt in "[(\"'"):
            out.append(block[start:end].strip())
            start = end
    tail = block[start:].strip()
    if tail:
        out.append(tail)
    return out


def _is_abbreviation(block: str, dot: int) -> bool:
    m = _WORD_BEFORE.search(block[:dot])
    return m is not None and m.group(1).lower().rstrip(".") in _ABBREVIATIONS
