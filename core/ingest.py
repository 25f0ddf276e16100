"""CLI: `python -m core.ingest PATH... [--issuer ... --version ...]` prints one JSON report per file."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from core.bootstrap import corpus_files  # noqa: E402
from core.errors import CQAError  # noqa: E402
from core.schema import DocumentMeta  # noqa: E402
from core.services import build_services  # noqa: E402


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        out.extend(corpus_files(p) if p.is_dir() else [p])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.ingest", description="Add guideline files to the library.")
    parser.add_argument("paths", nargs="+", help="Files or folders to ingest.")
    for field in ("title", "issuer", "version", "effective_date", "specialty"):
        parser.add_argument(f"--{field.replace('_', '-')}", dest=field, help=f"Override the document's {field}.")
    args = parser.parse_args(argv)
    meta = DocumentMeta(title=args.title, issuer=args.issuer, version=args.version,
                        effective_date=args.effective_date, specialty=args.specialty)
    try:
        services = build_services()
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    failed = 0
    try:
        for path in _expand(args.paths):
            outcome = services.library.ingest_file(path, meta)
            failed += outcome.status == "failed"
            print(outcome.model_dump_json(), flush=True)
    finally:
        services.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
