"""`python -m core.eval`, the documented command: an alias of `core.cli.eval`."""

from core.cli.eval import main

if __name__ == "__main__":
    raise SystemExit(main())
