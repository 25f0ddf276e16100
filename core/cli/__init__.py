"""Command-line entry points: `python -m core.cli.NAME`, or the documented `python -m core.NAME` aliases.
The environment they need is set once, in `core/__init__.py`."""
