"""Emergency-screen latency per message vs one retrieval on the demo corpus, same process, same questions.

The screen runs before retrieval on every question, so it must stay small next to it (budget: the whole
screen ≤ 30 ms p95 per message, MiniLM embedding of the classifier layer included). Prints p50/p95 per
message for the rules alone, the whole screen (rules + vital signs + classifier) and one retrieval, and
`RATIO safety_rules_vs_retrieval <x>`, `RATIO screen_vs_retrieval <x>` (p50 / p50 retrieval).
BENCH_FAKE=1 uses the hashing embedder and in-memory store instead of MiniLM + Milvus Lite (faster, less
realistic; the classifier layer is then skipped).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.bootstrap import corpus_files  # noqa: E402
from core.safety.rule_schema import BUNDLED_RULES_DIR  # noqa: E402
from core.safety.rules import RuleSet  # noqa: E402
from core.safety.safety_set import SAFETY_CASES  # noqa: E402
from core.safety.triage import build_screen  # noqa: E402
from core.services import build_services  # noqa: E402
from core.settings import Settings  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def _messages() -> list[str]:
    demo = REPO / "tests" / "data" / "demo_questions.jsonl"
    lines = demo.read_text().splitlines() + SAFETY_CASES.read_text().splitlines()
    return [json.loads(x).get("question") or json.loads(x)["message"] for x in lines if x.strip()]


def main() -> None:
    messages = _messages()
    t0 = time.perf_counter()
    rules = RuleSet.load(BUNDLED_RULES_DIR)
    print(f"loaded {len(rules.rules)} rules in {(time.perf_counter() - t0) * 1000:.1f} ms (version {rules.version})")
    rule_times = []
    for _ in range(ROUNDS):
        for m in messages:
            t = time.perf_counter()
            rules.check(m)
            rule_times.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        if os.environ.get("BENCH_FAKE"):
            settings.embedding.mode, settings.store.mode = "fake", "memory"
        services = build_services(settings)
        try:
            for f in corpus_files(REPO / "data" / "guidelines"):
                services.library.ingest_file(f)
            services.retriever.retrieve(messages[0], 5)  # warm-up
            screen = build_screen(settings, rules, services.embedder)
            screen.check(messages[0])
            screen_times = []
            for _ in range(max(1, ROUNDS // 2)):
                for m in messages:
                    t = time.perf_counter()
                    screen.check(m)
                    screen_times.append(time.perf_counter() - t)
            retrieval_times = []
            for m in messages[:80]:
                t = time.perf_counter()
                services.retriever.retrieve(m, 5)
                retrieval_times.append(time.perf_counter() - t)
        finally:
            services.close()
    r50, r95 = _pct(rule_times, 50) * 1000, _pct(rule_times, 95) * 1000
    q50, q95 = _pct(retrieval_times, 50) * 1000, _pct(retrieval_times, 95) * 1000
    print(f"safety rules: {len(rule_times)} checks, p50 {r50:.2f} ms, p95 {r95:.2f} ms, max {max(rule_times) * 1000:.2f} ms")
    print(f"retrieval ({settings.embedding.mode}/{settings.store.mode}): p50 {q50:.1f} ms, p95 {q95:.1f} ms")
    s50, s95 = _pct(screen_times, 50) * 1000, _pct(screen_times, 95) * 1000
    print(f"whole screen ({', '.join(screen.layers)}): {len(screen_times)} checks, p50 {s50:.2f} ms, p95 {s95:.2f} ms")
    print(f"RATIO safety_rules_vs_retrieval {r50 / q50:.4f}")
    print(f"RATIO screen_vs_retrieval {s50 / q50:.4f}")


if __name__ == "__main__":
    main()
