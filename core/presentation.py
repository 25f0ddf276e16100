"""How an `Answer` reads on screen, as plain functions (HTML strings, captions) the UI only displays."""

from __future__ import annotations

import html
import re

from core.answers import Answer
from core.pipeline import PII_WARNING, Turn

_MARK = re.compile(r"\s*\[(?:source|passage)?\s*\d+(?:\s*[,–-]\s*\d+)*\]", re.IGNORECASE)


def answer_html(answer: Answer) -> str:
    """Sentences with their citation markers; an unsupported sentence is highlighted with the reason."""
    parts = []
    for s in answer.sentences:
        marks = "".join(f"<sup>[{n}]</sup>" for n in s.citations)
        text = html.escape(_MARK.sub("", s.text).strip())
        if s.supported:
            parts.append(f"{text} {marks}")
        else:
            why = html.escape("; ".join(s.problems) or "not supported by the cited passage")
            parts.append(f"<span style='background:#fff3cd' title='{why}'>⚠ {text} {marks} <em>(unverified: {why})</em></span>")
    return " ".join(parts) if parts else html.escape(answer.text)


def highlight(passage: str, quote: str) -> str:
    """The passage as HTML with the supporting quote marked."""
    body = html.escape(passage)
    q = html.escape(quote.strip())
    return body.replace(q, f"<mark>{q}</mark>") if q and q in body else body


def usage_caption(answer: Answer) -> str:
    """Model, adapter, prompt and rule versions, token usage and time, shown under every answer."""
    t = answer.tokens
    adapter = f"{answer.adapter.name} ×{answer.adapter.scale:g}" if answer.adapter else "no adapter"
    return (
        f"{answer.model} ({answer.backend}) · {adapter} · prompt {answer.prompt_version} · "
        f"rules {answer.rule_set_version} · {t.prompt + t.completion:,} / {t.context_window:,} tokens · "
        f"{answer.timings.total_s:.1f} s"
    )


def history(turns: list[dict[str, object]]) -> list[Turn]:
    """Earlier answered turns of a chat (stored as Answer JSON) for follow-up condensation."""
    return [Turn(question=str(t["question"]), answer=Answer.model_validate(t["answer"]).text)
            for t in turns if t.get("answer")]


def split_warnings(answer: Answer) -> tuple[list[str], list[str]]:
    """(prominent, minor): a patient-identifier warning must be seen; the rest are footnotes."""
    prefix = PII_WARNING.split("(", 1)[0]
    prominent = [w for w in answer.warnings if w.startswith(prefix)]
    return prominent, [w for w in answer.warnings if w not in prominent]
