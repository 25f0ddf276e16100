"""Small learned models shared by the answering and safety layers: logistic regression over named
features, stored as plain JSON (feature names, weights, bias, the standardisation's mean and scale).

The evidence scorers (`core/answering/evidence.py`, `data/answering/evidence_model.json`) are made of
these, and the emergency classifier (`core/safety/emergency_classifier.py`) still reads a linear head.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel


class LinearScorer(BaseModel):
    """Logistic regression over named features (standardised with the stored mean and scale)."""

    features: list[str]
    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]

    def score(self, rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return np.zeros(len(rows))
        z = (rows - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.weights) + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))


def fit_logistic(rows: np.ndarray, labels: np.ndarray, names: tuple[str, ...], l2: float = 1.0,
                 iterations: int = 50) -> LinearScorer:
    """L2-regularised logistic regression by Newton's method on standardised features."""
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = np.hstack([(rows - mean) / scale, np.ones((len(rows), 1))])
    w = np.zeros(z.shape[1])
    reg = np.eye(z.shape[1]) * l2
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        grad = z.T @ (p - labels) + reg @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return LinearScorer(features=list(names), weights=[round(float(x), 6) for x in w[:-1]], bias=round(float(w[-1]), 6),
                        mean=[round(float(x), 6) for x in mean], scale=[round(float(x), 6) for x in scale])
