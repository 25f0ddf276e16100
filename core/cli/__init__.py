"""Command-line entry points (`python -m core.cli.X`, or the documented `python -m core.X` aliases).

The environment the heavy libraries read at import time is set here, once, before any of them is
imported: OpenMP threads that spin while idle made torch (embeddings) and llama.cpp in one process
25x slower (STACK.md), and nothing may reach for the Hugging Face hub.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
