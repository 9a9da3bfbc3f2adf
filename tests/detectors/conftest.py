"""Shared data for the detector tests."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def blobs():
    """Correlated 8-d Gaussian normals; anomalies off the normals' low-dimensional structure."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 8))
    normal = rng.normal(size=(600, 2)) @ basis + 0.1 * rng.normal(size=(600, 8))
    test_normal = rng.normal(size=(200, 2)) @ basis + 0.1 * rng.normal(size=(200, 8))
    anomalies = rng.normal(size=(50, 8)) * 1.5
    x_test = np.vstack([test_normal, anomalies])
    is_anomaly = np.r_[np.zeros(200), np.ones(50)]
    return normal, x_test, is_anomaly
