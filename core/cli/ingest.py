"""CLI: `python -m core.ingest PATH... [--issuer ... --version ...]` prints one JSON report per file.

Folders are read file by file and embedded a few hundred passages at a time across files; progress
(files done, passages/s, time left) goes to stderr. Stopped (Ctrl-C, a crash), the same command run
again skips what is already in the library and adds the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core.bootstrap import corpus_files
from core.errors import CQAError
from core.library.ingestion import BulkProgress, IngestOutcome
from core.schema import DocumentMeta
from core.services import build_services

PROGRESS_EVERY_S = 2.0


def _expand(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        out.extend(corpus_files(p) if p.is_dir() else [p])
    return out


class _Report:
    """Prints each file's outcome (stdout, JSON) and, at most every few seconds, the progress (stderr)."""

    def __init__(self, quiet_duplicates: bool) -> None:
        self.failed = 0
        self.last: BulkProgress | None = None
        self._quiet_duplicates = quiet_duplicates
        self._printed_at = 0.0

    def outcome(self, outcome: IngestOutcome) -> None:
        self.failed += outcome.status == "failed"
        if not (self._quiet_duplicates and outcome.status == "duplicate"):
            print(outcome.model_dump_json(), flush=True)

    def progress(self, progress: BulkProgress) -> None:
        self.last = progress
        now = time.monotonic()
        if progress.files_done == progress.files_total or now - self._printed_at >= PROGRESS_EVERY_S:
            self._printed_at = now
            print(progress.line(), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.ingest", description="Add guideline files to the library.")
    parser.add_argument("paths", nargs="+", help="Files or folders to ingest.")
    for field in ("title", "issuer", "version", "effective_date", "specialty"):
        parser.add_argument(f"--{field.replace('_', '-')}", dest=field, help=f"Override the document's {field}.")
    parser.add_argument("--quiet-duplicates", action="store_true",
                        help="Print no report for files already in the library (resuming a large folder).")
    args = parser.parse_args(argv)
    meta = DocumentMeta(title=args.title, issuer=args.issuer, version=args.version,
                        effective_date=args.effective_date, specialty=args.specialty)
    files = _expand(args.paths)
    try:
        services = build_services()
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    report = _Report(args.quiet_duplicates)
    try:
        services.library.ingest_files(files, meta, on_outcome=report.outcome, on_progress=report.progress)
    except KeyboardInterrupt:
        done = report.last.files_done if report.last else 0
        print(f"Interrupted after {done:,} of {len(files):,} files. Run the same command again to add the rest: "
              "files already in the library are skipped.", file=sys.stderr)
        return 130
    finally:
        services.close()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
