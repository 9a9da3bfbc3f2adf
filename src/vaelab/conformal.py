"""Split-conformal p-values and thresholds for normality scores (higher = more normal).

Assumption: the calibration rows and a new normal row are exchangeable (drawn
alike, independently of the model's own training rows). Then for a normal row
the p-value below is super-uniform, P(p <= a) <= a for every a, and flagging
rows with p <= a has a false-positive rate of at most a (Vovk et al. 2005;
Bates et al. 2023 for outlier detection).
"""

from __future__ import annotations

import math

import numpy as np


def conformal_pvalues(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """p(x) = (1 + #{calibration scores <= s(x)}) / (n + 1) for each score s(x); small = anomalous."""
    calibration = np.sort(np.asarray(calibration, dtype=np.float64))
    below = np.searchsorted(calibration, np.asarray(scores, dtype=np.float64), side="right")
    return (1.0 + below) / (len(calibration) + 1.0)


def min_calibration_rows(fpr: float) -> int:
    """The fewest calibration rows with which a p-value can reach ``fpr`` (ceil(1/fpr) - 1)."""
    return math.ceil(1.0 / fpr - 1e-12) - 1


def conformal_threshold(calibration: np.ndarray, fpr: float) -> float:
    """The score threshold t such that ``score >= t`` is normal and ``score < t`` exactly when the
    conformal p-value is at most ``fpr``; refuses a calibration set too small to reach ``fpr``."""
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must be in (0, 1); got {fpr}")
    calibration = np.sort(np.asarray(calibration, dtype=np.float64))
    m = math.floor(fpr * (len(calibration) + 1) + 1e-12) - 1
    if m < 0:
        raise ValueError(f"{len(calibration)} calibration rows cannot give a false-positive rate of at most {fpr}; "
                         f"at least {min_calibration_rows(fpr)} are needed")
    return float(calibration[m])
