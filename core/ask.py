"""`python -m core.ask`, the documented command: an alias of `core.cli.ask`."""

from core.cli.ask import main

if __name__ == "__main__":
    raise SystemExit(main())
