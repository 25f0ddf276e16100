"""`python -m core.retrieve`, the documented command: an alias of `core.cli.retrieve`."""

from core.cli.retrieve import main

if __name__ == "__main__":
    raise SystemExit(main())
