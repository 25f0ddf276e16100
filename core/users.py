"""`python -m core.users`, the documented command: an alias of `core.cli.users`."""

from core.cli.users import main

if __name__ == "__main__":
    raise SystemExit(main())
