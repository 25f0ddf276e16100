"""Does a verified answer address the question that was asked?

Citation verification proves that each sentence is said by the passage it cites; it cannot see that
the sentence is about something else. A model that copies sentences well (the shipped LoRA adapter)
can answer "Up to when can thrombectomy be offered?" with a correctly cited sentence about PCI from
the chest-pain guideline: true, cited, and useless or dangerous at 3 a.m. So the topic words of the
question must be found in the answer or in the passages it cites (with their titles and headings);
when most of them are missing, the answer is not shown as grounded.

Deliberately lexical and explainable, like the citation check: stems (first 6 letters, so
"anaphylactic" matches "anaphylaxis"), words of 4+ letters, question words and generic clinical words
ignored.
"""

from __future__ import annotations

import re

from core.answering.vocabulary import default_vocabulary

_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STEM = 6
# Words that say what kind of question it is, not what it is about.
_GENERIC = frozenset(
    """what what's whats when where which whom whose does should would could shall will there their them they
    this that these those with from into onto over under than then also about after before during while
    have has been being give given giving gives offer offered offering recommend recommended recommendation
    recommendations guideline guidelines guidance advice advise advised according says said tell know please
    patient patients adult adults people person someone anyone dose doses dosing dosage amount treatment treat
    treated treating manage managed management first line long much many often used using need needs needed
    start started starting stop stopped clinic case cases level levels time times test tests other same more
    less most least best usual usually normal normally typical typically right wrong okay like just only
    still again each every some any next last following follow required require requires should've cannot
    can't don't doesn't isn't aren't won't what's how's""".split()
)


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in _WORD.findall(text.lower())}


def mentions(term: str, stems: set[str]) -> bool:
    """Whether a text with these `stems` mentions `term`: the same stem, or, for a word shorter than a
    stem, a word it begins ("hypo" for hypoglycaemia, "amox" for amoxicillin)."""
    if term[:_STEM] in stems:
        return True
    return len(term) < _STEM and any(s.startswith(term) for s in stems)


def says(phrase: str, stems: set[str]) -> bool:
    """Whether a text with these `stems` says `phrase`: each of its words of 4+ letters ("urea and
    electrolytes" needs urea and electrolytes)."""
    words = [w.strip("'-") for w in _WORD.findall(phrase.lower())]
    words = [w for w in words if len(w) >= 4]
    return bool(words) and all(mentions(w, stems) for w in words)


def missing_terms(question: str, text: str | set[str]) -> list[str]:
    """The topic words of `question` that `text` (or a text with these stems) does not mention: neither
    the word, nor what the clinical vocabulary says a guideline writes for it ("Pradaxa": dabigatran;
    both words of "blood thinner": anticoagulant)."""
    stems = _stems(text) if isinstance(text, str) else text
    stand_ins = default_vocabulary().stand_ins(question)
    return [t for t in topic_terms(question)
            if not mentions(t, stems) and not any(says(e, stems) for e in stand_ins.get(t, ()))]


def topic_terms(question: str) -> list[str]:
    """The question's topic words, in order, without duplicates."""
    words = [w.strip("'-") for w in _WORD.findall(question.lower())]
    return list(dict.fromkeys(w for w in words if len(w) >= 4 and w not in _GENERIC))


def unaddressed_terms(question: str, answer: str, cited: list[str]) -> list[str]:
    """Topic words of `question` found neither in `answer` nor in the `cited` passage texts, when they
    are more than half of the topic words (else [] : the answer is on topic)."""
    terms = topic_terms(question)
    missing = missing_terms(question, answer + "\n" + "\n".join(cited))
    return missing if terms and len(missing) * 2 > len(terms) else []
