"""Partial labels for semi-supervised learning: which training rows keep their class (-1: unlabelled)."""

from __future__ import annotations

import numpy as np


def balanced_labels(y: np.ndarray, n_labels: int, seed: int) -> np.ndarray:
    """``y`` with all but ``n_labels`` rows set to -1, the kept ones spread evenly over the classes."""
    classes = np.unique(y)
    if n_labels % len(classes):
        raise ValueError(f"{n_labels} labels cannot be spread evenly over {len(classes)} classes")
    rng = np.random.default_rng(seed)
    out = np.full(len(y), -1, dtype=np.int64)
    for c in classes:
        rows = np.flatnonzero(y == c)
        if len(rows) < n_labels // len(classes):
            raise ValueError(f"class {c} has only {len(rows)} rows")
        keep = rng.choice(rows, size=n_labels // len(classes), replace=False)
        out[keep] = c
    return out


# The share of each semi-supervised epoch that the labelled rows are repeated to, unless told otherwise.
LABELLED_SHARE = 0.2


def epoch_rows(y_semi: np.ndarray, labelled_share: float) -> np.ndarray:
    """Row indices of one epoch: every unlabelled row once and the labelled rows repeated so that
    they make up about ``labelled_share`` of it (a few labels would otherwise almost never be seen)."""
    labelled, unlabelled = np.flatnonzero(y_semi >= 0), np.flatnonzero(y_semi < 0)
    if len(labelled) == 0 or len(unlabelled) == 0:
        return np.arange(len(y_semi))
    repeats = max(1, int(round(labelled_share * len(unlabelled) / ((1 - labelled_share) * len(labelled)))))
    return np.concatenate([unlabelled, np.tile(labelled, repeats)])
