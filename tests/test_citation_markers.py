"""One citation-marker syntax everywhere: the pipeline's format check, the verifier and the screen read
`[1; 2]`, `[ref 1]` or `[Source 2]` the same way (they once used three regexes that disagreed, and an
answer the verifier accepted was refused by the format check as invalid output)."""

from __future__ import annotations

import pytest

from core.answering.citations import cited_numbers, parse_cited, strip_markers
from core.answering.pipeline import declines, format_ok, strip_escalation
from core.answering.presentation import answer_html
from core.answers import Answer, SentenceCheck

MARKED = [
    ("Give 0.5 mg IM [1].", [1]),
    ("Give 0.5 mg IM [1; 2].", [1, 2]),
    ("Give 0.5 mg IM [ref 1].", [1]),
    ("Give 0.5 mg IM [Source 2].", [2]),
    ("Give 0.5 mg IM [passages 1 and 2].", [1, 2]),
    ("Give 0.5 mg IM [1-3].", [1, 2, 3]),
    ("Give 0.5 mg IM [1][2].", [1, 2]),
]


@pytest.mark.parametrize(("text", "numbers"), MARKED)
def test_every_reader_sees_the_same_markers(text: str, numbers: list[int]) -> None:
    assert cited_numbers(text) == numbers
    assert parse_cited(text)[0].citations == numbers
    assert format_ok(text, n_passages=3)
    assert not format_ok(text, n_passages=max(numbers) - 1)
    assert not declines(f"NOT IN GUIDELINES. {text}")
    assert strip_markers(text) == "Give 0.5 mg IM."
    answer = Answer(status="answered", text=text, sentences=[
        SentenceCheck(text=text, citations=numbers, supported=True, score=0.9)])
    assert "Give 0.5 mg IM." in answer_html(answer) and "[" not in answer_html(answer).replace("<sup>[", "")


def test_text_without_a_marker() -> None:
    assert cited_numbers("Give 0.5 mg IM.") == [] and not format_ok("Give 0.5 mg IM.", 3)
    assert declines("NOT IN GUIDELINES")
    # A marker keeps a paragraph that happens to resemble the urgent-care message.
    message = "Call 999 now."
    assert strip_escalation(f"{message}\n\nGive 0.5 mg IM [ref 1].", message) == "Give 0.5 mg IM [ref 1]."
    assert strip_escalation("Call 999 now [ref 1].\n\nMore.", message).startswith("Call 999 now [ref 1].")
