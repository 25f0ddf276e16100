"""Helpers shared by several test modules (a test module never imports another one)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from core.adapters.dataset import Dataset, build_dataset, red_flags_from_rules
from core.answering.evidence import ANSWERABLE_FEATURES, PASSAGE_FEATURES, SENTENCE_FEATURES, EvidenceModel
from core.answering.pipeline import AnswerService
from core.answering.prompts import BUILTIN_PROMPT, NOT_IN_GUIDELINES, PromptTemplate
from core.answers import AdapterRef, Answer, Citation, Escalation, Refusal, RetrievedRef, Timings, TokenUsage
from core.learning import LinearScorer
from core.library.chunking import chunk_document
from core.library.embedding import HashingEmbedder
from core.library.parsing import parse_file
from core.library.store import StoredChunk
from core.llm import ChatMessage, FakeLLM, GenerationParams
from core.safety.rules import RuleSet
from core.services import Services
from core.settings import AnswerSettings, IngestSettings
from tests.conftest import GUIDELINE, REPO

GUIDELINES = REPO / "data" / "guidelines"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOOSE = AnswerSettings(evidence_threshold=0.05, min_passage_similarity=0.0, max_passages=3)


def answer_service(svc: Services, llm: FakeLLM, settings: AnswerSettings = LOOSE, **kw: object) -> AnswerService:
    svc.library.ingest_bytes(GUIDELINE, "anaphylaxis.md")
    return AnswerService(svc.retriever, llm, settings, GenerationParams(max_tokens=64), **kw)  # type: ignore[arg-type]


def passage_number(messages: list[ChatMessage], phrase: str) -> int:
    """Which [n] the prompt gave the passage containing `phrase` (retrieval order is not fixed)."""
    user = next(m.content for m in messages if m.role == "user")  # the passages; a retry adds a reminder after
    blocks = user.split("\n[")
    for block in blocks:
        if phrase in block:
            return int(block.lstrip("[").split("]", 1)[0])
    raise AssertionError(f"{phrase!r} not in prompt")


def cite_phrase(sentence: str, phrase: str) -> Callable[[list[ChatMessage]], str]:
    return lambda msgs: f"{sentence} [{passage_number(msgs, phrase)}]."


def compare_reply(messages: list[ChatMessage]) -> str:
    # The built-in prompt answers with a citation; the terse test prompt declines.
    if messages[0].content == "Terse.":
        return NOT_IN_GUIDELINES
    n = passage_number(messages, "0.5 mg")
    return f"Give adrenaline 0.5 mg intramuscularly into the anterolateral thigh [{n}]."


def make_answer(status: str = "answered", question: str = "What IM adrenaline dose in anaphylaxis?", *,
                document: str = "anaphylaxis.md", grounded: bool = True, total_s: float = 1.0,
                prompt_version: str = "builtin-1", adapter: AdapterRef | None = None) -> Answer:
    """A hand-built answer of any status, as the pipeline would return it."""
    retrieved = [RetrievedRef(chunk_id=f"{document}-c1", document=document, doc_id="d1", page=2, score=0.8, similarity=0.7)]
    cited = [Citation(n=1, document=document, doc_id="d1", title="Anaphylaxis", page=2, section="3. Adrenaline",
                      chunk_id=f"{document}-c1", quote="Give adrenaline 0.5 mg IM.", verified=grounded)]
    answer = Answer(
        status="answered", text="Give adrenaline 0.5 mg IM [1].", question=question, standalone_question=question,
        retrieved=retrieved, model="fake", backend="fake", prompt_version=prompt_version, rule_set_version="rules-1",
        adapter=adapter, timings=Timings(retrieve_s=0.1, generate_s=total_s - 0.1, total_s=total_s),
        tokens=TokenUsage(prompt=300, completion=20),
    )
    if status == "answered":
        return answer.model_copy(update={"citations": cited, "grounded": grounded})
    if status == "refused":
        refusal = Refusal(reason="no_evidence", message="Not covered.")
        return answer.model_copy(update={"status": "refused", "text": "Not covered.", "refusal": refusal})
    escalation = Escalation(level="emergent", rule="anaphylaxis-signs", message="Call 999.")
    return answer.model_copy(update={"status": "escalated", "escalation": escalation, "citations": cited,
                                     "grounded": grounded})


def demo_chunks() -> list[StoredChunk]:
    settings = IngestSettings()
    out: list[StoredChunk] = []
    for path in sorted(GUIDELINES.iterdir()):
        if path.name == "README.md":
            continue
        parsed = parse_file(path.read_bytes(), path.name, settings)
        doc_id = path.stem
        for c in chunk_document(parsed, doc_id, settings):
            out.append(StoredChunk(
                chunk_id=c.chunk_id, doc_id=doc_id, title=parsed.meta.title or path.stem, file_name=path.name,
                page=c.page, section=c.section, kind=c.kind, char_start=c.char_start, char_end=c.char_end, text=c.text,
            ))
    return out


def tiny_dataset() -> Dataset:
    """Four training examples (3 answers, 1 refusal) and two validation ones from the demo corpus."""
    flags, clarifications = red_flags_from_rules(RuleSet.load(REPO / "data" / "rules"))
    full = build_dataset(demo_chunks(), HashingEmbedder().embed, red_flags=flags, clarifications=clarifications)
    train = [e for e in full.split("train") if e.kind == "answer"][:3] + [e for e in full.split("train") if e.kind == "refuse"][:1]
    val = full.split("validation")[:2]
    return Dataset(examples=train + val, report=full.report)


def quote_first_passage(messages: list[ChatMessage]) -> str:
    """Answer with the first sentence of passage [1] that states a number, cited as [1]."""
    user = next(m.content for m in messages if m.role == "user")
    body = user.split('"""', 2)[1]
    sentences = re.split(r"(?<=[.])\s+", " ".join(body.split()))
    chosen = next((s for s in sentences if re.search(r"\d", s)), sentences[0]).rstrip(".")
    return f"{chosen} [1]."


@contextmanager
def milvus_server(data_dir: Path, port: int) -> Iterator[None]:
    """`milvus-lite server` on 127.0.0.1:port, the same gRPC API as a Milvus server."""
    server_bin = Path(sys.executable).parent / "milvus-lite"
    server = subprocess.Popen(
        [str(server_bin), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


TERSE = PromptTemplate(version="v1", system="Terse.", user=BUILTIN_PROMPT.user)


def evidence_model(threshold: float = 0.5) -> EvidenceModel:
    # Hand-set weights: the passage scorer follows cosine and heading overlap, the sentence scorer
    # follows cosine, lexical overlap and the dose cue.
    def scorer(names: tuple[str, ...], weights: dict[str, float]) -> LinearScorer:
        return LinearScorer(features=list(names), weights=[weights.get(n, 0.0) for n in names], bias=0.0,
                            mean=[0.0] * len(names), scale=[1.0] * len(names))

    return EvidenceModel(
        version="test", passage=scorer(PASSAGE_FEATURES, {"cos_passage": 4.0, "lex_heading": 4.0}),
        sentence=scorer(SENTENCE_FEATURES, {"cos_sentence": 3.0, "lex_sentence": 3.0, "dose_cue": 3.0, "short": -5.0}),
        answer_threshold=threshold,
    )


def evidence_model_with_head(threshold: float = 0.5) -> EvidenceModel:
    """`_model` plus an answerability head that refuses when the passages leave question words unmentioned."""
    names = ANSWERABLE_FEATURES
    weights = {"missing_in_evidence": -8.0, "best_sentence": 2.0}
    head = LinearScorer(features=list(names), weights=[weights.get(n, 0.0) for n in names], bias=1.0,
                        mean=[0.0] * len(names), scale=[1.0] * len(names))
    return evidence_model(threshold=0.0).model_copy(update={"answerable": head, "answerable_threshold": threshold})
