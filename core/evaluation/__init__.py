"""Measuring answers: evaluation cases and metrics, A/B comparison (one question or a whole set), facts."""
