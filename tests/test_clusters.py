"""Clusters found without labels: HDBSCAN on a t-SNE map of the rows' principal components."""

import numpy as np
import pytest

from tests.conftest import cluster_purity


def _blobs(rng, n_per: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.vstack([rng.normal(size=(n_per, centres.shape[1])) * 0.5 + c for c in centres])
    return x, np.repeat(np.arange(len(centres)), n_per)


def test_find_clusters_recovers_separated_groups_and_labels_every_row():
    from vaelab.clusters import find_clusters

    rng = np.random.default_rng(0)
    centres = np.eye(4, 10) * 8.0
    x, truth = _blobs(rng, 250, centres)
    clusters = find_clusters(x, min_share=0.05, seed=0)
    assert clusters.labels.shape == (1000,) and clusters.labels.min() == 0
    assert clusters.n_clusters == 4 and cluster_purity(truth, clusters.labels) > 0.99
    assert 0.5 < clusters.core.mean() <= 1.0  # HDBSCAN's own rows; the rest joined their neighbours
    again = find_clusters(x, min_share=0.05, seed=0)
    assert np.array_equal(again.labels, clusters.labels)  # seeded


def test_rows_beyond_the_map_join_their_nearest_clustered_rows():
    from vaelab.clusters import find_clusters

    rng = np.random.default_rng(1)
    x, truth = _blobs(rng, 300, np.eye(3, 8) * 8.0)
    clusters = find_clusters(x, min_share=0.05, max_rows=400, seed=0)
    assert clusters.core.sum() <= 400  # only mapped rows can be HDBSCAN's own
    assert clusters.n_clusters == 3 and cluster_purity(truth, clusters.labels) > 0.99


def test_one_group_is_cut_in_two_and_bad_settings_are_refused():
    from vaelab.clusters import find_clusters

    x = np.random.default_rng(2).normal(size=(300, 5))
    clusters = find_clusters(x, min_share=0.3, seed=0)
    assert clusters.n_clusters >= 2 and np.bincount(clusters.labels).min() > 0 and clusters.cut
    with pytest.raises(ValueError, match="min_share"):
        find_clusters(x, min_share=0.0)
    with pytest.raises(ValueError, match="max_rows"):
        find_clusters(x, max_rows=1)


def test_stable_clusters_agree_on_islands_and_not_on_one_mass():
    """Islands come back from another seed's map (adjusted Rand index 1); cuts through one Gaussian mass
    do not (below the 0.8 that m2-clusters-or-fusion asks for)."""
    from vaelab.clusters import find_clusters, stable_clusters

    rng = np.random.default_rng(2)
    islands, _ = _blobs(rng, 200, np.eye(3, 6) * 3.0)
    clusters, stability = stable_clusters(islands, min_share=0.1, seed=0)
    assert stability > 0.99 and clusters.n_clusters == 3
    assert np.array_equal(clusters.labels, find_clusters(islands, min_share=0.1, seed=0).labels)  # the seed's own
    _, one_mass = stable_clusters(rng.normal(size=(600, 6)), min_share=0.1, seed=0)
    assert one_mass < 0.8
    few, cut = stable_clusters(rng.normal(size=(120, 6)), min_share=0.1, seed=0)  # under two clusters of 50 rows
    assert few.cut and cut == 0.0  # k-means' halves of one mass: no clusters, however alike from seed to seed


def test_stable_clusters_over_more_maps_is_the_mean_over_their_pairs():
    """With three maps the stability is the mean adjusted Rand index of the three pairs of seeds' clusters,
    and the clusters returned are the first seed's."""
    from sklearn.metrics import adjusted_rand_score

    from vaelab.clusters import find_clusters, stable_clusters

    rng = np.random.default_rng(3)  # four touching groups: clusters that move a little with the seed
    x = np.vstack([c + rng.normal(size=(150, 6)) for c in np.eye(4, 6) * 2.5])
    found = [find_clusters(x, min_share=0.1, seed=s).labels for s in (4, 5, 6)]
    pairs = [adjusted_rand_score(found[a], found[b]) for a, b in ((0, 1), (0, 2), (1, 2))]
    clusters, stability = stable_clusters(x, min_share=0.1, seed=4, maps=3)
    assert np.array_equal(clusters.labels, found[0])
    assert stability == pytest.approx(np.mean(pairs)) and 0.2 < stability < 0.99 and len(set(np.round(pairs, 6))) > 1
    assert stable_clusters(x, min_share=0.1, seed=4)[1] == pytest.approx(pairs[0])  # two maps: the one pair
    with pytest.raises(ValueError, match="at least two maps"):
        stable_clusters(x, maps=1)
