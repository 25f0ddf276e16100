"""Tests for core.chunking."""

from __future__ import annotations

from core.library.chunking import chunk_document, chunk_unit_key, unit_texts
from core.library.parsing import parse_file
from core.schema import Block, Chunk, DocumentMeta, ParsedDocument
from core.settings import IngestSettings

SETTINGS = IngestSettings(chunk_size=300, chunk_overlap=60, min_chunk_chars=80)

SENTENCES = [
    f"Sentence {n} says that the dose of drug {n} is {n * 5} mg given orally once daily with food."
    for n in range(1, 13)
]
LONG = " ".join(SENTENCES)  # about 1000 characters, one paragraph


def doc(blocks: list[Block], fmt: str = "markdown") -> ParsedDocument:
    return ParsedDocument.model_validate(
        {"file_name": "g.md", "format": fmt, "meta": DocumentMeta(title="G"), "blocks": blocks}
    )


def h(text: str, level: int = 1, page: int | None = None) -> Block:
    return Block(kind="heading", text=text, level=level, page=page)


def t(text: str, page: int | None = None) -> Block:
    return Block(kind="text", text=text, page=page)


def table(rows: int, header: str = "| Drug | Dose |") -> Block:
    lines = [header, "| --- | --- |"] + [f"| Drug number {i} | {i * 10} mg twice daily |" for i in range(rows)]
    return Block(kind="table", text="\n".join(lines))


def assert_offsets_exact(parsed: ParsedDocument, chunks: list[Chunk]) -> None:
    units = unit_texts(parsed)
    for chunk in chunks:
        piece = units[chunk_unit_key(chunk)][chunk.char_start : chunk.char_end]
        if chunk.text != piece:
            # Only later pieces of a split table differ: they repeat the header lines first.
            header = "\n".join(chunk.text.split("\n")[:2])
            assert chunk.kind == "table" and chunk.text == header + "\n" + piece, chunk


def test_sections_are_never_mixed_and_headings_are_not_chunks() -> None:
    parsed = doc(
        [
            h("Asthma"),
            t("Intro about asthma."),
            h("Diagnosis", 2),
            t("Use spirometry."),
            t("Use FeNO if unsure."),
            h("Treatment", 2),
            t("Start ICS."),
            h("Paediatrics"),
            t("Children differ."),
        ]
    )
    chunks = chunk_document(parsed, "doc", IngestSettings(min_chunk_chars=0))
    assert [(c.section, c.text) for c in chunks] == [
        (["Asthma"], "Intro about asthma."),
        (["Asthma", "Diagnosis"], "Use spirometry.\n\nUse FeNO if unsure."),
        (["Asthma", "Treatment"], "Start ICS."),
        (["Paediatrics"], "Children differ."),
    ]
    assert_offsets_exact(parsed, chunks)


def test_small_sections_stay_separate_even_below_min_chunk_chars() -> None:
    parsed = doc([h("A"), t("Short."), h("B"), t("Also short.")])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert [c.section for c in chunks] == [["A"], ["B"]]


def test_repeated_heading_text_starts_a_new_chunk() -> None:
    parsed = doc([h("Notes"), t("First notes."), h("Notes"), t("Second notes.")])
    chunks = chunk_document(parsed, "doc", IngestSettings(min_chunk_chars=0))
    assert [c.text for c in chunks] == ["First notes.", "Second notes."]
    assert_offsets_exact(parsed, chunks)


def test_pdf_page_boundaries_are_respected_with_page_offsets() -> None:
    parsed = doc(
        [
            h("1. Dosing", 1, page=1),
            t("Adults: 500 mg twice daily.", page=1),
            t("Children: 10 mg/kg.", page=2),
            h("2. Monitoring", 1, page=2),
            t("Check renal function.", page=2),
        ],
        fmt="pdf",
    )
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert [(c.page, c.section, c.text) for c in chunks] == [
        (1, ["1. Dosing"], "Adults: 500 mg twice daily."),
        (2, ["1. Dosing"], "Children: 10 mg/kg."),
        (2, ["2. Monitoring"], "Check renal function."),
    ]
    # Offsets index the page text, which holds both sections of page 2.
    assert unit_texts(parsed)[(2, ())] == "Children: 10 mg/kg.\n\nCheck renal function."
    assert (chunks[2].char_start, chunks[2].char_end) == (21, 42)
    assert_offsets_exact(parsed, chunks)


def test_text_blocks_are_packed_up_to_chunk_size() -> None:
    parsed = doc([h("S")] + [t(s) for s in SENTENCES])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert len(chunks) > 1
    assert all(len(c.text) <= SETTINGS.chunk_size for c in chunks)
    assert sum(c.text.count("Sentence ") for c in chunks) == len(SENTENCES)  # no overlap between blocks
    assert_offsets_exact(parsed, chunks)


def test_long_paragraph_is_split_at_sentences_with_overlap() -> None:
    parsed = doc([h("S"), t(LONG)])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert len(chunks) >= 4
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.char_start < before.char_end, "consecutive pieces must overlap"
        shared = LONG[after.char_start : before.char_end]
        assert before.text.endswith(shared) and after.text.startswith(shared)
        assert len(shared) <= SETTINGS.chunk_overlap
    assert all(c.text.endswith(".") for c in chunks), "pieces end at sentence ends"
    assert all(len(c.text) <= SETTINGS.chunk_size for c in chunks[:-1])
    assert_offsets_exact(parsed, chunks)


def test_text_without_sentence_ends_falls_back_to_spaces() -> None:
    words = " ".join(f"word{n}" for n in range(300))
    chunks = chunk_document(doc([t(words)]), "doc", SETTINGS)
    assert len(chunks) > 1
    assert all(w.startswith("word") for c in chunks for w in c.text.split(" "))
    assert_offsets_exact(doc([t(words)]), chunks)


def test_zero_overlap_gives_disjoint_pieces() -> None:
    settings = IngestSettings(chunk_size=300, chunk_overlap=0, min_chunk_chars=0)
    chunks = chunk_document(doc([t(LONG)]), "doc", settings)
    assert all(a.char_end <= b.char_start for a, b in zip(chunks, chunks[1:], strict=False))
    assert " ".join(c.text for c in chunks) == LONG


def test_table_is_one_chunk_with_its_header() -> None:
    parsed = doc([h("Doses"), t("See the table below for doses."), table(5), t("Adjust in renal failure.")])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    tables = [c for c in chunks if c.kind == "table"]
    assert len(tables) == 1
    assert tables[0].text == table(5).text
    assert all("|" not in c.text for c in chunks if c.kind == "text")
    assert_offsets_exact(parsed, chunks)


def test_table_up_to_twice_chunk_size_is_not_split() -> None:
    block = table(12)
    assert SETTINGS.chunk_size < len(block.text) <= 2 * SETTINGS.chunk_size
    chunks = chunk_document(doc([block]), "doc", SETTINGS)
    assert [c.text for c in chunks] == [block.text]


def test_huge_table_is_split_by_rows_repeating_the_header() -> None:
    block = table(40)
    parsed = doc([h("Doses"), block])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert len(chunks) > 2 and all(c.kind == "table" for c in chunks)
    rows: list[str] = []
    for chunk in chunks:
        lines = chunk.text.split("\n")
        assert lines[:2] == ["| Drug | Dose |", "| --- | --- |"]
        assert len(chunk.text) <= SETTINGS.chunk_size
        rows += lines[2:]
    assert rows == block.text.split("\n")[2:], "every row exactly once, in order"
    assert_offsets_exact(parsed, chunks)


def test_tiny_fragment_is_merged_into_the_following_chunk() -> None:
    parsed = doc([h("S"), t("Tiny lead-in."), t(LONG)])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert chunks[0].text.startswith("Tiny lead-in.\n\nSentence 1 ")
    assert all(len(c.text) >= SETTINGS.min_chunk_chars for c in chunks)
    assert_offsets_exact(parsed, chunks)


def test_tiny_last_fragment_is_merged_into_the_previous_chunk() -> None:
    parsed = doc([h("S"), t(LONG[:290]), t("Tiny tail.")])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert len(chunks) == 1 and chunks[0].text.endswith("\n\nTiny tail.")
    assert_offsets_exact(parsed, chunks)


def test_tables_are_never_merged_with_text() -> None:
    parsed = doc([h("S"), t("Tiny note."), table(2), t("Another tiny note.")])
    chunks = chunk_document(parsed, "doc", SETTINGS)
    assert [c.kind for c in chunks] == ["text", "table", "text"]
    assert chunks[1].text == table(2).text


def test_chunk_ids_ordinals_and_determinism() -> None:
    parsed = doc([h("A"), t(LONG), h("B"), table(40), t(LONG)])
    first = chunk_document(parsed, "nice-ng136", SETTINGS)
    second = chunk_document(parsed, "nice-ng136", SETTINGS)
    assert first == second
    assert [c.ordinal for c in first] == list(range(len(first)))
    assert [c.chunk_id for c in first] == [f"nice-ng136-{i:04d}" for i in range(len(first))]
    assert all(c.doc_id == "nice-ng136" for c in first)
    assert_offsets_exact(parsed, first)


def test_offsets_exact_on_a_parsed_markdown_file() -> None:
    text = (
        "# Gout\n\nIntro.\n\n## Acute\n\n"
        + LONG
        + "\n\n| A | B |\n|---|---|\n| 1 | 2 |\n\nShort.\n\n## Chronic\n\n"
        + "\n\n".join(SENTENCES)
    )
    parsed = parse_file(text.encode(), "gout.md", IngestSettings())
    chunks = chunk_document(parsed, "gout", SETTINGS)
    assert {tuple(c.section) for c in chunks} == {("Gout",), ("Gout", "Acute"), ("Gout", "Chronic")}
    assert_offsets_exact(parsed, chunks)
