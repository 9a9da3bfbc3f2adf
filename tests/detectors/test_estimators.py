"""Estimators: the blockwise Gaussian KDE equals scikit-learn's."""

import numpy as np


def test_gaussian_kde_matches_scikit_learn():
    from sklearn.neighbors import KernelDensity

    from vaelab.detectors import GaussianKDE

    rng = np.random.default_rng(0)
    fit, query = rng.normal(size=(300, 6)), rng.normal(size=(50, 6)) * 1.5
    ours = GaussianKDE(block=16).fit(fit).score_samples(query)
    theirs = KernelDensity(bandwidth="scott").fit(fit).score_samples(query)
    assert np.allclose(ours, theirs, atol=1e-8)
