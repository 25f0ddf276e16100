"""CLI: copy the library's chunks from the Milvus Lite folder into a Milvus server.

    python -m core.migrate_store --to http://127.0.0.1:19530 [--from var/milvus.db] [--token T] [--replace]

Rows are read page by page with their dense vectors and written in batches; the server recomputes BM25
from the text. The catalog (library.sqlite) and the originals stay in the data folder. Afterwards set
CQA_MILVUS_URI to the server. Stop the app first: Milvus Lite lets one process open the folder.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import BaseModel

from core.errors import CQAError
from core.library.store import _ROW_FIELDS, MilvusChunkStore, _row_metadata
from core.settings import Settings

PAGE = 1000


class CopyReport(BaseModel):
    copied: int
    source: int
    target: int


def copy_chunks(source: MilvusChunkStore, target: MilvusChunkStore, replace: bool = False) -> CopyReport:
    """Copy every chunk with its vector; refuses a non-empty target unless `replace` (no duplicates)."""
    if target.count() and not replace:
        raise CQAError(
            f"The target collection already holds {target.count():,} chunks; pass --replace to empty it first."
        )
    if replace:
        target.clear()
    copied = 0
    page: list[dict[str, object]] = []
    for row in source._rows("", [*_ROW_FIELDS, "embedding"]):
        page.append(row)
        if len(page) == PAGE:
            copied += _write(target, page)
            page = []
    copied += _write(target, page)
    target.flush()
    return CopyReport(copied=copied, source=source.count(), target=target.count())


def _write(target: MilvusChunkStore, rows: list[dict[str, object]]) -> int:
    if not rows:
        return 0
    chunks = [target._from_metadata(str(r["id"]), str(r.get("doc_id") or ""), _row_metadata(r)) for r in rows]
    target.add(chunks, [list(r["embedding"]) for r in rows])  # type: ignore[call-overload]
    return len(chunks)


def main(argv: list[str] | None = None) -> int:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m core.migrate_store", description=__doc__.split("\n")[0])
    parser.add_argument("--to", required=True, help="Milvus server URI, e.g. http://127.0.0.1:19530.")
    parser.add_argument("--from", dest="source", default=str(settings.milvus_lite_path), help="Milvus Lite folder.")
    parser.add_argument("--token", default=None, help="Token of a secured server.")
    parser.add_argument("--collection", default=settings.store.collection)
    parser.add_argument("--replace", action="store_true", help="Empty the server's collection first.")
    args = parser.parse_args(argv)
    dim = settings.embedding.dim
    try:
        source = MilvusChunkStore(args.source, args.collection, dim)
        try:
            target = MilvusChunkStore(args.to, args.collection, dim, token=args.token)
            try:
                report = copy_chunks(source, target, args.replace)
            finally:
                target.close()
        finally:
            source.close()
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(f"Copied {report.copied:,} chunks: {report.source:,} in {args.source}, {report.target:,} at {args.to}.")
    if report.source != report.target:
        print("error: the counts differ; run again with --replace.", file=sys.stderr)
        return 1
    print(f"Now run the app with CQA_MILVUS_URI={args.to}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
