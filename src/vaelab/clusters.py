"""Clusters of rows found without labels: HDBSCAN on a t-SNE map of the rows' principal components.

A t-SNE map (van der Maaten & Hinton 2008) of data such as MNIST separates its classes into islands
that a density-based clustering picks out: HDBSCAN (Campello et al. 2013) with "leaf" selection
(the finest clusters of its hierarchy, so that two touching islands are not merged into one) and a
least cluster size of a share of the rows. Rows that HDBSCAN leaves as noise, and rows beyond the
map's cap, join the cluster of most of their nearest clustered neighbours (in the map, or in the
principal components where a row has no place in the map).

Whether the clusters are real: :func:`stable_clusters` clusters the rows again from other seeds
(other t-SNE maps) and measures their agreement by the mean adjusted Rand index of every pair (Hubert &
Arabie 1985). Islands in the data come back whatever the seed; cuts through one connected mass of rows
move (stability as a test of cluster structure: Ben-Hur et al. 2002, Lange et al. 2004).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vaelab.embedding import subset, tsne

MIN_CLUSTER_ROWS = 50  # the least cluster size however few rows: t-SNE draws small groups out of noise


@dataclass(frozen=True)
class Clusters:
    """The clusters of n rows."""

    labels: np.ndarray  # (n,) each row's cluster, 0 .. n_clusters - 1 (every row has one)
    core: np.ndarray    # (n,) bool: the rows the clustering placed itself (HDBSCAN's, or k-means' where HDBSCAN
                        # found fewer than two clusters); the rest joined their nearest clustered rows
    cut: bool = False   # HDBSCAN found fewer than two clusters, and k-means cut the map in two

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def find_clusters(x: np.ndarray, *, min_share: float = 0.01, max_rows: int = 60000, components: int = 50,
                  neighbours: int = 15, seed: int = 0, device: str = "cpu") -> Clusters:
    """Clusters of the rows ``x`` (n, d), found without labels.

    The first ``components`` principal components of (a seeded subset of at most ``max_rows``) rows
    are mapped by t-SNE; HDBSCAN finds the clusters of the map, each at least ``min_share`` of the
    mapped rows (and at least :data:`MIN_CLUSTER_ROWS`); every other row takes the most common
    cluster among its ``neighbours`` nearest clustered rows. Where HDBSCAN finds fewer than two
    clusters, k-means cuts the map in two.
    """
    from sklearn.cluster import HDBSCAN, KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    if not 0.0 < min_share < 0.5:
        raise ValueError(f"min_share must be in (0, 0.5); got {min_share}")
    if max_rows < 2 or components < 1 or neighbours < 1:
        raise ValueError("max_rows must be >= 2, components and neighbours >= 1")
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    mapped = subset(n, max_rows, seed)
    pca = PCA(n_components=min(components, len(mapped), x.shape[1]), random_state=seed).fit(x[mapped])
    codes = pca.transform(x)
    points = tsne(codes[mapped], seed=seed, device=device) if codes.shape[1] > 1 else codes[mapped]  # 1-D: the map
    size = min(max(MIN_CLUSTER_ROWS, math.ceil(min_share * len(mapped))), len(mapped))
    found = HDBSCAN(min_cluster_size=size, cluster_selection_method="leaf", copy=True).fit(points).labels_
    cut = bool(found.max() < 1)
    if cut:  # one cluster or none: the map cut in two, so that a classifier has two sides
        found = KMeans(2, n_init=3, random_state=seed).fit_predict(points)
    clustered = found >= 0
    labels = np.zeros(n, dtype=np.int64)
    core = np.zeros(n, dtype=bool)
    core[mapped[clustered]] = True
    labels[mapped[clustered]] = found[clustered]
    k = min(neighbours, int(clustered.sum()))
    noise = mapped[~clustered]
    if len(noise):  # in the map
        labels[noise] = KNeighborsClassifier(k).fit(points[clustered], found[clustered]).predict(points[~clustered])
    unmapped = np.setdiff1d(np.arange(n), mapped)
    if len(unmapped):  # no place in the map: their nearest clustered rows in the principal components
        knn = KNeighborsClassifier(k).fit(codes[mapped[clustered]], found[clustered])
        labels[unmapped] = knn.predict(codes[unmapped])
    return Clusters(labels, core, cut)


def stable_clusters(x: np.ndarray, *, seed: int = 0, maps: int = 2, **settings) -> tuple[Clusters, float]:
    """(the clusters of :func:`find_clusters` with ``seed``, their stability): the mean adjusted Rand
    index over every pair of the ``maps`` clusterings found from seeds ``seed`` .. ``seed + maps - 1``
    with the same ``settings``; 1 for the same partition, about 0 for partitions that agree no more
    than by chance. 0 where any seed's map had fewer than two clusters (:attr:`Clusters.cut`): k-means'
    cut of one mass of rows into two halves can come back from every seed, but it is no cluster
    structure. More maps: a steadier estimate (one pair of maps can agree by luck)."""
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score

    if maps < 2:
        raise ValueError(f"the stability needs at least two maps; got {maps}")
    found = [find_clusters(x, seed=seed + i, **settings) for i in range(maps)]
    if any(c.cut for c in found):
        return found[0], 0.0
    pairs = [adjusted_rand_score(a.labels, b.labels) for a, b in combinations(found, 2)]
    return found[0], float(np.mean(pairs))
