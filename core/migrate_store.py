"""`python -m core.migrate_store`, the documented command: an alias of `core.cli.migrate_store`."""

from core.cli.migrate_store import main

if __name__ == "__main__":
    raise SystemExit(main())
