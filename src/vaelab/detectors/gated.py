"""Cluster-conditional where the normal rows form stable clusters, unconditional elsewhere.

``m2-clusters`` (:class:`ClusterConditionalDetector`) assumes normal data of several kinds: leaving one
MNIST digit out, its clusters are the nine digits left in, and it finds the left-out one far better than
any unconditional detector. With one kind of normal row (one digit) its clusters are cuts through one
mass of rows, its classifier's doubt between them counts against normal rows as much as against
anomalies, and it falls far behind. :class:`ClusterGatedDetector` tests the premise on the training rows
before it fits anything: the clusters found from ``maps`` seeds (t-SNE maps; three by default) must
agree, by the mean adjusted Rand index of every pair, at least ``min_stability``; where they do, it is
the cluster-conditional detector on those clusters, and where they do not, the unconditional
``fallback``. No label and no anomaly is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.detectors.base import BaseDetector, StateReader, StateWriter, unfitted_part
from vaelab.detectors.semisupervised import ClusterConditionalDetector


def chooses_clusters(stability: float, min_stability: float) -> bool:
    """Whether clusters of this ``stability`` (mean adjusted Rand index over the seeds' maps) are taken as real."""
    return stability >= min_stability


class ClusterGatedDetector(BaseDetector):
    """``clusters`` (an unfitted :class:`ClusterConditionalDetector`) fitted on its own clusters where
    they are stable (:meth:`ClusterConditionalDetector.stable_clusters_of` with ``maps`` maps at least
    ``min_stability``), else ``fallback`` (an unfitted detector for one kind of normal row).
    ``stability_``: the measured index; ``chose_clusters_``: which one was fitted; ``detector_``: the fitted one, which scores."""

    def __init__(self, clusters: ClusterConditionalDetector | None = None, fallback: BaseDetector | None = None,
                 min_stability: float = 0.8, maps: int = 3, contamination: float = 0.1,
                 threshold_rows: int | None = 2000,
                 random_state: int = 0, calibration: float = 0.0, fpr: float | None = None) -> None:
        super().__init__(contamination, threshold_rows, calibration, fpr)
        self.clusters = clusters
        self.fallback = fallback
        self.min_stability = min_stability
        self.maps = maps
        self.random_state = random_state

    def _fit(self, X: np.ndarray) -> None:
        if not isinstance(self.clusters, ClusterConditionalDetector) or not isinstance(self.fallback, BaseDetector):
            raise ValueError("ClusterGatedDetector needs a ClusterConditionalDetector (clusters) and a fallback detector")
        if self.min_stability < -1.0:  # above 1 (the index's most): the fallback always
            raise ValueError(f"min_stability must be at least -1 (an adjusted Rand index); got {self.min_stability}")
        template = unfitted_part(self.clusters)
        found, self.stability_ = template.stable_clusters_of(X, maps=self.maps)
        self.chose_clusters_ = chooses_clusters(self.stability_, self.min_stability)
        self.detector_ = (template.fit_with_clusters(X, found) if self.chose_clusters_
                          else unfitted_part(self.fallback).fit(X))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.detector_.score_samples(X)

    def explain(self, X) -> np.ndarray:
        """Per-feature contributions, (n, d): those of the detector that was chosen."""
        return self.detector_.explain(self._checked(X))

    def _state(self, writer: StateWriter, prefix: str) -> dict[str, Any]:
        return {"stability": self.stability_, "chose_clusters": self.chose_clusters_,
                "detector": writer.nested(self.detector_, f"{prefix}chosen.")}

    def _restore(self, meta: dict[str, Any], reader: StateReader, prefix: str) -> None:
        self.stability_, self.chose_clusters_ = float(meta["stability"]), bool(meta["chose_clusters"])
        self.detector_ = reader.nested(meta["detector"], f"{prefix}chosen.")
