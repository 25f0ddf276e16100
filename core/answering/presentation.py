"""How an `Answer` reads on screen, as plain functions (HTML strings, captions) the UI only displays."""

from __future__ import annotations

import html

from core.answering.citations import strip_markers
from core.answering.pipeline import PII_WARNING, Turn
from core.answers import Answer, SentenceCheck


def answer_html(answer: Answer) -> str:
    """Sentences with their citation markers; an unsupported sentence is highlighted with the reason.
    With quotes, only the model's summary (the sentences before the quotes) is rendered here."""
    parts = []
    sentences = summary_sentences(answer) if answer.quotes else answer.sentences
    for s in sentences:
        marks = "".join(f"<sup>[{n}]</sup>" for n in s.citations)
        text = html.escape(strip_markers(s.text).strip())
        if s.supported:
            parts.append(f"{text} {marks}")
        else:
            why = html.escape("; ".join(s.problems) or "not supported by the cited passage")
            parts.append(f"<span style='background:#fff3cd' title='{why}'>⚠ {text} {marks} <em>(unverified: {why})</em></span>")
    return " ".join(parts) if parts else html.escape(answer.text)


def summary_sentences(answer: Answer) -> list[SentenceCheck]:
    """The sentences of the model's summary (shown only when it verified)."""
    if not answer.summary_shown:
        return []
    return answer.sentences[: len(answer.sentences) - len(answer.quotes)]


def quote_label(answer: Answer, n: int) -> str:
    """"[2] Anaphylaxis: emergency treatment › 3.1 Adrenaline · page 4"."""
    c = next((c for c in answer.citations if c.n == n), None)
    if c is None:
        return f"[{n}]"
    page = f" · page {c.page}" if c.page else ""
    return f"[{n}] {c.title} › {c.section}{page}"


def quotes_html(answer: Answer) -> str:
    """The answer's guideline sentences as block quotes, each with its citation."""
    return "".join(
        "<blockquote style='border-left:3px solid #0b5cad;margin:.3em 0;padding:.1em .7em'>"
        f"{html.escape(q.sentence.strip())}<br><small><b>{html.escape(quote_label(answer, q.n))}</b></small></blockquote>"
        for q in answer.quotes
    )


def highlight_spans(passage: str, spans: list[tuple[int, int]]) -> str:
    """The passage as HTML with the exact character spans marked (the quoted sentences)."""
    out, at = [], 0
    for start, end in sorted(spans):
        if start < at or end > len(passage):
            continue
        out += [html.escape(passage[at:start]), f"<mark>{html.escape(passage[start:end])}</mark>"]
        at = end
    out.append(html.escape(passage[at:]))
    return "".join(out)


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
