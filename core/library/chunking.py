"""Split a parsed guideline into citable chunks.

A chunk never crosses a heading or a PDF page, so its section path and page number are exact
citations. Headings are not chunks; they become `Chunk.section`.

Offsets: `char_start`/`char_end` index the chunk's *unit text*, which is the text of its page (PDF) or
of its section path (other formats): the unit's non-heading blocks joined with "\\n\\n", in document
order. `unit_texts(parsed)[chunk_unit_key(chunk)][chunk.char_start:chunk.char_end] == chunk.text` holds
for every chunk, except the second and later pieces of a table split by rows: their text is the
table's header lines, a newline, then that slice (the header is repeated so every piece can be read
on its own).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from core.schema import Block, Chunk, ParsedDocument
from core.settings import IngestSettings

UnitKey = tuple[int | None, tuple[str, ...]]

_SEP = "\n\n"
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}")


@dataclass(frozen=True)
class _Placed:
    """A block and where it starts in its unit text."""

    block: Block
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.block.text)


@dataclass
class _Run:
    """Consecutive blocks with the same page and section, between two headings or page breaks."""

    page: int | None
    section: tuple[str, ...]
    blocks: list[_Placed] = field(default_factory=list)


@dataclass(frozen=True)
class _Piece:
    kind: Literal["text", "table"]
    start: int
    end: int
    text: str


def chunk_document(parsed: ParsedDocument, doc_id: str, settings: IngestSettings) -> list[Chunk]:
    """Cut a parsed document into chunks, numbered `{doc_id}-0000` onwards in reading order."""
    runs, units = _runs(parsed)
    chunks: list[Chunk] = []
    for run in runs:
        unit = units[unit_key(run.page, run.section)]
        for piece in _run_pieces(run, unit, settings):
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=f"{doc_id}-{ordinal:04d}",
                    doc_id=doc_id,
                    ordinal=ordinal,
                    text=piece.text,
                    kind=piece.kind,
                    page=run.page,
                    section=list(run.section),
                    char_start=piece.start,
                    char_end=piece.end,
                )
            )
    return chunks


def unit_key(page: int | None, section: Sequence[str]) -> UnitKey:
    """Key of the text that offsets refer to: the page for a PDF, else the section path."""
    return (page, ()) if page is not None else (None, tuple(section))


def chunk_unit_key(chunk: Chunk) -> UnitKey:
    return unit_key(chunk.page, chunk.section)


def unit_texts(parsed: ParsedDocument) -> dict[UnitKey, str]:
    """The unit texts that chunk offsets index into (see the module docstring)."""
    return _runs(parsed)[1]


# --------------------------------------------------------------------------------------------------
# Runs and unit texts
# --------------------------------------------------------------------------------------------------


def _runs(parsed: ParsedDocument) -> tuple[list[_Run], dict[UnitKey, str]]:
    path: list[str] = []
    runs: list[_Run] = []
    parts: dict[UnitKey, list[str]] = {}
    lengths: dict[UnitKey, int] = {}
    new_run = True
    for block in parsed.blocks:
        if block.kind == "heading":
            path = path[: max(block.level - 1, 0)] + [block.text]
            new_run = True  # even a repeated heading text starts a new section
            continue
        if not block.text:
            continue
        key = unit_key(block.page, path)
        start = lengths[key] + len(_SEP) if key in lengths else 0
        lengths[key] = start + len(block.text)
        parts.setdefault(key, []).append(block.text)
        if new_run or runs[-1].page != block.page:
            runs.append(_Run(page=block.page, section=tuple(path)))
            new_run = False
        runs[-1].blocks.append(_Placed(block, start))
    return runs, {key: _SEP.join(texts) for key, texts in parts.items()}


# --------------------------------------------------------------------------------------------------
# Pieces of one run
# --------------------------------------------------------------------------------------------------


def _run_pieces(run: _Run, unit: str, settings: IngestSettings) -> list[_Piece]:
    """Pack text blocks up to chunk_size, split what is too long, keep tables apart."""
    size = settings.chunk_size
    pieces: list[_Piece] = []
    pack: list[_Placed] = []

    def flush() -> None:
        if pack:
            pieces.append(_span(unit, pack[0].start, pack[-1].end))
            pack.clear()

    for placed in run.blocks:
        if placed.block.kind == "table":
            flush()
            pieces.extend(_table_pieces(placed, unit, size))
        elif pack and placed.end - pack[0].start <= size:
            pack.append(placed)
        else:
            flush()
            if len(placed.block.text) > size:
                spans = _split_spans(placed.block.text, size, settings.chunk_overlap)
                pieces.extend(_span(unit, placed.start + a, placed.start + b) for a, b in spans)
            else:
                pack.append(placed)
    flush()
    return _merge_small(pieces, settings.min_chunk_chars, unit)


def _span(unit: str, start: int, end: int, kind: Literal["text", "table"] = "text") -> _Piece:
    return _Piece(kind=kind, start=start, end=end, text=unit[start:end])


def _split_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """Cut one long text into pieces of at most `size`, ending at sentence ends where possible.

    Consecutive pieces share about `overlap` characters (snapped to a word start, and at most half a
    piece) so a sentence cut at a piece boundary is still whole in one of them.
    """
    spans: list[tuple[int, int]] = []
    start = _skip_space(text, 0)
    while len(text) - start > size:
        end = _trim_end(text, start, _cut(text, start, size))
        spans.append((start, end))
        start = _skip_space(text, _overlap_start(text, start, end, overlap))
    if start < len(text):
        spans.append((start, _trim_end(text, start, len(text))))
    return spans


def _cut(text: str, start: int, size: int) -> int:
    """Where a piece starting at `start` should end: last sentence end, else last space, else hard."""
    limit = start + size
    floor = start + size // 3  # never leave a tiny piece just because a sentence ends early
    ends = [m.end() for m in _SENTENCE_END.finditer(text, floor, limit + 1) if m.end() <= limit]
    if ends:
        return ends[-1]
    space = max(text.rfind(" ", floor, limit + 1), text.rfind("\n", floor, limit + 1))
    return space if space > start else limit


def _overlap_start(text: str, start: int, end: int, overlap: int) -> int:
    budget = min(overlap, (end - start) // 2)
    if budget <= 0:
        return end
    begin = end - budget
    word_start = next((i for i in range(begin, end) if text[i - 1].isspace()), None)
    return word_start if word_start is not None else begin


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _trim_end(text: str, start: int, end: int) -> int:
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return end


def _table_pieces(placed: _Placed, unit: str, size: int) -> list[_Piece]:
    """A table is one chunk; only beyond 2*size is it split by rows, repeating its header."""
    text = placed.block.text
    lines = text.split("\n")
    head = 2 if len(lines) > 1 and _TABLE_RULE.match(lines[1]) else 1
    if len(text) <= 2 * size or len(lines) <= head + 1:
        return [_span(unit, placed.start, placed.end, kind="table")]
    header = "\n".join(lines[:head])
    offsets = _line_offsets(lines)
    pieces: list[_Piece] = []
    first = head
    while first < len(lines):
        last = first
        while last + 1 < len(lines) and offsets[last + 2] - 1 - offsets[first] + len(header) + 1 <= size:
            last += 1
        start = placed.start + (0 if not pieces else offsets[first])
        end = placed.start + offsets[last + 1] - 1
        body = unit[start:end]
        pieces.append(_Piece(kind="table", start=start, end=end, text=body if not pieces else header + "\n" + body))
        first = last + 1
    return pieces


def _line_offsets(lines: list[str]) -> list[int]:
    """offsets[i] is where line i starts; offsets[len(lines)] is one past the text end (+1)."""
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    return offsets


def _merge_small(pieces: list[_Piece], min_chars: int, unit: str) -> list[_Piece]:
    """Fold text fragments under `min_chars` into the next text piece (or the previous one)."""
    out = list(pieces)
    i = 0
    while i < len(out):
        piece = out[i]
        small = piece.kind == "text" and len(piece.text) < min_chars
        if small and i + 1 < len(out) and out[i + 1].kind == "text":
            out[i : i + 2] = [_span(unit, piece.start, max(piece.end, out[i + 1].end))]
        elif small and i > 0 and out[i - 1].kind == "text":
            out[i - 1 : i + 1] = [_span(unit, out[i - 1].start, max(piece.end, out[i - 1].end))]
            i -= 1
        else:
            i += 1
    return out
