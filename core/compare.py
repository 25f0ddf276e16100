"""Alias kept for the documented command `python -m core.compare`; the CLI is `core.cli.compare`, the
comparison itself `core.evaluation.compare`."""

from core.cli.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
