"""The `Answer` contract: what the pipeline returns, the CLI prints and evaluation reads; and a
`Comparison` of two answers on the same passages (made by `core.evaluation.compare`, kept with the
user's preference by `core.governance.preferences`).

Field names in the issue's contract are never renamed; new fields are only added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from core.schema import RetrievedPassage

if TYPE_CHECKING:
    import pandas as pd

AnswerStatus = Literal["answered", "refused", "escalated"]
RefusalReason = Literal["no_evidence", "out_of_scope", "unsafe", "invalid_output", "model_unavailable", "empty_library", "needs_clarification"]


class Citation(BaseModel):
    n: int = Field(description="The [n] marker used in the answer text.")
    document: str = Field(description="File name of the cited guideline.")
    doc_id: str
    title: str
    page: int | None = None
    section: str = Field(description="Section path, outermost first, joined with ' › '.")
    chunk_id: str
    quote: str = Field(description="The passage sentence(s) that best support the claim.")
    verified: bool = Field(description="At least one sentence citing it is supported by this passage.")
    issuer: str | None = None
    version: str | None = None


class SentenceCheck(BaseModel):
    """One sentence of the answer and whether its citations support it."""

    text: str
    citations: list[int] = Field(default_factory=list)
    supported: bool
    score: float = Field(description="Best support score over the cited passages (0-1).")
    problems: list[str] = Field(default_factory=list, description="e.g. 'number 0.3 mg not in [2]'.")


class Quote(BaseModel):
    """A guideline sentence (or table row) shown verbatim as the answer, with its exact place."""

    n: int = Field(description="Its passage's number in the answer's sources, as in [n].")
    sentence: str = Field(description="passage text[char_start:char_end], verbatim.")
    chunk_id: str
    char_start: int = Field(description="Offset of the sentence in the passage text.")
    char_end: int
    score: float = Field(description="Sentence scorer probability (0-1) that it answers the question, with the "
                         "reader's reading added when the scorers use the reader (core.answering.reader).")
    table_row: bool = False


class Refusal(BaseModel):
    reason: RefusalReason
    message: str


class Escalation(BaseModel):
    level: Literal["emergent", "urgent"]
    rule: str
    message: str
    layer: Literal["rules", "vitals", "classifier"] = "rules"
    triggers: list[str] = Field(default_factory=list, description="The words or values in the message that fired.")
    explanation: str = Field(default="", description="e.g. \"stroke signs: 'can't lift his right arm' + 'speech slurred'\"")


class RetrievedRef(BaseModel):
    chunk_id: str
    document: str
    doc_id: str = ""
    page: int | None = None
    score: float
    similarity: float | None = None
    title: str = ""
    section: str = ""


class AdapterRef(BaseModel):
    name: str
    scale: float


class Timings(BaseModel):
    retrieve_s: float = 0.0
    select_s: float = Field(default=0.0, description="Choosing the answer sentences (core.answering.evidence).")
    generate_s: float = 0.0
    total_s: float = 0.0
    ttft_s: float | None = None


class TokenUsage(BaseModel):
    prompt: int = 0
    completion: int = 0
    context_window: int = 0
    passages_given: int = 0
    passages_dropped: int = Field(default=0, description="Lowest-ranked passages left out to fit the context.")
    estimated: bool = Field(default=False, description="True when the backend cannot count tokens exactly.")


class Answer(BaseModel):
    status: AnswerStatus
    text: str
    citations: list[Citation] = Field(default_factory=list)
    refusal: Refusal | None = None
    escalation: Escalation | None = None
    retrieved: list[RetrievedRef] = Field(default_factory=list)
    model: str = ""
    adapter: AdapterRef | None = None
    prompt_version: str = ""
    timings: Timings = Field(default_factory=Timings)
    # Additions beyond the contract:
    question: str = ""
    standalone_question: str = Field(default="", description="Follow-up rewritten with the history.")
    backend: str = ""
    rule_set_version: str = Field(default="none", description="Version of the safety rules that checked it.")
    grounded: bool = Field(default=False, description="Every sentence is supported by a cited passage.")
    sentences: list[SentenceCheck] = Field(default_factory=list)
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    format_valid: bool = Field(default=True, description="The model's output parsed on the first try.")
    retries: int = 0
    warnings: list[str] = Field(default_factory=list)
    nearest: list[RetrievedRef] = Field(default_factory=list, description="Closest sections shown on refusal.")
    quotes: list[Quote] = Field(
        default_factory=list, description="Guideline sentences that answer the question, verbatim (core.answering.evidence)."
    )
    evidence_confidence: float | None = Field(
        default=None, description="The answerability head's probability that the chosen sentences answer the "
        "question (core/answering/evidence.py); compared with its threshold, it decided quotes vs refusal. "
        "None when no head ran (evidence gate refusal, evidence-first off, another embedder).")
    summary: str = Field(default="", description="The model's summary as written (shown only when verified).")
    summary_shown: bool = Field(default=False, description="The summary verified and is shown above the quotes.")
    summary_error: str = Field(default="", description="Why the model could not write a summary (e.g. unreachable).")


class Difference(BaseModel):
    measure: str
    a: str
    b: str
    differs: bool


class Comparison(BaseModel):
    """One question answered by configurations A and B on the identical passages."""

    question: str
    config_a: str = Field(description="e.g. 'prompt v2 · no adapter'.")
    config_b: str
    passages: list[RetrievedPassage] = Field(description="Retrieved once; both sides were given these.")
    retrieve_s: float
    a: Answer
    b: Answer
    differences: list[Difference]

    def differences_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([d.model_dump() for d in self.differences], columns=["measure", "a", "b", "differs"])
