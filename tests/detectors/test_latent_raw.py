"""Raw-data baselines rank anomalies below normals."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from vaelab.detectors import RawDetector


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


@pytest.mark.parametrize("detector", [
    RawDetector("ocsvm", pca_components=None), RawDetector("iforest", pca_components=None),
    RawDetector("gmm", pca_components=None), RawDetector("kde", pca_components=None),
    RawDetector("pca-recon", pca_components=2), RawDetector("ocsvm-nystroem", pca_components=None),
], ids=lambda d: d.estimator)
def test_raw_detectors_rank_anomalies_lower(blobs, detector):
    train, x_test, is_anomaly = blobs
    detector.fit(train)
    scores = detector.score_samples(x_test)
    assert roc_auc_score(is_anomaly, -scores) > 0.9
    assert np.allclose(detector.decision_function(x_test), scores - detector.offset_)
    flagged = (detector.predict(train) == -1).mean()
    assert abs(flagged - detector.contamination) < 0.02  # the threshold is the training quantile


