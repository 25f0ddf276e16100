"""Analytics over the audit log: headline rates, per day, library gaps (refused questions grouped by
meaning), documents cited and never cited, feedback, per prompt version and adapter."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import pandas as pd

# -- summaries for the analytics page ------------------------------------------------------------
_NOT_WORD = re.compile(r"[^\w\[\]]+")


def normalise_question(question: str) -> str:
    """Case, punctuation and spacing do not make a different question."""
    return _NOT_WORD.sub(" ", question.lower()).strip()


def headline(frame: pd.DataFrame) -> dict[str, float]:
    """Status rates, grounded rate of answered questions, latency p50/p95 (NaN when undefined)."""
    n = len(frame)
    answered = frame[frame["status"] == "answered"]
    status = frame["status"].value_counts()
    return {
        "questions": float(n),
        **{f"{s}_rate": float(status.get(s, 0)) / n if n else math.nan for s in ("answered", "refused", "escalated")},
        "grounded_rate": float(answered["grounded"].astype(bool).mean()) if len(answered) else math.nan,
        "latency_p50_s": float(frame["total_s"].quantile(0.5)) if n else math.nan,
        "latency_p95_s": float(frame["total_s"].quantile(0.95)) if n else math.nan,
    }


def per_day(frame: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Rows per UTC day (index), one column per value of `by` (or a single `count`)."""
    day = frame["created_at"].str.slice(0, 10).rename("day")
    if by is None:
        return frame.groupby(day).size().to_frame("count")
    return frame.groupby([day, frame[by]]).size().unstack(fill_value=0)


def similarity_groups(texts: list[str], embed: Callable[[list[str]], list[list[float]]], threshold: float = 0.75) -> list[int]:
    """Greedy grouping: each text joins the first earlier group whose lead it resembles (cosine of
    unit vectors >= threshold), else starts a group. Returns a group index per text."""
    vectors = embed(texts) if texts else []
    leads: list[list[float]] = []
    groups: list[int] = []
    for vec in vectors:
        best = next((i for i, lead in enumerate(leads) if sum(a * b for a, b in zip(vec, lead, strict=True)) >= threshold), None)
        if best is None:
            leads.append(vec)
            best = len(leads) - 1
        groups.append(best)
    return groups


def refused_questions(
    frame: pd.DataFrame, top: int = 20, embed: Callable[[list[str]], list[list[float]]] | None = None
) -> pd.DataFrame:
    """The most frequent refused questions: the library's gaps. With `embed`, questions worded
    differently but meaning the same ("methotrexate dose RA" / "starting methotrexate for rheumatoid
    arthritis") are grouped by embedding similarity; otherwise by normalised text."""
    refused = frame[frame["status"] == "refused"]
    if embed is not None and not refused.empty:
        keys = similarity_groups([normalise_question(q) for q in refused["question"]], embed)
        grouped = refused.assign(normalised=keys).groupby("normalised")
    else:
        grouped = refused.assign(normalised=refused["question"].map(normalise_question)).groupby("normalised")
    table = grouped.agg(times=("id", "size"), example=("question", "first"), reason=("refusal_reason", "first"),
                        last_asked=("created_at", "max"))
    return table.sort_values(["times", "last_asked"], ascending=False).head(top).reset_index(drop=True)


def citation_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """How often each document was cited, and how often verified."""
    cites = [c for raw in frame["citations"] for c in json.loads(raw)]
    if not cites:
        return pd.DataFrame(columns=["document", "cited", "verified"])
    table = pd.DataFrame(cites).groupby("document").agg(cited=("chunk_id", "size"), verified=("verified", "sum"))
    return table.sort_values("cited", ascending=False).reset_index()


def never_cited(frame: pd.DataFrame, documents: list[str]) -> list[str]:
    """The documents (file names, e.g. the active ones) that no recorded answer cited, sorted."""
    cited = set(citation_counts(frame)["document"])
    return sorted(d for d in set(documents) if d not in cited)


def feedback_summary(feedback: pd.DataFrame) -> dict[str, int]:
    """Thumbs up and down."""
    return {"up": int((feedback["rating"] > 0).sum()), "down": int((feedback["rating"] < 0).sum())}


def feedback_per_day(feedback: pd.DataFrame) -> pd.DataFrame:
    """Ratings per UTC day, columns `up` and `down`."""
    return per_day(feedback.assign(rating=feedback["rating"].map({1: "up", -1: "down"})), "rating")


def feedback_reasons(feedback: pd.DataFrame) -> pd.Series:
    """How often each reason was given ("(none)" when the user gave none), most frequent first."""
    return feedback["reason"].fillna("(none)").value_counts().rename("times")


def compare_by(frame: pd.DataFrame, feedback: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per value of `column` (e.g. prompt_version, adapter_name): volume, outcomes, latency, ratings."""
    answered = frame["status"] == "answered"
    keyed = frame.assign(**{column: frame[column].fillna("(none)"),
                            "grounded_answer": frame["grounded"].astype(float).where(answered)})
    table = keyed.groupby(column).agg(
        questions=("id", "size"),
        answered_rate=("status", lambda s: (s == "answered").mean()),
        refused_rate=("status", lambda s: (s == "refused").mean()),
        grounded_rate=("grounded_answer", "mean"),
        latency_p50_s=("total_s", "median"),
        latency_p95_s=("total_s", lambda s: s.quantile(0.95)),
    )
    if len(feedback):
        ratings = feedback.assign(**{column: feedback[column].fillna("(none)")}).groupby(column)["rating"]
        table["thumbs_up"] = ratings.apply(lambda r: int((r > 0).sum()))
        table["thumbs_down"] = ratings.apply(lambda r: int((r < 0).sum()))
    return table.fillna({"thumbs_up": 0, "thumbs_down": 0}).reset_index()
