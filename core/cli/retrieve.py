"""CLI: `python -m core.retrieve "query" --k 5 [--json]` prints the top passages."""

from __future__ import annotations

import argparse
import json
import sys

from core.errors import CQAError
from core.services import build_services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.retrieve", description="Search the guideline library.")
    parser.add_argument("query")
    parser.add_argument("--k", type=int, default=5, help="Number of passages.")
    parser.add_argument("--issuer")
    parser.add_argument("--specialty")
    parser.add_argument("--include-superseded", action="store_true")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of text.")
    args = parser.parse_args(argv)
    try:
        services = build_services()
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        passages = services.retriever.retrieve(
            args.query, args.k, issuer=args.issuer, specialty=args.specialty,
            include_superseded=args.include_superseded,
        )
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        services.close()
    if args.json:
        print(json.dumps([p.model_dump() for p in passages], indent=2))
    else:
        for i, p in enumerate(passages, 1):
            page = f"p.{p.page}" if p.page else "-"
            print(f"[{i}] {p.title} | {p.section_label} | {page} | sim {p.similarity}\n    {p.text[:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
