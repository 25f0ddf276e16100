"""LoRA adapters: reading GGUF files, the adapter registry, and (elsewhere in this package) training."""
