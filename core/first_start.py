"""`python -m core.first_start`, the documented command: an alias of `core.cli.first_start`."""

from core.cli.first_start import main

if __name__ == "__main__":
    raise SystemExit(main())
