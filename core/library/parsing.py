"""Turn an uploaded guideline file into ordered blocks and descriptive metadata.

PDF text comes from pypdf's text layer. Headings are recognised by a line heuristic (numbered
"2.3 Follow-up", or a short Title Case / ALL CAPS line opening a paragraph), wrapped lines are joined,
and running headers/footers repeated on most pages are dropped.

Every bad input raises `IngestError` with a message an admin can act on; no library exception escapes.

Metadata conventions (what a file must carry for its title, issuer, version, date and specialty):

- Key/value keywords, shared by PDF and DOCX: the keywords field may hold pairs separated by `;` or
  new lines, written `key=value` or `key: value`, e.g.
  `issuer=NICE; version=2.1; effective_date=2024-03-01; specialty=cardiology`. Keys are case-insensitive;
  spaces and hyphens count as underscores. Free keywords without `=`/`:` are ignored.
- PDF: custom Info entries `/Issuer`, `/Version`, `/EffectiveDate`, `/Specialty` win; then the keyword
  pairs in `/Keywords`; then `/Title` -> title, `/Author` -> issuer, `/Subject` -> specialty. fpdf2 can only
  write the standard entries (set_title, set_author, set_subject, set_keywords), so the corpus generator
  puts version and effective date into `/Keywords`. `/CreationDate` is never used as the effective
  date: generators stamp it with the time of writing.
- DOCX: keyword pairs in the core property `keywords` win; then `title`; issuer from `category`
  (not `author`: Word fills author with whoever typed the file, which is not the issuing body);
  `version` from the core property of that name; specialty from `subject`; effective date only from
  the keywords or the upload form (the `created` stamp is when the file was written, not when the
  guideline takes effect, and would mislead in citations).
- HTML: `<title>` and `<meta name="issuer|version|effective_date|specialty" content="...">`.
- Plain text: a paragraph among the first five made only of known `Key: value` lines (Title, Issuer,
  Version, Effective date, Specialty) is metadata, not text; without a Title line, the first
  unnumbered heading is the title.
- Markdown: YAML front matter between leading `---` lines with keys title, issuer, version,
  effective_date, specialty. Numbers are kept as written (`version: 2.10` stays "2.10").
- Any format: without a title, the file name without suffix, `_` and `-` read as spaces.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, TypeVar

import docx
import yaml
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PreformattedString, Tag
from docx.document import Document as DocxDocument
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml.etree import LxmlError
from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError, PyPdfError

from core.errors import IngestError
from core.schema import Block, DocumentMeta, FileFormat, ParsedDocument
from core.settings import IngestSettings

SUPPORTED_SUFFIXES: dict[str, FileFormat] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
}

_META_KEYS = ("title", "issuer", "version", "effective_date", "specialty")
_MAX_HEADING_CHARS = 70
# Ratios above this are only plausible for crafted archives; small members are exempt because a
# member under 1 MiB cannot hurt whatever its ratio, and tiny XML parts legitimately compress well.
_MAX_ZIP_RATIO = 100
_RATIO_CHECK_MIN_BYTES = 1 << 20
_MB = 1024 * 1024

T = TypeVar("T")

# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def parse_file(data: bytes, file_name: str, limits: IngestSettings) -> ParsedDocument:
    """Parse an uploaded file into blocks and metadata, or raise IngestError saying why not."""
    name = safe_file_name(file_name)
    fmt = _format_of(name)
    _check_size(data, name, limits)
    parsed = _PARSERS[fmt](data, name, limits)
    if not any(b.kind != "heading" for b in parsed.blocks):
        raise IngestError("no_text", f"{name!r} contains no readable text.")
    if parsed.meta.title is None:
        parsed.meta.title = _title_from_name(name)
    return parsed


def safe_file_name(name: str) -> str:
    """Return the bare file name, without any directory part, or raise IngestError("bad_name")."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise IngestError("bad_name", f"The file name {name!r} contains control characters; rename the file.")
    # Browsers and Windows clients may send either separator; neither may steer where we store it.
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or set(base) == {"."}:
        raise IngestError("bad_name", f"The file name {name!r} is not usable; rename the file.")
    return base


def _format_of(name: str) -> FileFormat:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(SUPPORTED_SUFFIXES)
        raise IngestError("unsupported_type", f"{name!r} is not a supported file type; upload one of: {supported}.")
    return SUPPORTED_SUFFIXES[suffix]


def _check_size(data: bytes, name: str, limits: IngestSettings) -> None:
    if not data:
        raise IngestError("empty", f"{name!r} is empty (0 bytes).")
    if len(data) > limits.max_file_mb * _MB:
        size_mb = len(data) / _MB
        raise IngestError("too_large", f"{name!r} is {size_mb:.3g} MB; the limit is {limits.max_file_mb:g} MB.")


def _title_from_name(name: str) -> str:
    stem = PurePosixPath(name).stem
    return " ".join(re.sub(r"[_-]+", " ", stem).split()) or name


# --------------------------------------------------------------------------------------------------
# Shared text helpers
# --------------------------------------------------------------------------------------------------

_SPACES = re.compile(r"[^\S\n]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean_line(text: str) -> str:
    """Collapse runs of spaces (tabs, NBSP) and drop control characters."""
    return _SPACES.sub(" ", _CONTROL.sub("", text.replace("\r", ""))).strip()


def _clean_lines(text: str) -> str:
    """Clean each line but keep the line breaks (tables, lists)."""
    lines = (_clean_line(line) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _clean_paragraph(text: str) -> str:
    """A paragraph is one line: wrapped lines are joined with single spaces."""
    return _clean_line(text.replace("\n", " "))


def _meta_value(value: object) -> str | None:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None:
        return None
    text = _clean_line(str(value))
    return text or None


def _meta_key(key: str) -> str:
    key = re.sub(r"[\s-]+", "_", key.strip().lower())
    return "effective_date" if key == "effectivedate" else key


def _keyword_pairs(keywords: str | None) -> dict[str, str]:
    """Read `issuer=...; version=...` pairs from a keywords field; other keywords are ignored."""
    pairs: dict[str, str] = {}
    for item in re.split(r"[;\n]", keywords or ""):
        match = re.match(r"\s*([A-Za-z][\w -]*?)\s*[=:]\s*(.+)", item)
        if match:
            key, value = _meta_key(match.group(1)), _meta_value(match.group(2))
            if key in _META_KEYS and value:
                pairs[key] = value
    return pairs


def _first_of(*sources: dict[str, str | None]) -> DocumentMeta:
    """Build metadata where earlier sources win, field by field."""
    meta: dict[str, str] = {}
    for source in reversed(sources):
        meta.update({k: v for k, v in source.items() if k in _META_KEYS and v})
    return DocumentMeta(**meta)


def _pipe_table(rows: list[list[str]]) -> str:
    """Render rows as a Markdown pipe table; the first row is the header."""
    width = max(len(r) for r in rows)
    cells = [[_clean_paragraph(c).replace("|", "\\|") for c in r] + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + " --- |" * width)
    return "\n".join(_SPACES.sub(" ", line) for line in lines)


def _text(text: str, page: int | None = None) -> Block:
    return Block(kind="text", text=text, page=page)


def _heading(text: str, level: int, page: int | None = None) -> Block:
    return Block(kind="heading", text=text, level=max(level, 1), page=page)


# --------------------------------------------------------------------------------------------------
# Line classification shared by PDF and plain text
# --------------------------------------------------------------------------------------------------

_SENTENCE_ENDS = (".", "!", "?", ":")
_BULLET = re.compile(r"^[•▪◦‣–·]\s")
_LIST_ITEM = re.compile(r"^([-*+]|\d{1,3}[.)])\s+")
_NUMBERED = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\.?\s+([A-Z].*)$")
_MINOR_WORDS = frozenset("a an and as at by for from in into of on or per the to vs with without".split())


def _numbered_heading_level(line: str) -> int | None:
    """Level of a line like '2.3 Follow-up' (2) or '1. Diagnosis' (1); None if it is not one."""
    match = _NUMBERED.match(line)
    if not match or len(line) >= _MAX_HEADING_CHARS or line.endswith((".", ",", ";")):
        return None
    return match.group(1).count(".") + 1


def _is_title_or_caps(line: str) -> bool:
    """Short line without final punctuation that is all Title Case or ALL CAPS."""
    if len(line) >= _MAX_HEADING_CHARS or line.endswith((".", ",", ";", ":", "!", "?")):
        return False
    words = re.findall(r"[^\W\d_][\w'’-]*", line)
    if not words:
        return False
    if all(w.isupper() for w in words) and sum(len(w) for w in words) >= 3:
        return True
    first, rest = words[0], words[1:]
    return first[0].isupper() and all(w[0].isupper() or w.lower() in _MINOR_WORDS for w in rest)


# --------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------


def _parse_pdf(data: bytes, name: str, limits: IngestSettings) -> ParsedDocument:
    reader = _guarded(name, lambda: _open_pdf(data, name))
    page_texts = _guarded(name, lambda: [page.extract_text() or "" for page in reader.pages])
    if not page_texts:
        raise IngestError("no_text", f"{name!r} has no pages.")
    empty = [n for n, text in enumerate(page_texts, start=1) if not text.strip()]
    if len(empty) == len(page_texts):
        raise IngestError("needs_ocr", f"{name!r} appears to be scanned images with no text layer; run OCR first.")
    warnings = []
    if empty:
        pages = ", ".join(str(n) for n in empty)
        warnings.append(f"{name!r}: page(s) {pages} have no text layer (scanned?) and were skipped.")
    page_lines = _without_running_lines([_page_lines(text) for text in page_texts])
    blocks = [b for n, lines in enumerate(page_lines, start=1) for b in _pdf_page_blocks(lines, n)]
    meta = _guarded(name, lambda: _pdf_meta(reader))
    return ParsedDocument(
        file_name=name, format="pdf", meta=meta, blocks=blocks, pages=len(page_texts), warnings=warnings
    )


def _open_pdf(data: bytes, name: str) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        # An empty user password is common ("owner password only"): such files open without asking.
        if reader.is_encrypted and not reader.decrypt(""):
            raise IngestError("encrypted", f"{name!r} is encrypted; remove the password and upload again.")
    except DependencyError as exc:
        raise IngestError(
            "encrypted", f"{name!r} uses an encryption this server cannot open; save it without a password."
        ) from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise IngestError("corrupt", f"{name!r} is not a readable PDF (damaged or truncated).") from exc
    return reader


def _pdf_meta(reader: PdfReader) -> DocumentMeta:
    info: dict[str, Any] = dict(reader.metadata or {})

    def get(key: str) -> str | None:
        return _meta_value(info.get(key))

    custom = {
        "issuer": get("/Issuer"),
        "version": get("/Version"),
        "effective_date": get("/EffectiveDate"),
        "specialty": get("/Specialty"),
    }
    standard = {"title": get("/Title"), "issuer": get("/Author"), "specialty": get("/Subject")}
    keywords: dict[str, str | None] = dict(_keyword_pairs(get("/Keywords")))
    return _first_of(custom, keywords, standard)


def _page_lines(page_text: str) -> list[str]:
    lines = [_clean_line(line) for line in page_text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _without_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Drop running headers and footers ("Trust name - Page 3 of 9").

    A line counts as running if, with digits ignored, it is the first or last line of at least 60% of
    the pages (and of at least two). Left in, it would become a stray chunk filed under whatever
    section the previous page ended in. Only the outermost lines are considered, so repeated clinical
    text near a page edge is never dropped.
    """

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line)

    def edges(lines: list[str]) -> set[str]:
        filled = [line for line in lines if line]
        return {key(line) for line in filled[:1] + filled[-1:]}

    counts: dict[str, int] = {}
    for lines in pages:
        for k in edges(lines):
            counts[k] = counts.get(k, 0) + 1
    needed = max(2, -(-len(pages) * 3 // 5))
    running = {k for k, n in counts.items() if n >= needed}
    if not running:
        return pages
    return [
        [line for line in lines if not (line and key(line) in running and key(line) in edges(lines))] for lines in pages
    ]


def _pdf_page_blocks(lines: list[str], page: int) -> list[Block]:
    """Headings and paragraphs of one page; wrapped lines of a paragraph are joined."""
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            blocks.append(_text(_join_wrapped(paragraph), page))
            paragraph.clear()

    widest = max((len(line) for line in lines), default=0)
    for i, line in enumerate(lines):
        if _LIST_ITEM.match(line) or _BULLET.match(line):
            flush()  # each list item is its own paragraph, not glued to the previous item
        at_start = not paragraph or paragraph[-1].endswith(_SENTENCE_ENDS)
        level = _pdf_heading_level(line, lines[i + 1 :], starts_paragraph=at_start)
        if not line or level is not None:
            flush()
        if level is not None:
            blocks.append(_heading(line, level, page))
        elif line:
            paragraph.append(line)
            if _ends_paragraph(line, widest):
                flush()
    flush()
    return blocks


def _ends_paragraph(line: str, widest: int) -> bool:
    """pypdf rarely emits blank lines between paragraphs; a short line ending a sentence ends one."""
    return line.endswith(_SENTENCE_ENDS) and len(line) < 0.8 * widest


def _pdf_heading_level(line: str, following: list[str], starts_paragraph: bool) -> int | None:
    """Heading level of a PDF line, or None for body text.

    Only a line that opens a paragraph can be a heading: a wrapped line that happens to start with a
    number ("10 IU/kg daily ...") or to be short and capitalised continues the sentence above it.
    """
    if not line or not starts_paragraph:
        return None
    numbered = _numbered_heading_level(line)
    if numbered is not None:
        return numbered
    # Unnumbered ones also need body text after them, not another heading.
    next_line = next((f for f in following if f), None)
    if next_line and _is_title_or_caps(line):
        next_is_heading = _numbered_heading_level(next_line) is not None or _is_title_or_caps(next_line)
        return None if next_is_heading else 1
    return None


def _join_wrapped(lines: list[str]) -> str:
    """Join wrapped lines; a line ending in '-' continues without a space so 'follow-up' survives."""
    text = lines[0]
    for line in lines[1:]:
        text += line if text.endswith("-") else " " + line
    return text


# --------------------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------------------


def _parse_docx(data: bytes, name: str, limits: IngestSettings) -> ParsedDocument:
    _check_docx_zip(data, name, limits)
    document = _guarded(name, lambda: _open_docx(data, name))
    blocks = _guarded(name, lambda: list(_docx_blocks(document)))
    meta = _guarded(name, lambda: _docx_meta(document))
    return ParsedDocument(file_name=name, format="docx", meta=meta, blocks=blocks)


def _check_docx_zip(data: bytes, name: str, limits: IngestSettings) -> None:
    """Validate the archive from its headers alone, before anything is decompressed.

    zipfile stops reading a member at its declared size (and then fails the CRC), so a member that
    lies about its size cannot expand beyond what these headers promise.
    """
    not_docx = IngestError("corrupt", f"{name!r} is not a valid DOCX file (damaged, or another format).")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise not_docx from exc
    if "word/document.xml" not in {m.filename for m in members}:
        raise not_docx
    total_mb = sum(m.file_size for m in members) / _MB
    if total_mb > limits.max_unzipped_mb:
        raise IngestError(
            "zip_bomb",
            f"{name!r} would unpack to {total_mb:,.0f} MB, over the {limits.max_unzipped_mb:g} MB limit; "
            "it was refused as a possible zip bomb.",
        )
    for member in members:
        big = member.file_size >= _RATIO_CHECK_MIN_BYTES
        if big and member.file_size > _MAX_ZIP_RATIO * max(member.compress_size, 1):
            raise IngestError(
                "zip_bomb",
                f"{name!r} contains a part that expands more than {_MAX_ZIP_RATIO}-fold "
                f"({member.filename!r}); it was refused as a possible zip bomb.",
            )


def _open_docx(data: bytes, name: str) -> DocxDocument:
    try:
        return docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, LxmlError) as exc:
        raise IngestError("corrupt", f"{name!r} is not a valid DOCX file (damaged XML).") from exc


def _docx_blocks(document: DocxDocument) -> Iterator[Block]:
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            rows = [[cell.text for cell in row.cells] for row in item.rows]
            if any(any(c.strip() for c in row) for row in rows):
                yield Block(kind="table", text=_pipe_table(rows))
        elif isinstance(item, Paragraph):
            block = _docx_paragraph(item)
            if block is not None:
                yield block


def _docx_paragraph(paragraph: Paragraph) -> Block | None:
    text = _clean_paragraph(paragraph.text)
    if not text:
        return None
    style = paragraph.style.name if paragraph.style is not None else ""
    style = style or ""
    if style == "Title":
        return _heading(text, 1)
    match = re.fullmatch(r"Heading (\d)", style)
    if match:
        return _heading(text, int(match.group(1)))
    if style.startswith("List"):
        return _text("- " + text)
    return _text(text)


def _docx_meta(document: DocxDocument) -> DocumentMeta:
    props = document.core_properties
    standard = {
        "title": _meta_value(props.title),
        "issuer": _meta_value(props.category),
        "version": _meta_value(props.version),
        "specialty": _meta_value(props.subject),
    }
    keywords: dict[str, str | None] = dict(_keyword_pairs(props.keywords))
    return _first_of(keywords, standard)


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

_SKIPPED_TAGS = ("script", "style", "nav", "footer", "noscript", "template", "head")
_HEADING_TAGS = {f"h{n}": n for n in range(1, 7)}
# Inline elements are flattened into the surrounding paragraph; any other element is a container.
_INLINE_TAGS = frozenset(
    "a abbr b bdi bdo cite code data del dfn em font i ins kbd label mark q s samp small span strike "
    "strong sub sup time tt u var wbr".split()
)


def _parse_html(data: bytes, name: str, limits: IngestSettings) -> ParsedDocument:
    soup = _guarded(name, lambda: BeautifulSoup(data, "html.parser"))
    meta = _guarded(name, lambda: _html_meta(soup))
    blocks = _guarded(name, lambda: _html_blocks(soup))
    return ParsedDocument(file_name=name, format="html", meta=meta, blocks=blocks)


def _html_blocks(soup: BeautifulSoup) -> list[Block]:
    for tag in soup.find_all(_SKIPPED_TAGS):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    blocks: list[Block] = []
    _html_walk(soup, blocks, bullet=False)
    return blocks


def _html_meta(soup: BeautifulSoup) -> DocumentMeta:
    found: dict[str, str | None] = {}
    if soup.title is not None:
        found["title"] = _meta_value(soup.title.get_text())
    for tag in soup.find_all("meta"):
        key, content = tag.get("name"), tag.get("content")
        if isinstance(key, str) and isinstance(content, str) and _meta_key(key) in _META_KEYS:
            found.setdefault(_meta_key(key), _meta_value(content))
    return _first_of(found)


def _html_walk(node: Tag, blocks: list[Block], bullet: bool) -> None:
    """Emit blocks in document order; inline runs between block elements become paragraphs."""
    inline: list[str] = []

    def flush() -> None:
        text = _clean_paragraph("".join(inline))
        inline.clear()
        if text:
            blocks.append(_text("- " + text if bullet else text))

    for child in node.children:
        if isinstance(child, Tag) and child.name in _INLINE_TAGS:
            inline.append(child.get_text())
        elif isinstance(child, Tag):
            flush()
            _html_block(child, blocks, bullet)
        elif isinstance(child, NavigableString) and not isinstance(child, PreformattedString):
            inline.append(str(child))
    flush()


def _html_block(tag: Tag, blocks: list[Block], in_item: bool) -> None:
    if tag.name in _HEADING_TAGS:
        text = _clean_paragraph(tag.get_text())
        if text:
            blocks.append(_heading(text, _HEADING_TAGS[tag.name]))
    elif tag.name == "table":
        _html_table(tag, blocks)
    else:
        # A <p> inside an <li> is still a list item; a nested <ul> starts its own items.
        _html_walk(tag, blocks, bullet=tag.name == "li" or (in_item and tag.name not in ("ul", "ol")))


def _html_table(table: Tag, blocks: list[Block]) -> None:
    caption = table.find("caption")
    if isinstance(caption, Tag) and _clean_paragraph(caption.get_text()):
        blocks.append(_text(_clean_paragraph(caption.get_text())))
    rows = []
    for tr in table.find_all("tr"):
        cells = [c.get_text(" ") for c in tr.find_all(["th", "td"], recursive=False)]
        if any(c.strip() for c in cells):
            rows.append(cells)
    if rows:
        blocks.append(Block(kind="table", text=_pipe_table(rows)))


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------


class _FrontMatterLoader(yaml.SafeLoader):
    """SafeLoader that keeps numbers as written: `version: 2.10` must not become the float 2.1."""


_FrontMatterLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":int", ":float"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_ATX = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_FENCE = re.compile(r"^(```|~~~)")
_RULE = re.compile(r"^([-*_])(\s*\1){2,}$")


def _parse_markdown(data: bytes, name: str, limits: IngestSettings) -> ParsedDocument:
    text = _decode_utf8(data, name)
    front, body_lines = _split_front_matter(text, name)
    blocks = _markdown_blocks(body_lines)
    meta = _first_of(front)
    if meta.title is None:
        meta.title = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), None)
    return ParsedDocument(file_name=name, format="markdown", meta=meta, blocks=blocks)


def _split_front_matter(text: str, name: str) -> tuple[dict[str, str | None], list[str]]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, lines
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() in ("---", "...")), None)
    if end is None:
        return {}, lines
    try:
        loaded = _guarded(name, lambda: yaml.load("\n".join(lines[1:end]), Loader=_FrontMatterLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" near line {mark.line + 2}" if mark is not None else ""
        raise IngestError("corrupt", f"{name!r} has invalid YAML front matter{where}: {_yaml_problem(exc)}.") from exc
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise IngestError("corrupt", f"{name!r} has front matter that is not a list of 'key: value' lines.")
    front = {_meta_key(str(k)): _meta_value(v) for k, v in loaded.items()}
    return front, lines[end + 1 :]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    return str(getattr(exc, "problem", None) or "cannot be read")


def _markdown_blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    paragraph: list[str] = []
    i = 0

    def flush() -> None:
        if paragraph:
            blocks.append(_text(_join_list_aware(paragraph)))
            paragraph.clear()

    while i < len(lines):
        line = lines[i].strip()
        if _FENCE.match(line):
            flush()
            i = _markdown_fence(lines, i, blocks)
            continue
        if line.startswith("|"):
            flush()
            i = _markdown_table(lines, i, blocks)
            continue
        heading = _ATX.match(line)
        if heading or not line or _RULE.match(line):
            flush()
        if heading and _clean_line(heading.group(2)):
            blocks.append(_heading(_clean_line(heading.group(2)), len(heading.group(1))))
        elif line and not heading and not _RULE.match(line):
            paragraph.append(line)
        i += 1
    flush()
    return blocks


def _markdown_fence(lines: list[str], start: int, blocks: list[Block]) -> int:
    """Keep a fenced block verbatim (one text block) so '# comment' inside it is not a heading."""
    fence = lines[start].strip()[:3]
    end = next((j for j in range(start + 1, len(lines)) if lines[j].strip().startswith(fence)), len(lines))
    content = _clean_lines("\n".join(lines[start + 1 : end]))
    if content:
        blocks.append(_text(content))
    return end + 1


def _markdown_table(lines: list[str], start: int, blocks: list[Block]) -> int:
    end = start
    while end < len(lines) and lines[end].strip().startswith("|"):
        end += 1
    blocks.append(Block(kind="table", text=_clean_lines("\n".join(lines[start:end]))))
    return end


def _join_list_aware(lines: list[str]) -> str:
    """Join a paragraph's lines; each list item starts a new line so a list stays readable."""
    out: list[str] = []
    for line in lines:
        if out and not _LIST_ITEM.match(line):
            out[-1] = _clean_line(out[-1] + " " + line)
        else:
            out.append(_clean_line(line))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Plain text
# --------------------------------------------------------------------------------------------------


def _decode_utf8(data: bytes, name: str) -> str:
    # We refuse rather than guess the encoding: a mis-decoded character in a dose ('µg' read as
    # 'Âµg', or worse, 'mg') is a clinical risk that nobody would notice in an answer.
    try:
        return data.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise IngestError("not_utf8", f"{name!r} is not UTF-8 text; re-save it as UTF-8 and upload again.") from exc


_TEXT_META_PARAGRAPHS = 5


def _parse_text(data: bytes, name: str, limits: IngestSettings) -> ParsedDocument:
    text = _decode_utf8(data, name)
    blocks: list[Block] = []
    found: dict[str, str | None] = {}
    for number, paragraph in enumerate(re.split(r"\n\s*\n", text)):
        lines = [_clean_line(line) for line in paragraph.split("\n") if line.strip()]
        pairs = _text_meta_pairs(lines) if number < _TEXT_META_PARAGRAPHS and not found else None
        if pairs:
            found.update(pairs)
            continue
        level = _text_heading_level(lines[0]) if lines else None
        if level is not None:
            blocks.append(_heading(lines[0], level))
            lines = lines[1:]
        if lines:
            blocks.append(_text(_join_list_aware(lines)))
    if "title" not in found:
        found["title"] = next((b.text for b in blocks if b.kind == "heading" and not b.text[0].isdigit()), None)
    return ParsedDocument(file_name=name, format="text", meta=_first_of(found), blocks=blocks)


def _text_meta_pairs(lines: list[str]) -> dict[str, str | None] | None:
    """A paragraph near the top made only of known 'Key: value' lines is the document's metadata."""
    pairs = [re.match(r"([A-Za-z][\w -]*?)\s*:\s*(\S.*)", line) for line in lines]
    if not lines or not all(pairs):
        return None
    meta = {_meta_key(m.group(1)): _meta_value(m.group(2)) for m in pairs if m}
    return meta if all(key in _META_KEYS for key in meta) else None


def _text_heading_level(line: str) -> int | None:
    """Numbered headings ('2.1 Who to screen') and short ALL CAPS lines.

    A short line ending in ':' is deliberately not a heading: in guidelines it is usually the lead-in
    of a list ("Ask the two screening questions:"), and making it a section would cut it off the list.
    """
    numbered = _numbered_heading_level(line)
    if numbered is not None:
        return numbered
    letters = [c for c in line if c.isalpha()]
    short = len(line) < _MAX_HEADING_CHARS
    if short and len(letters) >= 3 and line.upper() == line and not line.endswith((".", "!", "?", ",", ":")):
        return 1
    return None


# --------------------------------------------------------------------------------------------------
# Guard around third-party parsing
# --------------------------------------------------------------------------------------------------


def _guarded(name: str, step: Callable[[], T]) -> T:
    """Run one third-party parsing step; anything unexpected becomes a 'corrupt' IngestError.

    The broad catch is deliberate and limited to library code reading untrusted bytes: their failure
    modes are not fully documented, and the admin needs a clear message, not a traceback.
    """
    try:
        return step()
    except (IngestError, yaml.YAMLError):
        raise  # already explained, or explained by the caller with the line number
    except (MemoryError, RecursionError) as exc:
        raise IngestError("corrupt", f"{name!r} is too complex to read safely.") from exc
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise IngestError("corrupt", f"{name!r} could not be read; the file seems damaged.") from exc


_PARSERS: dict[FileFormat, Callable[[bytes, str, IngestSettings], ParsedDocument]] = {
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "html": _parse_html,
    "markdown": _parse_markdown,
    "text": _parse_text,
}
