"""How answers read on screen: marked unsupported sentences, highlighted quotes, captions, history."""

from __future__ import annotations

from core.answering.pipeline import PII_WARNING
from core.answering.presentation import answer_html, highlight, history, split_warnings, usage_caption
from core.answers import AdapterRef, Answer, SentenceCheck, TokenUsage


def test_unsupported_sentence_is_marked_with_its_reason_and_markers_become_superscripts() -> None:
    answer = Answer(status="answered", text="", sentences=[
        SentenceCheck(text="Give adrenaline 0.5 mg IM [1].", citations=[1], supported=True, score=0.9),
        SentenceCheck(text="Repeat after 2 minutes [2].", citations=[2], supported=False, score=0.4,
                      problems=["2 minutes is not in [2]"]),
    ])
    out = answer_html(answer)
    assert "Give adrenaline 0.5 mg IM. <sup>[1]</sup>" in out
    assert "⚠ Repeat after 2 minutes. <sup>[2]</sup>" in out and "unverified: 2 minutes is not in [2]" in out
    assert "[1]." not in out


def test_highlight_escapes_and_marks_the_quote() -> None:
    assert highlight("a <b> c. Give 5 mg.", "Give 5 mg.") == "a &lt;b&gt; c. <mark>Give 5 mg.</mark>"
    assert highlight("text", "absent") == "text"


def test_usage_caption_and_warnings() -> None:
    answer = Answer(status="answered", text="x", model="m", backend="embedded", prompt_version="v2",
                    rule_set_version="r1", adapter=AdapterRef(name="cite", scale=0.5),
                    tokens=TokenUsage(prompt=1800, completion=40, context_window=8192),
                    warnings=[PII_WARNING.format(kinds="NAME"), "2 lower-ranked passage(s) left out"])
    assert "cite ×0.5 · prompt v2 · rules r1 · 1,840 / 8,192 tokens" in usage_caption(answer)
    prominent, minor = split_warnings(answer)
    assert len(prominent) == 1 and "NAME" in prominent[0] and minor == ["2 lower-ranked passage(s) left out"]


def test_history_keeps_only_answered_turns() -> None:
    turns: list[dict[str, object]] = [
        {"question": "q1", "answer": Answer(status="answered", text="a1").model_dump(mode="json")},
        {"question": "q2", "answer": None},
    ]
    assert [(t.question, t.answer) for t in history(turns)] == [("q1", "a1")]
