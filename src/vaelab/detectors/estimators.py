"""The density and support estimators behind the latent-space and raw-data detectors."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from vaelab.config import LATENT_ESTIMATORS as ESTIMATORS

# The estimator settings a detector passes on (fields of the same names in DetectorConfig).
ESTIMATOR_SETTINGS = ("ocsvm_nu", "gmm_components", "gmm_full_max_dim", "iforest_estimators", "nystroem_components")


class GaussianKDE:
    """Gaussian kernel density with Scott's bandwidth n^(-1/(d+4)) (for standardized data).

    Scores by exact log-mean-exp over all fitted rows, computed in blocks with
    matrix products: unlike tree-based KDE it stays fast in hundreds of dimensions.
    """

    def __init__(self, block: int = 2048) -> None:
        self.block = block

    def fit(self, Z: np.ndarray) -> "GaussianKDE":
        self.points_ = np.asarray(Z, dtype=np.float64)
        n, d = self.points_.shape
        self.bandwidth_ = float(n ** (-1.0 / (d + 4)))
        return self

    def score_samples(self, Z: np.ndarray) -> np.ndarray:
        P, h = self.points_, self.bandwidth_
        n, d = P.shape
        sq_p = (P**2).sum(1)
        out = []
        for start in range(0, len(Z), self.block):
            z = np.asarray(Z[start:start + self.block], dtype=np.float64)
            dist = np.maximum((z**2).sum(1)[:, None] + sq_p[None, :] - 2 * z @ P.T, 0.0)
            out.append(logsumexp(-dist / (2 * h * h), axis=1))
        return np.concatenate(out) - np.log(n) - 0.5 * d * np.log(2 * np.pi * h * h)


def density_estimator(name: str, random_state: int, n: int, d: int, *, ocsvm_nu: float = 0.1,
                      gmm_components: int = 10, gmm_full_max_dim: int = 50, iforest_estimators: int = 200,
                      nystroem_components: int = 500):
    """An unfitted estimator for ``n`` rows of ``d`` features whose score (``score_samples`` or
    ``decision_function``) is higher for normal points."""
    from sklearn.ensemble import IsolationForest
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import SGDOneClassSVM
    from sklearn.mixture import GaussianMixture
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import OneClassSVM

    if name == "ocsvm":
        return OneClassSVM(gamma="scale", nu=ocsvm_nu)
    if name == "ocsvm-nystroem":  # linear in n: kernel approximation + linear one-class SVM
        return make_pipeline(Nystroem(gamma=None, n_components=min(nystroem_components, n), random_state=random_state),
                             SGDOneClassSVM(nu=ocsvm_nu, random_state=random_state))
    if name == "iforest":
        return IsolationForest(n_estimators=iforest_estimators, random_state=random_state)
    if name == "gmm":  # full covariances up to gmm_full_max_dim features; diagonal beyond (cost grows as d^2)
        covariance = "full" if d <= gmm_full_max_dim else "diag"
        return GaussianMixture(n_components=min(gmm_components, n), covariance_type=covariance,
                               random_state=random_state)
    if name == "kde":
        return GaussianKDE()
    raise ValueError(f"unknown estimator {name!r}; use {', '.join(ESTIMATORS)}")


def estimator_scores(estimator, Z: np.ndarray) -> np.ndarray:
    """The fitted ``estimator``'s normality score of rows Z (higher = more normal)."""
    return estimator.score_samples(Z) if hasattr(estimator, "score_samples") else estimator.decision_function(Z)
