"""Answer pipeline overhead and memory.

1. Time to first token and total time of the full pipeline (`AnswerService.run`: safety, retrieval,
   evidence gate, prompt, generation, parsing, verification) vs raw llama.cpp
   (`Llama.create_chat_completion`, a separately loaded `Llama` on the same GGUF, same n_ctx, same
   AMX workaround) on the identical prompt, in the same process and run. The raw side makes the same
   generation calls the pipeline makes: the first prompt, and the pipeline's retry prompt when the
   first answer fails the format check. Pipeline and raw alternate in order per question.
   Prints `RATIO answer_pipeline_vs_raw_ttft <x>` and `RATIO answer_pipeline_vs_raw_total <x>` (p50 / p50).
2. Peak RSS of a fresh process serving 1 session vs 5 concurrent sessions (threads sharing one
   service, as the Streamlit app shares its cached service), on the same library.
   Prints `RATIO answer_rss_5_vs_1 <x>`.

Goals (issue): overhead ratio <= 1.15; RSS(5) <= 1.2 x RSS(1).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import nullcontext  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, cast  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: E402

from core.answering.pipeline import AnswerService, declines, format_ok, standalone_question  # noqa: E402
from core.answering.prompts import BUILTIN_PROMPT, RETRY_REMINDER  # noqa: E402
from core.bootstrap import corpus_files  # noqa: E402
from core.llm import ChatMessage, GenerationParams, default_params  # noqa: E402
from core.llm.embedded import (  # noqa: E402
    EmbeddedLlamaBackend,
    _needs_amx_workaround,
    _without_extra_buffer_types,
    resolve_model_path,
)
from core.services import Services, build_answer_service, build_services  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402

N_QUESTIONS = int(os.environ.get("BENCH_ANSWER_QUESTIONS", "8"))
QUESTIONS = REPO_ROOT / "tests" / "data" / "demo_questions.jsonl"


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def _peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM; ru_maxrss where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _current_rss_mb() -> float:
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def answerable_questions() -> list[str]:
    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["expect"] == "answer"]
    # Spread over the file, so over different guidelines.
    return [rows[(i * 7) % len(rows)]["question"] for i in range(len(rows))]


def open_services(data_dir: Path) -> Services:
    return build_services(Settings(data_dir=data_dir))


def embedded_service(services: Services) -> AnswerService:
    return build_answer_service(services, EmbeddedLlamaBackend(services.settings.llm))


# -- 1. pipeline vs raw llama.cpp -------------------------------------------------------------------


def load_raw_llama(services: Services) -> llama_cpp.Llama:
    """A second `Llama` on the same file, loaded as the backend loads it (same n_ctx, threads, AMX fix),
    using the GGUF's own chat template as the backend does."""
    s = services.settings.llm
    with _without_extra_buffer_types() if _needs_amx_workaround() else nullcontext():
        return llama_cpp.Llama(
            model_path=str(resolve_model_path(s)), n_ctx=s.n_ctx, n_threads=s.n_threads,
            n_threads_batch=s.n_threads, chat_format="chat_template.default", verbose=False,
        )


def pipeline_messages(
    services: Services, service: AnswerService, question: str
) -> tuple[list[ChatMessage], int] | None:
    """The first prompt the pipeline sends and its passage count, rebuilt from (deterministic) retrieval
    with the pipeline's settings; None when the evidence gate refuses before generation."""
    a = services.settings.answer
    passages = services.retriever.retrieve(standalone_question(question, []), a.top_k)
    if not passages or max(p.similarity or 0.0 for p in passages) < a.evidence_threshold:
        return None
    evidence = [p for p in passages if (p.similarity or 0.0) >= a.min_passage_similarity][: a.max_passages]
    messages, kept, _ = service._fit(service.llm, BUILTIN_PROMPT, question, evidence)
    return messages, len(kept)


def run_pipeline(service: AnswerService, question: str) -> tuple[float, float, str, int]:
    """(ttft, total, streamed text, retries) measured from the call."""
    started = time.perf_counter()
    ttft = None
    parts = []
    run = service.run(question)
    for delta in run:
        if ttft is None and delta:
            ttft = time.perf_counter() - started
        parts.append(delta)
    answer = run.result()
    total = time.perf_counter() - started
    return (ttft if ttft is not None else total), total, "".join(parts), answer.retries


def raw_stream(raw: llama_cpp.Llama, messages: list[ChatMessage], params: GenerationParams) -> tuple[float | None, str]:
    started = time.perf_counter()
    ttft = None
    parts = []
    raw.reset()  # type: ignore[no-untyped-call]
    chunks = raw.create_chat_completion(
        messages=cast(Any, [m.model_dump() for m in messages]), stream=True, temperature=params.temperature,
        seed=params.seed, max_tokens=params.max_tokens,
    )
    for chunk in cast(Iterator[dict[str, Any]], chunks):
        delta = chunk["choices"][0]["delta"].get("content")
        if delta:
            ttft = ttft if ttft is not None else time.perf_counter() - started
            parts.append(delta)
    return ttft, "".join(parts)


def run_raw(raw: llama_cpp.Llama, messages: list[ChatMessage], n_passages: int,
            params: GenerationParams) -> tuple[float, float, str, int]:
    """The same generation calls as the pipeline: the prompt, then its retry prompt if the answer is invalid."""
    started = time.perf_counter()
    ttft, text = raw_stream(raw, messages, params)
    streamed, retries = text, 0
    if not (declines(text) or format_ok(text, n_passages)):
        retry = [*messages, ChatMessage(role="assistant", content=text), ChatMessage(role="user", content=RETRY_REMINDER)]
        second_ttft, second = raw_stream(raw, retry, params)
        ttft = ttft if ttft is not None else second_ttft
        streamed, retries = text + "\n\n" + second, 1
    total = time.perf_counter() - started
    return (ttft if ttft is not None else total), total, streamed, retries


def overhead(services: Services) -> None:
    service = embedded_service(services)
    raw = load_raw_llama(services)
    params = default_params(services.settings.llm)
    cases = []
    for q in answerable_questions():
        prompt = pipeline_messages(services, service, q)
        if prompt is not None:
            cases.append((q, *prompt))
        if len(cases) == N_QUESTIONS + 1:
            break
    # Warm-up (first embedding, first decode, page faults) on an extra question, not timed.
    warm_q, warm_m, warm_n = cases.pop()
    run_pipeline(service, warm_q)
    run_raw(raw, warm_m, warm_n, params)
    pipe_ttft, pipe_total, raw_ttft, raw_total = [], [], [], []
    same_text, retries = 0, 0
    for i, (q, messages, n_passages) in enumerate(cases):
        if i % 2 == 0:
            p = run_pipeline(service, q)
            r = run_raw(raw, messages, n_passages, params)
        else:
            r = run_raw(raw, messages, n_passages, params)
            p = run_pipeline(service, q)
        pipe_ttft.append(p[0])
        pipe_total.append(p[1])
        raw_ttft.append(r[0])
        raw_total.append(r[1])
        # The pipeline also yields a "\n\n" separator after a failed last attempt.
        same_text += p[2].rstrip() == r[2].rstrip()
        retries += p[3]
        print(f"  q{i + 1}: pipeline ttft={p[0]:.2f}s total={p[1]:.2f}s retries={p[3]} | "
              f"raw ttft={r[0]:.2f}s total={r[1]:.2f}s retries={r[3]}")
    print(f"questions={len(cases)} pipeline retries={retries} identical streamed text={same_text}/{len(cases)}")
    print(f"p50 ttft: pipeline={_p50(pipe_ttft):.2f}s raw={_p50(raw_ttft):.2f}s | "
          f"p50 total: pipeline={_p50(pipe_total):.2f}s raw={_p50(raw_total):.2f}s")
    print(f"RATIO answer_pipeline_vs_raw_ttft {_p50(pipe_ttft) / _p50(raw_ttft):.2f}")
    print(f"RATIO answer_pipeline_vs_raw_total {_p50(pipe_total) / _p50(raw_total):.2f}")
    del raw


# -- 2. memory with 1 vs 5 concurrent sessions ------------------------------------------------------


def serve_sessions(data_dir: Path, sessions: int) -> None:
    """Child process: open the library, build the shared service, answer `sessions` different
    questions at the same time (one thread each), print peak RSS as JSON."""
    services = open_services(data_dir)
    service = embedded_service(services)
    service.ask("warm-up: what is the first-line antihypertensive?")  # load lazily-built parts first
    loaded = _current_rss_mb()
    questions = answerable_questions()[:sessions]
    start = threading.Barrier(sessions)
    statuses: list[str] = []

    def session(question: str) -> None:
        start.wait()
        answer = service.ask(question)
        statuses.append(answer.status + (f" ({answer.refusal.reason})" if answer.refusal else ""))

    threads = [threading.Thread(target=session, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    services.close()
    print(json.dumps({"sessions": sessions, "peak_rss_mb": _peak_rss_mb(), "rss_after_load_mb": loaded,
                      "statuses": statuses}))


def rss_in_child(data_dir: Path, sessions: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--sessions", str(sessions), str(data_dir)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"child with {sessions} sessions failed: {proc.stderr[-2000:]}")
    return cast(dict[str, Any], json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "var"
        services = open_services(data_dir)
        for path in corpus_files(REPO_ROOT / "data" / "guidelines"):
            services.library.ingest_file(path)
        print(f"library ready in {time.perf_counter() - started:.0f}s")
        overhead(services)
        services.close()  # Milvus Lite allows one process per db: the children open it next
        one = rss_in_child(data_dir, 1)
        five = rss_in_child(data_dir, 5)
    for r in (one, five):
        print(f"sessions={r['sessions']}: peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(after loading {r['rss_after_load_mb']:.0f} MB); answers: {', '.join(r['statuses'])}")
    print(f"RATIO answer_rss_5_vs_1 {five['peak_rss_mb'] / one['peak_rss_mb']:.2f}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--sessions":
        serve_sessions(Path(sys.argv[3]), int(sys.argv[2]))
    else:
        main()
