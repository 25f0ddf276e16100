"""Answering a question: retrieval and evidence, prompts and their store, the pipeline, the citation check, presentation."""
