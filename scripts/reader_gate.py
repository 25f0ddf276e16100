"""The team-data gate for a retrained reader: the answerability head's cross-validated decisions on one
team case file, at a fixed share of its answerable questions answered.

    .venv/bin/python scripts/reader_gate.py FEATURES.pkl READINGS.json PART.jsonl [SHARE ...]

FEATURES.pkl is `train_evidence.py --features F.pkl --out /tmp/x.json CASES...` over all the team files
(pass every file: the default list is the shipped model's); READINGS.json held-out reader readings
(`merge_reader_readings.py`). Run it twice, with PART read by the shipped reader (`merge_reader_readings.py
--reader data/answering/reader.safetensors --questions NEW.jsonl ...`) and by the candidate, which never
saw PART (`--reader CANDIDATE.safetensors --questions PART.jsonl` on top of the first file), everything else
the same: the difference is the reader's alone. Prints
unanswerable refused and expected fact on PART and on all questions at each share (default 0.85).
Held-out (blind) sets must never be passed here.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_evidence as te  # noqa: E402


def at_share(outcomes: list[te.Outcome], share: float) -> tuple[float, float, float]:
    """(answered, unanswerable refused, expected fact) at the highest threshold answering `share`."""
    ans = [o for o in outcomes if o.case.expect == "answer" and o.case.sources]
    ref = [o for o in outcomes if o.case.expect == "refuse"]
    with_facts = [o for o in ans if o.case.facts]

    def shown(o: te.Outcome, t: float) -> bool:
        return te.head_shows(o, te.HEAD_GATE, t)

    t = 0.0
    for t in sorted({o.confidence for o in ans}, reverse=True):
        if sum(shown(o, t) for o in ans) / len(ans) >= share:
            break
    return (sum(shown(o, t) for o in ans) / max(len(ans), 1), sum(not shown(o, t) for o in ref) / max(len(ref), 1),
            sum(shown(o, t) and o.fact_in_top3 for o in with_facts) / max(len(with_facts), 1))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    features, readings, part = (Path(a) for a in args[:3])
    if any("blind" in str(p) for p in (features, readings, part)):
        print("error: held-out (blind) sets are for evaluation only, never for training.", file=sys.stderr)
        return 2
    shares = [float(x) for x in args[3:]] or [0.85]
    sys.modules["__main__"].Case = te.Case  # type: ignore[attr-defined]  # pickled by train_evidence.py as a script
    cases = pickle.loads(features.read_bytes())
    reader = te.Reads(json.loads(readings.read_text(encoding="utf-8"))["scores"])
    held = [te._evaluate(c, p, s, reader) for c, p, s in te.by_fold(cases)]
    te._fit_answerable(held, te.HEAD_GATE, te.HEAD_MAX_FALSE_REFUSALS, te.head_features(reader))
    ids = {json.loads(x)["id"] for x in part.read_text(encoding="utf-8").splitlines() if x.strip()}
    for name, group in ((part.name, [o for o in held if o.case.id in ids]), ("all", held)):
        for share in shares:
            answered, refused, fact = at_share(group, share)
            print(f"{name} ({len(group)} questions) at {share:.0%}: answered {answered:.3f}, "
                  f"unanswerable refused {refused:.3f}, expected fact {fact:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
