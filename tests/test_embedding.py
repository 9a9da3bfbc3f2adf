"""Embeddings: seeded subsets, PCA and t-SNE shapes."""

import numpy as np

from vaelab import embedding


def test_subset_is_seeded_sorted_and_capped():
    a = embedding.subset(1000, 100, seed=0)
    assert len(a) == 100 and np.array_equal(a, np.sort(a)) and np.array_equal(a, embedding.subset(1000, 100, 0))
    assert not np.array_equal(a, embedding.subset(1000, 100, 1))
    assert np.array_equal(embedding.subset(50, 100, 0), np.arange(50))


def test_pca_and_tsne_give_the_asked_dimensions():
    x = np.random.default_rng(0).normal(size=(120, 20))
    reduced = embedding.pca(x, 5, seed=0)
    assert reduced.shape == (120, 5)
    points = embedding.tsne(reduced, perplexity=10, seed=0)
    assert points.shape == (120, 2) and np.isfinite(points).all()
