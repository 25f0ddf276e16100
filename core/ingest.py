"""`python -m core.ingest`, the documented command: an alias of `core.cli.ingest`."""

from core.cli.ingest import main

if __name__ == "__main__":
    raise SystemExit(main())
