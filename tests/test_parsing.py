"""Tests for core.parsing: every fixture file is built at test time."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from core.errors import IngestError, IngestProblem
from core.library.parsing import SUPPORTED_SUFFIXES, parse_file, safe_file_name
from core.schema import Block, ParsedDocument
from core.settings import IngestSettings

LIMITS = IngestSettings()

LONG_PARAGRAPH = (
    "Offer ambulatory blood pressure monitoring to confirm the diagnosis of hypertension if the "
    "clinic blood pressure is between 140/90 mmHg and 180/120 mmHg. If ambulatory monitoring is "
    "unsuitable or not tolerated, offer home blood pressure monitoring instead."
)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def expect_problem(
    data: bytes, name: str, problem: IngestProblem, limits: IngestSettings = LIMITS, shown: str | None = None
) -> IngestError:
    """Parsing must fail with `problem`, and the message must name the file."""
    with pytest.raises(IngestError) as caught:
        parse_file(data, name, limits)
    assert caught.value.problem == problem, str(caught.value)
    assert repr(shown if shown is not None else name) in str(caught.value)
    return caught.value


def headings(parsed: ParsedDocument) -> list[tuple[str, int]]:
    return [(b.text, b.level) for b in parsed.blocks if b.kind == "heading"]


def texts(parsed: ParsedDocument) -> list[str]:
    return [b.text for b in parsed.blocks if b.kind == "text"]


def save(tmp_path: Path, name: str, data: bytes) -> bytes:
    """Write the fixture to tmp_path (inspectable when a test fails) and read it back."""
    path = tmp_path / name
    path.write_bytes(data)
    return path.read_bytes()


class _Pdf:
    """Small fpdf2 wrapper writing paragraphs the way a guideline generator would."""

    def __init__(self) -> None:
        self.pdf = FPDF()
        self.pdf.set_auto_page_break(True, margin=15)

    def page(self) -> _Pdf:
        self.pdf.add_page()
        return self

    def para(self, text: str, size: int = 11, style: str = "", gap: float = 3) -> _Pdf:
        self.pdf.set_font("Helvetica", style, size)
        self.pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(gap)
        return self

    def heading(self, text: str) -> _Pdf:
        return self.para(text, size=14, style="B", gap=1)

    def bytes(self) -> bytes:
        return bytes(self.pdf.output())


def guideline_pdf() -> bytes:
    doc = _Pdf()
    doc.pdf.set_title("Hypertension in Adults")
    doc.pdf.set_author("NICE")
    doc.pdf.set_subject("cardiology")
    doc.pdf.set_keywords("hypertension; version=2.1; effective_date=2024-03-01")
    doc.page().heading("1. Diagnosis").para(LONG_PARAGRAPH).para("Measure blood pressure in both arms.")
    doc.page().heading("2.3 Follow-up").para("Review annually.", gap=0)
    doc.para("Risk Assessment", gap=0).para("Use QRISK3 to assess cardiovascular risk.")
    doc.page()
    doc.pdf.rect(20, 20, 60, 40, style="F")  # a page with a drawing and no text layer
    return doc.bytes()


def encrypt_pdf(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def simple_pdf(text: str = "Give aspirin 300 mg.") -> bytes:
    return _Pdf().page().para(text).bytes()


def guideline_docx(**core: object) -> bytes:
    document = docx.Document()
    document.add_paragraph("Asthma in Children", style="Title")
    document.add_heading("Diagnosis", level=1)
    document.add_paragraph("Use spirometry in children over 5 years.")
    document.add_heading("Treatment", level=2)
    document.add_paragraph("Start a low-dose inhaled corticosteroid.", style="List Bullet")
    table = document.add_table(rows=3, cols=2)
    rows = [("Drug", "Dose"), ("Budesonide", "200 µg"), ("Salbutamol", "100 µg")]
    for row, (drug, dose) in zip(table.rows, rows, strict=True):
        row.cells[0].text, row.cells[1].text = drug, dose
    document.add_paragraph("Review inhaler technique at every visit.")
    props = document.core_properties
    for key, value in core.items():
        setattr(props, key, value)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], level: int = 6) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def zeros_docx(megabytes: int) -> bytes:
    """A 'docx' whose document.xml is `megabytes` of zeros, streamed so the test stays light."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = bytes(1 << 22)
            for _ in range(megabytes // 4):
                member.write(block)
    return out.getvalue()


# --------------------------------------------------------------------------------------------------
# Names, sizes, types
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [("../../x.pdf", "x.pdf"), ("..\\..\\evil\\x.pdf", "x.pdf"), ("/etc/notes.txt", "notes.txt"), ("a b.md", "a b.md")],
)
def test_safe_file_name_strips_directories(raw: str, safe: str) -> None:
    assert safe_file_name(raw) == safe


@pytest.mark.parametrize("raw", ["", "   ", ".", "..", "dir/", "a/..", "x\x00.pdf", "x\n.pdf"])
def test_safe_file_name_rejects_unusable_names(raw: str) -> None:
    with pytest.raises(IngestError) as caught:
        safe_file_name(raw)
    assert caught.value.problem == "bad_name"
    assert repr(raw) in str(caught.value)


def test_path_traversal_name_is_parsed_under_its_bare_name(tmp_path: Path) -> None:
    data = save(tmp_path, "x.md", b"# Gout\n\nGive colchicine.\n")
    parsed = parse_file(data, "../../etc/x.md", LIMITS)
    assert parsed.file_name == "x.md"


def test_bad_name_via_parse_file() -> None:
    expect_problem(b"text", "../..", "bad_name")


def test_empty_file() -> None:
    expect_problem(b"", "empty.pdf", "empty")


def test_too_large_names_the_limit() -> None:
    error = expect_problem(b"x" * 20_000, "big.txt", "too_large", IngestSettings(max_file_mb=0.01))
    assert "0.01 MB" in str(error)


def test_unsupported_type_lists_supported_ones() -> None:
    error = expect_problem(b"MZ\x90\x00", "setup.EXE", "unsupported_type")
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in str(error)


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    parsed = parse_file(save(tmp_path, "N.TXT", b"Give fluids."), "N.TXT", LIMITS)
    assert parsed.format == "text"


# --------------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------------


def test_pdf_pages_headings_paragraphs_and_meta(tmp_path: Path) -> None:
    parsed = parse_file(save(tmp_path, "htn.pdf", guideline_pdf()), "htn.pdf", LIMITS)
    assert parsed.format == "pdf"
    assert parsed.pages == 3
    assert headings(parsed) == [("1. Diagnosis", 1), ("2.3 Follow-up", 2), ("Risk Assessment", 1)]
    # The wrapped paragraph comes back as one block with single spaces.
    assert LONG_PARAGRAPH in texts(parsed)
    assert "Measure blood pressure in both arms." in texts(parsed)
    assert [b.page for b in parsed.blocks] == [1, 1, 1, 2, 2, 2, 2]
    assert parsed.meta.model_dump() == {
        "title": "Hypertension in Adults",
        "issuer": "NICE",
        "version": "2.1",
        "effective_date": "2024-03-01",
        "specialty": "cardiology",
    }
    assert len(parsed.warnings) == 1 and "3" in parsed.warnings[0] and "htn.pdf" in parsed.warnings[0]


def test_pdf_running_headers_footers_dropped_and_list_items_split() -> None:
    doc = _Pdf()
    for n in range(1, 4):
        doc.page().para("Northbridge Trust - DEMO", gap=0).heading(f"{n}. Section {n}")
        doc.para(
            "- Give oxygen to keep saturation between 94 and 98 percent in adults without chronic lung disease.", gap=0
        )
        doc.para("- Give fluids.", gap=0).para(f"Northbridge Trust - page {n} of 3", gap=0)
    parsed = parse_file(doc.bytes(), "o2.pdf", LIMITS)
    assert "Northbridge" not in " ".join(b.text for b in parsed.blocks)
    assert texts(parsed)[:2] == [
        "- Give oxygen to keep saturation between 94 and 98 percent in adults without chronic lung disease.",
        "- Give fluids.",
    ]
    assert headings(parsed) == [("1. Section 1", 1), ("2. Section 2", 1), ("3. Section 3", 1)]


def test_pdf_wrapped_line_starting_with_a_number_is_not_a_heading() -> None:
    text = "Start basal insulin at a weight-based dose of\n10 IU per day and titrate\nevery three days."
    parsed = parse_file(_Pdf().page().para(text).bytes(), "insulin.pdf", LIMITS)
    assert headings(parsed) == []
    assert texts(parsed) == [
        "Start basal insulin at a weight-based dose of 10 IU per day and titrate every three days."
    ]


def test_pdf_custom_info_keys_win_over_keywords() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(guideline_pdf())))
    writer.add_metadata({"/Version": "3.0", "/EffectiveDate": "2025-01-01", "/Issuer": "ESC"})
    out = io.BytesIO()
    writer.write(out)
    meta = parse_file(out.getvalue(), "htn.pdf", LIMITS).meta
    assert (meta.issuer, meta.version, meta.effective_date) == ("ESC", "3.0", "2025-01-01")


def test_pdf_title_falls_back_to_file_stem() -> None:
    parsed = parse_file(simple_pdf(), "chest_pain-triage.pdf", LIMITS)
    assert parsed.meta.title == "chest pain triage"


def test_pdf_with_user_password_is_refused(tmp_path: Path) -> None:
    data = save(tmp_path, "locked.pdf", encrypt_pdf(simple_pdf(), "secret"))
    error = expect_problem(data, "locked.pdf", "encrypted")
    assert "password" in str(error)


def test_pdf_with_empty_user_password_parses(tmp_path: Path) -> None:
    data = save(tmp_path, "owner-only.pdf", encrypt_pdf(simple_pdf(), ""))
    parsed = parse_file(data, "owner-only.pdf", LIMITS)
    assert texts(parsed) == ["Give aspirin 300 mg."]


def test_pdf_without_text_layer_needs_ocr(tmp_path: Path) -> None:
    doc = _Pdf().page()
    doc.pdf.rect(20, 20, 80, 120, style="F")
    error = expect_problem(save(tmp_path, "scan.pdf", doc.bytes()), "scan.pdf", "needs_ocr")
    assert "OCR" in str(error)


def test_truncated_pdf_is_corrupt(tmp_path: Path) -> None:
    data = guideline_pdf()
    expect_problem(save(tmp_path, "cut.pdf", data[: len(data) // 2]), "cut.pdf", "corrupt")


def test_non_pdf_bytes_named_pdf_are_corrupt() -> None:
    expect_problem(b"<html>not a pdf</html>", "fake.pdf", "corrupt")


# --------------------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------------------


def test_docx_blocks_in_document_order_with_table_and_meta(tmp_path: Path) -> None:
    data = guideline_docx(
        title="Asthma in Children (BTS)",
        category="BTS/SIGN",
        version="2024.1",
        subject="respiratory",
        keywords="asthma; effective_date=2024-05-01",
    )
    parsed = parse_file(save(tmp_path, "asthma.docx", data), "asthma.docx", LIMITS)
    assert [(b.kind, b.level) for b in parsed.blocks] == [
        ("heading", 1),
        ("heading", 1),
        ("text", 0),
        ("heading", 2),
        ("text", 0),
        ("table", 0),
        ("text", 0),
    ]
    assert headings(parsed) == [("Asthma in Children", 1), ("Diagnosis", 1), ("Treatment", 2)]
    assert "- Start a low-dose inhaled corticosteroid." in texts(parsed)
    table = next(b for b in parsed.blocks if b.kind == "table")
    assert table.text == "| Drug | Dose |\n| --- | --- |\n| Budesonide | 200 µg |\n| Salbutamol | 100 µg |"
    assert parsed.meta.model_dump() == {
        "title": "Asthma in Children (BTS)",
        "issuer": "BTS/SIGN",
        "version": "2024.1",
        "effective_date": "2024-05-01",
        "specialty": "respiratory",
    }


def test_docx_created_date_is_not_taken_as_effective_date() -> None:
    # When a file was written is not when the guideline takes effect.
    parsed = parse_file(guideline_docx(created=dt.datetime(2023, 1, 2, 9, 0)), "a.docx", LIMITS)
    assert parsed.meta.effective_date is None


def test_docx_ignores_template_defaults() -> None:
    meta = parse_file(guideline_docx(), "asthma_children.docx", LIMITS).meta
    # python-docx's template says author 'python-docx', created 2013: neither is guideline metadata.
    assert meta.issuer is None and meta.effective_date is None
    assert meta.title == "asthma children"


def test_docx_zip_bomb_by_total_size(tmp_path: Path) -> None:
    data = save(tmp_path, "bomb.docx", zip_bytes({"word/document.xml": bytes(2 * 1024 * 1024)}))
    error = expect_problem(data, "bomb.docx", "zip_bomb", IngestSettings(max_unzipped_mb=1))
    assert "1 MB" in str(error)


def test_docx_zip_bomb_200_mb_of_zeros(tmp_path: Path) -> None:
    expect_problem(save(tmp_path, "bomb200.docx", zeros_docx(200)), "bomb200.docx", "zip_bomb")


def test_docx_zip_bomb_by_ratio_under_the_size_limit() -> None:
    error = expect_problem(zeros_docx(8), "ratio.docx", "zip_bomb")
    assert "word/document.xml" in str(error)


def test_zip_that_is_not_a_docx_is_corrupt(tmp_path: Path) -> None:
    data = save(tmp_path, "photos.docx", zip_bytes({"photo.txt": b"not a document"}))
    error = expect_problem(data, "photos.docx", "corrupt")
    assert "DOCX" in str(error)


def test_random_bytes_named_docx_are_corrupt() -> None:
    expect_problem(bytes(range(256)) * 8, "random.docx", "corrupt")


def test_docx_with_broken_xml_is_corrupt() -> None:
    valid = zipfile.ZipFile(io.BytesIO(guideline_docx()))
    members = {name: valid.read(name) for name in valid.namelist()}
    members["word/document.xml"] = b"<w:document><unclosed"
    expect_problem(zip_bytes(members), "broken.docx", "corrupt")


# --------------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------------

HTML = b"""<!doctype html>
<html><head><title>Sepsis Recognition</title>
<meta name="issuer" content="NHS England"><meta name="version" content="1.4">
<meta name="effective_date" content="2024-02-01"><meta name="specialty" content="emergency medicine">
<style>p { color: red }</style><script>var dose = "ignore me";</script></head>
<body><nav>Home | Guidelines</nav>
<h1>Sepsis</h1><p>Suspect   sepsis in any <b>unwell</b> patient.</p>
<h2>Red flags</h2><ul><li>Systolic BP &lt; 90 mmHg</li><li>Heart rate &gt; 130</li></ul>
<table><caption>Antibiotic timing</caption>
<tr><th>Risk</th><th>Within</th></tr><tr><td>High</td><td>1 hour</td></tr><tr><td>Moderate</td><td>3 hours</td></tr>
</table>
<div>Loose text in a div.</div>
<footer>Copyright</footer></body></html>"""


def test_html_blocks_tables_and_meta(tmp_path: Path) -> None:
    parsed = parse_file(save(tmp_path, "sepsis.html", HTML), "sepsis.html", LIMITS)
    assert headings(parsed) == [("Sepsis", 1), ("Red flags", 2)]
    assert texts(parsed) == [
        "Suspect sepsis in any unwell patient.",
        "- Systolic BP < 90 mmHg",
        "- Heart rate > 130",
        "Antibiotic timing",
        "Loose text in a div.",
    ]
    table = next(b for b in parsed.blocks if b.kind == "table")
    assert table.text == "| Risk | Within |\n| --- | --- |\n| High | 1 hour |\n| Moderate | 3 hours |"
    all_text = " ".join(b.text for b in parsed.blocks)
    assert "ignore me" not in all_text and "Home" not in all_text and "Copyright" not in all_text
    assert parsed.meta.model_dump() == {
        "title": "Sepsis Recognition",
        "issuer": "NHS England",
        "version": "1.4",
        "effective_date": "2024-02-01",
        "specialty": "emergency medicine",
    }


def test_html_list_item_paragraphs_keep_their_bullet() -> None:
    data = b"<ul><li><p>Check glucose.</p><ul><li>Below 4 mmol/L: treat.</li></ul></li></ul>"
    parsed = parse_file(data, "glucose.html", LIMITS)
    assert texts(parsed) == ["- Check glucose.", "- Below 4 mmol/L: treat."]


def test_html_with_no_text() -> None:
    expect_problem(b"<html><script>x()</script><nav>menu</nav></html>", "blank.htm", "no_text")


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------

MARKDOWN = """---
issuer: WHO
version: 2.10
effective_date: 2023-11-15
specialty: infectious disease
---
# Malaria Treatment

Treat uncomplicated malaria with an artemisinin-based combination
therapy (ACT) for three days.

## Dosing

| Weight (kg) | Tablets per dose |
|---|---|
| 5 to <15 | 1 |
| 15 to <25 | 2 |

- Give the first dose under supervision.
- Repeat the dose if vomited
  within 30 minutes.

```
# not a heading
```
"""


def test_markdown_front_matter_headings_table_lists(tmp_path: Path) -> None:
    parsed = parse_file(save(tmp_path, "malaria.md", MARKDOWN.encode()), "malaria.md", LIMITS)
    assert parsed.meta.model_dump() == {
        "title": "Malaria Treatment",
        "issuer": "WHO",
        "version": "2.10",
        "effective_date": "2023-11-15",
        "specialty": "infectious disease",
    }
    assert headings(parsed) == [("Malaria Treatment", 1), ("Dosing", 2)]
    assert texts(parsed) == [
        "Treat uncomplicated malaria with an artemisinin-based combination therapy (ACT) for three days.",
        "- Give the first dose under supervision.\n- Repeat the dose if vomited within 30 minutes.",
        "# not a heading",
    ]
    table = next(b for b in parsed.blocks if b.kind == "table")
    assert table.text.splitlines()[0] == "| Weight (kg) | Tablets per dose |"
    assert len(table.text.splitlines()) == 4


def test_markdown_title_from_front_matter_wins() -> None:
    data = b"---\ntitle: Official Title\n---\n# Heading\n\nBody.\n"
    assert parse_file(data, "x.markdown", LIMITS).meta.title == "Official Title"


def test_markdown_invalid_front_matter_names_the_line() -> None:
    data = b"---\nissuer: WHO\nversion: [1, 2\n---\n# T\n\nBody.\n"
    error = expect_problem(data, "bad.md", "corrupt")
    assert "line 3" in str(error)


# --------------------------------------------------------------------------------------------------
# Plain text
# --------------------------------------------------------------------------------------------------


def test_text_paragraphs_and_headings_with_bom(tmp_path: Path) -> None:
    raw = "\ufeff1. DOSAGE\nGive 5 µg/kg.\n\n1.1 Monitoring\n\nCheck levels\ndaily:\n\n- urea\n- creatinine\n".encode()
    parsed = parse_file(save(tmp_path, "renal_notes.txt", raw), "renal_notes.txt", LIMITS)
    assert parsed.blocks == [
        Block(kind="heading", text="1. DOSAGE", level=1),
        Block(kind="text", text="Give 5 µg/kg."),
        Block(kind="heading", text="1.1 Monitoring", level=2),
        Block(kind="text", text="Check levels daily:"),  # a lead-in ending ':' is not a heading
        Block(kind="text", text="- urea\n- creatinine"),
    ]
    assert parsed.meta.title == "renal notes"


def test_text_metadata_paragraph_and_title_heading() -> None:
    raw = (
        b"Demo only, not advice.\n\nGOUT IN ADULTS\n\nIssuer: Northbridge\nVersion: 1.2\nEffective date: 2023-06-01\n"
        b"Specialty: Rheumatology\n\n1. TREATMENT\n\nGive colchicine 500 micrograms.\n"
    )
    parsed = parse_file(raw, "gout.txt", LIMITS)
    assert parsed.meta.model_dump() == {
        "title": "GOUT IN ADULTS",
        "issuer": "Northbridge",
        "version": "1.2",
        "effective_date": "2023-06-01",
        "specialty": "Rheumatology",
    }
    assert "Issuer" not in " ".join(b.text for b in parsed.blocks)


def test_latin1_text_is_refused(tmp_path: Path) -> None:
    data = save(tmp_path, "latin.txt", "Give 5 µg/kg daily.".encode("latin-1"))
    error = expect_problem(data, "latin.txt", "not_utf8")
    assert "UTF-8" in str(error)


def test_whitespace_only_text_has_no_text() -> None:
    expect_problem(b"  \n\n\t\n", "blank.txt", "no_text")


# --------------------------------------------------------------------------------------------------
# Hostile input never leaks a library exception
# --------------------------------------------------------------------------------------------------


def test_deeply_nested_html_is_refused_cleanly() -> None:
    expect_problem(b"<div>" * 5000 + b"x", "deep.html", "corrupt")


def test_yaml_front_matter_cannot_construct_objects() -> None:
    expect_problem(b"---\n!!python/object/apply:os.system ['true']\n---\nBody\n", "evil.md", "corrupt")
