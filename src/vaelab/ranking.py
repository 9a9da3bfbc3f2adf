"""Pure functions that rank data points by a score (higher = more likely)."""

from __future__ import annotations

import numpy as np


def least_likely(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` lowest scores, lowest first (ties by index)."""
    return np.argsort(scores, kind="stable")[:k]


def most_likely(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, highest first (ties by index)."""
    order = np.argsort(-scores, kind="stable")
    return order[:k]


def least_likely_per_class(scores: np.ndarray, labels: np.ndarray, k: int) -> dict[int, np.ndarray]:
    """For each label, the indices of its ``k`` lowest-scoring points, lowest first."""
    out = {}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        out[int(label)] = members[least_likely(scores[members], k)]
    return out


def latent_grid(latent_dim: int, axes: tuple[int, int], steps: int) -> np.ndarray:
    """Codes (steps*steps, latent_dim) on a grid over two latent axes, the others at 0.

    The grid runs over the 5%..95% quantiles of the N(0, 1) prior, rows down
    the first axis and columns along the second.
    """
    from scipy.stats import norm

    values = norm.ppf(np.linspace(0.05, 0.95, steps))
    z = np.zeros((steps * steps, latent_dim), dtype=np.float32)
    rows, cols = np.meshgrid(values[::-1], values, indexing="ij")
    z[:, axes[0]] = rows.ravel()
    z[:, axes[1]] = cols.ravel()
    return z
