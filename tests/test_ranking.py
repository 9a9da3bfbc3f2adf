"""Ranking: least and most likely points, per class, and the latent traversal grid."""


import numpy as np

from vaelab import ranking


def test_ranking_functions():
    scores = np.array([3.0, -1.0, 2.0, -5.0, 0.0, -1.0])
    assert ranking.least_likely(scores, 3).tolist() == [3, 1, 5]
    assert ranking.most_likely(scores, 2).tolist() == [0, 2]
    per_class = ranking.least_likely_per_class(scores, np.array([0, 0, 1, 1, 0, 1]), 2)
    assert per_class[0].tolist() == [1, 4] and per_class[1].tolist() == [3, 5]
    grid = ranking.latent_grid(3, (0, 2), 5)
    assert grid.shape == (25, 3) and np.all(grid[:, 1] == 0)
    assert grid[0, 0] > grid[-1, 0] and grid[0, 2] < grid[4, 2]
