"""`python -m core.emergency_classifier`, the documented command: an alias of `core.safety.emergency_classifier`."""

from core.safety.emergency_classifier import main

if __name__ == "__main__":
    raise SystemExit(main())
