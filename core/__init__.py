"""The clinical guideline assistant's logic (never imports streamlit; see docs/architecture.md).

The environment the heavy libraries read when they are imported is set here, once, before any of
them can be: OpenMP threads that spin while idle made torch (embeddings) and llama.cpp in one
process 25x slower (STACK.md), and the bundled models never come from the Hugging Face hub.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
