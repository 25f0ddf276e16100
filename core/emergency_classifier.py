"""`python -m core.emergency_classifier`, the documented command: an alias of `core.cli.train_classifier`."""

from core.cli.train_classifier import main

if __name__ == "__main__":
    raise SystemExit(main())
